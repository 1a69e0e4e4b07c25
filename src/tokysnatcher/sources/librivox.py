"""LibriVox: public-domain audiobooks, one MP3 per section on archive.org (shared/librivox-api.md).

The book comes from LibriVox's JSON API (§1), its files' sizes and checksums from the archive.org
item metadata (§3). Every value of the API is a string: each is converted and checked here, and
anything malformed or hostile ends in one line (:class:`SourceError`), never in a traceback.
Both roots are configurable (``librivox-url``, ``archive-url``) so the same code talks to the
bundled stand-in site. Like ``sources/tokybook.py``, this module imports no HTTP library.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

from tokysnatcher import __version__
from tokysnatcher.config.settings import Quality, parse_root_url
from tokysnatcher.errors import BadValue, BookNotFoundError, SourceError, UsageError
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

SOURCE_NAME = "librivox"
#: ``librivox:<id>``: a book by its LibriVox id.
REF_PREFIX = "librivox:"
DEFAULT_LIBRIVOX_URL = "https://librivox.org"
DEFAULT_ARCHIVE_URL = "https://archive.org"
LIBRIVOX_SETTING = "TOKYSNATCHER_LIBRIVOX_URL"
ARCHIVE_SETTING = "TOKYSNATCHER_ARCHIVE_URL"
# A free API run by volunteers: say who asks (§4 Politeness).
USER_AGENT = f"tokysnatcher/{__version__} (+https://github.com/tokysnatcher/tokysnatcher)"
FEED_PATH = "/api/feed/audiobooks"
#: The API's answer when nothing matches, with a 404 (or a 200 from some servers): §1 Errors.
NOT_FOUND = "Audiobooks could not be found"
MAX_LIMIT = 500  # the API refuses more per request (LV26)
_KNOWN_HOSTS = frozenset({"librivox.org", "www.librivox.org"})
_ID_RE = re.compile(r"[0-9]{1,9}")
_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_RSS_LINK_RE = re.compile(r"""href\s*=\s*["'][^"'<>]*/rss/([0-9]{1,9})/?["']""", re.IGNORECASE)
_MD5_RE = re.compile(r"[0-9a-fA-F]{32}")
_SHA1_RE = re.compile(r"[0-9a-fA-F]{40}")
_LOW_SUFFIX = "_64kb.mp3"
_MAX_DESCRIPTION = 64 * 1024
_MAX_TEXT = 4096  # a title, a name: anything longer is cut (names are sanitized later anyway)
_REF_HINT = (
    "Use librivox:<id>, the book's page (https://librivox.org/<book>/) or an API URL with id=."
)


class _Malformed(Exception):
    """A value of the API's answer is not what §1 says; the message names it."""


def librivox_root(configured: str | None) -> str:
    """LibriVox's site root: ``librivox-url`` or the real site, without a trailing slash."""
    return parse_root_url(configured) if configured else DEFAULT_LIBRIVOX_URL


def archive_root(configured: str | None) -> str:
    """archive.org's root: ``archive-url`` or the real site, without a trailing slash."""
    return parse_root_url(configured) if configured else DEFAULT_ARCHIVE_URL


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _site_hosts(librivox_url: str) -> frozenset[str]:
    host = _host(librivox_url)
    return _KNOWN_HOSTS | {host, f"www.{host}"}


def is_librivox_ref(ref: str, librivox_url: str | None) -> bool:
    """True when ``ref`` names a LibriVox book: ``librivox:…`` or a URL on a LibriVox host."""
    raw = ref.strip()
    if raw.lower().startswith(REF_PREFIX):
        return True
    if "/" not in raw and "." not in raw:
        return False  # a bare slug: tokybook's
    candidate = raw if "://" in raw else f"https://{raw}"
    return _host(candidate) in _site_hosts(librivox_root(librivox_url))


