"""net/failures.py on urllib3's own errors: media requests go straight to the session's pool.

Real failures from a real urllib3 pool against servers on 127.0.0.1 (refused, silent, reset,
closed, truncated, a plain-HTTP answer to TLS, a full listen backlog), plus the wrappers urllib3
uses when it retries (MaxRetryError) and a resolver failure built by hand (no DNS in tests).
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import struct
import threading
from collections.abc import Iterator

import pytest
import requests
import urllib3
from urllib3.exceptions import MaxRetryError, NameResolutionError

from tokysnatcher.errors import FailureKind
from tokysnatcher.net.failures import (
    Unreachable,
    classify_exception,
    describe_exception,
    error_from_exception,
    unreachable,
)

K = FailureKind


class _Rude(socketserver.StreamRequestHandler):
    """Misbehaves by path; answers anything that is not HTTP (a TLS hello) with plain HTTP."""

    def handle(self) -> None:
        if self.connection.recv(1, socket.MSG_PEEK) == b"\x16":  # a TLS handshake record
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        first = self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        path = first.split()[1]
        if path == b"/reset":
            linger = struct.pack("ii", 1, 0)  # close with RST, as a crashing server would
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()  # now, before socketserver's polite shutdown sends a FIN
        elif path == b"/truncated":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
        elif path == b"/silent":
            self.server.release.wait(5)  # type: ignore[attr-defined]
        # "/closed" (and anything else): close without a word


@pytest.fixture(scope="module")
def rude() -> Iterator[urllib3.HTTPConnectionPool]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Rude)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pool = urllib3.HTTPConnectionPool("127.0.0.1", server.server_address[1], maxsize=1)
    yield pool
    pool.close()
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _failure(pool: urllib3.HTTPConnectionPool, path: str, *, retries: object = False) -> Exception:
    """The exception of a GET whose body is read to the end, as the fetcher reads it."""
    try:
        response = pool.urlopen(
            "GET",
            path,
            preload_content=False,
            redirect=False,
            retries=retries,  # type: ignore[arg-type]
            timeout=urllib3.Timeout(connect=0.3, read=0.3),
        )
        try:
            while response.read1(65536):
                pass
        finally:
            response.close()
            response.release_conn()
    except Exception as exc:
        return exc
    raise AssertionError(f"{path} did not fail")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "kind", "message"),
    [
        ("/reset", K.NETWORK, "segment 1: connection failed: connection reset by server"),
        ("/closed", K.NETWORK, "segment 1: connection closed by server without a response"),
        ("/truncated", K.NETWORK, "segment 1: connection lost in the middle of the body"),
        ("/silent", K.TIMEOUT, "segment 1: no data received before the timeout; stalled"),
    ],
)
def test_real_urllib3_failures_get_a_kind_and_one_plain_line(
    rude: urllib3.HTTPConnectionPool, path: str, kind: FailureKind, message: str
) -> None:
    error = error_from_exception(_failure(rude, path), "segment 1")
    assert (error.kind, error.message) == (kind, message)
    assert error.hint


def test_a_refused_connection_is_network_whether_or_not_urllib3_retried() -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", _free_port())
    raw = _failure(pool, "/")
    wrapped = _failure(pool, "/", retries=0)
    assert isinstance(wrapped, MaxRetryError)
    for exc in (raw, wrapped):
        error = error_from_exception(exc, "playlist")
        assert error.kind is K.NETWORK
        assert error.message == "playlist: connection failed: connection refused"


def test_a_read_timeout_wrapped_by_a_retry_is_still_a_timeout(
    rude: urllib3.HTTPConnectionPool,
) -> None:
    exc = _failure(rude, "/silent", retries=0)
    assert isinstance(exc, MaxRetryError)
    assert classify_exception(exc) is K.TIMEOUT


def test_a_tls_failure_is_network_and_says_tls(rude: urllib3.HTTPConnectionPool) -> None:
    # A TLS hello answered in plain HTTP: the handshake fails on our side.
    port = rude.port
    assert port is not None
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", port, cert_reqs=ssl.CERT_NONE)
    error = error_from_exception(_failure(pool, "/"), "segment 4")
    assert error.kind is K.NETWORK
    assert error.message.startswith("segment 4: TLS error: ")
    assert "\n" not in error.message


def test_a_name_that_does_not_resolve_is_network() -> None:
    connection = urllib3.connection.HTTPConnection("cdn.example.invalid", 80)
    reason = socket.gaierror(-2, "Name or service not known")
    exc = NameResolutionError("cdn.example.invalid", connection, reason)
    error = error_from_exception(exc, "segment 5")
    assert error.kind is K.NETWORK
    assert error.message == "segment 5: could not resolve host cdn.example.invalid"


def test_unreachable_names_each_cause_through_the_wrappers(
    rude: urllib3.HTTPConnectionPool,
) -> None:
    # requests wraps urllib3's MaxRetryError, which wraps the cause: each is found underneath.
    connection = urllib3.connection.HTTPConnection("site.invalid", 80)
    dns = NameResolutionError("site.invalid", connection, socket.gaierror(-2, "unknown"))
    refused = _failure(urllib3.HTTPConnectionPool("127.0.0.1", _free_port()), "/", retries=0)
    port = rude.port
    assert port is not None
    tls = _failure(urllib3.HTTPSConnectionPool("127.0.0.1", port, cert_reqs=ssl.CERT_NONE), "/")
    timeout = urllib3.exceptions.ConnectTimeoutError(connection, "timed out")
    for exc, cause in (
        (dns, Unreachable.DNS),
        (refused, Unreachable.REFUSED),
        (tls, Unreachable.TLS),
        (timeout, Unreachable.TIMEOUT),
    ):
        assert unreachable(exc) is cause, exc
        assert unreachable(requests.ConnectionError(MaxRetryError(None, "/", exc))) is cause, exc  # type: ignore[arg-type]


def test_a_failure_after_connecting_is_not_unreachable(rude: urllib3.HTTPConnectionPool) -> None:
    assert unreachable(_failure(rude, "/reset")) is None
    assert unreachable(_failure(rude, "/silent", retries=0)) is None


def test_requests_wrapping_a_resolver_failure_still_says_which_host() -> None:
    connection = urllib3.connection.HTTPConnection("site.invalid", 80)
    dns = NameResolutionError("site.invalid", connection, socket.gaierror(-2, "unknown"))
    wrapped = requests.ConnectionError(MaxRetryError(None, "/", dns))  # type: ignore[arg-type]
    assert describe_exception(wrapped) == "could not resolve host site.invalid"
