"""Timing facts of an MP4 audio file, read from its sample table.

There is no ffprobe here, and the text ffmpeg prints rounds durations to 10 ms; chapter marks of
an m4b need exact frame counts, which the ``stts`` box of the audio track holds. Only the boxes
needed are read (by seeking), so a long file costs a few small reads.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from tokysnatcher.errors import FailureKind, FfmpegError


class AudioTrack(NamedTuple):
    """The first sound track of an MP4 file, from its sample table (all times in samples)."""

    codec: str  # the sample entry's four-character code: "mp4a" for AAC
    timescale: int  # the track's time base, 1/timescale s (the sample rate for our parts)
    frames: int  # packets in the track
    duration: int  # sum of the packets' durations
    frame_length: int  # the usual packet duration (1024 for AAC-LC)
    channels: int
    sample_rate: int
    priming: int  # samples the edit list skips at the start (an encoder's priming), else 0


def _boxes(handle: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload start, payload end)`` of each box between ``start`` and ``end``."""
    position = start
    while position + 8 <= end:
        handle.seek(position)
        size, kind = struct.unpack(">I4s", handle.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", handle.read(8))
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise ValueError(f"box {kind!r} at {position} has a bad size")
        yield kind, position + header, position + size
        position += size


def _child(handle: BinaryIO, start: int, end: int, kind: bytes) -> tuple[int, int]:
    for found, child_start, child_end in _boxes(handle, start, end):
        if found == kind:
            return child_start, child_end
    raise ValueError(f"no {kind.decode()} box")


def _read(handle: BinaryIO, start: int, end: int, size: int) -> bytes:
    if end - start < size:
        raise ValueError("box too short")
    handle.seek(start)
    return handle.read(size)


def _track(handle: BinaryIO, trak: tuple[int, int]) -> AudioTrack | None:
    mdia = _child(handle, *trak, b"mdia")
    hdlr = _child(handle, *mdia, b"hdlr")
    if _read(handle, *hdlr, 12)[8:12] != b"soun":
        return None
    mdhd = _child(handle, *mdia, b"mdhd")
    version = _read(handle, *mdhd, 1)[0]
    offset = 20 if version == 1 else 12
    (timescale,) = struct.unpack(">I", _read(handle, *mdhd, offset + 4)[offset:])
    stbl = _child(handle, *_child(handle, *mdia, b"minf"), b"stbl")
    stts_start, stts_end = _child(handle, *stbl, b"stts")
    (count,) = struct.unpack(">I", _read(handle, stts_start, stts_end, 8)[4:])
    if 8 + 8 * count > stts_end - stts_start:
        raise ValueError("stts box too short")
    table = struct.unpack(f">{2 * count}I", handle.read(8 * count))
    runs = Counter[int]()
    for n, delta in zip(table[0::2], table[1::2], strict=True):
        runs[delta] += n
    stsd = _child(handle, *stbl, b"stsd")
    entry = _read(handle, *stsd, 8 + 36)[8:]
    codec = entry[4:8].decode("latin-1")
    channels, _, _, rate = struct.unpack(">HHII", entry[24:36])
    return AudioTrack(
        codec=codec,
        timescale=timescale,
        frames=sum(runs.values()),
        duration=sum(n * delta for delta, n in runs.items()),
        frame_length=runs.most_common(1)[0][0] if runs else 0,
        channels=channels,
        sample_rate=rate >> 16,
        priming=_priming(handle, trak),
    )


def _priming(handle: BinaryIO, trak: tuple[int, int]) -> int:
    try:
        elst_start, elst_end = _child(handle, *_child(handle, *trak, b"edts"), b"elst")
    except ValueError:
        return 0
    version = _read(handle, elst_start, elst_end, 1)[0]
    (count,) = struct.unpack(">I", _read(handle, elst_start, elst_end, 8)[4:])
    width = 20 if version == 1 else 12
    for n in range(count):
        raw = _read(handle, elst_start + 8 + n * width, elst_end, width)
        (media_time,) = (
            struct.unpack(">q", raw[8:16]) if version == 1 else struct.unpack(">i", raw[4:8])
        )
        if media_time >= 0:  # -1 marks an empty edit (a delay), not a skip
            return int(media_time)
    return 0


def read_audio_track(path: Path) -> AudioTrack:
    """The first sound track of the MP4 file ``path``; ``FfmpegError`` if it has none."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            moov = _child(handle, 0, end, b"moov")
            for kind, start, stop in _boxes(handle, *moov):
                if kind == b"trak" and (track := _track(handle, (start, stop))) is not None:
                    return track
            raise ValueError("no sound track")
    except (OSError, ValueError, struct.error) as err:
        raise FfmpegError(
            f"{path.name} is not a readable MP4 audio file ({err})",
            kind=FailureKind.INVALID_MEDIA,
        ) from err
