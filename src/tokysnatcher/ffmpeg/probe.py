"""Short bounded ffmpeg runs that read audio: stream summary, full decode check, decoded MD5.

There is no ffprobe: :func:`probe` reads the stream summary that ``ffmpeg -i FILE`` prints.

How long a file's audio is, for the check that a chapter is as long as the site declared:
ffmpeg's ``out_time`` (progress) and ``Duration`` of an MP4 follow timestamps, so a segment cut
short in the middle of a chapter leaves a gap they count as audio (40.0 s reported for 36.0 s of
sound). What counts is the audio frames: the MP4 sample table's frame count, and for MP3 the
frame count the muxer writes in its Xing header (fresh output) or a full decode (``--deep``: a
file cut short later keeps its header).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from tokysnatcher.errors import FailureKind, FfmpegError
from tokysnatcher.ffmpeg.binary import (
    LOG_PREFIX,
    PROTOCOL_WHITELIST,
    FfmpegInfo,
    file_url,
    run_short,
    summarize_stderr,
)
from tokysnatcher.m4b.mp4 import read_audio_track

_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: ([\w-]+)(.*)")
_SAMPLE_RATE = re.compile(r", (\d+) Hz")
_CHANNELS = re.compile(r"Hz, (mono|stereo|quad|(\d+)\.(\d+)(?:\(\w+\))?|(\d+) channels)")
_OUT_TIME_US = re.compile(rb"^out_time_us=(\d+)$", re.MULTILINE)
_MP4_SUFFIXES = (".m4a", ".m4b", ".mp4")


class MediaInfo(NamedTuple):
    """What :func:`probe` learnt about the first audio stream of a file."""

    codec: str | None
    duration: float | None
    sample_rate: int | None
    channels: int | None


def probe(ffmpeg: FfmpegInfo, source: Path | bytes, *, timeout: float = 30.0) -> MediaInfo:
    """Codec, duration, sample rate and channels of the first audio stream.

    ``source`` is a file or the leading bytes of one (for example a first segment). Raises
    ``FfmpegError(INVALID_MEDIA)`` when ffmpeg cannot open it and ``FfmpegError(FFMPEG_STALLED)``
    when it does not answer within ``timeout``.
    """
    args = [ffmpeg.path, "-hide_banner"]
    if isinstance(source, bytes):
        data: bytes | None = source
        url, name = "pipe:0", "the given data"
    else:
        data, url, name = None, file_url(source), str(source)
        args.append("-nostdin")
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", url]
    # ffmpeg exits 1 here ("At least one output file must be specified"): that is expected.
    _, _, err = run_short(args, timeout=timeout, doing=f"reading {name}", stdin_data=data)
    text = err.decode("utf-8", errors="replace")
    if "Input #0" not in text:
        detail = summarize_stderr([line for line in text.splitlines() if line.strip()])
        raise FfmpegError(f"ffmpeg cannot read {name}: {detail}", kind=FailureKind.INVALID_MEDIA)
    duration = _DURATION.search(text)
    audio = _AUDIO.search(text)
    rate = _SAMPLE_RATE.search(audio.group(2)) if audio else None
    return MediaInfo(
        codec=audio.group(1) if audio else None,
        duration=(
            int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
            if duration
            else None
        ),
        sample_rate=int(rate.group(1)) if rate else None,
        channels=_channels(audio.group(2)) if audio else None,
    )


def _channels(description: str) -> int | None:
    match = _CHANNELS.search(description)
    if match is None:
        return None
    layout, main, lfe, count = match.groups()
    if layout in ("mono", "stereo", "quad"):
        return {"mono": 1, "stereo": 2, "quad": 4}[layout]
    if count is not None:
        return int(count)
    return int(main) + int(lfe)


class Decoded(NamedTuple):
    """What a full decode found: the first error line (None when clean), seconds of audio."""

    problem: str | None
    seconds: float | None


def audio_seconds(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 30.0) -> float | None:
    """Seconds of audio in a file this run just wrote, without decoding it (see the module notes).

    MP4: frames of the sample table less the priming its edit list skips. MP3: the duration
    ffmpeg reads from the Xing header. None when the file does not say.
    """
    if path.suffix.lower() in _MP4_SUFFIXES:
        return _mp4_seconds(path)
    return probe(ffmpeg, path, timeout=timeout).duration


def _mp4_seconds(path: Path) -> float:
    track = read_audio_track(path)
    return (track.frames * track.frame_length - track.priming) / track.timescale


def decode_check(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 600.0) -> Decoded:
    """Decode every audio frame of ``path``: the first error, and how much audio it holds.

    The seconds come from the MP4 sample table (the decode proved those frames sound), else from
    the end of the decode: an MP3's timestamps count the frames that were really there.
    """
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-v", "error"]
    # The null muxer writes nothing, so stdout carries only the progress lines.
    args += ["-nostats", "-progress", "pipe:1"]
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", file_url(path)]
    args += ["-map", "0:a", "-f", "null", "-"]
    returncode, out, err = run_short(args, timeout=timeout, doing=f"decoding {path.name}")
    lines = [line for line in err.decode("utf-8", errors="replace").splitlines() if line.strip()]
    problem = None
    if lines:
        problem = LOG_PREFIX.sub("", lines[0]).strip()
    elif returncode != 0:
        problem = f"ffmpeg exited with status {returncode}"
    if problem is not None:
        return Decoded(problem, None)
    if path.suffix.lower() in _MP4_SUFFIXES:
        try:
            return Decoded(None, _mp4_seconds(path))
        except FfmpegError as err:
            return Decoded(err.message, None)
    times = _OUT_TIME_US.findall(out)
    return Decoded(None, int(times[-1]) / 1e6 if times else None)
