"""The book cover for an m4b: fetched with the same limits as audio, and proven to be an image.

A cover is a nicety: anything wrong with it (no answer, too large, not an image) is a warning and
the m4b is made without one. Only a full disk, or a stop request, ends the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tokysnatcher.core.ffmpeg import FfmpegInfo
from tokysnatcher.core.ffmpeg_image import ImageFormat, image_format, image_to_jpeg, probe_image
from tokysnatcher.core.http import Fetcher
from tokysnatcher.errors import DiskError, DownloadError, FailureKind

MAX_COVER_BYTES = 10 * 2**20
MAX_COVER_SIDE = 10_000  # pixels; players choke on (and nobody needs) anything larger
_ATTEMPTS = 2
_CODECS: dict[ImageFormat, str] = {"jpeg": "mjpeg", "png": "png"}


@dataclass(frozen=True)
class Cover:
    """A checked cover image, ready to attach."""

    path: Path
    format: ImageFormat
    width: int
    height: int


def fetch_cover(
    url: str,
    fetcher: Fetcher,
    ffmpeg: FfmpegInfo,
    workdir: Path,
    *,
    log: Callable[[str, str], None],
    limit: int = MAX_COVER_BYTES,
) -> Cover | None:
    """Download the cover at ``url`` into ``workdir`` and check it; None (and a warning) if bad.

    JPEG and PNG are kept as they are; another format ffmpeg can decode (WebP, GIF ...) is
    re-encoded as JPEG, the one every player shows. No site headers are sent: the cover may live
    on another host, which must not see the stream token.
    """
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        log(f"cover not used: {url!r} is not an http(s) URL", "warning")
        return None
    download = workdir / "cover.download"
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            fetcher.fetch_to_file(url, {}, download, what="cover image", limit=limit)
            break
        except DiskError:
            raise
        except DownloadError as err:
            if err.kind is FailureKind.CANCELLED:
                raise
            if attempt == _ATTEMPTS or not err.kind.transient:
                log(f"cover not used: {err.message}", "warning")
                return None
            log(f"{err.message}; trying the cover again", "debug")
    try:
        return _checked(download, ffmpeg, workdir)
    except (DownloadError, ValueError, OSError) as err:
        log(f"cover not used: {err}", "warning")
        return None
    finally:
        with contextlib.suppress(OSError):
            download.unlink()


def _checked(download: Path, ffmpeg: FfmpegInfo, workdir: Path) -> Cover:
    """The downloaded file as a JPEG or PNG that ffmpeg decodes, of a sane size."""
    with download.open("rb") as handle:
        kind = image_format(handle.read(16))
    if kind is None:
        probe_image(ffmpeg, download)  # raises when ffmpeg cannot read it at all
        path, kind = workdir / "cover.jpg", "jpeg"
        image_to_jpeg(ffmpeg, download, path)
    else:
        path = workdir / ("cover.png" if kind == "png" else "cover.jpg")
        download.replace(path)
    info = probe_image(ffmpeg, path)
    if info.codec != _CODECS[kind]:
        raise ValueError(f"the file looks like {kind} but decodes as {info.codec}")
    if not (0 < info.width <= MAX_COVER_SIDE and 0 < info.height <= MAX_COVER_SIDE):
        raise ValueError(f"{info.width}x{info.height} pixels is not a usable cover size")
    return Cover(path, kind, info.width, info.height)
