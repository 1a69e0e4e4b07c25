"""What the stand-in site sells: books, their tracks and where each track lives on the site.

A catalog is a plain ``dict[str, BookSpec]`` keyed by slug. :func:`default_catalog` holds the
books the demo and the integration tests use; :func:`make_book` builds others (long books for the
benchmarks, books with exotic names). Everything here is pure data: no I/O, no ffmpeg.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Codec = Literal["aac", "mp3"]

#: Where HLS sources live on the site: ``AUDIO_PREFIX + <percent-encoded src>``.
AUDIO_PREFIX = "/api/v1/public/audio/"
#: Where direct (plain MP3) tracks live: ``FILES_PREFIX + <percent-encoded file path>``.
FILES_PREFIX = "/files/"
#: Where cover images live: ``COVERS_PREFIX + <slug>.jpg``.
COVERS_PREFIX = "/covers/"


class TrackKind(StrEnum):
    """How a track is delivered; the ``HOSTILE_*`` kinds misbehave on purpose (SPEC §5 Security)."""

    HLS = "hls"
    """A normal HLS media playlist of MPEG-TS segments."""
    DIRECT = "direct"
    """A plain MP3 file; its ``src`` is an absolute http URL."""
    NOSRC = "nosrc"
    """The playlist API lists the track without a ``src``."""
    HOSTILE_FILE_URI = "hostile-file-uri"
    """The playlist lists a segment at ``file:///etc/passwd``."""
    HOSTILE_OTHER_HOST = "hostile-other-host"
    """The playlist lists a segment on another host, which records the headers it receives."""
    HOSTILE_ENDLESS_SEGMENT = "hostile-endless-segment"
    """One segment's body never ends (no Content-Length, never closed by the server)."""
    HOSTILE_BIG_PLAYLIST = "hostile-big-playlist"
    """The playlist itself is over 1 MiB."""
    HOSTILE_BIG_SEGMENT = "hostile-big-segment"
    """One segment advertises (and streams) over 64 MiB."""
    HOSTILE_SHORT_SEGMENT = "hostile-short-segment"
    """One segment is sent without Content-Length and cut short: the server closes the
    connection after a third of its body, so nothing at the HTTP level tells it is incomplete."""
    HOSTILE_SHORT_FILE = "hostile-short-file"
    """A direct MP3 file (like ``DIRECT``) sent without Content-Length and cut short: the server
    closes the connection after a third of it."""
    HOSTILE_JUNK_VARIANT = "hostile-junk-variant"
    """The playlist is a master playlist whose one variant lives on another host. That host
    serves a media playlist declaring the track's real durations, but each of its segments is
    a complete, well-formed response holding only the first third of the real segment."""

    @property
    def is_stream(self) -> bool:
        """True when the track is served as an HLS playlist (normal or hostile)."""
        return not self.is_direct_file and self is not TrackKind.NOSRC

    @property
    def is_direct_file(self) -> bool:
        """True when the track is a plain MP3 file whose ``src`` is an absolute http URL."""
        return self in (TrackKind.DIRECT, TrackKind.HOSTILE_SHORT_FILE)


def _digest(*parts: object) -> str:
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class TrackSpec:
    """One chapter of a book.

    ``src`` overrides where the track lives: for stream kinds it is the relative ``src`` the
    playlist API returns (its folder holds the segments); for a direct track it is the file's path
    under ``/files/``. ``frequency`` overrides the tone (Hz) of the generated audio.
    ``advertise_duration=False`` leaves ``duration`` out of the playlist API answer;
    ``declared_duration`` replaces the value it reports with any float, hostile ones included:
    NaN and the infinities go out as the bare ``NaN``/``Infinity`` literals Python's json writes
    (and JavaScript's never would), ``1e308`` as ``1e+308``.
    ``loop_seconds`` makes the audio cheap to generate: only that many seconds are encoded and
    then repeated by stream copy up to ``seconds`` (timestamps keep increasing, so the track is
    one valid stream of the full length; only the sound repeats). Encoding 20 hours takes
    minutes, looping them takes seconds: use it for very long benchmark books. ``seed``
    overrides the noise seed; tracks with the same seed, tone, length and codec share one
    generated media (see :func:`make_book`'s ``shared_media``). ``bitrate`` encodes at another
    rate than 64 kb/s (LibriVox's 128 kb/s originals).
    """

    title: str
    seconds: float = 12.0
    codec: Codec = "aac"
    segment_seconds: float = 2.0
    kind: TrackKind = TrackKind.HLS
    src: str | None = None
    frequency: float | None = None
    advertise_duration: bool = True
    declared_duration: float | None = None
    loop_seconds: float | None = None
    seed: int | None = None
    bitrate: str | None = None  # e.g. "128k"; None: the site's usual 64 kb/s

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TrackKind(self.kind))
        if self.codec not in ("aac", "mp3"):
            raise ValueError(f"codec must be 'aac' or 'mp3', not {self.codec!r}")
        if not (0.5 <= self.seconds <= 6 * 3600):
            raise ValueError(f"seconds must be between 0.5 and 21600, not {self.seconds}")
        if not (0.5 <= self.segment_seconds <= 60):
            raise ValueError(f"segment_seconds must be between 0.5 and 60: {self.segment_seconds}")
        if self.loop_seconds is not None and not (0.5 <= self.loop_seconds <= self.seconds):
            raise ValueError(
                f"loop_seconds must be between 0.5 and seconds ({self.seconds}): "
                f"{self.loop_seconds}"
            )
        if self.src is not None and (not self.src or self.src.startswith("/")):
            raise ValueError(f"src override must be a non-empty relative path: {self.src!r}")


