"""HLS media playlists: parsing and the safety checks a hostile server calls for (SPEC §5).

Parsing is done by the ``m3u8`` library; this module turns its result into our own immutable
:class:`Segment` values and refuses anything we will not fetch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urljoin

import m3u8

from tokysnatcher.errors import FailureKind, PlaylistError
from tokysnatcher.net.urls import is_http_url
from tokysnatcher.utils.units import plausible_seconds

MAX_PLAYLIST_BYTES = 1024 * 1024
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
# A direct-file chapter is one whole MP3: allow a long chapter at a high bit rate.
MAX_DIRECT_FILE_BYTES = 2 * 1024 * 1024 * 1024
MAX_SEGMENTS = 100_000
# A segment's body may not be much larger than its declared duration allows: 512 KiB per second
# (4 Mbit/s: over twice CD-quality lossless, dozens of times a spoken-word stream), and at least
# 4 MiB. An endless or bloated body is then refused after a few MiB instead of after 64 MiB
# written to disk.
SEGMENT_BYTES_PER_SECOND = 512 * 1024
MIN_SEGMENT_LIMIT = 4 * 1024 * 1024
# How far a complete chapter's audio may be from the sum of its EXTINF durations: encoder delay
# and padding (AAC priming, LAME's delay: under 0.1 s), a last partial frame, the 10 ms rounding
# of ffmpeg's reports. Half a second of audio lost to a cut-short segment is then still caught.
DURATION_TOLERANCE = 0.5
# RFC 8216 §4.3.2.1: below protocol version 3, EXTINF durations are whole seconds, each rounded
# by up to half a second; their sum is only that precise.
_WHOLE_SECOND_ROUNDING = 0.5


@dataclass(kw_only=True, frozen=True)
class Segment:
    """One media segment of a chapter, in playlist order (0-based ``index``)."""

    index: int
    url: str
    duration: float

    @property
    def size_limit(self) -> int:
        """The most bytes this segment may have (see ``SEGMENT_BYTES_PER_SECOND``)."""
        return segment_size_limit(self.duration)


def segment_size_limit(duration: float) -> int:
    """The largest body accepted for a segment of ``duration`` seconds, never over 64 MiB.

    A missing or nonsensical duration (zero, negative, not finite) gets the flat 64 MiB limit.
    """
    if not math.isfinite(duration) or duration <= 0:
        return MAX_SEGMENT_BYTES
    wanted = max(MIN_SEGMENT_LIMIT, duration * SEGMENT_BYTES_PER_SECOND)
    return int(min(MAX_SEGMENT_BYTES, wanted))


class Variant(NamedTuple):
    url: str
    bandwidth: int


class MediaPlaylist(NamedTuple):
    segments: tuple[Segment, ...]
    duration: float  # the sum of the EXTINF durations
    tolerance: float  # how far the decoded audio may be from ``duration`` (seconds)


def _check_http_url(url: str, what: str) -> None:
    if not is_http_url(url):
        raise PlaylistError(
            f"{what} {url[:120]!r} is not an http(s) URL; refused",
            kind=FailureKind.INVALID_MEDIA,
        )


def _load(text: str, playlist_url: str) -> m3u8.M3U8:
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise PlaylistError(
            "the chapter playlist is not an HLS playlist (no #EXTM3U header)",
            kind=FailureKind.INVALID_MEDIA,
        )
    try:
        return m3u8.loads(text, uri=playlist_url)
    except Exception as err:  # the parser raises assorted errors on garbage
        raise PlaylistError(
            f"the chapter playlist could not be parsed: {err}", kind=FailureKind.INVALID_MEDIA
        ) from err


def decode_playlist(body: bytes) -> str:
    """The playlist text; refuses oversized or non-text bodies."""
    if len(body) > MAX_PLAYLIST_BYTES:
        raise PlaylistError(
            "the chapter playlist is larger than 1 MiB; refused", kind=FailureKind.INVALID_MEDIA
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PlaylistError(
            "the chapter playlist is not UTF-8 text", kind=FailureKind.INVALID_MEDIA
        ) from err


def variant_of(text: str, playlist_url: str) -> Variant | None:
    """For a master playlist, the variant to follow (highest bandwidth); else None."""
    parsed = _load(text, playlist_url)
    if not parsed.is_variant:
        return None
    choices = []
    for playlist in parsed.playlists:
        url = urljoin(playlist_url, playlist.uri)
        _check_http_url(url, "variant playlist URL")
        bandwidth = getattr(playlist.stream_info, "bandwidth", None) or 0
        choices.append(Variant(url, int(bandwidth)))
    if not choices:
        raise PlaylistError("the master playlist lists no variant", kind=FailureKind.INVALID_MEDIA)
    return max(choices, key=lambda v: v.bandwidth)


def parse_media_playlist(text: str, playlist_url: str) -> MediaPlaylist:
    """Segments of a media playlist, with every URL absolute and checked."""
    parsed = _load(text, playlist_url)
    if parsed.is_variant:
        raise PlaylistError(
            "nested master playlists are not supported", kind=FailureKind.INVALID_MEDIA
        )
    for key in parsed.keys:
        if key is None or (key.method or "NONE").upper() == "NONE":
            continue
        if key.uri:
            _check_http_url(urljoin(playlist_url, key.uri), "key URL")
        raise PlaylistError(
            f"encrypted HLS (METHOD={key.method}) is not supported", kind=FailureKind.INVALID_MEDIA
        )
    if len(parsed.segments) > MAX_SEGMENTS:
        raise PlaylistError(
            "the chapter playlist lists too many segments", kind=FailureKind.INVALID_MEDIA
        )
    segments: list[Segment] = []
    for position, seg in enumerate(parsed.segments):
        if not seg.uri:
            continue
        url = urljoin(playlist_url, seg.uri)
        _check_http_url(url, "segment URL")
        # A hostile EXTINF (NaN, infinite, negative, 1e308) must not poison progress, the
        # size limit or the chapter's duration: it counts as 0, "unknown".
        duration = plausible_seconds(seg.duration) or 0.0
        segments.append(Segment(index=position, url=url, duration=duration))
    if not segments:
        raise PlaylistError("the chapter playlist lists no segment", kind=FailureKind.INVALID_MEDIA)
    tolerance = DURATION_TOLERANCE
    if (parsed.version or 1) < 3 and all(s.duration.is_integer() for s in segments):
        tolerance += _WHOLE_SECOND_ROUNDING * len(segments)
    total = plausible_seconds(sum(s.duration for s in segments)) or 0.0
    return MediaPlaylist(tuple(segments), total, tolerance)
