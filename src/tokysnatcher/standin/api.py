"""The JSON API answers of the stand-in site (tokybook-api.md §1, §2, §4), as pure functions.

Each function takes the site state and the parsed request body and returns ``(status, body)``.
"""

from __future__ import annotations

from typing import Any

from tokysnatcher.standin.catalog import COVERS_PREFIX, FILES_PREFIX, BookSpec, TrackKind
from tokysnatcher.standin.content import encode_path
from tokysnatcher.standin.state import SiteState

DETAILS_PATH = "/api/v1/search/post-details"
PLAYLIST_PATH = "/api/v1/playlist"
SEARCH_PATH = "/api/v1/search"
API_PATHS = {DETAILS_PATH: "details", PLAYLIST_PATH: "playlist", SEARCH_PATH: "search"}
_MAX_LIMIT = 100

Answer = tuple[int, dict[str, Any]]


def error(status: int, message: str) -> Answer:
    """A JSON error answer."""
    return status, {"status": status, "error": message}


def _people(names: tuple[str, ...] | list[str] | Any) -> list[dict[str, str]]:
    return [{"name": name} for name in names]


def cover_url(state: SiteState, book: BookSpec) -> str | None:
    """Where the cover of ``book`` is served, or None when it has none."""
    return f"{state.base_url}{COVERS_PREFIX}{book.slug}.jpg" if book.cover else None


def details(state: SiteState, body: dict[str, Any]) -> Answer:
    """``POST /api/v1/search/post-details``: the book of ``dynamicSlugId``."""
    slug = body.get("dynamicSlugId")
    if not isinstance(slug, str) or not slug:
        return error(400, "dynamicSlugId (a string) is required")
    book = state.catalog.get(slug)
    if book is None:
        return error(404, f"no book {slug!r}")
    answer: dict[str, Any] = {
        "audioBookId": book.audio_book_id,
        "postDetailToken": book.post_detail_token,
        "title": book.title,
        "authors": _people(book.authors),
        "narrators": _people(book.narrators),
        "dynamicSlugId": book.slug,
        "bookId": book.book_id,
        "coverImage": cover_url(state, book),
        "year": book.year,
    }
    answer.update(dict(book.details_extra))
    for key in book.details_omit:
        answer.pop(key, None)
    return 200, answer


def track_src(state: SiteState, book: BookSpec, index: int) -> str | None:
    """The ``src`` the playlist API reports for track ``index``: relative, absolute or None."""
    track = book.tracks[index]
    if track.kind is TrackKind.NOSRC:
        return None
    path = book.track_path(index)
    if track.kind.is_direct_file:
        return f"{state.base_url}{FILES_PREFIX}{encode_path(path)}"
    return path


def playlist(state: SiteState, body: dict[str, Any]) -> Answer:
    """``POST /api/v1/playlist``: the tracks of a book and a fresh stream token."""
    audio_book_id = body.get("audioBookId")
    detail_token = body.get("postDetailToken")
    if not isinstance(audio_book_id, str) or not isinstance(detail_token, str):
        return error(400, "audioBookId and postDetailToken (strings) are required")
    book = state.by_audio_id.get(audio_book_id)
    if book is None:
        return error(404, f"no audiobook {audio_book_id!r}")
    if detail_token != book.post_detail_token:
        return error(401, "postDetailToken does not match")
    tracks: list[dict[str, Any]] = []
    for index, track in enumerate(book.tracks):
        entry: dict[str, Any] = {"trackTitle": track.title}
        src = track_src(state, book, index)
        if src is not None:
            entry["src"] = src
        if track.declared_duration is not None:
            entry["duration"] = track.declared_duration
        elif track.advertise_duration:
            seconds = track.seconds
            entry["duration"] = int(seconds) if seconds == int(seconds) else round(seconds, 3)
        tracks.append(entry)
    answer: dict[str, Any] = {"audioBookId": book.audio_book_id, "tracks": tracks}
    if book.stream_token:
        answer["streamToken"] = state.tokens.issue(book.audio_book_id)
    return 200, answer


def search(state: SiteState, body: dict[str, Any]) -> Answer:
    """``POST /api/v1/search``: case-insensitive substring match on titles and authors."""
    query = body.get("query", "")
    offset = body.get("offset", 0)
    limit = body.get("limit", 12)
    if not isinstance(query, str):
        return error(400, "query must be a string")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return error(400, "offset must be a non-negative integer")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= _MAX_LIMIT:
        return error(400, f"limit must be an integer from 0 to {_MAX_LIMIT}")
    needle = query.strip().casefold()
    hits = [
        book
        for book in state.catalog.values()
        if needle in book.title.casefold() or any(needle in a.casefold() for a in book.authors)
    ]
    content = [
        {
            "title": book.title,
            "dynamicSlugId": book.slug,
            "bookId": book.book_id,
            "authors": _people(book.authors),
        }
        for book in hits[offset : offset + limit]
    ]
    return 200, {"content": content, "totalHits": len(hits)}
