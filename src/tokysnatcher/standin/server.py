"""``StandinSite``: a local, fault-injecting imitation of tokybook.com on 127.0.0.1."""

from __future__ import annotations

import os
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tokysnatcher.standin import api
from tokysnatcher.standin.catalog import AUDIO_PREFIX, BookSpec, TrackKind, default_catalog
from tokysnatcher.standin.content import build_routes, encode_path
from tokysnatcher.standin.faults import Faults
from tokysnatcher.standin.handler import MediaHostHandler, StandinHandler
from tokysnatcher.standin.media import MediaCache, TrackMedia
from tokysnatcher.standin.quiet import OtherHostHandler
from tokysnatcher.standin.state import SiteState
from tokysnatcher.standin.stats import SiteStats

STOP_GRACE = 0.6  # seconds stop() waits for handler threads after cutting their sockets
_OTHER_HOSTS = ("127.0.0.2", "127.0.0.1")


class Listener(ThreadingHTTPServer):
    """Threaded HTTP server that shares a :class:`SiteState` with its handlers."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[StandinHandler | OtherHostHandler],
        state: SiteState,
    ) -> None:
        self.state = state
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host (slow on some machines)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are normal; anything else is shown only when verbose."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        if self.state.verbose:
            super().handle_error(request, client_address)


class Listeners:
    """A site's listening servers and their threads: served in the background, stopped together."""

    def __init__(self) -> None:
        self._running: list[tuple[Listener, threading.Thread]] = []

    def __bool__(self) -> bool:
        return bool(self._running)

    def serve(self, server: Listener, name: str) -> None:
        """Serve ``server`` on a daemon thread of its own."""
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        thread.start()
        self._running.append((server, thread))

    def shutdown(self) -> None:
        """Stop and close every server, waiting up to a second for each thread."""
        running, self._running = self._running, []
        for server, thread in running:
            server.shutdown()
            server.server_close()
            thread.join(1.0)


