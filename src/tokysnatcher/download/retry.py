"""Retry logic (SPEC §5): the chapter backoff policy, quick segment backoff and the retry queue.

Pure logic: nothing here sleeps, starts threads or touches the network. Callers inject the clock
(and a random source for jitter), so every schedule is reproducible in tests. What a failure *is*
(its kind) is decided in ``net/failures.py``.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from tokysnatcher.errors import DownloadError, FailureKind
from tokysnatcher.net.failures import kind_hint

K = FailureKind
T = TypeVar("T", bound=Hashable)


# --- backoff policy -------------------------------------------------------------------------


class GiveUpReason(StrEnum):
    """Why a failure is not retried."""

    PERMANENT = "permanent"  # the kind is not transient (not found, disk, bad media)
    EXHAUSTED = "exhausted"  # the retry budget is used up
    CANCELLED = "cancelled"  # the run is stopping


class RetriesExhausted(DownloadError):
    """A chapter that will not be tried again; ``last_error`` says why it last failed."""

    def __init__(
        self,
        last_error: DownloadError,
        *,
        reason: GiveUpReason,
        attempts: int,
        history: tuple[FailureKind, ...],
    ) -> None:
        if reason is GiveUpReason.EXHAUSTED:
            suffix = f"gave up after {attempts} attempts"
        elif reason is GiveUpReason.CANCELLED:
            suffix = "cancelled; not retried"
        else:
            suffix = f"not retried: {last_error.kind.value} is permanent"
        super().__init__(
            f"{last_error.message} ({suffix})",
            kind=last_error.kind,
            hint=last_error.hint or kind_hint(last_error.kind),
        )
        self.last_error = last_error
        self.reason = reason
        self.attempts = attempts
        self.history = history
        self.__cause__ = last_error


@dataclass(frozen=True, kw_only=True)
class BackoffPolicy:
    """Retry budget and backoff of one chapter, as an immutable value.

    ``increment`` returns the next policy (or raises :class:`RetriesExhausted`); ``delay`` is
    the wait before the retry just counted: ``base_delay * factor**(retries_used-1)``, capped at
    ``max_delay``, jittered by ±``jitter`` (a fraction), and never shorter than a server's
    ``Retry-After`` (itself capped at ``max_retry_after``, so a hostile value cannot park us).
    """

    max_retries: int
    base_delay: float
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1
    max_retry_after: float = 60.0
    retries_used: int = 0
    history: tuple[FailureKind, ...] = ()

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.retries_used < 0:
            raise ValueError("max_retries and retries_used must be >= 0")
        if min(self.base_delay, self.max_delay, self.max_retry_after) < 0 or self.factor < 1:
            raise ValueError("delays must be >= 0 and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be a fraction in [0, 1)")

    @property
    def attempts(self) -> int:
        """The number of the current (or next) attempt: 1 before any retry."""
        return self.retries_used + 1

    @property
    def is_exhausted(self) -> bool:
        """True when no retry is left in the budget."""
        return self.retries_used >= self.max_retries

    def increment(self, error: DownloadError) -> BackoffPolicy:
        """The policy after one more failed attempt, or :class:`RetriesExhausted`."""
        history = (*self.history, error.kind)
        reason = None
        if error.kind is K.CANCELLED:
            reason = GiveUpReason.CANCELLED
        elif not error.transient:
            reason = GiveUpReason.PERMANENT
        elif self.is_exhausted:
            reason = GiveUpReason.EXHAUSTED
        if reason is not None:
            raise RetriesExhausted(
                error, reason=reason, attempts=self.attempts, history=history
            ) from error
        return dataclasses.replace(self, retries_used=self.retries_used + 1, history=history)

    def delay(self, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before the retry just counted (``rng=None``: no jitter)."""
        backoff = min(
            _exponential(self.base_delay, self.factor, max(self.retries_used, 1)), self.max_delay
        )
        if rng is not None and self.jitter:
            backoff = min(backoff * (1 + rng.uniform(-self.jitter, self.jitter)), self.max_delay)
        if retry_after is not None:
            backoff = max(backoff, min(max(retry_after, 0.0), self.max_retry_after))
        return backoff


def _exponential(base: float, factor: float, attempt: int) -> float:
    try:
        return base * factor ** (attempt - 1)
    except OverflowError:
        return math.inf


# The longest quick retry wait. A segment whose Retry-After is longer is left to the chapter-level
# retry queue instead of blocking a connection worker; an API call waits this long at most.
MAX_QUICK_WAIT = 5.0


