"""Everything that knows tokybook.com's JSON API (shared/tokybook-api.md).

Nothing outside this module builds a site URL, a site header or reads a site JSON field. The base
URL is configurable so the same code talks to the bundled stand-in site.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
import urllib3

from tokysnatcher.errors import BookNotFoundError, SourceError, UsageError
from tokysnatcher.net.failures import describe_exception
from tokysnatcher.net.http import (
    MIN_TRANSFER_RATE,
    TOO_SLOW_HINT,
    BoundedBody,
    ReadTimedOut,
)
from tokysnatcher.net.limits import CHUNK
from tokysnatcher.utils.units import plausible_seconds

API_PREFIX = "/api/v1"
AUDIO_PREFIX = f"{API_PREFIX}/public/audio/"
# JSON answers from the API are small; anything larger is hostile or broken.
MAX_JSON_BYTES = 4 * 1024 * 1024
_TITLE_FIELDS = ("title", "bookTitle", "album", "name", "bookName")
_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,199}$")
_KNOWN_HOSTS = ("tokybook.com",)


@dataclass(frozen=True, kw_only=True)
class Track:
    """One chapter as the playlist API lists it."""

    index: int  # 1-based chapter number, in playlist order
    title: str
    src: str
    duration: float | None = None

    @property
    def is_direct(self) -> bool:
        """A ``src`` that is an absolute http(s) URL is a plain audio file, not HLS."""
        return self.src.lower().startswith(("http://", "https://"))


@dataclass(frozen=True, kw_only=True)
class Book:
    """A book's details (API §1)."""

    slug: str
    title: str
    author: str
    source_url: str
    audio_book_id: str
    post_detail_token: str
    narrator: str | None = None
    cover_url: str | None = None
    year: int | None = None


@dataclass(frozen=True, kw_only=True)
class Playlist:
    """A book's chapters and the stream token that unlocks their audio (API §2)."""

    stream_token: str
    tracks: tuple[Track, ...]
    skipped: tuple[str, ...] = ()  # titles of tracks listed without ``src``


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    title: str
    slug: str
    authors: tuple[str, ...]
    url: str


@dataclass(frozen=True, kw_only=True)
class SearchPage:
    results: tuple[SearchResult, ...]
    total: int
    offset: int


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


