"""Limits shared by every connection of a run: the ``--speed-limit`` token bucket, a counter of
transfers, and the connection limit (``--connections auto|N``, Retry-After holds, outages).

All are used from many fetch threads at once; the bucket keeps its locking to the minimum a
chunk needs, the counter and the connection limit change only once per request.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from tokysnatcher.errors import DownloadError, FailureKind

CHUNK = 64 * 1024  # the largest read of a body, and the rate limiter's largest chunk


class RateLimiter:
    """A token bucket shared by every connection: smooth at chunk level, stop-aware."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        # A quarter second of burst keeps transfers smooth without bursts-then-pauses.
        self.capacity = max(rate / 4, float(self.chunk_size()))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def chunk_size(self) -> int:
        return int(min(CHUNK, max(1024, self.rate / 8)))

    def acquire(self, n: int, stop: threading.Event | None = None) -> float:
        """Block until ``n`` bytes may pass; returns the seconds waited."""
        waited = 0.0
        # More than the bucket holds is let through once it is full, as a debt later callers
        # wait for; waiting for ``n`` itself would never end.
        need = min(n, self.capacity)
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= need:
                    self._tokens -= n
                    return waited
                pause = (need - self._tokens) / self.rate
            if stop is not None and stop.is_set():
                return waited
            pause = min(pause, 0.25)
            self._sleep(pause)
            waited += pause

    def refund(self, n: int) -> None:
        """Give back tokens taken for bytes that did not come (a short read, the end of a body).

        Without it every short read (and the final empty one) costs a whole chunk, and a book
        of small segments is fetched at a fraction of the limit.
        """
        if n > 0:
            with self._lock:
                self._tokens = min(self.capacity, self._tokens + n)


