"""The LibriVox stand-in's answers, as pure functions: the API, pages, RSS and item metadata.

``shared/librivox-api.md`` §6 is the contract: string-typed fields in the documented key
order, sections unsorted, the 404 body for "nothing found", 400 past 500 records, ``{}`` for an
unknown item.
"""

from __future__ import annotations

import hashlib
import html
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from tokysnatcher.standin.librivox.catalog import COVER_ITEM, Cover, LvBook, Section

NOT_FOUND: dict[str, Any] = {"error": "Audiobooks could not be found"}
TOO_MANY: dict[str, Any] = {
    "error": "Too many records requested.  See https://librivox.org/api/info for details."
}
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
FEED_PATHS = ("/api/feed/audiobooks", "/api/audiobooks")
#: When every generated file claims to have been written (a fixed, plausible mtime).
FILE_MTIME = 1_600_000_000

Answer = tuple[int, dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class ItemFile:
    """One file of an archive.org item as the stand-in serves it."""

    name: str
    body: Path
    format: str
    source: str  # original | derivative
    seconds: float | None = None
    original: str | None = None  # a derivative's original
    title: str | None = None
    track: int | None = None


def params_of(path: str, query: str) -> dict[str, str] | None:
    """The API parameters of a request: ``/k/v`` pairs after the endpoint, then ``?k=v``.

    None when the path is not an API endpoint (or its pairs do not pair up).
    """
    for prefix in FEED_PATHS:
        if path == prefix or path.startswith(prefix + "/"):
            rest = [unquote(p) for p in path[len(prefix) :].split("/") if p]
            if len(rest) % 2:
                return None
            params = dict(zip(rest[::2], rest[1::2], strict=True))
            params.update(parse_qsl(query, keep_blank_values=True))
            return params
    return None


def _matches(book: LvBook, params: Mapping[str, str]) -> bool:
    if "id" in params and params["id"].strip() != str(book.id):
        return False
    title = params.get("title")
    if title is not None:
        if title.startswith("^"):
            if not book.title.lower().startswith(title[1:].lower()):
                return False
        elif book.title.lower() != title.lower():
            return False
    author = params.get("author")
    if author is not None and author.lower() not in {last.lower() for _, last in book.authors}:
        return False
    genre = params.get("genre")
    if genre is not None:
        wanted = genre.removeprefix("^").lower()
        exact = not genre.startswith("^")
        names = [g.lower() for g in book.genres]
        if not any(n == wanted if exact else n.startswith(wanted) for n in names):
            return False
    return True


def audiobooks(
    catalog: Mapping[int, LvBook],
    params: Mapping[str, str],
    *,
    base_url: str,
    not_found_status: int = 404,
) -> Answer:
    """``GET /api/feed/audiobooks``: the matching books in id order, or the error bodies."""
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
        offset = int(params.get("offset", 0))
    except ValueError:
        limit, offset = DEFAULT_LIMIT, 0
    if limit > MAX_LIMIT:
        return 400, TOO_MANY
    found = sorted(
        (book for book in catalog.values() if _matches(book, params)),
        key=lambda book: book.id,
        reverse=params.get("sort_order") == "desc",
    )[max(0, offset) : max(0, offset) + max(0, limit)]
    if not found:
        return not_found_status, NOT_FOUND
    extended = params.get("extended") == "1"
    coverart = params.get("coverart") == "1"
    wanted = _fields(params.get("fields"))
    books = []
    for book in found:
        answer = book_json(book, base_url=base_url, extended=extended, coverart=coverart)
        if wanted:
            answer = {key: value for key, value in answer.items() if key in wanted}
        books.append(answer)
    return 200, {"books": books}


def _fields(raw: str | None) -> set[str]:
    if not raw:
        return set()
    return {part.strip() for part in raw.strip("{}").split(",") if part.strip()}


def page_url(base_url: str, book: LvBook) -> str:
    """The book's page on the site."""
    return f"{base_url}/{book.slug}/"


def download_url(base_url: str, identifier: str, name: str) -> str:
    """``/download/<identifier>/<name>``, the address every file is listed at."""
    return f"{base_url}/download/{quote(identifier, safe='')}/{quote(name, safe='')}"


def _person(first: str, last: str, number: int) -> dict[str, Any]:
    return {"id": str(number), "first_name": first, "last_name": last, "dob": "", "dod": ""}


def _section_json(book: LvBook, section: Section, base_url: str) -> dict[str, Any]:
    listen = download_url(base_url, book.identifier, book.low_name(section))
    if section.unfinished:
        listen = ""  # a project still being read (librivox-catalog PR #218)
    readers = [
        {"reader_id": str(1000 + (zlib.crc32(name.encode()) % 9000)), "display_name": name}
        for name in section.readers
    ]
    return {
        "id": str(book.id * 1000 + section.number),
        "section_number": str(section.number),
        "title": section.title,
        "listen_url": listen,
        "language": book.language,
        "playtime": str(round(section.seconds)),
        "file_name": None,
        "readers": readers,
    }


def _hms(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def book_json(
    book: LvBook, *, base_url: str, extended: bool = True, coverart: bool = True
) -> dict[str, Any]:
    """One book as the API writes it: every key of §1 in order, database values as strings."""
    total = sum(section.seconds for section in book.sections)
    answer: dict[str, Any] = {
        "id": str(book.id),
        "title": book.title,
        "description": book.description,
        "url_text_source": "https://www.gutenberg.org/",
        "language": book.language,
        "copyright_year": book.copyright_year,
        "num_sections": str(len(book.sections)),
        "url_rss": f"{base_url}/rss/{book.id}",
        "url_zip_file": f"{base_url}/compress/{book.identifier}/formats=64KBPS MP3&file=/"
        f"{book.identifier}.zip",
        "url_project": "",
        "url_librivox": page_url(base_url, book),
        "url_other": "",
        "totaltime": _hms(total),
        "totaltimesecs": round(total),
        "authors": [_person(f, last, 400 + n) for n, (f, last) in enumerate(book.authors)],
    }
    if coverart:
        cover = (
            download_url(base_url, COVER_ITEM, book.cover_name) if book.cover is Cover.API else None
        )
        answer["coverart_jpg"] = cover
        answer["coverart_pdf"] = None
        answer["coverart_thumbnail"] = cover
    if extended:
        answer["url_iarchive"] = f"{base_url}/details/{book.identifier}"
        answer["sections"] = [_section_json(book, s, base_url) for s in book.served_order()]
        answer["genres"] = [{"id": str(20 + n), "name": g} for n, g in enumerate(book.genres)]
        answer["translators"] = []
    for key, value in book.overrides:
        answer[key] = value
    return answer


def book_page(base_url: str, book: LvBook) -> bytes:
    """The book's catalogue page: it links its RSS feed, which is how a client finds the id."""
    title = html.escape(book.title)
    rss = f"{base_url}/rss/{book.id}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>LibriVox: {title}</title>"
        f'<link rel="alternate" type="application/rss+xml" title="RSS" href="{rss}">'
        f"</head><body><h1>{title}</h1>"
        f'<p><a href="{rss}">RSS feed</a></p>'
        f'<p><a href="{base_url}/rss/latest_releases">Latest releases</a></p>'
        "</body></html>"
    ).encode()


def rss(base_url: str, book: LvBook) -> bytes:
    """``/rss/<id>``: one item per section, in section order, with a zero-length enclosure."""
    items = []
    for section in sorted(book.sections, key=lambda s: s.number):
        if section.unfinished:
            continue
        url = html.escape(download_url(base_url, book.identifier, book.low_name(section)))
        items.append(
            f"<item><title>{html.escape(section.title)}</title>"
            f"<itunes:episode>{section.number}</itunes:episode>"
            f'<enclosure url="{url}" length="0" type="audio/mpeg"/>'
            f"<itunes:duration>{_hms(section.seconds)}</itunes:duration>"
            f'<media:content url="{url}" type="audio/mpeg"/></item>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" '
        'xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        f"<title>{html.escape(book.title)}</title>"
        f"<link>{html.escape(page_url(base_url, book))}</link>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def item_metadata(
    identifier: str, files: Mapping[str, ItemFile], data: Mapping[str, bytes], *, wrong_md5: bool
) -> dict[str, Any]:
    """``/metadata/<identifier>`` (§3): every value a string; ``wrong_md5`` spoils the sums."""
    entries: list[dict[str, Any]] = []
    for name, item in files.items():
        body = data[name]
        md5 = hashlib.md5(body).hexdigest()
        if wrong_md5:
            md5 = hashlib.md5(b"not " + body).hexdigest()
        entry: dict[str, Any] = {
            "name": name,
            "source": item.source,
            "format": item.format,
            "mtime": str(FILE_MTIME),
            "size": str(len(body)),
            "md5": md5,
            "crc32": f"{zlib.crc32(body):08x}",
            "sha1": hashlib.sha1(body).hexdigest(),
        }
        if item.seconds is not None:
            entry["length"] = f"{item.seconds:.2f}"
        if item.original is not None:
            entry["original"] = item.original
        if item.title is not None:
            entry["title"] = item.title
        if item.track is not None:
            entry["track"] = f"{item.track:02d}"
        entries.append(entry)
    entries.append(
        {
            "name": f"{identifier}_files.xml",
            "source": "original",
            "format": "Metadata",
            "md5": hashlib.md5(identifier.encode()).hexdigest(),
        }
    )
    return {
        "created": FILE_MTIME,
        "d1": "ia800000.us.archive.org",
        "d2": "ia900000.us.archive.org",
        "dir": f"/1/items/{identifier}",
        "files": entries,
        "files_count": len(entries),
        "item_size": sum(len(data[name]) for name in files),
        "metadata": {"identifier": identifier, "mediatype": "audio", "collection": "librivox"},
        "server": "ia800000.us.archive.org",
        "workable_servers": ["ia800000.us.archive.org"],
    }


def http_date(seconds: float) -> str:
    """An HTTP date (``Last-Modified``)."""
    return formatdate(seconds, usegmt=True)