def parse_ref(ref: str, librivox_url: str | None) -> tuple[str | None, str | None]:
    """``(id, None)`` for a reference that names the id, ``(None, page URL)`` for a book page.

    Accepted: ``librivox:<id>``; an API URL with ``id=<id>`` (or ``/id/<id>``); an RSS feed
    URL ``…/rss/<id>``; a book page ``https://librivox.org/<book>/`` (its id is read from the
    page's RSS link). Anything else is a :class:`UsageError`.
    """
    raw = ref.strip()
    if raw.lower().startswith(REF_PREFIX):
        book_id = raw[len(REF_PREFIX) :].strip()
        if _ID_RE.fullmatch(book_id):
            return str(int(book_id)), None
        raise UsageError(f"not a LibriVox id: {ref!r} (expected librivox:<number>)", hint=_REF_HINT)
    candidate = raw if "://" in raw else f"https://{raw}"
    try:
        parts = urlsplit(candidate)
    except ValueError:
        parts = urlsplit("")
    root = urlsplit(librivox_root(librivox_url))
    if parts.scheme not in ("http", "https") or _host(candidate) not in _site_hosts(
        librivox_root(librivox_url)
    ):
        raise UsageError(f"not a LibriVox book reference: {ref!r}", hint=_REF_HINT)
    path = parts.path
    if root.path and path.startswith(root.path):
        path = path[len(root.path) :]
    pieces = [unquote(p) for p in path.split("/") if p]
    if pieces[:2] == ["api", "feed"] or pieces[:1] == ["api"]:
        ids = parse_qs(parts.query).get("id", [])
        if "id" in pieces:
            after = pieces.index("id") + 1
            ids += pieces[after : after + 1]
        if len(ids) == 1 and _ID_RE.fullmatch(ids[0].strip()):
            return str(int(ids[0])), None
        raise UsageError(f"the API URL names no single book id=: {ref!r}", hint=_REF_HINT)
    if len(pieces) == 2 and pieces[0] == "rss" and _ID_RE.fullmatch(pieces[1]):
        return str(int(pieces[1])), None
    if len(pieces) == 1 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,299}", pieces[0]):
        page = f"{parts.scheme}://{parts.netloc}{parts.path}"
        return None, page if page.endswith("/") else page + "/"
    raise UsageError(f"not a LibriVox book page: {ref!r}", hint=_REF_HINT)


def resume_ref(
    source_url: str, slug: str, librivox_url: str | None, archive_url: str | None = None
) -> tuple[str, list[str]]:
    """The reference and environment that reach a downloaded book again (no page fetch).

    The environment names ``TOKYSNATCHER_LIBRIVOX_URL`` when the book came from another server
    than librivox.org (a stand-in site, a mirror), and ``TOKYSNATCHER_ARCHIVE_URL`` when one
    is configured.
    """
    ref = f"{REF_PREFIX}{slug}" if _ID_RE.fullmatch(slug) else source_url
    host = _host(source_url) if "://" in source_url else ""
    env: list[str] = []
    if host and host not in _KNOWN_HOSTS:
        parts = urlsplit(source_url)
        env.append(f"{LIBRIVOX_SETTING}={parts.scheme}://{parts.netloc}")
    elif librivox_url and _host(librivox_url) not in _KNOWN_HOSTS:
        env.append(f"{LIBRIVOX_SETTING}={librivox_url}")
    if archive_url and archive_url != DEFAULT_ARCHIVE_URL:
        env.append(f"{ARCHIVE_SETTING}={archive_url}")
    return ref, env


def foreign_host(source_url: str, librivox_url: str | None) -> tuple[str, str] | None:
    """``(book host, configured host)`` when ``source_url`` is on neither librivox.org nor the
    configured LibriVox host; else None."""
    if "://" not in source_url:
        return None
    host = _host(source_url)
    configured = _host(librivox_root(librivox_url))
    if host and host not in _site_hosts(librivox_root(librivox_url)):
        return host, configured
    return None


# -- values of the API's answer (§1 Types: strings, converted and checked one by one) ---------
def _text(value: Any, name: str) -> str | None:
    """Text, stripped; None for a missing value or an empty string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(f"{name} is {type(value).__name__}, not text")
    return value.strip()[:_MAX_TEXT] or None


def _whole(value: Any, name: str) -> int | None:
    """A whole number given as a string of digits (or a JSON integer); None when missing."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,9}\s*", value):
        return int(value)
    raise _Malformed(f"{name} is {value!r:.40}, not a whole number")


