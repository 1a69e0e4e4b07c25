"""Cover images through ffmpeg: recognising JPEG and PNG, decoding a picture, making a JPEG."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, NamedTuple

from tokysnatcher.errors import FailureKind, FfmpegError
from tokysnatcher.ffmpeg.binary import (
    PROTOCOL_WHITELIST,
    FfmpegInfo,
    file_url,
    remove_output,
    run_short,
    summarize_stderr,
)

ImageFormat = Literal["jpeg", "png"]
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: ([\w-]+).*?, (\d{1,6})x(\d{1,6})")


class ImageInfo(NamedTuple):
    """What :func:`probe_image` learnt about an image file."""

    codec: str
    width: int
    height: int


def image_format(data: bytes) -> ImageFormat | None:
    """``jpeg`` or ``png`` from a file's first bytes (its magic number), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def probe_image(
    ffmpeg: FfmpegInfo, path: Path, *, max_pixels: int, timeout: float = 30.0
) -> ImageInfo:
    """Decode the first picture of ``path``; its codec and size, or ``FfmpegError``.

    A picture of more than ``max_pixels`` is refused by the decoder instead of being decoded.
    """
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-nostats", "-xerror"]
    args += ["-max_pixels", str(max_pixels)]
    args += ["-protocol_whitelist", PROTOCOL_WHITELIST, "-i", file_url(path)]
    args += ["-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]
    returncode, _, err = run_short(args, timeout=timeout, doing=f"decoding the image {path.name}")
    text = err.decode("utf-8", errors="replace")
    found = _VIDEO.search(text)
    if returncode != 0 or found is None or "Input #0" not in text:
        detail = summarize_stderr([line for line in text.splitlines() if line.strip()][-3:])
        raise FfmpegError(f"not a readable image: {detail}", kind=FailureKind.INVALID_MEDIA)
    return ImageInfo(found.group(1), int(found.group(2)), int(found.group(3)))


def image_to_jpeg(
    ffmpeg: FfmpegInfo, source: Path, output: Path, *, max_pixels: int, timeout: float = 60.0
) -> None:
    """Re-encode the first picture of ``source`` (WebP, GIF, BMP ...) as a JPEG ``output``."""
    args = [ffmpeg.path, "-hide_banner", "-nostdin", "-v", "error", "-y"]
    args += [
        "-max_pixels",
        str(max_pixels),
        "-protocol_whitelist",
        PROTOCOL_WHITELIST,
        "-i",
        file_url(source),
    ]
    args += ["-map", "0:v:0", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "3"]
    args += ["-pix_fmt", "yuvj420p", "-f", "mjpeg", file_url(output)]
    returncode, _, err = run_short(
        args, timeout=timeout, doing=f"converting the image {source.name}", partial_output=output
    )
    if returncode != 0:
        remove_output(output)
        lines = err.decode("utf-8", errors="replace").splitlines()
        raise FfmpegError(
            f"cannot convert the image: {summarize_stderr(lines)}", kind=FailureKind.INVALID_MEDIA
        )
