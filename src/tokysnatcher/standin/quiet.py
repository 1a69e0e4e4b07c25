"""HTTP/1.1 handler basics shared by the stand-in site's listeners, and the "other host"."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from tokysnatcher.standin.content import JUNK_PREFIX, Resource, decode_path, short_body
from tokysnatcher.standin.state import SiteState


class Abort(Exception):
    """End this connection now: the site is stopping, or a fault has done its work."""


class _HasState(Protocol):
    state: SiteState


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no logging unless verbose, client disconnects ignored."""

    protocol_version = "HTTP/1.1"
    server_version = "tokybook-standin/1"
    sys_version = ""
    timeout = 300.0  # an idle keep-alive connection is dropped after this long
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms each.
    disable_nagle_algorithm = True

    state: SiteState

    def setup(self) -> None:
        """Register the connection so that stopping the site can cut it."""
        super().setup()
        server: _HasState = self.server  # type: ignore[assignment]
        self.state = server.state
        self.state.register(self.connection)

    def handle(self) -> None:
        """Serve requests until the client leaves; socket errors end the connection quietly."""
        try:
            super().handle()
        except (Abort, OSError):
            self.close_connection = True

    def finish(self) -> None:
        """Close the streams, ignoring a connection the client (or a fault) already broke."""
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.state.unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Log only when the site is verbose."""
        self.state.log(f"{self.address_string()} {format % args}")

    def version_string(self) -> str:
        """The ``Server`` header (without the Python version)."""
        return self.server_version

    def raw_path(self) -> str:
        """The request path without query string (still percent-encoded)."""
        return self.path.split("?", 1)[0]


class OtherHostHandler(QuietHandler):
    """The "other host": records headers; serves junk variants, answers 403 to the rest."""

    def do_GET(self) -> None:
        """Record, then serve a junk variant's playlist or segment, or refuse."""
        self.state.stats.record_other_host(self.command, self.path, dict(self.headers.items()))
        path = self.raw_path()
        route = None
        if self.command == "GET" and path.startswith(JUNK_PREFIX):
            route = self.state.routes.other.get(decode_path(path[len(JUNK_PREFIX) :]))
        if route is not None and route.resource is Resource.PLAYLIST:
            status, ctype, body = 200, "application/vnd.apple.mpegurl", route.playlist
        elif route is not None and route.body is not None:
            status, ctype, body = 200, "video/mp2t", short_body(self.state.body(route.body))
        else:
            status, ctype, body = 403, "application/json", b'{"error": "forbidden"}'
            self.close_connection = True  # a POST body is left unread
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET
    do_POST = do_GET
