"""JsonApi: every API call retries what may pass, with the segment backoff, and fails in one line.

A scripted HTTP server on 127.0.0.1 answers each POST with the next status of its script; the
real session talks to it. Only the sleep between retries is injected, so no test really waits.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tokysnatcher.errors import Interrupted, SourceError
from tokysnatcher.net.http import make_session
from tokysnatcher.sources.api import JsonApi


@dataclass
class Script:
    """Statuses to answer in turn (the last one repeats), with optional headers."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    seen: int = 0


class Scripted(http.server.BaseHTTPRequestHandler):
    script: Script

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        script = self.server.script  # type: ignore[attr-defined]
        status, headers = script.answers[min(script.seen, len(script.answers) - 1)]
        script.seen += 1
        body = json.dumps({"ok": True}).encode() if status < 400 else b'{"error": "no"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Server:
    url: str
    script: Script


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    script = Script()
    httpd.script = script  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", script)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class Sleeper:
    """Records each wait instead of sleeping; ``stop_after`` waits, it reports a stop."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.waits: list[float] = []
        self.stop_after = stop_after

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.stop_after is not None and len(self.waits) >= self.stop_after


def post(server: Server, sleeper: Sleeper, *, retries: int = 3) -> tuple[int, object]:
    session = make_session(2)
    try:
        api = JsonApi(
            session, server.url, retries=retries, retry_delay=0.5, wait=sleeper, now=lambda: 0.0
        )
        return api.post(f"{server.url}/api", {"q": 1}, "the book details")
    finally:
        session.close()


def test_server_errors_are_retried_with_the_segment_backoff(server: Server) -> None:
    server.script.answers = [(503, {}), (500, {}), (502, {}), (200, {})]
    sleeper = Sleeper()
    assert post(server, sleeper) == (200, {"ok": True})
    assert sleeper.waits == [0.5, 1.0, 2.0]


def test_retry_after_is_honoured_up_to_the_quick_cap(server: Server) -> None:
    server.script.answers = [(429, {"Retry-After": "3"}), (503, {"Retry-After": "600"}), (200, {})]
    sleeper = Sleeper()
    assert post(server, sleeper) == (200, {"ok": True})
    assert sleeper.waits == [3.0, 5.0]


def test_a_server_error_that_stays_names_the_server_once_the_retries_are_spent(
    server: Server,
) -> None:
    server.script.answers = [(503, {})]
    sleeper = Sleeper()
    with pytest.raises(SourceError) as caught:
        post(server, sleeper)
    host = server.url.removeprefix("http://")
    assert caught.value.message == f"{host} answered HTTP 503 for the book details (server error)"
    assert "connection" not in caught.value.hint
    assert server.script.seen == 4
    assert len(sleeper.waits) == 3


def test_a_client_error_is_the_caller_s_to_judge_and_never_retried(server: Server) -> None:
    server.script.answers = [(404, {})]
    sleeper = Sleeper()
    assert post(server, sleeper) == (404, None)
    assert (server.script.seen, sleeper.waits) == (1, [])


def test_a_stop_during_the_wait_ends_the_call(server: Server) -> None:
    server.script.answers = [(503, {})]
    with pytest.raises(Interrupted):
        post(server, Sleeper(stop_after=1))
    assert server.script.seen == 1


def test_a_refused_connection_is_retried_then_one_line() -> None:
    session = make_session(2)
    sleeper = Sleeper()
    try:
        api = JsonApi(session, "http://127.0.0.1:9", retries=2, wait=sleeper)
        with pytest.raises(SourceError) as caught:
            api.post("http://127.0.0.1:9/api", {}, "the search")
    finally:
        session.close()
    assert caught.value.message == "could not reach 127.0.0.1:9: connection refused"
    assert len(sleeper.waits) == 2
