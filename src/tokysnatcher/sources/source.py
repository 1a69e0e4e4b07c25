"""The boundary between the download engine and a site: the ``Source`` protocol and its records.

The engine (``download/``) knows a book only through these records and a chapter's audio only
as a URL of one of two kinds: an HLS playlist or a plain file. Which hosts, paths, JSON fields
and headers a site uses stays in its module under ``sources/``; a second site plugs in by
implementing :class:`Source`, without touching the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol


class MediaKind(StrEnum):
    """How a chapter's audio is served."""

    HLS = "hls"  # a playlist of segments (master playlists are followed)
    FILE = "file"  # one plain audio file (MP3)


@dataclass(frozen=True, kw_only=True)
class Track:
    """One chapter with audio, as the site lists it."""

    index: int  # 1-based chapter number, in the site's order
    title: str
    url: str  # absolute http(s) URL of the playlist or the file
    kind: MediaKind
    duration: float | None = None  # what the site declares, in seconds
    # What the host lists for a plain file, checked after the download when given.
    size: int | None = None
    md5: str | None = None  # lowercase hex
    sha1: str | None = None  # lowercase hex
    narrator: str | None = None  # this chapter's reader, when it differs per chapter

    @property
    def is_direct(self) -> bool:
        """True for a plain audio file, False for an HLS playlist."""
        return self.kind is MediaKind.FILE


@dataclass(frozen=True, kw_only=True)
class Book:
    """A book's details, as every source describes them."""

    source: str  # the source's name in references and manifests ("tokybook", "librivox")
    slug: str  # the site's own id for the book (recorded in the manifest as ``book.id``)
    title: str
    author: str  # every author, joined for display and tags ("A & B")
    source_url: str  # the book's page: what a user passes to download it again
    narrator: str | None = None  # every narrator, joined as ``author`` is
    cover_url: str | None = None
    year: int | None = None
    description: str | None = None  # plain text (a source converts HTML)
    language: str | None = None
    genres: tuple[str, ...] = ()
    series: str | None = None
    series_index: str | None = None  # as the site gives it ("1", "2.5")


@dataclass(frozen=True, kw_only=True)
class TrackList:
    """A book's chapters with audio, and those the site lists without any.

    ``skipped`` entries are not chapters of the book as such (a warning, the run can still
    succeed); ``unavailable`` ones are chapters not published yet (LibriVox's unfinished
    sections): the rest downloads and the run ends failed (exit 1), naming them.
    """

    tracks: tuple[Track, ...]
    skipped: tuple[str, ...] = ()
    unavailable: tuple[str, ...] = ()


class RequestHeaders(NamedTuple):
    """Headers for one media request, and the generation of the credentials they carry."""

    headers: dict[str, str]
    generation: int  # pass to :meth:`Source.renew_headers` when the server answers 401/403


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """One book found by a search; ``slug`` downloads it."""

    title: str
    slug: str
    authors: tuple[str, ...]
    url: str


@dataclass(frozen=True, kw_only=True)
class SearchPage:
    """One page of search results, ``offset`` into ``total``."""

    results: tuple[SearchResult, ...]
    total: int
    offset: int


class HealthStep(NamedTuple):
    """One step of reaching a site (``--doctor``): DNS, TLS, its API; and the fix if it failed."""

    name: str  # "tokybook.com: DNS"
    ok: bool
    detail: str
    fix: str = ""


class Source(Protocol):
    """A site books are downloaded from.

    Calls that ask the site raise ``SourceError`` (``BookNotFoundError`` for an unknown book)
    with a one-line message, after retrying what may pass; reference parsing raises
    ``UsageError``.
    """

    #: The source's name in the archive and the history (``tokybook``): a plain word.
    name: str

    def book_slug(self, ref: str) -> str:
        """The site's name for the book a user's reference (a page URL or a slug) points to."""
        ...

    def resolve(self, slug: str) -> tuple[Book, TrackList]:
        """The book's details and its chapters."""
        ...

    def headers(self, url: str) -> RequestHeaders:
        """What a media request to ``url`` must send (empty for hosts that need nothing)."""
        ...

    def headers_generation(self) -> int:
        """The generation of the current credentials: a request compares it with its own."""
        ...

    #: What a run says after :meth:`renew_headers` gave fresh credentials.
    renewed_message: str

    def renew_headers(self, seen_generation: int) -> int:
        """Renew the credentials refused at ``seen_generation`` (once per generation).

        Many requests may be refused at once; the first renews and the others reuse its
        answer. Returns the generation now current.
        """
        ...

    def search(self, query: str, *, offset: int, limit: int) -> SearchPage:
        """One page of the site's search results."""
        ...

    def health(self) -> list[HealthStep]:
        """Whether the site can be reached, step by step, stopping at the first that fails:
        its name resolves, a secure connection holds (https), its API answers JSON (with the
        round-trip time)."""
        ...
