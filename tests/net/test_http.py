"""Tests for net/http.py: bounded reads, stalls, limits and failure kinds of real transfers.

A small scripted HTTP server on 127.0.0.1 misbehaves on purpose (silence, trickles, resets,
truncation, endless and oversized bodies); the real ``Fetcher`` with a real pooled session
talks to it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import urllib3

from helpers import NEEDS_POSIX_KERNEL, posix_only
from tokysnatcher.errors import DiskError, DownloadError, FailureKind
from tokysnatcher.net import http, parts
from tokysnatcher.net.hls import parse_media_playlist
from tokysnatcher.net.http import (
    STALL_MIN_BYTES,
    STALL_SLACK,
    USER_AGENT,
    Fetcher,
    make_session,
)
from tokysnatcher.net.limits import RateLimiter
from tokysnatcher.standin import StandinSite

if sys.platform != "win32":  # POSIX-only modules (the tests skip on Windows)
    import resource

K = FailureKind
STALL = 0.5  # the stall timeout of every fetcher here: short, so the tests stay fast
PULSE_STALL = 1.5  # the window of the one test whose margins are a fraction of it
DEADLINE_STALL = 1.0  # the window of the deadline tests: the drip's pieces come 0.5 s apart
BODY = bytes(range(256)) * 400  # 100 KiB


class _Scripted(socketserver.StreamRequestHandler):
    """Answers by path; records each request's headers in ``server.seen``."""

    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.opened += 1
            self.server.active += 1
            self.server.peak = max(self.server.peak, self.server.active)

    def finish(self) -> None:
        with self.server.lock:
            self.server.active -= 1
        super().finish()

    def handle(self) -> None:
        while True:
            request_line = self.rfile.readline().decode("latin-1")
            if not request_line:
                return
            headers = {}
            while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            path = request_line.split()[1]
            self.server.seen.append((path, headers))
            if not self.answer(path, headers):
                return

    def head(self, status: str, length: int | None, extra: str = "") -> None:
        size = f"Content-Length: {length}\r\n" if length is not None else "Connection: close\r\n"
        self.wfile.write(f"HTTP/1.1 {status}\r\n{size}{extra}\r\n".encode())

    def pause(self, seconds: float) -> bool:
        return not self.server.release.wait(seconds)

    def answer(self, path: str, headers: dict[str, str]) -> bool:
        """Serve one request; False closes the connection."""
        if path == "/ok":
            self.head("200 OK", len(BODY))
            self.wfile.write(BODY)
            return True
        if path == "/pulse":
            # Never a stall, only just (for a window of PULSE_STALL): a trickle shrinks what is
            # left of the window, a KiB opens a fresh one, then comes a silence longer than the
            # trickle had left but shorter than a whole window. Margins: 0.3 s either way.
            step = PULSE_STALL / 10
            self.head("200 OK", 2600)
            for offset in range(0, 500, 100):
                self.wfile.write(BODY[offset : offset + 100])
                self.wfile.flush()
                self.pause(step)
            self.wfile.write(BODY[500:1500])
            self.wfile.flush()
            self.pause(8 * step)
            self.wfile.write(BODY[1500:2600])
            return True
        if path == "/late-trickle":
            # Under a KiB late in the window, then nothing: the window still ends on time.
            self.head("200 OK", len(BODY))
            self.wfile.flush()
            self.pause(0.6 * PULSE_STALL)
            self.wfile.write(BODY[:500])
            self.wfile.flush()
            self.pause(10)
            return False
        if path == "/encoding":
            body = headers.get("accept-encoding", "").encode()
            self.head("200 OK", len(body))
            self.wfile.write(body)
            return True
        if path == "/silent-head":
            self.pause(10)
        elif path == "/silent-body":
            self.head("200 OK", len(BODY))
            self.wfile.write(BODY[:2000])
            self.wfile.flush()
            self.pause(10)
        elif path == "/trickle":
            # 100 bytes every 0.1 s: always something, never 1 KiB in half a second.
            self.head("200 OK", len(BODY))
            for start in range(0, len(BODY), 100):
                self.wfile.write(BODY[start : start + 100])
                self.wfile.flush()
                if not self.pause(0.1):
                    break
        elif path in ("/drip", "/steady"):
            # /drip: 1,100 bytes every 0.5 s, a KiB in every window of DEADLINE_STALL but only
            # 2.2 KB/s; /steady: 8 KiB every 0.2 s (40 KiB/s), slow but honest.
            size, every = (1100, 0.5) if path == "/drip" else (8192, 0.2)
            self.head("200 OK", len(BODY))
            for start in range(0, len(BODY), size):
                self.wfile.write(BODY[start : start + size])
                self.wfile.flush()
                if not self.pause(every):
                    break
            return path == "/steady"
        elif path == "/truncated":
            self.head("200 OK", len(BODY))
            self.wfile.write(BODY[:5000])
        elif path == "/reset":
            self.head("200 OK", len(BODY))
            self.wfile.write(BODY[:5000])
            self.wfile.flush()
            linger = struct.pack("ii", 1, 0)  # close with RST, as a crashing server would
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        elif path == "/endless":
            self.head("200 OK", None)
            chunk = b"\x47" + bytes(187)
            while not self.server.release.is_set():
                try:
                    self.wfile.write(chunk * 64)
                except OSError:
                    break
        elif path == "/huge":
            self.head("200 OK", 80 * 1024 * 1024)
            self.pause(10)  # the client must give up on the header alone
        elif path.startswith("/hops/"):  # /hops/N: N redirects, then /ok
            hops = int(path.rsplit("/", 1)[1])
            self.head("302 Found", 0, f"Location: {f'/hops/{hops - 1}' if hops > 1 else '/ok'}\r\n")
            return True
        elif path in ("/loop", "/loop-back"):
            target = "/loop-back" if path == "/loop" else "http://127.0.0.1:%d/loop"
            target = target.replace("%d", str(self.server.server_address[1]))
            self.head("301 Moved Permanently", 0, f"Location: {target}\r\n")
            return True
        elif path == "/to-file":
            self.head("307 Temporary Redirect", 0, "Location: file:///etc/passwd\r\n")
            return True
        elif path == "/no-location":
            self.head("302 Found", 0)
            return True
        elif path.startswith("/away/"):  # to this same server under another host name
            port = self.server.server_address[1]
            self.head(
                "308 Permanent Redirect", 0, f"Location: http://localhost:{port}/encoding\r\n"
            )
            return True
        elif path.startswith("/ranged/"):
            return self.ranged(path, headers)
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.head(f"{code} Whatever", 0, "Retry-After: 3\r\n")
            return True
        return False

    def ranged(self, path: str, headers: dict[str, str]) -> bool:
        """``/ranged/<mode>/<name>``: BODY with a validator; the first request is reset at 5000.

        Modes: ``etag``/``date`` (Range honoured; ETag or only Last-Modified), ``ignore`` (always
        200), ``changed`` (a new ETag after the first request), ``416``, ``wrong`` (a 206 that
        starts a byte late), ``weak`` (only a weak ETag: nothing to continue against).
        """
        mode = path.split("/")[2]
        with self.server.lock:
            count = self.server.counts[path] = self.server.counts.get(path, 0) + 1
        etag = '"v2"' if mode == "changed" and count > 1 else '"v1"'
        validator = {
            "date": "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
            "weak": 'ETag: W/"v1"\r\n',
        }.get(mode, f"ETag: {etag}\r\n")
        wanted = headers.get("range")
        if wanted and mode != "ignore":
            if mode == "416":
                self.head("416 Range Not Satisfiable", 0, f"Content-Range: bytes */{len(BODY)}\r\n")
                return True
            current = validator.split(": ", 1)[1].strip()
            if headers.get("if-range") == current:
                start = int(wanted.removeprefix("bytes=").rstrip("-")) + (mode == "wrong")
                piece = BODY[start:]
                extra = f"Content-Range: bytes {start}-{len(BODY) - 1}/{len(BODY)}\r\n"
                self.head("206 Partial Content", len(piece), extra + validator)
                self.wfile.write(piece)
                return True
        self.head("200 OK", len(BODY), validator)
        if count > 1:
            self.wfile.write(BODY)
            return True
        self.wfile.write(BODY[:5000])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.counts: dict[str, int] = {}
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.opened = self.active = self.peak = 0  # TCP connections: accepted, open, most open

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gives up mid-body is what these tests are about: no traceback."""


@contextlib.contextmanager
def running_server() -> Iterator[_Server]:
    running = _Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.release.set()
        running.shutdown()
        running.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    with running_server() as running:
        yield running


def base(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    session = make_session(4)
    yield Fetcher(session, connect_timeout=2.0, stall_timeout=STALL, stop=threading.Event())
    session.close()


def fetch_error(call: Callable[[], object]) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        call()
    return caught.value


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_body_lands_under_its_name_only_when_complete(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    counted: list[int] = []
    dest = tmp_path / "000001.ts"
    size = fetcher.fetch_to_file(
        base(server) + "/ok", {}, dest, what="segment 1", limit=1 << 20, on_bytes=counted.append
    )
    assert size == len(BODY) == sum(counted)
    assert len(counted) <= 2  # reported in batches of 64 KiB or more, not once per read
    assert dest.read_bytes() == BODY
    assert files_in(tmp_path) == ["000001.ts"]
    assert fetcher.transfer.active == 0


def test_media_is_asked_for_uncompressed(fetcher: Fetcher, server: _Server) -> None:
    # A gzip body would make Content-Length disagree with what we count, and could expand past
    # our limits before we see it.
    body = fetcher.fetch_bytes(base(server) + "/encoding", {}, what="playlist", limit=1024)
    assert body == b"identity"


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/silent-head", "no progress"),  # no status line at all
        ("/silent-body", "no progress"),  # some body, then nothing
        ("/trickle", "under 1 KiB"),  # always a little, never enough
    ],
)
def test_a_stall_is_a_timeout_within_the_stall_window(
    fetcher: Fetcher, server: _Server, tmp_path: Path, path: str, words: str
) -> None:
    started = time.monotonic()
    error = fetch_error(
        lambda: fetcher.fetch_to_file(
            base(server) + path, {}, tmp_path / "s.ts", what="segment 2", limit=1 << 20
        )
    )
    elapsed = time.monotonic() - started
    assert error.kind is K.TIMEOUT
    assert words in error.message
    assert error.message.startswith("segment 2: ")
    # SPEC §5: aborted once the window passes without 1 KiB, never before; a stall may be seen
    # up to STALL_SLACK of the window late, and the rest of the margin is for a busy machine.
    assert STALL - 0.02 <= elapsed < STALL * (1 + STALL_SLACK) + 1.0, elapsed
    assert files_in(tmp_path) == []
    assert STALL_MIN_BYTES == 1024


def test_a_drip_that_beats_the_stall_rule_is_cut_at_the_deadline(
    server: _Server, tmp_path: Path
) -> None:
    session = make_session(1)
    fetcher = Fetcher(
        session,
        connect_timeout=2.0,
        stall_timeout=DEADLINE_STALL,
        transfer_timeout=1.0,
        stop=threading.Event(),
    )
    started = time.monotonic()
    try:
        error = fetch_error(
            lambda: fetcher.fetch_to_file(
                base(server) + "/drip", {}, tmp_path / "s.ts", what="segment 3", limit=1 << 20
            )
        )
    finally:
        session.close()
    elapsed = time.monotonic() - started
    assert error.kind is K.TIMEOUT
    assert error.message == ("segment 3: too slow (over 1 s at under 4 KiB/s on average); stopped")
    assert "--transfer-timeout" in (error.hint or "")
    # 1 s plus a second per 4 KiB received: at 2.2 KB/s that is about 2.2 s, never the 47 s
    # the body would take.
    assert 1.0 <= elapsed < 5.0, elapsed
    assert files_in(tmp_path) == []


def test_a_slow_but_steady_transfer_outlives_the_deadline(server: _Server, tmp_path: Path) -> None:
    session = make_session(1)
    fetcher = Fetcher(
        session,
        connect_timeout=2.0,
        stall_timeout=DEADLINE_STALL,
        transfer_timeout=1.0,
        stop=threading.Event(),
    )
    started = time.monotonic()
    try:
        size = fetcher.fetch_to_file(
            base(server) + "/steady", {}, tmp_path / "s.ts", what="s", limit=1 << 20
        )
    finally:
        session.close()
    assert size == len(BODY)
    assert time.monotonic() - started > 2.0  # well past transfer_timeout, and still whole
    assert (tmp_path / "s.ts").read_bytes() == BODY


def test_a_window_opened_again_by_progress_is_not_cut_short(
    server: _Server, tmp_path: Path
) -> None:
    # The trickle leaves the socket waiting only for what remained of the window; after the
    # KiB the full window applies again, or the silence that follows would look like a stall.
    session = make_session(1)
    stop = threading.Event()
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=PULSE_STALL, stop=stop)
    dest = tmp_path / "pulse.ts"
    reports: list[tuple[float, int]] = []
    started = time.monotonic()

    def report(n: int) -> None:
        reports.append((time.monotonic() - started, n))

    try:
        size = fetcher.fetch_to_file(
            base(server) + "/pulse", {}, dest, what="s", limit=1 << 20, on_bytes=report
        )
    finally:
        session.close()
    assert size == 2600 == sum(n for _, n in reports)
    assert dest.read_bytes() == BODY[:2600]
    # A slow body is still reported as it comes (batches wait at most REPORT_EVERY), not only
    # at its end (the last bytes leave the server about 2 s in).
    assert len([t for t, _ in reports if t < 1.5]) >= 2, reports


def test_a_read_waits_only_for_what_is_left_of_the_window(server: _Server, tmp_path: Path) -> None:
    # 500 bytes at 60% of the window, then silence: the read after them must give up when
    # the window ends (within the slack), not a whole window later (160%).
    session = make_session(1)
    stop = threading.Event()
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=PULSE_STALL, stop=stop)
    started = time.monotonic()
    try:
        error = fetch_error(
            lambda: fetcher.fetch_to_file(
                base(server) + "/late-trickle", {}, tmp_path / "s.ts", what="s", limit=1 << 20
            )
        )
    finally:
        session.close()
    elapsed = time.monotonic() - started
    assert error.kind is K.TIMEOUT
    assert PULSE_STALL - 0.02 <= elapsed < PULSE_STALL * (1 + STALL_SLACK) + 0.6, elapsed
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("path", "kind", "words"),
    [
        ("/truncated", K.NETWORK, ""),
        ("/reset", K.NETWORK, ""),
        ("/hops/4", K.INVALID_MEDIA, "more than 3 redirects; refused"),
        ("/loop", K.INVALID_MEDIA, "redirects in a loop; refused"),
        ("/to-file", K.INVALID_MEDIA, "a redirect to something other than http(s); refused"),
        ("/no-location", K.INVALID_MEDIA, "HTTP 302 Found"),
        ("/status/404", K.NOT_FOUND, "HTTP 404"),
        ("/status/410", K.NOT_FOUND, "HTTP 410"),
        ("/status/401", K.AUTH, "HTTP 401"),
        ("/status/403", K.AUTH, "HTTP 403"),
        ("/status/500", K.HTTP_5XX, "HTTP 500"),
        ("/status/503", K.HTTP_5XX, "HTTP 503"),
        ("/status/429", K.RATE_LIMITED, "HTTP 429"),
        ("/status/400", K.INVALID_MEDIA, "HTTP 400"),
    ],
)
def test_failures_get_their_kind_and_leave_nothing_behind(
    fetcher: Fetcher, server: _Server, tmp_path: Path, path: str, kind: FailureKind, words: str
) -> None:
    error = fetch_error(
        lambda: fetcher.fetch_to_file(
            base(server) + path, {}, tmp_path / "s.ts", what="segment 3", limit=1 << 20
        )
    )
    assert error.kind is kind, error.message
    assert words in error.message
    assert files_in(tmp_path) == []
    assert fetcher.transfer.active == 0


def test_retry_after_is_passed_on(fetcher: Fetcher, server: _Server) -> None:
    error = fetch_error(
        lambda: fetcher.fetch_bytes(base(server) + "/status/429", {}, what="playlist", limit=9)
    )
    assert (error.kind, error.retry_after) == (K.RATE_LIMITED, 3.0)


def test_a_declared_size_over_the_limit_is_refused_before_the_body(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    started = time.monotonic()
    error = fetch_error(
        lambda: fetcher.fetch_to_file(
            base(server) + "/huge", {}, tmp_path / "s.ts", what="segment 4", limit=64 << 20
        )
    )
    assert error.kind is K.INVALID_MEDIA
    assert "83886080 bytes is over the 64 MiB limit" in error.message
    assert time.monotonic() - started < STALL  # decided on the header, not by a stall
    assert files_in(tmp_path) == []


def test_an_endless_body_is_cut_at_the_limit(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    counted: list[int] = []
    error = fetch_error(
        lambda: fetcher.fetch_to_file(
            base(server) + "/endless",
            {},
            tmp_path / "s.ts",
            what="segment 5",
            limit=256 * 1024,
            on_bytes=counted.append,
        )
    )
    assert error.kind is K.INVALID_MEDIA
    assert "over the 0.25 MiB limit" in error.message
    assert sum(counted) <= 256 * 1024 + 64 * 1024  # at most one read past the limit
    assert files_in(tmp_path) == []


def test_a_playlist_body_over_its_limit_is_refused(fetcher: Fetcher, server: _Server) -> None:
    error = fetch_error(
        lambda: fetcher.fetch_bytes(base(server) + "/ok", {}, what="playlist", limit=1000)
    )
    assert error.kind is K.INVALID_MEDIA


def test_a_stale_or_stopped_transfer_is_cancelled(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    error = fetch_error(
        lambda: fetcher.fetch_to_file(
            base(server) + "/trickle",
            {},
            tmp_path / "s.ts",
            what="segment 6",
            limit=1 << 20,
            cancelled=lambda: True,
        )
    )
    assert error.kind is K.CANCELLED
    fetcher.stop.set()
    error = fetch_error(
        lambda: fetcher.fetch_bytes(base(server) + "/ok", {}, what="playlist", limit=1 << 20)
    )
    assert error.kind is K.CANCELLED
    assert files_in(tmp_path) == []


def test_an_unwritable_destination_is_a_disk_error(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(DiskError) as caught:
        fetcher.fetch_to_file(
            base(server) + "/ok", {}, not_a_folder / "s.ts", what="segment 7", limit=1 << 20
        )
    assert caught.value.kind is K.DISK
    assert caught.value.kind.stops_run


def test_two_attempts_writing_one_segment_at_once_both_leave_it_whole(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    dest = tmp_path / "000009.ts"
    results: list[int] = []

    def fetch() -> None:
        results.append(
            fetcher.fetch_to_file(base(server) + "/ok", {}, dest, what="s", limit=1 << 20)
        )

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [len(BODY)] * 4
    assert dest.read_bytes() == BODY
    assert files_in(tmp_path) == ["000009.ts"]


def test_a_connection_that_is_refused_is_network(fetcher: Fetcher) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = fetch_error(
        lambda: fetcher.fetch_bytes(f"http://127.0.0.1:{port}/", {}, what="playlist", limit=9)
    )
    assert error.kind is K.NETWORK
    assert error.message == "playlist: connection failed: connection refused"


def test_a_connect_that_times_out_is_network(tmp_path: Path) -> None:
    # A listener whose backlog is full drops new connection attempts: the connect times out.
    with socket.socket() as listener, contextlib.ExitStack() as stack:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(listener.getsockname())
        session = make_session(1)
        stack.callback(session.close)
        fetcher = Fetcher(session, connect_timeout=0.3, stall_timeout=STALL, stop=threading.Event())
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/s.ts"
        error = fetch_error(
            lambda: fetcher.fetch_to_file(url, {}, tmp_path / "s.ts", what="s", limit=1 << 20)
        )
    assert error.kind is K.NETWORK
    assert error.message == "s: could not connect (timed out)"
    assert files_in(tmp_path) == []


def test_up_to_three_redirects_are_followed(fetcher: Fetcher, server: _Server) -> None:
    assert fetcher.fetch_bytes(base(server) + "/hops/3", {}, what="s", limit=1 << 20) == BODY


def test_a_redirect_to_another_host_gets_that_hosts_headers_only(
    fetcher: Fetcher, server: _Server
) -> None:
    asked: list[str] = []

    def hop_headers(url: str) -> dict[str, str]:
        asked.append(url)
        return {"X-Hop": "yes"}

    site = {"X-Stream-Token": "t0k3n", "Referer": "http://127.0.0.1/", "Cookie": "sid=1"}
    body = fetcher.fetch_bytes(
        base(server) + "/away/1", site, what="s", limit=1024, hop_headers=hop_headers
    )
    assert body == b"identity"
    port = server.server_address[1]
    assert asked == [f"http://localhost:{port}/encoding"]
    path, headers = server.seen[-1]
    assert path == "/encoding"
    assert headers["host"] == f"localhost:{port}"
    assert headers["x-hop"] == "yes"
    assert not {"x-stream-token", "referer", "cookie"} & set(headers)
    # Without a way to ask, nothing of the first request's goes along either.
    fetcher.fetch_bytes(base(server) + "/away/2", site, what="s", limit=1024)
    assert not {"x-stream-token", "referer", "cookie", "x-hop"} & set(server.seen[-1][1])


def _ranged_twice(
    fetcher: Fetcher, server: _Server, dest: Path, mode: str
) -> tuple[list[int], list[dict[str, str]]]:
    """Fetch ``/ranged/<mode>/…`` (the first try is cut at 5000 bytes), then fetch it again.

    Returns the bytes the second fetch reported and the headers of every request it made.
    """
    url = base(server) + f"/ranged/{mode}/{dest.name}"
    first = fetch_error(lambda: fetcher.fetch_to_file(url, {}, dest, what="s", limit=1 << 20))
    assert first.kind is K.NETWORK
    seen = len(server.seen)
    counted: list[int] = []
    size = fetcher.fetch_to_file(url, {}, dest, what="s", limit=1 << 20, on_bytes=counted.append)
    assert size == len(BODY)
    assert dest.read_bytes() == BODY
    assert files_in(dest.parent) == [dest.name]
    return counted, [headers for _, headers in server.seen[seen:]]


@pytest.mark.parametrize(
    ("mode", "if_range"),
    [("etag", '"v1"'), ("date", "Wed, 21 Oct 2015 07:28:00 GMT")],
)
def test_a_cut_off_body_is_continued_from_where_it_broke_off(
    fetcher: Fetcher, server: _Server, tmp_path: Path, mode: str, if_range: str
) -> None:
    dest = tmp_path / f"{mode}.ts"
    url = base(server) + f"/ranged/{mode}/{dest.name}"
    fetch_error(lambda: fetcher.fetch_to_file(url, {}, dest, what="s", limit=1 << 20))
    # What arrived is kept, with the validator to continue against.
    assert (tmp_path / f"{mode}.ts.part").read_bytes() == BODY[:5000]
    assert files_in(tmp_path) == [f"{mode}.ts.part", f"{mode}.ts.part.json"]
    counted: list[int] = []
    size = fetcher.fetch_to_file(url, {}, dest, what="s", limit=1 << 20, on_bytes=counted.append)
    assert (size, sum(counted)) == (len(BODY), len(BODY) - 5000)
    assert dest.read_bytes() == BODY
    assert files_in(tmp_path) == [dest.name]
    headers = server.seen[-1][1]
    assert (headers["range"], headers["if-range"]) == ("bytes=5000-", if_range)


@pytest.mark.parametrize(
    ("mode", "requests_made"),
    [
        ("ignore", 1),  # a 200 to the Range request: its body is the whole file
        ("changed", 1),  # If-Range no longer matches: the server sends the new file whole
        ("416", 2),  # the range is refused: asked again without one
        ("wrong", 2),  # a 206 starting elsewhere is refused: asked again without a range
    ],
)
def test_an_answer_that_does_not_continue_the_part_starts_it_again_cleanly(
    fetcher: Fetcher, server: _Server, tmp_path: Path, mode: str, requests_made: int
) -> None:
    counted, sent = _ranged_twice(fetcher, server, tmp_path / f"{mode}.ts", mode)
    assert sum(counted) == len(BODY)
    assert len(sent) == requests_made
    assert sent[0]["range"] == "bytes=5000-"
    assert "range" not in sent[-1] or requests_made == 1


def test_a_part_without_a_strong_validator_is_not_kept(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    counted, sent = _ranged_twice(fetcher, server, tmp_path / "weak.ts", "weak")
    assert sum(counted) == len(BODY)
    assert "range" not in sent[0]


def test_requests_carry_our_user_agent_and_the_headers_as_given(
    fetcher: Fetcher, server: _Server
) -> None:
    token = {"X-Stream-Token": "t0k3n", "Referer": "http://127.0.0.1/"}
    fetcher.fetch_bytes(base(server) + "/encoding", token, what="playlist", limit=1024)
    path, headers = server.seen[-1]
    assert path == "/encoding"
    assert headers["user-agent"] == USER_AGENT
    assert headers["x-stream-token"] == "t0k3n"
    assert headers["referer"] == "http://127.0.0.1/"
    assert headers["accept-encoding"] == "identity"
    assert "cookie" not in headers


def test_cookies_of_the_session_go_along_as_requests_would_send_them(server: _Server) -> None:
    session = make_session(1)
    session.cookies.set("sid", "abc", domain="127.0.0.1", path="/")
    try:
        fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=STALL, stop=threading.Event())
        fetcher.fetch_bytes(base(server) + "/encoding", {}, what="playlist", limit=1024)
    finally:
        session.close()
    assert server.seen[-1][1]["cookie"] == "sid=abc"


def test_many_requests_share_at_most_connections_keep_alive_connections(tmp_path: Path) -> None:
    session = make_session(3)
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=5.0, stop=threading.Event())
    jobs = list(range(48))
    sizes: list[int] = []

    def work() -> None:
        while jobs:
            n = jobs.pop()
            dest = tmp_path / f"{n:03d}.ts"
            sizes.append(fetcher.fetch_to_file(url, {}, dest, what="s", limit=1 << 20))

    with running_server() as server:
        url = base(server) + "/ok"
        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        session.close()
        opened, peak = server.opened, server.peak
    assert sizes == [len(BODY)] * 48
    assert all(path.read_bytes() == BODY for path in tmp_path.iterdir())
    # SPEC §7: one pool sized to --connections; 8 threads wait for one of its 3 connections.
    assert 1 <= opened <= 3
    assert peak <= 3
    assert fetcher.transfer.active == 0


def test_a_stand_in_book_arrives_whole_over_reused_connections(
    site: StandinSite, tmp_path: Path
) -> None:
    slug = "the-sample-book"
    session = make_session(2)
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=5.0, stop=threading.Event())
    headers = site.headers_for(slug)
    opened_before = site.stats.connections
    try:
        url = site.playlist_url(slug, 0)
        text = fetcher.fetch_bytes(url, headers, what="playlist", limit=1 << 20).decode()
        segments = list(parse_media_playlist(text, url).segments) * 3  # each fetched 3 times
        errors: list[BaseException] = []

        def work() -> None:
            while segments:
                segment = segments.pop()
                dest = tmp_path / f"{segment.index:05d}.ts"
                try:
                    fetcher.fetch_to_file(segment.url, headers, dest, what="s", limit=1 << 26)
                except DownloadError as err:
                    errors.append(err)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        session.close()
    assert errors == []
    expected = site.segment_paths(slug, 0)
    assert files_in(tmp_path) == [f"{index:05d}.ts" for index in range(len(expected))]
    for index, source in enumerate(expected):
        assert (tmp_path / f"{index:05d}.ts").read_bytes() == source.read_bytes()
    assert site.stats.connections - opened_before <= 2


@pytest.mark.timeout(60)
def test_a_failed_transfer_gives_its_connection_back_closed(
    server: _Server, tmp_path: Path
) -> None:
    # One connection, blocking pool: a connection not handed back would hang the next request,
    # and one handed back mid-body would feed the rest of that body to the next request.
    session = make_session(1)
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=STALL, stop=threading.Event())

    def after_first_read() -> Callable[[], bool]:
        asked = iter(range(1000))
        return lambda: next(asked) > 0

    def never() -> Callable[[], bool]:
        return lambda: False

    try:
        failing: list[tuple[str, int, Callable[[], Callable[[], bool]], FailureKind]] = [
            ("/status/500", 1 << 20, never, K.HTTP_5XX),
            ("/status/404", 1 << 20, never, K.NOT_FOUND),
            ("/loop", 1 << 20, never, K.INVALID_MEDIA),
            ("/ok", 1 << 20, after_first_read, K.CANCELLED),  # in the middle of the body
            ("/silent-body", 1 << 20, after_first_read, K.CANCELLED),  # nothing more to come
            ("/ok", 10_000, never, K.INVALID_MEDIA),  # over the limit in the middle of the body
            ("/truncated", 1 << 20, never, K.NETWORK),
            ("/silent-body", 1 << 20, never, K.TIMEOUT),
        ]
        for path, limit, cancelled, kind in failing:
            for _ in range(2):
                with pytest.raises(DownloadError) as caught:
                    fetcher.fetch_to_file(
                        base(server) + path,
                        {},
                        tmp_path / "s.ts",
                        what="s",
                        limit=limit,
                        cancelled=cancelled(),
                    )
                assert caught.value.kind is kind, (path, caught.value.message)
        assert files_in(tmp_path) == []
        body = fetcher.fetch_bytes(base(server) + "/ok", {}, what="s", limit=1 << 20)
        assert body == BODY
    finally:
        session.close()
    assert fetcher.transfer.active == 0


def test_a_closed_session_or_dropped_pool_is_opened_again(server: _Server) -> None:
    session = make_session(2)
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=STALL, stop=threading.Event())
    url = base(server) + "/ok"
    try:
        assert fetcher.fetch_bytes(url, {}, what="s", limit=1 << 20) == BODY
        # The pool manager drops pools (its least recently used host) as requests does.
        session.get_adapter(url).poolmanager.clear()  # type: ignore[attr-defined]
        assert fetcher.fetch_bytes(url, {}, what="s", limit=1 << 20) == BODY
        session.close()
        assert fetcher.fetch_bytes(url, {}, what="s", limit=1 << 20) == BODY
    finally:
        session.close()


def test_a_part_in_use_makes_a_throwaway_part_and_stale_ones_are_left_alone(
    fetcher: Fetcher, server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another request of this process holds 000001.ts.part: this one writes a part of its own,
    # by pid and counter; O_EXCL makes it skip a name a killed run with our pid left behind.
    dest = tmp_path / "000001.ts"
    number = 7  # the next name this process will use (copying a count is gone in Python 3.14)
    monkeypatch.setattr(parts, "_PART_NUMBERS", itertools.count(number))
    stale = tmp_path / f"000001.ts.{os.getpid()}-{number}.part"
    stale.write_bytes(b"stale")
    with parts.PartFile.claim(dest):
        fetcher.fetch_to_file(base(server) + "/ok", {}, dest, what="s", limit=1 << 20)
    assert dest.read_bytes() == BODY
    assert stale.read_bytes() == b"stale"
    assert files_in(tmp_path) == sorted([dest.name, stale.name])


def test_a_part_without_its_note_is_started_again(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    # Killed before the note was written (or a note that is not ours): nothing says what the
    # part holds, so it is never continued.
    dest = tmp_path / "000002.ts"
    (tmp_path / "000002.ts.part").write_bytes(b"junk" * 100)
    (tmp_path / "other.ts.part").write_bytes(b"junk")
    (tmp_path / "other.ts.part.json").write_text('{"validator": 5}')
    fetcher.fetch_to_file(base(server) + "/ok", {}, dest, what="s", limit=1 << 20)
    fetcher.fetch_to_file(base(server) + "/ok", {}, tmp_path / "other.ts", what="s", limit=1 << 20)
    assert dest.read_bytes() == (tmp_path / "other.ts").read_bytes() == BODY
    assert files_in(tmp_path) == [dest.name, "other.ts"]
    assert "range" not in server.seen[-1][1]


@NEEDS_POSIX_KERNEL
def test_a_write_that_fails_midway_is_a_disk_error_and_leaves_no_part(
    fetcher: Fetcher, server: _Server, tmp_path: Path
) -> None:
    # A file size limit makes the kernel refuse writes past 40 000 bytes (EFBIG), as a full
    # disk would: the first write is cut short, the next one fails.
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, hard))
    try:
        with pytest.raises(DiskError) as caught:
            fetcher.fetch_to_file(
                base(server) + "/ok", {}, tmp_path / "s.ts", what="s", limit=1 << 20
            )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert caught.value.kind is K.DISK
    assert files_in(tmp_path) == []
    assert fetcher.transfer.active == 0


def test_the_session_ignores_the_environment_and_pools_connections() -> None:
    session = make_session(7)
    try:
        assert session.trust_env is False  # no proxies or .netrc credentials for audio
        adapter = session.get_adapter("https://cdn.example.test/")
        assert adapter._pool_maxsize == 7  # type: ignore[attr-defined]
    finally:
        session.close()


def test_the_fetcher_uses_the_pool_requests_uses_for_the_same_host(server: _Server) -> None:
    # One connection in all: a requests call and fetcher calls take turns on it (keep-alive).
    session = make_session(1)
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=STALL, stop=threading.Event())
    url = base(server) + "/ok"
    opened = server.opened
    try:
        assert session.get(url, timeout=5).content == BODY
        assert fetcher.fetch_bytes(url, {}, what="s", limit=1 << 20) == BODY
        assert session.get(url, timeout=5).content == BODY
        assert fetcher.fetch_bytes(url, {}, what="s", limit=1 << 20) == BODY
    finally:
        session.close()
    assert server.opened - opened == 1


def test_an_https_pool_has_the_session_limits_and_certificate_checks() -> None:
    # No TLS server here: look at the pool itself (no connection is opened to build it).
    session = make_session(5)
    fetcher = Fetcher(session, connect_timeout=2.0, stall_timeout=STALL, stop=threading.Event())
    url = "https://cdn.example.test/a/b.ts?x=1"
    try:
        pool = fetcher._session_pool(url)
        assert isinstance(pool, urllib3.HTTPSConnectionPool)
        assert pool is session.get_adapter(url).get_connection_with_tls_context(  # type: ignore[attr-defined]
            requests.Request("GET", url).prepare(), verify=True
        )
        assert (pool.pool.maxsize if pool.pool else None, pool.block) == (5, True)
        assert pool.cert_reqs == "CERT_REQUIRED"
        assert pool.ca_certs == requests.utils.DEFAULT_CA_BUNDLE_PATH
    finally:
        session.close()


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_limiter_spreads_bytes_at_the_rate() -> None:
    clock = FakeClock()
    rate = 64 * 1024
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    chunk = limiter.chunk_size()
    started = clock.now
    for _ in range(40):
        limiter.acquire(chunk)
    # Everything but the initial burst (a full bucket) passes at exactly the rate.
    assert clock.now - started == pytest.approx((40 * chunk - limiter.capacity) / rate)
    assert max(clock.slept) <= 0.25  # short sleeps, so a stop request is seen promptly


def test_the_rate_limiter_lets_a_request_larger_than_its_bucket_through() -> None:
    clock = FakeClock()
    rate = 8 * 1024
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    started = clock.now
    for _ in range(3):
        limiter.acquire(int(limiter.capacity) * 4)  # would wait forever if it had to fit
    assert clock.now - started == pytest.approx(2 * 4 * limiter.capacity / rate)


def test_the_rate_limiter_gives_up_waiting_when_stopped() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1024, clock=clock, sleep=clock.sleep)
    stop = threading.Event()
    limiter.acquire(int(limiter.capacity))
    stop.set()
    assert limiter.acquire(1024, stop) == 0.0
    assert clock.slept == []


@pytest.mark.parametrize(
    "platform", [pytest.param("linux", marks=posix_only("has no os.writev")), "win32"]
)
def test_a_batch_of_chunks_is_written_whole_on_every_platform(
    platform: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows has no os.writev: calling it there raised AttributeError on every segment of more
    # than one chunk.
    monkeypatch.setattr(sys, "platform", platform)
    if platform == "win32":
        monkeypatch.delattr(os, "writev")
    chunks = [b"a" * 70_000, b"b" * 3, b"c" * 65_536]
    path = tmp_path / "segment"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0))
    try:
        http._write_all(fd, chunks, sum(map(len, chunks)))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(chunks)
