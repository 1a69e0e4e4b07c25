"""The book cover for an m4b: fetched with the same limits as audio, and proven to be an image.

A cover is a nicety: anything wrong with it (no answer, too large, not an image) is a warning and
the m4b is made without one. Only a full disk, or a stop request, ends the step.

A small file can declare a huge picture (a 2 MB PNG of 16000x16000 pixels decodes to gigabytes),
so the size its header declares is checked before anything decodes it, and ffmpeg is told the
same pixel bound in case the header lies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imagesize

from tokysnatcher.errors import DiskError, DownloadError, FailureKind
from tokysnatcher.ffmpeg.binary import FfmpegInfo
from tokysnatcher.ffmpeg.image import ImageFormat, image_format, image_to_jpeg, probe_image
from tokysnatcher.net.http import Fetcher
from tokysnatcher.net.urls import is_http_url
from tokysnatcher.utils.atomic import disk_error_for

MAX_COVER_BYTES = 10 * 2**20
MAX_COVER_SIDE = 10_000  # pixels; players choke on (and nobody needs) anything larger
MAX_COVER_PIXELS = 25_000_000  # 5000x5000: ~100 MB decoded; real covers are 9 MP at most
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
    if not is_http_url(url):
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
            if attempt == _ATTEMPTS or not err.transient:
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


def fetch_cover_jpeg(
    url: str,
    fetcher: Fetcher,
    ffmpeg: FfmpegInfo,
    workdir: Path,
    *,
    log: Callable[[str, str], None],
) -> Path | None:
    """:func:`fetch_cover`, as a JPEG (``cover.jpg`` for players, and what the chapter files
    embed); None (and a warning) when the book has no usable cover."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise disk_error_for(err, workdir) from err
    cover = fetch_cover(url, fetcher, ffmpeg, workdir, log=log)
    if cover is None or cover.format == "jpeg":
        return None if cover is None else cover.path
    jpeg = workdir / "cover.jpg"
    try:
        image_to_jpeg(ffmpeg, cover.path, jpeg, max_pixels=MAX_COVER_PIXELS)
    except DiskError:
        raise
    except (DownloadError, OSError) as err:
        log(f"cover not used: {err}", "warning")
        return None
    finally:
        with contextlib.suppress(OSError):
            cover.path.unlink()
    return jpeg


def _checked(download: Path, ffmpeg: FfmpegInfo, workdir: Path) -> Cover:
    """The downloaded file as a JPEG or PNG that ffmpeg decodes, of a sane size."""
    declared = declared_size(download)
    with download.open("rb") as handle:
        kind = image_format(handle.read(16))
    if kind is None:
        probe_image(ffmpeg, download, max_pixels=MAX_COVER_PIXELS)  # raises if unreadable
        path, kind = workdir / "cover.jpg", "jpeg"
        image_to_jpeg(ffmpeg, download, path, max_pixels=MAX_COVER_PIXELS)
    else:
        path = workdir / ("cover.png" if kind == "png" else "cover.jpg")
        download.replace(path)
    info = probe_image(ffmpeg, path, max_pixels=MAX_COVER_PIXELS)
    if info.codec != _CODECS[kind]:
        raise ValueError(f"the file looks like {kind} but decodes as {info.codec}")
    if (info.width, info.height) != declared:
        raise ValueError(
            f"the header declares {declared[0]}x{declared[1]} pixels "
            f"but the picture is {info.width}x{info.height}"
        )
    return Cover(path, kind, info.width, info.height)


def declared_size(path: Path) -> tuple[int, int]:
    """The picture size that ``path``'s header declares, checked against the limits.

    Only the header is read (PNG IHDR, JPEG SOF, GIF, WebP ...), never the picture: raises
    ``ValueError`` for a file whose header declares no size or too large a one.
    """
    try:
        width, height = imagesize.get(path, exif_rotation=False)
    except Exception as err:  # a hostile header must not crash the run; it is not an image
        raise ValueError("not a readable image (its header is malformed)") from err
    if width <= 0 or height <= 0:
        raise ValueError("not a readable image (no picture size in its header)")
    if width > MAX_COVER_SIDE or height > MAX_COVER_SIDE or width * height > MAX_COVER_PIXELS:
        raise ValueError(
            f"{width}x{height} pixels is too large for a cover (at most {MAX_COVER_SIDE} "
            f"pixels a side and {MAX_COVER_PIXELS // 1_000_000} megapixels); not decoded"
        )
    return width, height
