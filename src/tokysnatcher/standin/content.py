"""What each URL of the stand-in site serves: the route table and the HLS playlists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import quote, unquote

from tokysnatcher.standin.catalog import AUDIO_PREFIX, BookSpec, TrackKind
from tokysnatcher.standin.media import TrackMedia

#: Hostile sizes, just over what SPEC §5 lets a client accept.
BIG_PLAYLIST_BYTES = 1024 * 1024 + 64 * 1024
BIG_SEGMENT_BYTES = 64 * 1024 * 1024 + 16 * 1024 * 1024
FILE_URI = "file:///etc/passwd"
#: Where the other host serves a junk variant: ``JUNK_PREFIX + <percent-encoded src>``.
JUNK_PREFIX = "/junk/"
_TS_PACKET = 188


class Resource(Enum):
    """The kind of body a route serves."""

    PLAYLIST = "m3u8"
    SEGMENT = "segment"
    FILE = "file"
    ENDLESS = "endless"
    BIG = "big"
    SHORT = "short"  # a third of the body, then the connection closes (no Content-Length)
    JUNK = "junk"  # a third of the body, as a complete response


@dataclass(frozen=True, kw_only=True)
class Route:
    """One servable audio URL: which track it belongs to and what it serves."""

    slug: str
    index: int
    resource: Resource
    body: Path | None = None  # a file's bytes for SEGMENT/FILE
    playlist: bytes = field(default=b"", repr=False)

    @property
    def stat_kind(self) -> str:
        """The request kind this route is counted under in ``site.stats``."""
        if self.resource is Resource.PLAYLIST:
            return "m3u8"
        return "file" if self.resource is Resource.FILE else "segment"


@dataclass(frozen=True)
class RouteTable:
    """Routes by decoded path (relative to their prefix)."""

    audio: dict[str, Route]
    files: dict[str, Route]
    other: dict[str, Route] = field(default_factory=dict)  # the other host, under JUNK_PREFIX


def encode_path(path: str) -> str:
    """Percent-encode a path one part at a time (the ``/`` between parts stays)."""
    return "/".join(quote(part, safe="") for part in path.split("/"))


def decode_path(raw: str) -> str:
    """The inverse of :func:`encode_path` for a raw request path (without query)."""
    return "/".join(unquote(part) for part in raw.split("/"))


def folder_of(src: str) -> str:
    """The folder part of a ``src`` (where its segments live), without trailing slash."""
    return src.rsplit("/", 1)[0] if "/" in src else ""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def short_body(data: bytes) -> bytes:
    """The first third of a body: what a cut-short or junk segment delivers.

    Whole TS packets, so ffmpeg reads it as a valid (shorter) stream rather than as damage.
    """
    return data[: len(data) // 3 // _TS_PACKET * _TS_PACKET]


def build_routes(
    catalog: Mapping[str, BookSpec],
    media: Mapping[tuple[str, int], TrackMedia],
    other_host_base: str | None,
) -> RouteTable:
    """Every audio route of ``catalog`` (``other_host_base`` like ``http://127.0.0.2:PORT``)."""
    audio: dict[str, Route] = {}
    files: dict[str, Route] = {}
    other: dict[str, Route] = {}

    def add(table: dict[str, Route], key: str, route: Route) -> None:
        if key in table:
            raise ValueError(f"two tracks share the path {key!r}; give one an explicit src")
        table[key] = route

    for book in catalog.values():
        for index, track in enumerate(book.tracks):
            if track.kind is TrackKind.NOSRC:
                continue
            generated = media[(book.slug, index)]
            path = book.track_path(index)
            if track.kind.is_direct_file:
                short = track.kind is TrackKind.HOSTILE_SHORT_FILE
                resource = Resource.SHORT if short else Resource.FILE
                add(
                    files,
                    path,
                    Route(slug=book.slug, index=index, resource=resource, body=generated.source),
                )
                continue
            folder = folder_of(path)
            if track.kind is TrackKind.HOSTILE_JUNK_VARIANT and other_host_base:
                # The media playlist and its junk segments live on the other host only.
                variant = other_host_base + JUNK_PREFIX + encode_path(path)
                add(
                    audio,
                    path,
                    Route(
                        slug=book.slug,
                        index=index,
                        resource=Resource.PLAYLIST,
                        playlist=render_master_playlist(variant),
                    ),
                )
                table = other
            else:
                table = audio
            special = min(1, len(generated.segments) - 1)  # the segment a hostile kind spoils
            uris: list[str] = []
            for number, segment in enumerate(generated.segments):
                uri, resource = segment.name, Resource.SEGMENT
                if table is other:
                    resource = Resource.JUNK
                elif number == special:
                    uri, resource = _spoil(track.kind, folder, uri, other_host_base)
                uris.append(uri)
                add(
                    table,
                    _join(folder, segment.name),
                    Route(slug=book.slug, index=index, resource=resource, body=segment),
                )
            big = track.kind is TrackKind.HOSTILE_BIG_PLAYLIST
            text = render_playlist(list(zip(generated.durations, uris, strict=True)), big=big)
            add(
                table,
                path,
                Route(slug=book.slug, index=index, resource=Resource.PLAYLIST, playlist=text),
            )
    return RouteTable(audio=audio, files=files, other=other)


def _spoil(
    kind: TrackKind, folder: str, uri: str, other_host_base: str | None
) -> tuple[str, Resource]:
    """The playlist URI and served body of the one segment a hostile track kind spoils."""
    if kind is TrackKind.HOSTILE_FILE_URI:
        return FILE_URI, Resource.SEGMENT
    if kind is TrackKind.HOSTILE_OTHER_HOST and other_host_base:
        return other_host_base + AUDIO_PREFIX + encode_path(_join(folder, uri)), Resource.SEGMENT
    if kind is TrackKind.HOSTILE_ENDLESS_SEGMENT:
        return uri, Resource.ENDLESS
    if kind is TrackKind.HOSTILE_BIG_SEGMENT:
        return uri, Resource.BIG
    if kind is TrackKind.HOSTILE_SHORT_SEGMENT:
        return uri, Resource.SHORT
    return uri, Resource.SEGMENT


def render_master_playlist(variant_url: str) -> bytes:
    """An HLS master playlist with one audio variant at ``variant_url``."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        f'#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"\n{variant_url}\n'
    ).encode()


def render_playlist(entries: list[tuple[float, str]], *, big: bool = False) -> bytes:
    """An HLS VOD media playlist of ``(duration, uri)`` entries.

    ``big`` repeats the entries until the playlist is larger than 1 MiB (a hostile playlist).
    """
    # RFC 8216: every EXTINF, rounded to the nearest integer, is at most the target duration.
    target = max(1, round(max(duration for duration, _ in entries)))
    head = (
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        f"#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    )
    lines = [f"#EXTINF:{duration:.6f},\n{uri}\n" for duration, uri in entries]
    body = "".join(lines)
    if big:
        repeats = BIG_PLAYLIST_BYTES // max(1, len(body.encode())) + 1
        body *= repeats
    return (head + body + "#EXT-X-ENDLIST\n").encode("utf-8")
