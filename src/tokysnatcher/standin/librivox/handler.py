"""The LibriVox stand-in's two listeners: the site (API, pages, RSS, archive.org's metadata and
``/download/`` redirects) and the file host the redirects lead to (another host name and port).

Both reuse the tokybook stand-in's handler plumbing (faults, bandwidth, connection counting).
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tokysnatcher.standin.content import decode_path
from tokysnatcher.standin.handler import StandinHandler
from tokysnatcher.standin.librivox.catalog import LvBook
from tokysnatcher.standin.librivox.feed import (
    FILE_MTIME,
    ItemFile,
    audiobooks,
    book_page,
    http_date,
    item_metadata,
    params_of,
    rss,
)
from tokysnatcher.standin.ranges import Validators, answer_range
from tokysnatcher.standin.state import SiteState

_TYPES = {".mp3": "audio/mpeg", ".jpg": "image/jpeg", ".png": "image/png"}


@dataclass
class LvData:
    """What both listeners serve, and the LibriVox-specific switches tests turn.

    ``redirect=False`` serves files at ``/download/`` directly (no second host involved).
    ``not_found_status`` is the status of the "could not be found" body (some clients' servers
    send 200). ``throttle`` API requests answer 429 with ``retry_after`` seconds; the first
    ``corrupt_first`` requests of each file get corrupted bytes (same length); the first
    ``wrong_md5_first`` metadata answers list wrong md5 sums.
    """

    books: dict[int, LvBook]
    items: dict[str, dict[str, ItemFile]] = field(default_factory=dict)
    tiles: dict[str, Path] = field(default_factory=dict)
    base_url: str = ""
    file_host: str = ""
    redirect: bool = True
    not_found_status: int = 404
    throttle: int = 0
    retry_after: int = 1
    corrupt_first: int = 0
    wrong_md5_first: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: Counter[str] = field(default_factory=Counter)

    def by_slug(self, slug: str) -> LvBook | None:
        """The book whose page is ``/<slug>/``."""
        return next((book for book in self.books.values() if book.slug == slug), None)

    def take(self, counter: str) -> int:
        """How many times ``counter`` was taken before (thread-safe)."""
        with self.lock:
            before = self.served[counter]
            self.served[counter] += 1
            return before

    def throttled(self) -> bool:
        """Whether this API request is one of the ``throttle`` that answer 429."""
        with self.lock:
            if self.throttle <= 0:
                return False
            self.throttle -= 1
            return True


class LvState(SiteState):
    """One listener's state (faults, stats, connections) and the data both share."""

    def __init__(self, data: LvData, **kwargs: Any) -> None:
        super().__init__(catalog={}, **kwargs)
        self.lv = data


def _dumps(body: dict[str, Any]) -> bytes:
    # PHP's json_encode escapes "/" and non-ASCII (§1 Types): clients must read both.
    return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode("ascii")


class _LvHandler(StandinHandler):
    state: LvState

    def serve_file(self, item: ItemFile, key: str, *, head: bool) -> None:
        """A file of an item: its length, type, ``Last-Modified`` and ``ETag``, and ``Range``
        and ``If-Range`` answered as archive.org does (206, 416, or 200 for another version).
        """
        fault = None if head else self.state.next_fault(key)
        if fault is not None and fault.kind == "5xx":
            self._send_json(fault.status, {"error": "injected server error"})
            return
        if fault is not None and fault.kind == "429":
            retry = self.state.faults.retry_after_header
            self._send_json(429, {"error": "slow down"}, headers={"Retry-After": retry})
            return
        original = self.state.body(item.body)
        data = original
        if not head and self.state.lv.take(f"corrupt|{key}") < self.state.lv.corrupt_first:
            self.state.stats.count_fault("corrupt", key)
            middle = len(data) // 2
            data = (
                data[:middle]
                + bytes(b ^ 0xFF for b in data[middle : middle + 64])
                + data[middle + 64 :]
            )
        faults = self.state.faults
        epoch = faults.validator_epoch
        validators = Validators(
            '"' + hashlib.md5(original + bytes(epoch)).hexdigest()[:16] + '"',
            http_date(FILE_MTIME + 86400 * epoch),
        )
        answer = answer_range(
            self.headers.get("Range"),
            self.headers.get("If-Range"),
            len(data),
            validators,
            honour_ranges=not faults.ignore_range,
        )
        if answer.status == 416:
            self._send_json(416, {"error": "range not satisfiable"}, headers=answer.headers)
            return
        ctype = _TYPES.get(Path(item.name).suffix.lower(), "application/octet-stream")
        piece = data[answer.start : answer.stop]
        self._send(answer.status, ctype, [piece], headers=answer.headers, fault=fault, head=head)

    def do_POST(self) -> None:
        """Nothing here takes a POST."""
        self._count("other", self.raw_path())
        self._send_json(405, {"error": "method not allowed"})


