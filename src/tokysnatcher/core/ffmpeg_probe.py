"""Short bounded ffmpeg runs that read audio: stream summary, full decode check, decoded MD5.

There is no ffprobe: :func:`probe` reads the stream summary that ``ffmpeg -i FILE`` prints.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import NamedTuple

from tokysnatcher.core.ffmpeg import (
    LOG_PREFIX,
    PROTOCOL_WHITELIST,
    FfmpegInfo,
    file_url,
    run_short,
    summarize_stderr,
)
from tokysnatcher.errors import FailureKind, FfmpegError

_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: ([\w-]+)(.*)")
_SAMPLE_RATE = re.compile(r", (\d+) Hz")
_CHANNELS = re.compile(r"Hz, (mono|stereo|quad|(\d+)\.(\d+)(?:\(\w+\))?|(\d+) channels)")


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
    try:
        # ffmpeg exits 1 here ("At least one output file must be specified"): that is expected.
        _, _, err = run_short(args, timeout=timeout, stdin_data=data)
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(
            f"ffmpeg did not finish reading {name} within {timeout:g} s",
            kind=FailureKind.FFMPEG_STALLED,
        ) from exc
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


def decode_check(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 600.0) -> str | None:
    """Decode every audio frame of ``path``; the first error line, or None when it is clean."""
    returncode, _, err = _decode(ffmpeg, path, "null", timeout)
    lines = [line for line in err.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if lines:
        return LOG_PREFIX.sub("", lines[0]).strip()
    return None if returncode == 0 else f"ffmpeg exited with status {returncode}"


def decoded_md5(ffmpeg: FfmpegInfo, path: Path, *, timeout: float = 600.0) -> str:
    """MD5 of the decoded audio samples: equal for the same audio in any container."""
    returncode, out, err = _decode(ffmpeg, path, "md5", timeout)
    match = re.search(rb"MD5=([0-9a-f]{32})", out)
    if returncode != 0 or match is None:
        lines = err.decode("utf-8", errors="replace").splitlines()
        raise FfmpegError(
            f"cannot decode {path.name}: {summarize_stderr(lines)}", kind=FailureKind.INVALID_MEDIA
        )
    return match.group(1).decode()


def _decode(ffmpeg: FfmpegInfo, path: Path, muxer: str, timeout: float) -> tuple[int, bytes, bytes]:
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-v", "error"]
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", file_url(path)]
    args += ["-map", "0:a", "-f", muxer, "-"]
    try:
        return run_short(args, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(
            f"decoding {path.name} did not finish within {timeout:g} s",
            kind=FailureKind.FFMPEG_STALLED,
        ) from exc