@dataclass(frozen=True, kw_only=True)
class BookSpec:
    """One book: the details the API reports and its tracks in chapter order.

    ``audio_book_id``, ``post_detail_token`` and ``book_id`` default to values derived from the
    slug. ``src_root`` is the first folder of the tracks' default ``src`` paths (default: the title
    made path-safe). ``stream_token=False`` makes the playlist API leave ``streamToken`` out, so
    clients must fall back to the ``postDetailToken`` (which the audio endpoint then accepts).
    ``details_extra`` adds (or replaces) fields of the details answer and ``details_omit`` drops
    some, e.g. to serve ``bookTitle`` instead of ``title``. ``huge_cover`` (with ``cover``) serves
    a decompression bomb as the cover: a PNG of about 750 KB whose header declares 16000x16000
    pixels, which would take gigabytes of memory to decode.
    """

    slug: str
    title: str
    authors: Sequence[str] = ()
    narrators: Sequence[str] = ()
    year: int | None = None
    cover: bool = False
    huge_cover: bool = False
    tracks: Sequence[TrackSpec] = ()
    audio_book_id: str = ""
    post_detail_token: str = ""
    book_id: str = ""
    src_root: str = ""
    stream_token: bool = True
    details_extra: tuple[tuple[str, object], ...] = ()
    details_omit: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.slug):
            raise ValueError(f"slug must be URL-safe ([A-Za-z0-9._-]): {self.slug!r}")
        object.__setattr__(self, "authors", tuple(self.authors))
        object.__setattr__(self, "narrators", tuple(self.narrators))
        object.__setattr__(self, "tracks", tuple(self.tracks))
        if not self.audio_book_id:
            object.__setattr__(self, "audio_book_id", "ab-" + _digest("id", self.slug)[:20])
        if not self.post_detail_token:
            object.__setattr__(self, "post_detail_token", "pdt-" + _digest("pdt", self.slug)[:32])
        if not self.book_id:
            object.__setattr__(self, "book_id", "bk-" + _digest("book", self.slug)[:12])
        if not self.src_root:
            object.__setattr__(self, "src_root", _path_safe(self.title) or self.slug)

    def track_path(self, index: int) -> str:
        """The decoded path of track ``index`` (0-based) relative to its endpoint prefix.

        For stream kinds this is the API's ``src``; for a direct track, the path under ``/files/``.
        """
        track = self.tracks[index]
        if track.src is not None:
            return track.src
        number = index + 1
        if track.kind.is_direct_file:
            return f"{self.slug}/{number:02d}.mp3"
        return f"{self.src_root}/Chapter {number:02d}/index.m3u8"


def _path_safe(text: str) -> str:
    """Make ``text`` usable as one path part (no separators, controls or dot-only names)."""
    cleaned = "".join(ch for ch in text if ch.isprintable() and ch not in "/\\").strip()
    return "" if cleaned.strip(".") == "" else cleaned


def track_frequency(book: BookSpec, index: int) -> float:
    """The tone of a track: distinct per chapter (and book), so mix-ups change the audio."""
    track = book.tracks[index]
    if track.frequency is not None:
        return track.frequency
    offset = int(_digest("tone", book.slug)[:4], 16) % 12
    # Three semitones apart per chapter, wrapped to stay audible on small speakers.
    step = (offset + 3 * index) % 36
    return round(220.0 * 2 ** (step / 12), 3)


def noise_seed(book: BookSpec, index: int) -> int:
    """A per-track noise seed so that two tracks never share their bytes (unless told to)."""
    seed = book.tracks[index].seed
    return seed if seed is not None else int(_digest("noise", book.slug, index)[:7], 16)