def segment_backoff(attempt: int, *, base: float, retry_after: float | None, cap: float) -> float:
    """Wait before quick retry ``attempt`` (1-based) of one segment request.

    ``base * 2**(attempt-1)``, at least ``retry_after`` when the server sent one, and never more
    than ``cap``: a segment retry happens inside a chapter attempt, so it must stay short.
    """
    backoff = _exponential(base, 2.0, max(attempt, 1))
    if retry_after is not None:
        backoff = max(backoff, retry_after)
    return max(0.0, min(backoff, cap))


# --- the chapter queue ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetryDecision(Generic[T]):
    """What ``record_failure`` decided; ``error`` is the final error when ``retry`` is False."""

    item: T
    retry: bool
    kind: FailureKind
    attempt: int  # retry: the number of the next attempt; else: attempts made
    due_at: float | None
    delay: float | None
    reason: GiveUpReason | None
    error: DownloadError


class _State(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _Record:
    order: int
    policy: BackoffPolicy
    state: _State


class RetryCoordinator(Generic[T]):
    """The work queue of chapters, first attempts and retries alike (SPEC §5).

    Items run in (due time, order key) order, so a retry that is due competes fairly with
    first attempts. Thread-safe; every method is short and never blocks on anything but the
    lock. ``rng=None`` uses a private unseeded ``random.Random`` (jitter on); set the policy's
    ``jitter=0`` for exact delays.
    """

    def __init__(
        self,
        policy: BackoffPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._records: dict[T, _Record] = {}
        self._heap: list[tuple[float, int, int, T]] = []
        self._seq = 0  # keeps heap entries unique so items themselves are never compared

    def add_many(self, items: Iterable[tuple[T, int]]) -> None:
        """Queue first attempts all due at the same instant, so they run in ``order``."""
        with self._lock:
            batch = list(items)
            seen: set[T] = set()
            for item, _order in batch:  # all or nothing: check before queueing any
                if item in seen or item in self._records:
                    raise ValueError(f"{item!r} is already queued or known")
                seen.add(item)
            now = self._clock()
            for item, order in batch:
                self._records[item] = _Record(order, self._policy, _State.WAITING)
                self._push(item, now, order)

    def _push(self, item: T, due_at: float, order: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due_at, order, self._seq, item))

    def pop_ready(self) -> T | None:
        """The due item with the earliest due time (ties: lowest order key), or None."""
        with self._lock:
            if not self._heap or self._heap[0][0] > self._clock():
                return None
            item = heapq.heappop(self._heap)[3]
            self._records[item].state = _State.RUNNING
            return item

    def record_failure(self, item: T, error: DownloadError) -> RetryDecision[T]:
        """Count a failed attempt of a running item and schedule its retry if allowed."""
        with self._lock:
            record = self._running(item)
            policy = record.policy
            try:
                policy = policy.increment(error)
            except RetriesExhausted as final:
                record.policy = dataclasses.replace(policy, history=final.history)
                record.state = _State.FAILED
                return RetryDecision(
                    item=item, retry=False, kind=error.kind, attempt=final.attempts,
                    due_at=None, delay=None, reason=final.reason, error=final,
                )  # fmt: skip
            wait = policy.delay(retry_after=error.retry_after, rng=self._rng)
            due_at = self._clock() + wait
            record.policy, record.state = policy, _State.WAITING
            self._push(item, due_at, record.order)
            return RetryDecision(
                item=item, retry=True, kind=error.kind, attempt=policy.attempts,
                due_at=due_at, delay=wait, reason=None, error=error,
            )  # fmt: skip

    def requeue(self, item: T, due_at: float) -> None:
        """Put a running item back, due at ``due_at``, without spending a retry (an outage)."""
        with self._lock:
            record = self._running(item)
            record.state = _State.WAITING
            self._push(item, due_at, record.order)

    def record_success(self, item: T) -> None:
        """Mark a running item done."""
        with self._lock:
            self._running(item).state = _State.DONE

    def _running(self, item: T) -> _Record:
        record = self._records.get(item)
        if record is None or record.state is not _State.RUNNING:
            raise ValueError(f"{item!r} is not running (pop it with pop_ready first)")
        return record

    def next_due(self) -> float | None:
        """The earliest due time among waiting items (to wait with a timeout, not spin)."""
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def attempts(self, item: T) -> int:
        """The item's current or next attempt number; attempts made once it is finished."""
        with self._lock:
            return self._records[item].policy.attempts
