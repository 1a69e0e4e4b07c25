"""The request handler of the stand-in site's main listener: API, audio, files, covers."""

from __future__ import annotations

import html
import json
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tokysnatcher.standin import api
from tokysnatcher.standin.catalog import AUDIO_PREFIX, COVERS_PREFIX, FILES_PREFIX
from tokysnatcher.standin.content import (
    BIG_SEGMENT_BYTES,
    Resource,
    Route,
    decode_path,
    short_body,
)
from tokysnatcher.standin.faults import FaultDecision
from tokysnatcher.standin.quiet import Abort, QuietHandler
from tokysnatcher.standin.ranges import answer_range, validators_for
from tokysnatcher.standin.tokens import TokenCheck

_MAX_BODY = 1024 * 1024
_CHUNK = 64 * 1024
_CONTENT_TYPES = {
    Resource.PLAYLIST: "application/vnd.apple.mpegurl",
    Resource.SEGMENT: "video/mp2t",
    Resource.ENDLESS: "video/mp2t",
    Resource.BIG: "video/mp2t",
    Resource.SHORT: "video/mp2t",
    Resource.JUNK: "video/mp2t",
    Resource.FILE: "audio/mpeg",
}


class StandinHandler(QuietHandler):
    """The main listener: JSON API, HLS audio, direct files, covers, book pages."""

    media_host = False  # True on the listener media is redirected to (see MediaHostHandler)

    def setup(self) -> None:
        """Count the connection and apply the connection-setup delay fault."""
        super().setup()
        self.state.stats.connection_opened()
        self._body_started = 0.0
        self._body_sent = 0
        self._kind = ""

    def handle(self) -> None:
        """Delay a new connection (simulated TLS handshake), then serve it."""
        try:
            self._down_check()
            delay = self.state.faults.connection_setup
            if delay > 0:
                self._pause(delay)
        except Abort:
            self.close_connection = True
            return
        super().handle()

    def finish(self) -> None:
        """Count the connection as closed."""
        try:
            super().finish()
        finally:
            self.state.stats.connection_closed()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Count every status line sent."""
        if isinstance(code, int):
            self.state.stats.count_status(code)
        super().log_request(code, size)

    # -- entry points ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        """Audio, files, covers and pages."""
        self._get(head=False)

    def do_HEAD(self) -> None:
        """Like GET without the body (and without error faults)."""
        self._get(head=True)

    def do_POST(self) -> None:
        """The JSON API."""
        self._down_check()
        self._pause(self.state.faults.latency)
        path = self.raw_path()
        kind = api.API_PATHS.get(path)
        self._count(kind or "other", path)
        body = self._read_body()
        if kind is None:
            self._send_json(*api.error(404, f"no API endpoint {path}"))
            return
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        if not isinstance(parsed, dict):
            self._send_json(*api.error(400, "the body must be a JSON object"))
            return
        if self.state.next_api_fault(path):
            self._send_json(*api.error(503, "injected API failure"))
            return
        handler = {"details": api.details, "playlist": api.playlist, "search": api.search}[kind]
        self._send_json(*handler(self.state, parsed))

    def _get(self, *, head: bool) -> None:
        self._down_check()
        self._pause(self.state.faults.latency)
        path = self.raw_path()
        if path.startswith(AUDIO_PREFIX):
            self._audio(path, head=head)
        elif path.startswith(FILES_PREFIX):
            route = self.state.routes.files.get(decode_path(path[len(FILES_PREFIX) :]))
            self._count("file", path)
            if route is None:
                self._send_json(*api.error(404, "no such file"), head=head)
            elif self._missing(route, path):
                self._send_json(*api.error(404, "this track is gone"), head=head)
            else:
                self._serve_route(route, path, head=head)
        elif path.startswith(COVERS_PREFIX):
            self._count("cover", path)
            cover = self.state.covers.get(path[len(COVERS_PREFIX) :].removesuffix(".jpg"))
            if cover is None:
                self._send_json(*api.error(404, "no such cover"), head=head)
            else:
                self._send(200, "image/jpeg", [self.state.body(cover)], head=head)
        else:
            self._page(path, head=head)

    # -- audio ---------------------------------------------------------------------------------
    def _audio(self, path: str, *, head: bool) -> None:
        route = self.state.routes.audio.get(decode_path(path[len(AUDIO_PREFIX) :]))
        if route is not None:
            kind = route.stat_kind
        else:
            kind = "m3u8" if path.endswith(".m3u8") else "segment"
        self._count(kind, path)
        faults = self.state.faults
        book_id = self.headers.get("X-Audiobook-Id")
        verdict = self.state.tokens.use(
            self.headers.get("X-Stream-Token"),
            book_id,
            ttl=faults.token_ttl,
            max_uses=faults.token_max_uses,
        )
        if verdict.check in (TokenCheck.MISSING, TokenCheck.BAD):
            what = "missing" if verdict.check is TokenCheck.MISSING else "invalid"
            self._send_json(*api.error(401, f"stream token {what}"), head=head)
            return
        if verdict.check is TokenCheck.EXPIRED:
            self.state.stats.count_fault("token_expired", path)
            self._send_json(*api.error(403, "stream token expired"), head=head)
            return
        if route is None:
            self._send_json(*api.error(404, "no such audio"), head=head)
            return
        if book_id != self.state.catalog[route.slug].audio_book_id:
            self._send_json(*api.error(401, "token is for another audiobook"), head=head)
            return
        claimed = self.headers.get("X-Track-Src")
        if (claimed is None and not verdict.lenient) or (claimed not in (None, self.path)):
            self._send_json(*api.error(403, "X-Track-Src does not match the request"), head=head)
            return
        if self._missing(route, path):
            self._send_json(*api.error(404, "this track is gone"), head=head)
            return
        self._serve_route(route, path, head=head)

    def _missing(self, route: Route, path: str) -> bool:
        if (route.slug, route.index) in self.state.faults.missing_tracks:
            self.state.stats.count_fault("missing_track", path)
            return True
        return False

    def _serve_route(self, route: Route, key: str, *, head: bool) -> None:
        if (
            self.state.faults.redirect_media
            and not self.media_host
            and route.resource in (Resource.FILE, Resource.SEGMENT)
        ):
            # As archive.org does: the file itself lives on another host (faults.redirect_media).
            location = self.state.media_host_url + self.path
            self._send(302, "text/plain", [b""], headers={"Location": location}, head=head)
            return
        if not self.state.audio_started():
            self.state.stats.count_fault("concurrent", key)
            retry = self.state.faults.retry_after_header
            busy = api.error(429, "too many requests at once")
            self._send_json(*busy, headers={"Retry-After": retry}, head=head)
            return
        try:
            self._serve_audio(route, key, head=head)
        finally:
            self.state.audio_ended()

    def _serve_audio(self, route: Route, key: str, *, head: bool) -> None:
        fault = None if head else self.state.next_fault(key)
        if fault is not None and fault.kind == "5xx":
            self._send_json(*api.error(fault.status, "injected server error"))
            return
        if fault is not None and fault.kind == "429":
            retry = self.state.faults.retry_after_header
            self._send_json(*api.error(429, "slow down"), headers={"Retry-After": retry})
            return
        ctype = _CONTENT_TYPES[route.resource]
        if route.resource is Resource.PLAYLIST:
            self._send(200, ctype, [route.playlist], fault=fault, head=head)
        elif route.resource is Resource.ENDLESS:
            self._send(200, ctype, self._endless(), length=None, fault=fault, head=head)
        elif route.resource is Resource.BIG:
            chunks = self._zeros(BIG_SEGMENT_BYTES)
            self._send(200, ctype, chunks, length=BIG_SEGMENT_BYTES, fault=fault, head=head)
        elif route.resource is Resource.SHORT:
            assert route.body is not None
            body = short_body(self.state.body(route.body))
            self._send(200, ctype, [body], length=None, fault=fault, head=head)
        else:
            assert route.body is not None
            body = self.state.body(route.body)
            self._send_ranged(ctype, body, route.body, fault=fault, head=head)

    def _send_ranged(
        self, ctype: str, data: bytes, key: Path, *, fault: FaultDecision | None, head: bool
    ) -> None:
        faults = self.state.faults
        answer = answer_range(
            self.headers.get("Range"),
            self.headers.get("If-Range"),
            len(data),
            validators_for(str(key), len(data), faults.validator_epoch),
            honour_ranges=not faults.ignore_range,
        )
        if answer.status == 416:
            self._send_json(
                *api.error(416, "range not satisfiable"), headers=answer.headers, head=head
            )
            return
        piece = data[answer.start : answer.stop]
        self._send(answer.status, ctype, [piece], headers=answer.headers, fault=fault, head=head)

    def _endless(self) -> Iterator[bytes]:
        # Null TS packets: looks like MPEG-TS, carries nothing, never ends.
        chunk = (b"\x47\x1f\xff\x10" + b"\xff" * 184) * (_CHUNK // 188)
        while True:
            if self.state.stop_event.is_set():
                raise Abort
            yield chunk

    def _zeros(self, total: int) -> Iterator[bytes]:
        chunk = bytes(_CHUNK * 4)
        for start in range(0, total, len(chunk)):
            if self.state.stop_event.is_set():
                raise Abort
            yield chunk[: total - start]

    # -- other pages --------------------------------------------------------------------------
    def _page(self, path: str, *, head: bool) -> None:
        slug = path.removeprefix("/post/").strip("/")
        book = self.state.catalog.get(slug) if path.startswith("/post/") else None
        if book is None and path != "/":
            self._count("other", path)
            self._send_json(*api.error(404, "not found"), head=head)
            return
        self._count("page", path)
        if book is not None:
            text = f"<h1>{html.escape(book.title)}</h1><p>{html.escape(', '.join(book.authors))}"
        else:
            text = "<h1>tokybook stand-in</h1>" + "".join(
                f'<p><a href="/post/{slug}">{html.escape(b.title)}</a>'
                for slug, b in self.state.catalog.items()
            )
        page = f"<!doctype html><html><body>{text}</body></html>".encode()
        self._send(200, "text/html; charset=utf-8", [page], head=head)

    # -- plumbing -----------------------------------------------------------------------------
    def _count(self, kind: str, path: str) -> None:
        """Count the request under ``kind``, which also picks the faults its body gets."""
        self._kind = kind
        self.state.stats.count_request(kind, path)

    def _read_body(self) -> bytes:
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or not (length_text or "0").isdigit():
            self.close_connection = True  # we cannot tell where the body ends
            return b""
        length = int(length_text or "0")
        if length > _MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length)

    def _send_json(
        self,
        status: int,
        body: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send(status, "application/json", [data], headers=headers, head=head)

    def _send(
        self,
        status: int,
        ctype: str,
        chunks: Iterable[bytes],
        *,
        length: int | None = -1,
        headers: dict[str, str] | None = None,
        fault: FaultDecision | None = None,
        head: bool = False,
    ) -> None:
        """Send one response; ``length=-1`` means "sum of chunks", None means close-delimited."""
        if length == -1:
            chunks = list(chunks)
            length = sum(len(chunk) for chunk in chunks)
        self._body_sent = 0
        if fault is not None and fault.before_response and fault.kind in ("reset", "stall"):
            self._fail_connection(fault)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        try:
            self._send_body(chunks, length, fault)
        finally:
            self.state.stats.record_served(
                self.media_host, self.raw_path(), status, self.headers.get("Range"), self._body_sent
            )

    def _send_body(
        self, chunks: Iterable[bytes], length: int | None, fault: FaultDecision | None
    ) -> None:
        limit: int | None = None
        if fault is not None and fault.kind in ("truncate", "reset", "stall"):
            total = length if length is not None else 4 * _CHUNK
            limit = max(0, min(total - 1, int(total * fault.fraction)))
        self._body_started, self._body_sent = time.monotonic(), 0
        for chunk in chunks:
            piece = chunk if limit is None else chunk[: limit - self._body_sent]
            self._write(piece)
            if limit is not None and self._body_sent >= limit:
                break
        if limit is not None and fault is not None:
            self._fail_connection(fault)

    def _fail_connection(self, fault: FaultDecision) -> None:
        """Finish a truncate/reset/stall fault: the connection ends without a full response."""
        self.close_connection = True
        if fault.kind == "stall":
            self._pause(self.state.faults.stall_seconds)
        elif fault.kind == "reset":
            try:
                # SO_LINGER 0 turns close() into an RST; the makefile reference must go first.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.rfile.close()
                self.connection.close()
            except OSError:
                pass
        raise Abort

    def _write(self, data: bytes) -> None:
        faults = self.state.faults
        if self._kind in faults.trickle:
            for start in range(0, len(data), faults.trickle_bytes):
                piece = data[start : start + faults.trickle_bytes]
                self.wfile.write(piece)
                self.wfile.flush()
                self._body_sent += len(piece)
                self.state.stats.add_bytes(len(piece))
                self._pause(faults.trickle_every)
            return
        if faults.bandwidth or faults.total_bandwidth or faults.outage_seconds:
            self._write_paced(data)
            return
        self.wfile.write(data)
        self._body_sent += len(data)
        self.state.stats.add_bytes(len(data))

    def _write_paced(self, data: bytes) -> None:
        """Send ``data`` under the total bandwidth cap (and the per-response one), in pieces,
        cutting the connection if the site goes down meanwhile."""
        faults = self.state.faults
        rates = [rate for rate in (faults.bandwidth, faults.total_bandwidth) if rate]
        step = max(1024, min(16 * 1024, int(min(rates) / 20))) if rates else 64 * 1024
        for start in range(0, len(data), step):
            self._down_check()
            piece = data[start : start + step]
            self._pause(self.state.total_slot(len(piece)))
            self.wfile.write(piece)
            self._body_sent += len(piece)
            self.state.stats.add_bytes(len(piece))
            if faults.bandwidth:
                due = self._body_started + self._body_sent / faults.bandwidth
                self._pause(due - time.monotonic())

    def _down_check(self) -> None:
        """During an outage window: reset the connection (nothing more is answered on it)."""
        if self.state.site_down():
            self.state.stats.count_fault("outage", getattr(self, "path", ""))
            self._fail_connection(FaultDecision(kind="reset"))

    def _pause(self, seconds: float) -> None:
        if seconds > 0 and self.state.stop_event.wait(seconds):
            raise Abort


class MediaHostHandler(StandinHandler):
    """The host media is redirected to (``Faults.redirect_media``): files and segments only.

    It asks for no token (like a storage host behind a signed redirect) and records every
    request's headers in ``site.stats.other_host_requests``: a client must send it none of the
    site's.
    """

    media_host = True

    def _get(self, *, head: bool) -> None:
        self.state.stats.record_other_host(self.command, self.path, dict(self.headers.items()))
        self._pause(self.state.faults.latency)
        path = self.raw_path()
        route = None
        for prefix, table in (
            (AUDIO_PREFIX, self.state.routes.audio),
            (FILES_PREFIX, self.state.routes.files),
        ):
            if path.startswith(prefix):
                route = table.get(decode_path(path[len(prefix) :]))
        if route is None or route.resource not in (Resource.FILE, Resource.SEGMENT):
            self._count("other", path)
            self._send_json(*api.error(404, "no such file"), head=head)
            return
        self._count(route.stat_kind, path)
        self._serve_route(route, path, head=head)