class LibrivoxHandler(_LvHandler):
    """librivox.org (API, pages, RSS) and archive.org (metadata, ``/download/``, tiles)."""

    def _get(self, *, head: bool) -> None:
        self._pause(self.state.faults.latency)
        path, _, query = self.path.partition("?")
        lv = self.state.lv
        params = params_of(path, query)
        pieces = [decode_path(p) for p in path.split("/") if p]
        if params is not None:
            self._count("api", path)
            self._api(params, head=head)
        elif len(pieces) == 2 and pieces[0] == "rss" and pieces[1].isdigit():
            self._count("rss", path)
            book = lv.books.get(int(pieces[1]))
            if book is None:
                self._send_json(404, {"error": "no such feed"}, head=head)
            else:
                body = rss(lv.base_url, book)
                self._send(200, "application/rss+xml; charset=utf-8", [body], head=head)
        elif len(pieces) == 3 and pieces[0] == "download":
            self._count("download", path)
            self._download(pieces[1], pieces[2], path, head=head)
        elif len(pieces) == 2 and pieces[0] == "metadata":
            self._count("metadata", path)
            self._metadata(pieces[1], head=head)
        elif len(pieces) == 3 and pieces[:2] == ["services", "img"]:
            self._count("cover", path)
            tile = lv.tiles.get(pieces[2])
            if tile is None:
                self._send_json(404, {"error": "no such item"}, head=head)
            else:
                self._send(200, "image/jpeg", [self.state.body(tile)], head=head)
        elif len(pieces) == 1 and lv.by_slug(pieces[0]) is not None:
            self._count("page", path)
            page = book_page(lv.base_url, lv.by_slug(pieces[0]))  # type: ignore[arg-type]
            self._send(200, "text/html; charset=utf-8", [page], head=head)
        else:
            self._count("other", path)
            self._send(404, "text/html; charset=utf-8", [b"<h1>Not Found</h1>"], head=head)

    def _api(self, params: dict[str, str], *, head: bool) -> None:
        lv = self.state.lv
        if lv.throttled():
            self.state.stats.count_fault("429", self.path)
            retry = {"Retry-After": str(lv.retry_after)}
            self._send_json(429, {"error": "slow down"}, headers=retry)
            return
        if self.state.next_api_fault(self.raw_path()):
            self._send_json(503, {"error": "injected API failure"}, head=head)
            return
        if params.get("format") != "json":
            self._send(200, "application/xml", [b'<?xml version="1.0"?><xml></xml>'], head=head)
            return
        status, body = audiobooks(
            lv.books, params, base_url=lv.base_url, not_found_status=lv.not_found_status
        )
        self._send(status, "application/json", [_dumps(body)], head=head)

    def _download(self, identifier: str, name: str, key: str, *, head: bool) -> None:
        lv = self.state.lv
        item = lv.items.get(identifier, {}).get(name)
        if item is None:
            self._send_json(404, {"error": "no such file"}, head=head)
            return
        if not lv.redirect:
            self.serve_file(item, key, head=head)
            return
        # archive.org answers with one hop to the server that holds the item (§2 Redirects).
        node = zlib.crc32(identifier.encode()) % 30 + 1
        where = f"{lv.file_host}/{node}/items/{quote(identifier, safe='')}/{quote(name, safe='')}"
        self._send(302, "text/html", [b""], headers={"Location": where}, head=head)

    def _metadata(self, identifier: str, *, head: bool) -> None:
        lv = self.state.lv
        files = lv.items.get(identifier)
        if files is None:
            self._send_json(200, {}, head=head)
            return
        wrong = lv.take("metadata") < lv.wrong_md5_first
        data = {name: self.state.body(item.body) for name, item in files.items()}
        answer = item_metadata(identifier, files, data, wrong_md5=wrong)
        self._send(200, "application/json", [_dumps(answer)], head=head)


class FileHostHandler(_LvHandler):
    """The host ``/download/`` redirects to: ``/<n>/items/<identifier>/<file>``.

    Records every request's headers (``stats.other_host_requests``) so tests can check that
    nothing meant for the site reached it.
    """

    def _get(self, *, head: bool) -> None:
        self.state.stats.record_other_host(self.command, self.path, dict(self.headers.items()))
        self._pause(self.state.faults.latency)
        path = self.raw_path()
        pieces = [decode_path(p) for p in path.split("/") if p]
        self._count("file", path)
        item = None
        if len(pieces) == 4 and pieces[1] == "items":
            item = self.state.lv.items.get(pieces[2], {}).get(pieces[3])
        if item is None:
            self._send_json(404, {"error": "no such file"}, head=head)
            return
        self.serve_file(item, path, head=head)