class StandinSite:
    """A real HTTP/1.1 server that follows ``tokybook-api.md``, with real ffmpeg-made audio.

    ``catalog`` defaults to :func:`default_catalog`; media is generated (or found in the cache)
    when the site starts. Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    ``clock`` (monotonic seconds) only drives stream-token expiry.
    """

    def __init__(
        self,
        catalog: Mapping[str, BookSpec] | None = None,
        faults: Faults | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        ffmpeg: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = SiteState(
            catalog=default_catalog() if catalog is None else catalog,
            faults=faults or Faults(),
            clock=clock,
            verbose=verbose,
        )
        self._cache_dir = cache_dir
        self._ffmpeg = ffmpeg
        self._host = host
        self._port = port
        self._media: dict[tuple[str, int], TrackMedia] = {}
        self._listeners = Listeners()
        self._other_host_base: str | None = None
        self._lock = threading.Lock()
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> StandinSite:
        """Generate (or load) media, bind the listeners and serve in background threads."""
        with self._lock:
            if self._started:
                raise RuntimeError("this StandinSite is already started")
            state = self._state
            cache = MediaCache(self._cache_dir, self._ffmpeg)
            self._media = cache.prepare(state.catalog)
            state.covers = {b.slug: cache.cover(b) for b in state.catalog.values() if b.cover}
            main = Listener((self._host, self._port), StandinHandler, state)
            try:
                if self._needs_other_host():
                    self._other_host_base = self._start_other_host()
                state.media_host_url = self._start_media_host()
                # A wildcard bind is still reached through loopback.
                host = "127.0.0.1" if main.server_name in ("", "0.0.0.0") else main.server_name
                state.base_url = f"http://{host}:{main.server_port}"
                state.routes = build_routes(state.catalog, self._media, self._other_host_base)
            except BaseException:
                main.server_close()
                self._listeners.shutdown()
                raise
            self._listeners.serve(main, "standin-http")
            self._started = True
            state.log(f"serving {state.base_url}")
        return self

    def stop(self) -> None:
        """Stop serving within about a second, even with stalled or throttled handlers."""
        with self._lock:
            self._state.stop_event.set()
            self._listeners.shutdown()
            self._state.cut_connections(time.monotonic() + STOP_GRACE)

    def __enter__(self) -> StandinSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _needs_other_host(self) -> bool:
        return any(
            track.kind in (TrackKind.HOSTILE_OTHER_HOST, TrackKind.HOSTILE_JUNK_VARIANT)
            for book in self._state.catalog.values()
            for track in book.tracks
        )

    def _start_other_host(self) -> str:
        """Listen on 127.0.0.2 (another host for a client); fall back to ``localhost``."""
        for address in _OTHER_HOSTS:
            try:
                server = Listener((address, 0), OtherHostHandler, self._state)
            except OSError:
                continue
            port = server.server_port
            self._listeners.serve(server, "standin-other-host")
            # Same machine, but a different host name than the API's 127.0.0.1 all the same.
            name = address if address != "127.0.0.1" else "localhost"
            return f"http://{name}:{port}"
        raise OSError("could not bind a listener for the other-host hostile track")

    def _start_media_host(self) -> str:
        """The listener ``Faults.redirect_media`` sends media to: ``localhost``, another port."""
        server = Listener(("127.0.0.1", 0), MediaHostHandler, self._state)
        self._listeners.serve(server, "standin-media-host")
        return f"http://localhost:{server.server_port}"

    # -- information ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running site."""
        if not self._state.base_url:
            raise RuntimeError("the site is not started")
        return self._state.base_url

    @property
    def port(self) -> int:
        """The TCP port the site listens on."""
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def catalog(self) -> dict[str, BookSpec]:
        """The books served, slug -> spec."""
        return self._state.catalog

    @property
    def stats(self) -> SiteStats:
        """Thread-safe counters of requests, statuses, connections and faults."""
        return self._state.stats

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._state.faults

    def set_faults(self, faults: Faults) -> None:
        """Change faults at runtime (thread-safe); per-path request counts restart from zero."""
        self._state.set_faults(faults)

    def book_url(self, slug: str) -> str:
        """The book page URL ``<base>/post/<slug>`` (what a user pastes)."""
        return f"{self.base_url}/post/{slug}"

    def track_src(self, slug: str, track_index: int) -> str | None:
        """The ``src`` the playlist API reports for a track (None for a track without one)."""
        return api.track_src(self._state, self.catalog[slug], track_index)

    def playlist_url(self, slug: str, track_index: int) -> str:
        """Full URL of a stream track's HLS playlist on the site."""
        book = self.catalog[slug]
        if not book.tracks[track_index].kind.is_stream:
            raise ValueError(f"track {track_index} of {slug!r} is not an HLS track")
        return self.base_url + AUDIO_PREFIX + encode_path(book.track_path(track_index))

    def source_media(self, slug: str, track_index: int) -> Path:
        """The generated source of a track: all segments concatenated (.ts), or the .mp3 file."""
        try:
            return self._media[(slug, track_index)].source
        except KeyError:
            raise KeyError(f"no media for track {track_index} of {slug!r}") from None

    def segment_paths(self, slug: str, track_index: int) -> tuple[Path, ...]:
        """The generated segment files of a stream track, in playlist order."""
        return self._media[(slug, track_index)].segments

    def cover_path(self, slug: str) -> Path | None:
        """The generated cover image of a book, if it has one."""
        return self._state.covers.get(slug)

    def headers_for(self, slug: str) -> dict[str, str]:
        """Audio request headers with a fresh token for ``slug``.

        The token is lenient: requests need no ``X-Track-Src`` (a wrong one is still refused), so
        plain ffmpeg can read :meth:`playlist_url` with ``-headers``.
        """
        book = self.catalog[slug]
        return {
            "X-Audiobook-Id": book.audio_book_id,
            "X-Stream-Token": self._state.tokens.issue(book.audio_book_id, lenient=True),
            "Referer": self.base_url + "/",
            "Accept-Encoding": "identity",
        }