def _items(value: Any, name: str) -> list[dict[str, Any]]:
    """A list of objects; None is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _Malformed(f"{name} is not a list of objects")
    return value


def _names(people: list[dict[str, Any]], *keys: str) -> list[str]:
    """Distinct non-empty names, in order; each joined from ``keys`` (first and last name)."""
    found: list[str] = []
    for person in people:
        parts = [_text(person.get(key), key) for key in keys]
        name = " ".join(part for part in parts if part)
        if name and name not in found:
            found.append(name)
    return found


def _joined(names: list[str]) -> str | None:
    return " & ".join(names) or None


def _year(value: Any) -> int | None:
    """``copyright_year`` when it is a plausible year; LibriVox often gives "0" or nothing."""
    try:
        year = _whole(value, "copyright_year")
    except _Malformed:
        return None
    return year if year is not None and 1000 <= year <= 2100 else None


def _is_archive_host(host: str) -> bool:
    return host == "archive.org" or host.endswith(".archive.org")


def _http_url(value: Any, name: str) -> str | None:
    """An absolute http(s) URL (old ``http://`` archive.org links become https, §2)."""
    text = _text(value, name)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise _Malformed(f"{name} is not an http(s) URL: {text!r:.60}")
    if parts.scheme.lower() == "http" and _is_archive_host(parts.hostname or ""):
        return urlunsplit(("https", parts.netloc, parts.path, parts.query, ""))
    return text


def _is_not_found(data: Any) -> bool:
    """The API's "nothing matches" body (§1 Errors): keyed on the body, not the status."""
    return isinstance(data, dict) and data.get("error") == NOT_FOUND


class _PlainText(HTMLParser):
    """The text of an HTML description: block elements become line breaks, markup goes."""

    _BREAKS = frozenset(
        {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr"}
    )
    _HIDDEN = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def plain_text(markup: str) -> str | None:
    """HTML as plain text: one line per paragraph, spaces collapsed; None when empty."""
    parser = _PlainText()
    parser.feed(markup[:_MAX_DESCRIPTION])
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    return "\n".join(line for line in lines if line) or None


class LibrivoxSource:
    """LibriVox's API (``api``) and archive.org's item metadata (``archive``), §1-§3."""

    name = SOURCE_NAME
    renewed_message = "renewed the credentials"  # never: LibriVox's files need none

    def __init__(
        self,
        api: JsonApi,
        archive: JsonApi,
        *,
        librivox_url: str | None = None,
        archive_url: str | None = None,
        quality: Quality = Quality.STANDARD,
    ) -> None:
        self.api = api
        self.archive = archive
        self.librivox_url = librivox_root(librivox_url)
        self.archive_url = archive_root(archive_url)
        self.quality = quality
        self._server = urlsplit(self.librivox_url).netloc
        self._page_ids: dict[str, str] = {}  # book page -> the id its RSS link gives

    # -- asking ----------------------------------------------------------------------------------
    def _feed(self, params: dict[str, str], what: str) -> tuple[int, Any]:
        url = f"{self.librivox_url}{FEED_PATH}?{urlencode({**params, 'format': 'json'})}"
        return self.api.get(url, what, headers={"User-Agent": USER_AGENT})

    # -- Source --------------------------------------------------------------------------------
    def book_slug(self, ref: str) -> str:
        """The book's LibriVox id; a book page is asked for the id its RSS link carries."""
        try:
            book_id, page = parse_ref(ref, self.librivox_url)
        except BadValue as err:  # a malformed librivox-url
            raise UsageError(f"{LIBRIVOX_SETTING}: {err.message}") from err
        if book_id is not None:
            return book_id
        assert page is not None
        if page in self._page_ids:  # the archive check and the plan both ask: read it once
            return self._page_ids[page]
        self._page_ids[page] = self._id_on_page(page)
        return self._page_ids[page]

    def _id_on_page(self, page: str) -> str:
        status, text = self.api.get_text(page, "the book page", headers={"User-Agent": USER_AGENT})
        if status == 404:
            raise BookNotFoundError(f"no LibriVox book page at {page}")
        if status >= 400:
            raise SourceError(f"{self._server} answered HTTP {status} for the book page {page}")
        ids = {int(found) for found in _RSS_LINK_RE.findall(text)}
        if len(ids) != 1:
            raise BookNotFoundError(
                f"{page} is not a LibriVox book page (it links no single RSS feed)",
                hint=_REF_HINT,
            )
        return str(ids.pop())

    def resolve(self, slug: str) -> tuple[Book, TrackList]:
        """The book (§1, with ``extended`` and ``coverart``) and its files' metadata (§3)."""
        if not _ID_RE.fullmatch(slug):
            raise UsageError(f"not a LibriVox id: {slug!r}", hint=_REF_HINT)
        what = f"book {slug}"
        status, data = self._feed({"id": slug, "extended": "1", "coverart": "1"}, what)
        if _is_not_found(data):
            raise BookNotFoundError(f"no LibriVox book with the id {slug} on {self._server}")
        if status >= 400:
            raise SourceError(f"{self._server} answered HTTP {status} for {what}")
        try:
            return self._book(slug, data)
        except _Malformed as err:
            raise SourceError(
                f"{self._server}'s answer for {what} is malformed: {err}",
                hint="The site sent something this version does not understand; try again later.",
            ) from None

    def _book(self, slug: str, data: Any) -> tuple[Book, TrackList]:
        books = data.get("books") if isinstance(data, dict) else None
        if not isinstance(books, list) or len(books) != 1 or not isinstance(books[0], dict):
            raise _Malformed("it does not hold exactly one book")
        raw = books[0]
        if _whole(raw.get("id"), "id") != int(slug):
            raise _Malformed("it is about another book")
        sections = self._sections(_items(raw.get("sections"), "sections"))
        identifier = self._identifier(raw, sections)
        files = self._item_files(identifier) if identifier else {}
        tracks: list[Track] = []
        unavailable: list[str] = []
        readers = [section[3] for section in sections]
        several_readers = len({tuple(names) for names in readers}) > 1
        for number, title, listen_url, names, seconds in sections:
            if listen_url is None:
                unavailable.append(f"section {number}" + (f" ({title})" if title else ""))
                continue
            url, entry = self._audio(listen_url, identifier, files)
            tracks.append(
                Track(
                    index=len(tracks) + 1,
                    title=title,
                    url=url,
                    kind=MediaKind.FILE,
                    duration=seconds,
                    size=_whole_or_none(entry.get("size")),
                    md5=_hex_or_none(entry.get("md5"), _MD5_RE),
                    sha1=_hex_or_none(entry.get("sha1"), _SHA1_RE),
                    narrator=_joined(names) if several_readers else None,
                )
            )
        all_readers: list[str] = []
        for names in readers:
            all_readers += [name for name in names if name not in all_readers]
        genres = _names(_items(raw.get("genres"), "genres"), "name")
        description = _text(raw.get("description"), "description")
        book = Book(
            source=SOURCE_NAME,
            slug=slug,
            title=_text(raw.get("title"), "title") or f"LibriVox book {slug}",
            author=_joined(_names(_items(raw.get("authors"), "authors"), "first_name", "last_name"))
            or "",
            source_url=self._page_url(raw.get("url_librivox"), slug),
            narrator=_joined(all_readers),
            cover_url=self._cover(raw.get("coverart_jpg"), identifier, files),
            year=_year(raw.get("copyright_year")),
            description=plain_text(description) if description else None,
            language=_text(raw.get("language"), "language"),
            genres=tuple(genres),
        )
        return book, TrackList(tracks=tuple(tracks), unavailable=tuple(unavailable))

    def _sections(
        self, raw: list[dict[str, Any]]
    ) -> list[tuple[int, str, str | None, list[str], float | None]]:
        """``(number, title, listen URL or None, readers, seconds)`` in section order.

        The API has no ORDER BY for sections (§1 Matching): sorted by number here, the order
        of the answer kept among equal numbers.
        """
        sections = []
        for position, section in enumerate(raw, start=1):
            number = _whole(section.get("section_number"), "section_number")
            playtime = _whole(section.get("playtime"), "playtime")
            sections.append(
                (
                    number if number is not None else position,
                    _text(section.get("title"), "a section title") or "",
                    _http_url(section.get("listen_url"), "listen_url"),
                    _names(_items(section.get("readers"), "readers"), "display_name"),
                    plausible_seconds(playtime),
                )
            )
        return sorted(sections, key=lambda section: section[0])

    def _page_url(self, value: Any, slug: str) -> str:
        """The book's page when the API names one on LibriVox's host, else ``librivox:<id>``."""
        try:
            url = _http_url(value, "url_librivox")
        except _Malformed:
            url = None
        if url is None or _host(url) not in _site_hosts(self.librivox_url):
            return f"{REF_PREFIX}{slug}"
        return url

    @staticmethod
    def _identifier(
        raw: dict[str, Any], sections: list[tuple[int, str, str | None, list[str], float | None]]
    ) -> str | None:
        """The archive.org item: from ``url_iarchive`` (``…/details/<id>``) or a listen URL."""
        candidates: list[str] = []
        try:
            details = _http_url(raw.get("url_iarchive"), "url_iarchive")
        except _Malformed:
            details = None
        if details:
            pieces = [p for p in urlsplit(details).path.split("/") if p]
            if len(pieces) >= 2 and pieces[0] == "details":
                candidates.append(unquote(pieces[1]))
        for section in sections:
            if section[2]:
                pieces = [p for p in urlsplit(section[2]).path.split("/") if p]
                if len(pieces) == 3 and pieces[0] == "download":
                    candidates.append(unquote(pieces[1]))
                break
        return next((c for c in candidates if _IDENTIFIER_RE.fullmatch(c)), None)

    def _item_files(self, identifier: str) -> dict[str, dict[str, Any]]:
        """The item's files by name (§3); an unknown item (``{}``) lists none."""
        url = f"{self.archive_url}/metadata/{quote(identifier, safe='')}"
        status, data = self.archive.get(
            url, f"the file list of {identifier}", headers={"User-Agent": USER_AGENT}
        )
        if status >= 400 or not isinstance(data, dict):
            return {}
        files = data.get("files")
        if not isinstance(files, list):
            return {}
        return {
            entry["name"]: entry
            for entry in files
            if isinstance(entry, dict) and isinstance(entry.get("name"), str)
        }

    def _audio(
        self, listen_url: str, identifier: str | None, files: dict[str, dict[str, Any]]
    ) -> tuple[str, dict[str, Any]]:
        """The file to fetch for a section and its metadata entry (empty when not listed).

        ``--quality high`` takes the 128 kb/s original (``<base>_128kb.mp3``, or ``<base>.mp3``
        in older items) where the item lists it (§2).
        """
        parts = urlsplit(listen_url)
        pieces = parts.path.split("/")
        name = unquote(pieces[-1])
        in_item = len(pieces) == 4 and pieces[1] == "download" and unquote(pieces[2]) == identifier
        if not in_item:
            return listen_url, {}
        if self.quality is Quality.HIGH and name.endswith(_LOW_SUFFIX):
            base = name[: -len(_LOW_SUFFIX)]
            for original in (f"{base}_128kb.mp3", f"{base}.mp3"):
                entry = files.get(original)
                if entry is not None and "MP3" in str(entry.get("format", "")).upper():
                    path = "/".join([*pieces[:-1], quote(original, safe="")])
                    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), entry
        return listen_url, files.get(name, {})

    def _cover(
        self, coverart: Any, identifier: str | None, files: dict[str, dict[str, Any]]
    ) -> str | None:
        """The API's cover, else the item's own JPEG (not a thumbnail), else its tile (§3)."""
        try:
            url = _http_url(coverart, "coverart_jpg")
        except _Malformed:
            url = None
        if url is not None:
            return url
        if identifier is None:
            return None
        item = quote(identifier, safe="")
        for name in files:
            lower = name.lower()
            if lower.endswith((".jpg", ".jpeg")) and "thumb" not in lower:
                return f"{self.archive_url}/download/{item}/{quote(name, safe='')}"
        return f"{self.archive_url}/services/img/{item}"

    def headers(self, url: str) -> RequestHeaders:
        """LibriVox's files need no credentials: nothing site-specific is ever sent."""
        return RequestHeaders({}, 0)

    def headers_generation(self) -> int:
        return 0

    def renew_headers(self, seen_generation: int) -> int:
        """Nothing to renew (no credentials)."""
        return seen_generation

    def health(self) -> list[HealthStep]:
        """LibriVox's API host (DNS, TLS, one catalogue call) and archive.org's (``--doctor``)."""

        def ask() -> None:
            status, data = self._feed({"limit": "1", "fields": "{id}"}, "the catalogue")
            if status >= 400 and not _is_not_found(data):
                raise SourceError(
                    f"LibriVox's API answered HTTP {status}",
                    hint=f"{LIBRIVOX_SETTING} selects another LibriVox root.",
                )

        timeout = self.api.connect_timeout
        return [
            *host_health(
                self.librivox_url,
                ask,
                connect_timeout=timeout,
                elsewhere=f"{LIBRIVOX_SETTING} selects another LibriVox root",
            ),
            *host_health(
                self.archive_url,
                None,
                connect_timeout=timeout,
                elsewhere=f"{ARCHIVE_SETTING} selects another archive.org root",
            ),
        ]

    def search(self, query: str, *, offset: int = 0, limit: int = 12) -> SearchPage:
        """Books whose title starts with ``query`` or whose author's last name is its last word.

        Both searches are asked from their start for as many results as the page needs, merged
        (title matches first) and de-duplicated; ``total`` counts what was seen, so it grows as
        the user pages on while more remain.
        """
        wanted = min(MAX_LIMIT, offset + limit + 1)
        words = query.split()
        found = self._find({"title": f"^{query.strip()}"}, wanted, "the title search")
        if words:
            found += self._find({"author": words[-1]}, wanted, "the author search")
        seen: set[str] = set()
        results: list[SearchResult] = []
        for result in found:
            if result.slug not in seen:
                seen.add(result.slug)
                results.append(result)
        return SearchPage(
            results=tuple(results[offset : offset + limit]), total=len(results), offset=offset
        )

    def _find(self, params: dict[str, str], limit: int, what: str) -> list[SearchResult]:
        fields = "{id,title,authors,url_librivox}"
        status, data = self._feed({**params, "fields": fields, "limit": str(limit)}, what)
        if _is_not_found(data):
            return []
        books = data.get("books") if isinstance(data, dict) else None
        if status >= 400 or not isinstance(books, list):
            raise SourceError(f"{self._server} answered HTTP {status} to {what}")
        results: list[SearchResult] = []
        for raw in books:
            try:
                if not isinstance(raw, dict):
                    continue
                book_id = _whole(raw.get("id"), "id")
                page = _http_url(raw.get("url_librivox"), "url_librivox")
                if book_id is None or page is None:
                    continue  # an unfinished project has no page yet (§4)
                authors = _names(_items(raw.get("authors"), "authors"), "first_name", "last_name")
                results.append(
                    SearchResult(
                        title=_text(raw.get("title"), "title") or f"LibriVox book {book_id}",
                        slug=f"{REF_PREFIX}{book_id}",
                        authors=tuple(authors),
                        url=page,
                    )
                )
            except _Malformed:
                continue  # one odd entry does not spoil the others
        return results


def _whole_or_none(value: Any) -> int | None:
    """A file size from the item metadata (a string of digits), else None."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,15}", value):
        return int(value)
    return None


def _hex_or_none(value: Any, pattern: re.Pattern[str]) -> str | None:
    return value.lower() if isinstance(value, str) and pattern.fullmatch(value) else None
