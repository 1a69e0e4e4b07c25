"""The shared, thread-safe state behind one running stand-in site."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from tokysnatcher.standin.catalog import BookSpec
from tokysnatcher.standin.content import RouteTable
from tokysnatcher.standin.faults import FaultDecision, Faults, api_fails, decide
from tokysnatcher.standin.stats import SiteStats
from tokysnatcher.standin.tokens import TokenStore


class SiteState:
    """Catalog, routes, tokens, faults and the open connections of a running site."""

    def __init__(
        self,
        *,
        catalog: Mapping[str, BookSpec],
        faults: Faults,
        clock: Callable[[], float],
        verbose: bool,
    ) -> None:
        self.catalog = dict(catalog)
        self.by_audio_id = {book.audio_book_id: book for book in self.catalog.values()}
        self.routes = RouteTable(audio={}, files={})
        self.covers: dict[str, Path] = {}
        self.tokens = TokenStore(clock)
        self.stats = SiteStats()
        self.clock = clock
        self.verbose = verbose
        self.base_url = ""
        self.media_host_url = ""  # where Faults.redirect_media sends files and segments
        #: Set when the site stops: every pause (latency, stall, throttle) waits on it.
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._faults = faults
        self._counts: Counter[str] = Counter()
        self._api_counts: Counter[str] = Counter()
        self._bodies: dict[Path, bytes] = {}
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._faults_since = time.monotonic()  # outages are timed from here
        self._audio_in_flight = 0
        self._total_free_at = 0.0  # the total bandwidth cap: when its next byte may go
        for book in self.catalog.values():
            if not book.stream_token:
                self.tokens.add_permanent(book.post_detail_token, book.audio_book_id)

    # -- faults -----------------------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        """The faults in force right now."""
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Switch faults; the per-path request counts start again from zero."""
        with self._lock:
            self._faults = faults
            self._faults_since = time.monotonic()
            self._counts.clear()
            self._api_counts.clear()

    def next_fault(self, key: str) -> FaultDecision | None:
        """Decide (and count) the fault of the next audio request of ``key``."""
        with self._lock:
            faults = self._faults
            previous = self._counts[key]
            self._counts[key] += 1
        decision = decide(faults, key, previous)
        if decision is not None:
            self.stats.count_fault(decision.kind, key, previous)
        return decision

    def next_api_fault(self, key: str) -> bool:
        """Decide (and count) whether the next JSON API request of ``key`` answers 503."""
        with self._lock:
            faults = self._faults
            previous = self._api_counts[key]
            self._api_counts[key] += 1
        failed = api_fails(faults, key, previous)
        if failed:
            self.stats.count_fault("api_error", key, previous)
        return failed

    def site_down(self) -> bool:
        """True during the outage window of the faults in force."""
        with self._lock:
            faults, since = self._faults, self._faults_since
        if faults.outage_seconds <= 0:
            return False
        elapsed = time.monotonic() - since - faults.outage_at
        return 0 <= elapsed < faults.outage_seconds

    def audio_started(self) -> bool:
        """Count an audio request being answered; False when it is one too many (429)."""
        with self._lock:
            limit = self._faults.max_concurrent
            if limit is not None and self._audio_in_flight >= limit:
                return False
            self._audio_in_flight += 1
            return True

    def audio_ended(self) -> None:
        with self._lock:
            self._audio_in_flight -= 1

    def total_slot(self, size: int) -> float:
        """Seconds to wait before sending ``size`` more bytes under the total bandwidth cap.

        One clock for the whole site: each piece is due when every byte queued before it has
        gone at the capped rate, so connections share the cap in turn.
        """
        with self._lock:
            cap = self._faults.total_bandwidth
            if cap is None:
                return 0.0
            now = time.monotonic()
            start = max(now, self._total_free_at)
            self._total_free_at = start + size / cap
            return start - now

    # -- bodies -------------------------------------------------------------------------------
    def body(self, path: Path) -> bytes:
        """The bytes of a generated file, read once and then kept in memory."""
        data = self._bodies.get(path)
        if data is None:
            data = path.read_bytes()
            self._bodies[path] = data
        return data

    # -- connections --------------------------------------------------------------------------
    def register(self, conn: socket.socket) -> None:
        """Track an open connection so that stopping can cut it."""
        with self._lock:
            self._connections[conn] = threading.current_thread()

    def unregister(self, conn: socket.socket) -> None:
        """Forget a closed connection."""
        with self._lock:
            self._connections.pop(conn, None)

    def cut_connections(self, deadline: float) -> None:
        """Shut every open connection down and wait (until ``deadline``) for its handler."""
        with self._lock:
            open_now = list(self._connections.items())
        for conn, _ in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        for _, thread in open_now:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if thread is not threading.current_thread():
                thread.join(remaining)

    def log(self, message: str) -> None:
        """Write a line to stderr, only when the site is verbose."""
        if self.verbose:
            print(f"[standin] {message}", file=sys.stderr, flush=True)
