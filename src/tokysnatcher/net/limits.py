"""Limits shared by every connection of a run: the ``--speed-limit`` token bucket and a counter.

Both are used from many fetch threads at once; the bucket keeps its locking to the minimum a
chunk needs, the counter changes only once per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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
