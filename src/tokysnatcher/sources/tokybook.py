"""tokybook.com: the first :class:`~tokysnatcher.sources.source.Source` (shared/tokybook-api.md).

Nothing outside ``sources/`` builds a tokybook URL, a tokybook header or reads a tokybook JSON
field. The base URL is configurable so the same code talks to the bundled stand-in site. This
module imports no HTTP library: the calls go through the :class:`JsonApi` it is given, and
``--help`` can show the default site without loading one.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from tokysnatcher.errors import BookNotFoundError, SourceError, UsageError
from tokysnatcher.net.urls import is_http_url
from tokysnatcher.sources.health import host_health
from tokysnatcher.sources.source import (
    Book,
    HealthStep,
    MediaKind,
    RequestHeaders,
    SearchPage,
    SearchResult,
    Track,
    TrackList,
)
from tokysnatcher.utils.units import plausible_seconds

if TYPE_CHECKING:
    from tokysnatcher.sources.api import JsonApi

#: The site a run talks to without ``--base-url``.
SOURCE_NAME = "tokybook"
DEFAULT_BASE_URL = "https://tokybook.com"
API_PREFIX = "/api/v1"
AUDIO_PREFIX = f"{API_PREFIX}/public/audio/"
_TITLE_FIELDS = ("title", "bookTitle", "album", "name", "bookName")
_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,199}$")
# Hosts a book URL may name without --base-url.
_KNOWN_HOSTS = frozenset({"tokybook.com", "www.tokybook.com"})


def normalize_base_url(base_url: str) -> str:
    """Validate ``--base-url``: an http(s) URL with a host; returned without a trailing slash."""
    try:
        parts = urlsplit(base_url.strip())
        port_ok = parts.port is None or parts.port > 0  # .port raises on a bad port
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 bracket
        parts, port_ok = urlsplit(""), False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(
            f"--base-url must be an http(s) URL with a host, not {base_url!r}",
            hint="For example --base-url https://tokybook.com",
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_book_ref(text: str, base_url: str | None = None) -> str:
    """Turn a book page URL (with or without scheme or ``www.``) or a bare slug into the slug.

    Accepted: ``https://tokybook.com/post/<slug>``, ``tokybook.com/post/<slug>``, a URL on
    ``base_url``'s host, or ``<slug>``. Anything else is a :class:`UsageError`.
    """
    raw = text.strip()
    if not raw:
        raise UsageError("the book URL is empty", hint="Pass a book page URL or its slug.")
    base = urlsplit(normalize_base_url(base_url or DEFAULT_BASE_URL))
    if _SLUG_RE.match(raw) and "." not in raw:
        return raw
    candidate = raw if "://" in raw else f"https://{raw}"
    parts = urlsplit(candidate)
    host = (parts.hostname or "").lower()
    allowed = set(_KNOWN_HOSTS)
    base_host = (base.hostname or "").lower()
    allowed |= {base_host, f"www.{base_host}"}
    if parts.scheme not in ("http", "https") or host not in allowed:
        raise UsageError(
            f"not a tokybook book URL or slug: {text!r}",
            hint="Use https://tokybook.com/post/<slug>, a URL on --base-url's host, or the slug.",
        )
    path = parts.path
    if base.path and path.startswith(base.path):
        path = path[len(base.path) :]
    pieces = [unquote(p) for p in path.split("/") if p]
    if len(pieces) == 2 and pieces[0] == "post" and _SLUG_RE.match(pieces[1]):
        return pieces[1]
    raise UsageError(
        f"not a book page URL: {text!r} (expected .../post/<slug>)",
        hint="Copy the address of the book's page, or use --search to find it.",
    )


def base_url_args(base_url: str | None, book_url: str = "") -> list[str]:
    """The ``--base-url`` option a command needs to reach ``book_url`` again (maybe none).

    A book page on another host than tokybook.com (a stand-in site, a mirror) names its own
    site root; otherwise ``base_url`` (the user's ``--base-url``) unless it is the default.
    """
    page = urlsplit(book_url)
    if book_url and (page.hostname or "").lower() not in _KNOWN_HOSTS:
        return ["--base-url", f"{page.scheme}://{page.netloc}"]
    if base_url is not None and base_url != DEFAULT_BASE_URL:
        return ["--base-url", base_url]
    return []


def foreign_host(book_url: str, base_url: str | None) -> tuple[str, str] | None:
    """``(book host, configured host)`` when ``book_url`` is on neither tokybook.com nor
    ``base_url``'s host (a request there needs the user's say-so); else None."""
    host = (urlsplit(book_url).hostname or "").lower()
    configured = (urlsplit(base_url or DEFAULT_BASE_URL).hostname or "").lower()
    if host and host not in _KNOWN_HOSTS | {configured}:
        return host, configured
    return None


def _first_name(people: Any) -> str | None:
    if isinstance(people, list):
        names = [
            p["name"].strip()
            for p in people
            if isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"].strip()
        ]
        return ", ".join(names) if names else None
    return None


@dataclass
class _TokenState:
    """The stream token of the book being downloaded, renewed at most once per generation."""

    audio_book_id: str
    post_detail_token: str
    token: str
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class TokybookSource:
    """tokybook.com's JSON API, and the headers its audio needs (API §1-§4)."""

    name = SOURCE_NAME
    renewed_message = "stream token expired; renewed it through the playlist API"

    def __init__(self, api: JsonApi, base_url: str | None = None) -> None:
        self.api = api
        self.base_url = normalize_base_url(base_url or DEFAULT_BASE_URL)
        self._token: _TokenState | None = None

    # -- URLs --------------------------------------------------------------------------------
    def _page_url(self, slug: str) -> str:
        return f"{self.base_url}/post/{quote(slug, safe='')}"

    def _audio_url(self, src: str) -> str:
        """The playlist URL of a track: ``src`` percent-encoded one path part at a time."""
        parts = [quote(part, safe="") for part in src.strip("/").split("/")]
        return f"{self.base_url}{AUDIO_PREFIX}{'/'.join(parts)}"

    def _is_api_host(self, url: str) -> bool:
        """True when ``url`` is on the API's scheme, host and port: auth headers go only there."""
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)

    def _post(self, path: str, body: dict[str, Any], what: str) -> tuple[int, Any]:
        return self.api.post(f"{self.base_url}{API_PREFIX}{path}", body, what)

    # -- Source --------------------------------------------------------------------------------
    def book_slug(self, ref: str) -> str:
        return parse_book_ref(ref, self.base_url)

    def resolve(self, slug: str) -> tuple[Book, TrackList]:
        """Book details (API §1), then the chapter list and a fresh stream token (API §2)."""
        book, audio_book_id, post_detail_token = self._details(slug)
        return book, self._playlist(book, audio_book_id, post_detail_token)

    def _details(self, slug: str) -> tuple[Book, str, str]:
        """The book and the two ids its playlist call needs; unknown slugs: BookNotFoundError."""
        status, data = self._post(
            "/search/post-details", {"dynamicSlugId": slug}, "the book details"
        )
        if status == 404 or (
            status < 400
            and not (
                isinstance(data, dict) and data.get("audioBookId") and data.get("postDetailToken")
            )
        ):
            raise BookNotFoundError(f"no book with the slug {slug!r} on {self.base_url}")
        if status >= 400 or not isinstance(data, dict):
            raise SourceError(f"the site answered HTTP {status} for the book details of {slug!r}")
        title = next(
            (
                data[k].strip()
                for k in _TITLE_FIELDS
                if isinstance(data.get(k), str) and data[k].strip()
            ),
            slug,
        )
        year = data.get("year")
        cover = data.get("coverImage")
        book = Book(
            source=SOURCE_NAME,
            slug=slug,
            title=title,
            author=_first_name(data.get("authors")) or "",
            narrator=_first_name(data.get("narrators")),
            source_url=self._page_url(slug),
            cover_url=urljoin(self.base_url + "/", cover)
            if isinstance(cover, str) and cover
            else None,
            year=year if isinstance(year, int) and not isinstance(year, bool) else None,
        )
        return book, str(data["audioBookId"]), str(data["postDetailToken"])

    def _playlist(self, book: Book, audio_book_id: str, post_detail_token: str) -> TrackList:
        body = {"audioBookId": audio_book_id, "postDetailToken": post_detail_token}
        status, data = self._post("/playlist", body, "the chapter list")
        if status >= 400 or not isinstance(data, dict):
            raise SourceError(
                f"the site answered HTTP {status} for the chapter list of {book.slug!r}"
            )
        raw_tracks = data.get("tracks")
        if not isinstance(raw_tracks, list):
            raise SourceError(f"the chapter list of {book.slug!r} has no tracks")
        tracks: list[Track] = []
        skipped: list[str] = []
        for position, item in enumerate(raw_tracks, start=1):
            if not isinstance(item, dict):
                continue
            title = item.get("trackTitle")
            title = title if isinstance(title, str) else ""
            src = item.get("src")
            if not isinstance(src, str) or not src.strip():
                skipped.append(title or f"track {position}")
                continue
            src = src.strip()
            direct = is_http_url(src)  # an absolute http(s) URL is a plain audio file, not HLS
            tracks.append(
                Track(
                    index=len(tracks) + 1,
                    title=title,
                    url=src if direct else self._audio_url(src),
                    kind=MediaKind.FILE if direct else MediaKind.HLS,
                    duration=plausible_seconds(item.get("duration")),
                )
            )
        token = str(data.get("streamToken") or post_detail_token)
        self._token = _TokenState(audio_book_id, post_detail_token, token)
        return TrackList(tracks=tuple(tracks), skipped=tuple(skipped))

    def _state(self) -> _TokenState:
        if self._token is None:
            raise SourceError("no stream token yet: fetch the playlist first")
        return self._token

    def headers(self, url: str) -> RequestHeaders:
        """The stream headers for the API's own host; nothing for any other host."""
        state = self._state()
        token, generation = state.token, state.generation
        if not self._is_api_host(url):
            return RequestHeaders({}, generation)
        parts = urlsplit(url)
        track_src = parts.path + (f"?{parts.query}" if parts.query else "")
        return RequestHeaders(
            {
                "X-Audiobook-Id": state.audio_book_id,
                "X-Stream-Token": token,
                "X-Track-Src": track_src,
                "Referer": f"{self.base_url}/",
                "Accept-Encoding": "identity",
            },
            generation,
        )

    def headers_generation(self) -> int:
        return self._state().generation

    def renew_headers(self, seen_generation: int) -> int:
        """A fresh stream token from the playlist API, fetched at most once per generation."""
        state = self._state()
        with state.lock:
            if state.generation != seen_generation:
                return state.generation
            body = {"audioBookId": state.audio_book_id, "postDetailToken": state.post_detail_token}
            status, data = self._post("/playlist", body, "a fresh stream token")
            if status >= 400 or not isinstance(data, dict):
                raise SourceError(f"the site answered HTTP {status} when renewing the stream token")
            state.token = str(data.get("streamToken") or state.post_detail_token)
            state.generation += 1
            return state.generation

    def search(self, query: str, *, offset: int = 0, limit: int = 12) -> SearchPage:
        """One page of search results (API §4)."""
        status, data = self._post(
            "/search", {"query": query, "offset": offset, "limit": limit}, "the search"
        )
        if status >= 400 or not isinstance(data, dict):
            raise SourceError(f"the site answered HTTP {status} to the search")
        results: list[SearchResult] = []
        for item in data.get("content") or []:
            if not isinstance(item, dict):
                continue
            slug = item.get("dynamicSlugId") or item.get("bookId")
            if not isinstance(slug, str) or not slug:
                continue
            authors = tuple(
                a["name"]
                for a in item.get("authors") or []
                if isinstance(a, dict) and isinstance(a.get("name"), str)
            )
            title = item.get("title")
            results.append(
                SearchResult(
                    title=title if isinstance(title, str) and title else slug,
                    slug=slug,
                    authors=authors,
                    url=self._page_url(slug),
                )
            )
        total = data.get("totalHits")
        return SearchPage(
            results=tuple(results),
            total=total if isinstance(total, int) else len(results),
            offset=offset,
        )

    def health(self) -> list[HealthStep]:
        """DNS, then TLS (https), then the search API answering JSON, timed (``--doctor``)."""
        return host_health(
            self.base_url,
            lambda: self.search("a", offset=0, limit=1),
            connect_timeout=self.api.connect_timeout,
            elsewhere="--base-url selects another site root",
        )