def parse_book_ref(text: str, base_url: str) -> str:
    """Turn a book page URL (with or without scheme or ``www.``) or a bare slug into the slug.

    Accepted: ``https://tokybook.com/post/<slug>``, ``tokybook.com/post/<slug>``, a URL on
    ``base_url``'s host, or ``<slug>``. Anything else is a :class:`UsageError`.
    """
    raw = text.strip()
    if not raw:
        raise UsageError("the book URL is empty", hint="Pass a book page URL or its slug.")
    base = urlsplit(normalize_base_url(base_url))
    if _SLUG_RE.match(raw) and "." not in raw:
        return raw
    candidate = raw if "://" in raw else f"https://{raw}"
    parts = urlsplit(candidate)
    host = (parts.hostname or "").lower()
    allowed = {h for known in _KNOWN_HOSTS for h in (known, f"www.{known}")}
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
    token: str
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class TokybookClient:
    """Talks to the site's API through one shared ``requests.Session``."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        stall_timeout: float = 30.0,
        transfer_timeout: float = 300.0,
    ) -> None:
        self.session = session
        self.base_url = normalize_base_url(base_url)
        self._timeout = (connect_timeout, stall_timeout)
        self._stall_timeout = stall_timeout
        self._transfer_timeout = transfer_timeout
        self._token: _TokenState | None = None

    # -- URLs --------------------------------------------------------------------------------
    def book_page_url(self, slug: str) -> str:
        return f"{self.base_url}/post/{quote(slug, safe='')}"

    def audio_url(self, src: str) -> str:
        """The playlist URL of a track: ``src`` percent-encoded one path part at a time."""
        parts = [quote(part, safe="") for part in src.strip("/").split("/")]
        return f"{self.base_url}{AUDIO_PREFIX}{'/'.join(parts)}"

    def is_api_host(self, url: str) -> bool:
        """True when ``url`` is on the API's scheme, host and port: auth headers go only there."""
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)

    def audio_headers(self, book: Book, url: str, token: str) -> dict[str, str]:
        """Headers for a playlist or segment request; empty for any host but the API's."""
        if not self.is_api_host(url):
            return {}
        parts = urlsplit(url)
        track_src = parts.path + (f"?{parts.query}" if parts.query else "")
        return {
            "X-Audiobook-Id": book.audio_book_id,
            "X-Stream-Token": token,
            "X-Track-Src": track_src,
            "Referer": f"{self.base_url}/",
            "Accept-Encoding": "identity",
        }

    # -- API calls ---------------------------------------------------------------------------
    def _post(self, path: str, body: Mapping[str, Any], what: str) -> tuple[int, Any]:
        """POST a JSON body; the status and the parsed answer (None for an HTTP error).

        The answer is read under the same stall rule and deadline as media (SPEC §5), so a site
        that trickles or drips its answer fails the call instead of holding the run.
        """
        url = f"{self.base_url}{API_PREFIX}{path}"
        try:
            with self.session.post(url, json=dict(body), timeout=self._timeout, stream=True) as r:
                raw = self._read_answer(r.raw, what)
                status = r.status_code
        except requests.ReadTimeout as err:
            raise self._stalled(what) from err
        except requests.RequestException as err:
            raise SourceError(
                f"could not reach {self.base_url} for {what}: {describe_exception(err)}"
            ) from err
        if status >= 400:
            return status, None
        try:
            return status, json.loads(raw)
        except RecursionError as err:  # nested past the parser's limit: hostile, not data
            raise SourceError(f"the site's answer for {what} is nested too deep; refused") from err
        except ValueError as err:
            raise SourceError(f"the site's answer for {what} is not JSON") from err

    def _read_answer(self, response: urllib3.BaseHTTPResponse, what: str) -> bytes:
        """The whole body of an API answer, at most ``MAX_JSON_BYTES``."""
        reader = BoundedBody(
            response,
            stall_timeout=self._stall_timeout,
            transfer_timeout=self._transfer_timeout,
        )
        chunks: list[bytes] = []
        try:
            while chunk := reader.read(CHUNK):
                chunks.append(chunk)
                if reader.received > MAX_JSON_BYTES:
                    raise SourceError(f"the site's answer for {what} is larger than 4 MiB; refused")
        except ReadTimedOut as err:
            if err.stalled:
                raise self._stalled(what) from err
            raise SourceError(
                f"the site sent {what} too slowly (over {self._transfer_timeout:g} s at under "
                f"{MIN_TRANSFER_RATE // 1024} KiB/s on average); stopped",
                hint=TOO_SLOW_HINT,
            ) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:  # a reset, a truncated body
            raise SourceError(
                f"could not read {what} from {self.base_url}: {describe_exception(err)}"
            ) from err
        finally:
            reader.close()
        return b"".join(chunks)

    def _stalled(self, what: str) -> SourceError:
        return SourceError(
            f"the site stopped sending {what} (no progress in {self._stall_timeout:g} s)",
            hint="The site is not answering; try again later, or use a larger --stall-timeout "
            "on a slow link.",
        )

    def book(self, slug: str) -> Book:
        """Book details (API §1). Unknown slugs raise :class:`BookNotFoundError`."""
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
        return Book(
            slug=slug,
            title=title,
            author=_first_name(data.get("authors")) or "",
            narrator=_first_name(data.get("narrators")),
            source_url=self.book_page_url(slug),
            audio_book_id=str(data["audioBookId"]),
            post_detail_token=str(data["postDetailToken"]),
            cover_url=urljoin(self.base_url + "/", cover)
            if isinstance(cover, str) and cover
            else None,
            year=year if isinstance(year, int) and not isinstance(year, bool) else None,
        )

    def playlist(self, book: Book) -> Playlist:
        """The chapter list and a fresh stream token (API §2)."""
        body = {"audioBookId": book.audio_book_id, "postDetailToken": book.post_detail_token}
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
            tracks.append(
                Track(
                    index=len(tracks) + 1,
                    title=title,
                    src=src.strip(),
                    duration=plausible_seconds(item.get("duration")),
                )
            )
        token = data.get("streamToken") or book.post_detail_token
        self._token = _TokenState(str(token))
        return Playlist(stream_token=str(token), tracks=tuple(tracks), skipped=tuple(skipped))

    # -- stream token --------------------------------------------------------------------------
    def token(self) -> tuple[str, int]:
        """The current stream token and its generation (see :meth:`refresh_token`)."""
        if self._token is None:
            raise SourceError("no stream token yet: fetch the playlist first")
        return self._token.token, self._token.generation

    def refresh_token(self, book: Book, seen_generation: int) -> tuple[str, int]:
        """A fresh stream token, fetched at most once per generation.

        Many chapters may hit an expired token at once; the first caller asks the playlist API
        again and the others reuse its answer instead of asking too.
        """
        state = self._token
        if state is None:
            raise SourceError("no stream token yet: fetch the playlist first")
        with state.lock:
            if state.generation != seen_generation:
                return state.token, state.generation
            body = {"audioBookId": book.audio_book_id, "postDetailToken": book.post_detail_token}
            status, data = self._post("/playlist", body, "a fresh stream token")
            if status >= 400 or not isinstance(data, dict):
                raise SourceError(f"the site answered HTTP {status} when renewing the stream token")
            state.token = str(data.get("streamToken") or book.post_detail_token)
            state.generation += 1
            return state.token, state.generation

    # -- search --------------------------------------------------------------------------------
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
                    url=self.book_page_url(slug),
                )
            )
        total = data.get("totalHits")
        return SearchPage(
            results=tuple(results),
            total=total if isinstance(total, int) else len(results),
            offset=offset,
        )