class Transfer:
    """How many transfers are in progress, for the progress view (updated from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        """Transfers in progress (requests sent or bodies being read)."""
        return self._active

    def started(self) -> None:
        with self._lock:
            self._active += 1

    def ended(self) -> None:
        with self._lock:
            self._active -= 1


# --- the connection limit -------------------------------------------------------------------

AUTO: Final = "auto"
AUTO_LOW = 2  # auto never goes below this many connections...
AUTO_START = 4  # ...starts here...
MAX_CONNECTIONS = 16  # ...and never above this (nor may --connections N)
Connections = int | Literal["auto"]

_WINDOW = 1.0  # seconds of traffic each auto decision is made from
_RISE = 0.3  # a connection added must bring at least this share of what one connection carries
_KEEPS_PACE = 0.85  # ...or each connection must still carry this share of the best seen
_RARE = 0.05  # failed requests (of those that ended in a window) that still count as rare
_STALL_RATE = 0.1
_COOL_DOWN = 2  # windows without an increase after a decrease
_FLAT_COOL_DOWN = 5  # ...and after an increase that brought nothing
# A 429 at N connections keeps auto at N-1 at most for this long: the server said where its
# line is; probing it again at once would only fetch more 429s.
_THROTTLE_MEMORY = 30.0
_BURST_SPAN = 3.0  # two throttled answers this close together are a burst: halve
# A network failure streak is an outage once it is this long and no request has succeeded for
# OUTAGE_QUIET seconds: one reset is a hiccup; every request failing is the link or the site.
OUTAGE_STREAK = 3
OUTAGE_QUIET = 1.0
_THROTTLE_RUN = 3  # 429/403 answers within _THROTTLE_SPAN seconds make a throttling report
_THROTTLE_SPAN = 10.0
_THROTTLE_QUIET = 30.0  # ...said again only after this long


# Probes while the network is down: 1, 2, 4, 8 s, then every 15 s. An outage ends within 15 s
# of the link coming back, and a long one costs four probes a minute.
OUTAGE_FIRST_PROBE = 1.0
OUTAGE_MAX_PROBE = 15.0


def outage_backoff(probes_failed: int) -> float:
    """Seconds to the next probe after ``probes_failed`` failed ones (0: the outage just began)."""
    return min(OUTAGE_FIRST_PROBE * 2.0 ** min(probes_failed, 32), OUTAGE_MAX_PROBE)


def start_limit(connections: Connections) -> int:
    """The limit a run starts with."""
    return connections if isinstance(connections, int) else AUTO_START


@dataclass(frozen=True, slots=True)
class Window:
    """What one window of traffic looked like, for :func:`aimd_step`."""

    limit: int
    rate: float  # bytes per second over the window
    saturated: bool  # work was waiting for a connection all through the window
    ended: int  # requests that ended (succeeded or failed)
    failed: int
    stalls: int


@dataclass(slots=True)
class _Counts:
    """Requests of the window under way: ended (either way), failed, stalled."""

    ended: int = 0
    failed: int = 0
    stalls: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """An auto decision: the new limit and why."""

    limit: int
    reason: str


def aimd_step(
    now: Window,
    before: Window | None,
    *,
    best_per_connection: float,
    cooling: bool,
    ceiling: int = MAX_CONNECTIONS,
) -> Step | None:
    """Additive increase, multiplicative decrease: the next limit after window ``now``.

    A rising stall rate halves the limit (never below ``AUTO_LOW``; throttled answers lower it
    at once, in :meth:`ConnectionLimit.failed`). Otherwise, while work waits for a
    connection and failures stay rare, one connection is added as long as the last one added
    raised the total throughput (by at least ``_RISE`` of one connection's share) or each
    connection still carries nearly the best per-connection rate seen; an increase that
    brought neither is taken back. Nothing is added while ``cooling``, nor above ``ceiling``.
    """
    halved = max(AUTO_LOW, now.limit // 2)
    stall_rate = now.stalls / now.ended if now.ended else 0.0
    before_rate = before.stalls / before.ended if before and before.ended else 0.0
    if now.stalls >= 2 and stall_rate >= _STALL_RATE and stall_rate > before_rate:
        return Step(halved, "stalls rising")
    if now.failed > _RARE * now.ended or not now.saturated:
        return None
    grew = before is not None and before.limit == now.limit - 1
    keeps_pace = now.rate / now.limit >= _KEEPS_PACE * best_per_connection
    if grew:
        assert before is not None
        rising = now.rate >= before.rate * (1 + _RISE / before.limit)
        if not (rising or keeps_pace):
            return Step(before.limit, "throughput flat")
    if cooling or now.limit >= min(ceiling, MAX_CONNECTIONS):
        return None
    return Step(now.limit + 1, "throughput rising")


@dataclass(frozen=True, slots=True)
class LimitView:
    """What the views show of the limit: ``connections 6 (auto: throughput rising)``."""

    limit: int
    reason: str  # "" for a fixed count never changed
    network_retry_at: float | None  # clock time of the next probe while the network is down


class ConnectionLimit:
    """The one owner of how many requests may be in flight, and of whether any may start now.

    Fetch workers call :meth:`acquire` before a request and :meth:`release` after it. The
    scheduler tells it how requests ended (:meth:`succeeded`, :meth:`failed`) and calls
    :meth:`tick` with the bytes received so far; in ``auto`` mode the limit follows
    :func:`aimd_step` once a second. Whatever the mode: a ``Retry-After`` holds every request to
    the host until it passes, and a streak of network failures with no success is an outage:
    one probe at a time, with backoff (:func:`outage_backoff`), until a request gets
    through or ``max_wait`` seconds have passed (then :attr:`gave_up`). :meth:`set_limit` is
    the by-hand change (keys of the live view). Messages for the user queue up for
    :meth:`take_notices` as ``(text, level)``.
    """

    def __init__(
        self,
        connections: Connections,
        *,
        max_wait: float = 600.0,
        max_retry_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.auto = not isinstance(connections, int)
        # Workers (and pooled connections) for the most the limit may reach, by hand too.
        self.threads = MAX_CONNECTIONS
        self.max_wait = max_wait
        self.max_retry_after = max_retry_after
        self._clock = clock
        self._cond = threading.Condition()
        self._limit = start_limit(connections)
        self._reason = AUTO if self.auto else ""
        self._in_flight = 0
        self._closed = False
        self._hold_until = 0.0
        self._notices: list[tuple[str, str]] = []
        # Outage: when the current failure streak began, how long, the last error's words.
        self._streak = 0
        self._streak_since = 0.0
        self._last_error = ""
        self._last_success: float | None = None
        self._outage_since: float | None = None
        self._probes_failed = 0
        self._next_probe = 0.0
        self._probing = False  # the probe is in flight: no other request starts
        self._probe_sent = False  # a probe went out since the last one failed
        self.gave_up = False
        # Throttling reports.
        self._throttle_times: deque[tuple[float, int]] = deque()
        self._throttle_said = -math.inf
        # The current auto window, the one before it, the best rate per connection seen.
        self._window_start: float | None = None
        self._window_bytes = 0
        self._counts = _Counts()
        self._saturated = True
        self._held = False  # a hold or an outage touched the window: its rate says nothing
        self._before: Window | None = None
        self._best = 0.0
        self._cooling = 0
        self._last_cut = -math.inf  # the last halving for a burst of throttled answers
        self._last_throttle = -math.inf
        self._recent_throttles: deque[float] = deque()
        self._ceiling = MAX_CONNECTIONS  # auto stays at or below it while throttling is remembered

    # -- fetch workers ------------------------------------------------------------------------
    def acquire(self, stop: threading.Event) -> bool:
        """Wait until a request may start; False when ``stop`` is set or the limit is closed."""
        with self._cond:
            while True:
                if stop.is_set() or self._closed:
                    return False
                wait = self._wait_needed()
                if wait <= 0:
                    self._in_flight += 1
                    return True
                self._cond.wait(min(wait, 0.25))

    def _wait_needed(self) -> float:
        """Seconds before a request may start (<= 0: now). Reads the clock only when held."""
        if self._in_flight >= self._limit:
            return 0.25
        if self._outage_since is not None:
            if self._probing or self.gave_up:
                return 0.25
            wait = self._next_probe - self._clock()
            if wait <= 0:
                self._probing = self._probe_sent = True  # this request is the probe
            return wait
        if self._hold_until:
            wait = self._hold_until - self._clock()
            if wait > 0:
                return wait
            self._hold_until = 0.0
        return 0.0

    def release(self) -> None:
        """A request ended (whatever its outcome)."""
        with self._cond:
            self._in_flight -= 1
            self._probing = False
            self._cond.notify_all()

    def close(self) -> None:
        """Let every waiting worker go (the run is ending); idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the scheduler ------------------------------------------------------------------------
    @property
    def limit(self) -> int:
        return self._limit

    @property
    def waiting_for_network(self) -> bool:
        """True while an outage holds every request but the probe."""
        return self._outage_since is not None

    def view(self) -> LimitView:
        with self._cond:
            retry_at = self._next_probe if self._outage_since is not None else None
            return LimitView(self._limit, self._reason, retry_at)

    def take_notices(self) -> list[tuple[str, str]]:
        with self._cond:
            notices, self._notices = self._notices, []
            return notices

    def set_limit(self, limit: int, reason: str = "set by hand") -> int:
        """Change the limit by hand (1 to ``threads``); auto adjustments stop. The new limit."""
        with self._cond:
            self.auto = False
            self._change(max(1, min(self.threads, limit)), reason)
            return self._limit

    def _change(self, limit: int, reason: str) -> None:
        old, self._limit = self._limit, limit
        self._reason = f"auto: {reason}" if self.auto else reason
        if limit != old:
            self._notices.append((f"connections {old} -> {limit} ({self._reason})", "info"))
        self._cond.notify_all()

    def succeeded(self, *, ended: bool = True) -> None:
        """A request got its answer (``ended=False``: bytes of one still running came)."""
        with self._cond:
            self._counts.ended += ended
            self._streak = 0
            self._last_success = now = self._clock()
            if self._outage_since is not None and not self.gave_up:
                down = now - self._outage_since
                self._outage_since = None
                self._held = True
                self._notices.append(
                    (f"the site answers again after {_span(down)} down; going on", "warning")
                )
                self._cond.notify_all()

    def failed(self, kind: FailureKind, message: str, *, retry_after: float | None = None,
               wait: float = 0.0) -> None:  # fmt: skip
        """A request failed with ``kind``; ``wait`` is how long its retry waits."""
        with self._cond:
            now = self._clock()
            self._counts.ended += 1
            self._counts.failed += 1
            if kind is FailureKind.TIMEOUT:
                self._counts.stalls += 1
            # A 429, or a 503 that says when to come back: the server asks for less.
            if kind is FailureKind.RATE_LIMITED or (kind is FailureKind.HTTP_5XX and retry_after):
                if retry_after:
                    hold = min(retry_after, self.max_retry_after)
                    self._hold_until = max(self._hold_until, now + hold)
                    self._held = True
                if self.auto:
                    self._slow_down(now)
            if kind is FailureKind.NETWORK:
                self._network_failed(now, message)
            else:
                self._streak = 0
            status = {FailureKind.RATE_LIMITED: 429, FailureKind.AUTH: 403}.get(kind)
            if status is not None:
                self._throttled(now, status, max(wait, self._hold_until - now))

    def _slow_down(self, now: float) -> None:
        """The server throttled a request: halve at once on a burst (two within
        ``_BURST_SPAN`` seconds); in any case stay below the limit it objected to for a while
        (:meth:`tick` steps down to it). Answers to requests sent before the last halving say
        nothing new and only count towards a burst."""
        recent = self._recent_throttles
        recent.append(now)
        while now - recent[0] > _BURST_SPAN:
            recent.popleft()
        if now - self._last_cut < _WINDOW:
            return
        remembered = now - self._last_throttle < _THROTTLE_MEMORY
        objected = min(self._ceiling + 1, self._limit) if remembered else self._limit
        self._ceiling = max(AUTO_LOW, objected - 1)
        self._last_throttle = now
        if len(recent) >= 2:
            self._last_cut = now
            recent.clear()
            self._cooling = _COOL_DOWN
            self._before = None  # the next rise is not compared with a window above it
            self._change(max(AUTO_LOW, self._limit // 2), "server throttling")

    def _network_failed(self, now: float, message: str) -> None:
        if self._streak == 0:
            self._streak_since = now
        self._streak += 1
        self._last_error = message
        if self._outage_since is not None:
            # Only the probe's failure moves the next one on: requests that were under way when
            # the outage began fail too, and say nothing new.
            if self._probe_sent:
                self._probe_sent = False
                self._probes_failed += 1
                self._next_probe = now + outage_backoff(self._probes_failed)
            self._gave_up_yet(now)
            return
        quiet = self._last_success is None or now - self._last_success >= OUTAGE_QUIET
        if self._streak >= OUTAGE_STREAK and quiet:
            self._outage_since = self._streak_since
            self._probes_failed = 0
            self._probe_sent = False
            self._next_probe = now + outage_backoff(0)
            self._held = True
            self._notices.append(
                (
                    f"every request fails ({message}): the network or the site is down; "
                    f"waiting up to {_span(self.max_wait)} for it, "
                    f"next try in {math.ceil(self._next_probe - now)}s",
                    "warning",
                )
            )
            self._gave_up_yet(now)

    def _gave_up_yet(self, now: float) -> None:
        assert self._outage_since is not None
        if not self.gave_up and now - self._outage_since >= self.max_wait:
            self.gave_up = True
            self._cond.notify_all()

    def outage_error(self) -> DownloadError:
        """Why chapters fail once :attr:`gave_up`: the wait and the last error, in one line."""
        with self._cond:
            since = self._outage_since if self._outage_since is not None else self._clock()
            down = _span(self._clock() - since)
            return DownloadError(
                f"the network or the site was down for {down} (--max-wait "
                f"{self.max_wait:g}); last error: {self._last_error}",
                kind=FailureKind.NETWORK,
                hint="Check your connection, then run the same command with --resume.",
            )

    def _throttled(self, now: float, status: int, wait: float) -> None:
        times = self._throttle_times
        times.append((now, status))
        while times and now - times[0][0] > _THROTTLE_SPAN:
            times.popleft()
        if len(times) < _THROTTLE_RUN or now - self._throttle_said < _THROTTLE_QUIET:
            return
        self._throttle_said = now
        codes = sorted({code for _, code in times})
        what = " and ".join(
            f"{code} ({'too many requests' if code == 429 else 'forbidden'})" for code in codes
        )
        span = max(1, math.ceil(now - times[0][0]))
        self._notices.append(
            (
                f"the site is limiting requests: {len(times)} answers {what} in {span} s; "
                f"waiting {math.ceil(max(wait, 0.0))} s before trying again"
                + (f", with at most {self._limit} connections" if self.auto else ""),
                "warning",
            )
        )

    def tick(self, total_bytes: int, backlog: int) -> None:
        """Called often by the scheduler: ``total_bytes`` received so far, ``backlog`` requests
        queued or in flight. In auto mode, ends a window once a second and applies its step."""
        with self._cond:
            if not self.auto:
                return
            now = self._clock()
            if self._window_start is None:
                self._window_start, self._window_bytes = now, total_bytes
                return
            self._saturated &= backlog > self._limit
            elapsed = now - self._window_start
            if elapsed < _WINDOW:
                return
            counts = self._counts
            window = Window(
                limit=self._limit,
                rate=(total_bytes - self._window_bytes) / elapsed,
                saturated=self._saturated and not self._held,
                ended=counts.ended,
                failed=counts.failed,
                stalls=counts.stalls,
            )
            self._window_start, self._window_bytes = now, total_bytes
            self._counts = _Counts()
            self._saturated, self._held = True, False
            if self._outage_since is not None:
                return
            remembered = now - self._last_throttle < _THROTTLE_MEMORY
            if remembered and self._limit > self._ceiling:
                self._cooling = _COOL_DOWN
                self._before = None
                self._change(self._ceiling, "server throttling")
                return
            if window.saturated and window.failed <= _RARE * window.ended:
                self._best = max(self._best, window.rate / window.limit)
            step = aimd_step(
                window,
                self._before,
                best_per_connection=self._best,
                cooling=self._cooling > 0,
                ceiling=self._ceiling if remembered else MAX_CONNECTIONS,
            )
            self._cooling = max(0, self._cooling - 1)
            self._before = window
            if step is None:
                return
            if step.limit < window.limit:
                self._cooling = _FLAT_COOL_DOWN if step.reason == "throughput flat" else _COOL_DOWN
                self._before = None  # the next rise is not compared with a window above it
            if step.limit != window.limit:
                self._change(step.limit, step.reason)


def _span(seconds: float) -> str:
    """``45 s``, ``10 min``, ``2.5 min``: how long a wait is, in words."""
    if seconds < 120:
        return f"{max(0, round(seconds))} s"
    return f"{round(seconds / 60, 1):g} min"