def make_book(
    slug: str,
    *,
    title: str,
    author: str = "Anon Author",
    chapters: int = 3,
    chapter_seconds: float = 12.0,
    segment_seconds: float = 2.0,
    codec: Codec = "aac",
    kind: TrackKind = TrackKind.HLS,
    narrator: str | None = None,
    year: int | None = None,
    cover: bool = False,
    chapter_titles: Iterable[str] | None = None,
    loop_seconds: float | None = None,
    shared_media: bool = False,
) -> BookSpec:
    """Build a book of ``chapters`` equal tracks (e.g. 10 chapters of 140 s for benchmarks).

    ``loop_seconds`` is passed to every track (see :class:`TrackSpec`): a 20-hour book made of
    80 chapters of 15 minutes that each loop 60 s of their own audio is generated in a minute.
    ``shared_media`` gives every track the same tone and noise, so the whole book is one
    generated media served under every track's own address: a book of thousands of tracks is
    ready in a second instead of one ffmpeg run per track. The chapters' files are then
    identical apart from their tags.
    """
    if chapters < 1:
        raise ValueError("a book needs at least one chapter")
    titles = list(chapter_titles) if chapter_titles is not None else []
    titles += [f"Chapter {n}" for n in range(len(titles) + 1, chapters + 1)]
    tracks = tuple(
        TrackSpec(
            title=titles[i],
            seconds=chapter_seconds,
            codec=codec,
            segment_seconds=segment_seconds,
            kind=kind,
            loop_seconds=loop_seconds,
            frequency=440.0 if shared_media else None,
            seed=1 if shared_media else None,
        )
        for i in range(chapters)
    )
    return BookSpec(
        slug=slug,
        title=title,
        authors=(author,),
        narrators=(narrator,) if narrator else (),
        year=year,
        cover=cover,
        tracks=tracks,
    )


def _hostile_names_book() -> BookSpec:
    titles = [
        "../../x",
        "CON",
        "a/b:c*?",
        "A very long chapter title " * 11 + "end of it" + "!" * 5,
        "   ",
        "第一章 始まり",
        "Ελληνικά 🎧",
        "bad\x07name",
    ]
    # Paths with spaces, '#', '?', '%', '+', '&' and non-ASCII: only per-part encoding survives.
    folders = [
        "Ch 01 #1 (100% sure)",
        "Ch 02 ?query&x=1",
        "Ch 03 a+b=c",
        "Ch 04 long ~ name",
        "Ch 05 [blank]",
        "Ch 06 第一章",
        "Ch 07 Ελληνικά 🎧",
        "Ch 08 semi;colon,comma",
    ]
    tracks = tuple(
        TrackSpec(
            title=title,
            seconds=3.0,
            segment_seconds=1.0,
            src=f"Hostile Names ü/{folder}/index.m3u8",
            advertise_duration=(i != 4),
        )
        for i, (title, folder) in enumerate(zip(titles, folders, strict=True))
    )
    return BookSpec(
        slug="hostile-names",
        title="..",
        authors=("../../etc",),
        narrators=("<Nobody>",),
        year=2020,
        tracks=tracks,
    )


def _hostile_server_book() -> BookSpec:
    kinds = [
        ("Normal Chapter", TrackKind.HLS),
        ("Local File", TrackKind.HOSTILE_FILE_URI),
        ("Other Host", TrackKind.HOSTILE_OTHER_HOST),
        ("Endless Segment", TrackKind.HOSTILE_ENDLESS_SEGMENT),
        ("Huge Playlist", TrackKind.HOSTILE_BIG_PLAYLIST),
        ("Huge Segment", TrackKind.HOSTILE_BIG_SEGMENT),
    ]
    tracks = tuple(
        TrackSpec(title=title, seconds=4.0, segment_seconds=2.0, kind=kind) for title, kind in kinds
    )
    return BookSpec(
        slug="hostile-server", title="Hostile Server", authors=("Mal Ware",), tracks=tracks
    )


def default_catalog() -> dict[str, BookSpec]:
    """The books every stand-in site serves unless told otherwise (slug -> spec)."""
    sample = BookSpec(
        slug="the-sample-book",
        title="The Sample Book",
        authors=("Ada Quill",),
        narrators=("Reed Voice",),
        year=2021,
        cover=True,
        src_root="Sample Book",
        tracks=tuple(
            TrackSpec(title=title, seconds=12.0, segment_seconds=2.0)
            for title in ("Prologue", "The Long Road", "A Quiet Harbour", "Epilogue")
        ),
    )
    mp3_stream = make_book(
        "mp3-stream-book",
        title="The MP3 Stream Book",
        author="Mona Tone",
        chapters=3,
        chapter_seconds=8.0,
        codec="mp3",
        chapter_titles=("Opening", "Middle", "Closing"),
    )
    direct = make_book(
        "direct-file-book",
        title="Direct File Book",
        author="Dee Rect",
        chapters=3,
        chapter_seconds=6.0,
        kind=TrackKind.DIRECT,
        chapter_titles=("Track One", "Track Two", "Track Three"),
    )
    cover = make_book(
        "cover-book",
        title="Cover Story",
        author="Cora Vere",
        narrator="Nell Narrator",
        year=2019,
        cover=True,
        chapters=2,
        chapter_seconds=6.0,
        chapter_titles=("Front", "Back"),
    )
    nosrc = BookSpec(
        slug="nosrc-book",
        title="Missing Source Book",
        authors=("Nora Source",),
        tracks=(
            TrackSpec(title="Present One", seconds=4.0),
            TrackSpec(title="Absent", seconds=4.0, kind=TrackKind.NOSRC),
            TrackSpec(title="Present Two", seconds=4.0),
        ),
    )
    books = [sample, mp3_stream, direct, cover, _hostile_names_book(), nosrc]
    books.append(_hostile_server_book())
    return {book.slug: book for book in books}
