"""Tests for download/retry.py: classification, Retry-After, backoff and the chapter queue.

No test sleeps on a schedule: the coordinator runs on a fake clock. Classification is checked
against real exception instances, several of them produced by real requests to 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import random
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email.utils import formatdate

import pytest
import requests
import urllib3.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from tokysnatcher.download.retry import (
    BackoffPolicy,
    GiveUpReason,
    RetriesExhausted,
    RetryCoordinator,
    segment_backoff,
)
from tokysnatcher.errors import (
    DiskError,
    DownloadError,
    FailureKind,
    Interrupted,
    SegmentError,
    TokysnatcherError,
)
from tokysnatcher.net.failures import (
    classify_exception,
    classify_status,
    error_from_exception,
    parse_retry_after,
)

K = FailureKind
NOW = 1_800_000_000.0  # a fixed epoch time for HTTP-date arithmetic


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def err(kind: FailureKind = K.NETWORK, retry_after: float | None = None) -> DownloadError:
    return SegmentError(f"segment 1: {kind.value}", kind=kind, retry_after=retry_after)


def policy(**changes: object) -> BackoffPolicy:
    values: dict[str, object] = {"max_retries": 3, "base_delay": 2.0, "jitter": 0.0}
    values.update(changes)
    return BackoffPolicy(**values)  # type: ignore[arg-type]


# --- backoff policy -------------------------------------------------------------------------


def test_default_backoff_schedule_is_2_4_8() -> None:
    current = BackoffPolicy(max_retries=3, base_delay=2.0)
    delays = []
    for _ in range(3):
        current = current.increment(err())
        delays.append(current.delay())  # rng=None: exact, no jitter
    assert delays == [2.0, 4.0, 8.0]
    assert current.retries_used == 3
    assert current.attempts == 4
    assert current.is_exhausted


def test_increment_returns_a_new_value_and_leaves_the_old_one_alone() -> None:
    first = policy()
    second = first.increment(err(K.TIMEOUT))
    assert (first.retries_used, first.history) == (0, ())
    assert (second.retries_used, second.history) == (1, (K.TIMEOUT,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.retries_used = 5  # type: ignore[misc]


def test_jitter_stays_within_ten_percent_and_is_reproducible() -> None:
    current = BackoffPolicy(max_retries=10, base_delay=2.0)
    samples = []
    for retry in range(1, 8):
        current = current.increment(err())
        exact = 2.0 * 2 ** (retry - 1)
        rng = random.Random(retry)
        values = [current.delay(rng=rng) for _ in range(200)]
        assert all(0.9 * exact <= v <= 1.1 * exact for v in values)
        assert max(values) - min(values) > 0.1 * exact  # it really spreads
        samples.append(values)
    again = BackoffPolicy(max_retries=10, base_delay=2.0, retries_used=3)
    rng_a, rng_b = random.Random(42), random.Random(42)
    assert [again.delay(rng=rng_a) for _ in range(5)] == [again.delay(rng=rng_b) for _ in range(5)]


def test_delay_is_capped_at_max_delay_even_with_jitter() -> None:
    current = policy(max_retries=10, max_delay=10.0)
    exact = []
    for _ in range(6):
        current = current.increment(err())
        exact.append(current.delay())
    assert exact == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    jittered = dataclasses.replace(current, jitter=0.1)
    rng = random.Random(1)
    assert all(9.0 <= jittered.delay(rng=rng) <= 10.0 for _ in range(100))


def test_a_huge_retry_count_does_not_overflow() -> None:
    assert policy(max_retries=100_000, retries_used=50_000).delay() == 300.0


def test_retry_budget_allows_exactly_max_retries() -> None:
    current = policy(max_retries=3)
    for _ in range(3):
        current = current.increment(err(K.HTTP_5XX))
    last = err(K.HTTP_5XX)
    with pytest.raises(RetriesExhausted) as caught:
        current.increment(last)
    final = caught.value
    assert isinstance(final, DownloadError)
    assert isinstance(final, TokysnatcherError)
    assert final.reason is GiveUpReason.EXHAUSTED
    assert final.kind is K.HTTP_5XX
    assert final.last_error is last
    assert final.__cause__ is last
    assert final.attempts == 4
    assert final.history == (K.HTTP_5XX,) * 4
    assert "gave up after 4 attempts" in final.message
    assert final.hint  # the user is told what to do


def test_zero_retries_gives_up_on_the_first_failure() -> None:
    with pytest.raises(RetriesExhausted) as caught:
        policy(max_retries=0).increment(err())
    assert caught.value.attempts == 1


@pytest.mark.parametrize("kind", [K.NOT_FOUND, K.INVALID_MEDIA, K.DISK, K.CANCELLED])
def test_permanent_kinds_are_never_retried(kind: FailureKind) -> None:
    with pytest.raises(RetriesExhausted) as caught:
        policy(max_retries=50).increment(err(kind))
    expected = GiveUpReason.CANCELLED if kind is K.CANCELLED else GiveUpReason.PERMANENT
    assert caught.value.reason is expected
    assert caught.value.kind is kind
    assert caught.value.attempts == 1


def test_a_disk_error_keeps_its_hint_when_given_up() -> None:
    disk = DiskError("cannot write 01 - Prologue.mp3: No space left on device")
    with pytest.raises(RetriesExhausted) as caught:
        policy().increment(disk)
    assert caught.value.hint == disk.hint
    assert caught.value.kind.stops_run


@pytest.mark.parametrize("kind", [k for k in FailureKind if k.transient])
def test_transient_kinds_are_retried(kind: FailureKind) -> None:
    assert policy().increment(err(kind)).retries_used == 1


def test_audio_shorter_than_declared_is_invalid_media_yet_retried() -> None:
    short = DownloadError("chapter 2: the audio lasts 2.1 s", kind=K.INVALID_MEDIA, retry=True)
    once = policy(max_retries=1).increment(short)
    assert once.retries_used == 1
    with pytest.raises(RetriesExhausted) as caught:
        once.increment(short)
    assert caught.value.reason is GiveUpReason.EXHAUSTED
    assert caught.value.kind is K.INVALID_MEDIA
    assert not DownloadError("x", kind=K.NETWORK, retry=False).transient


def test_retry_after_is_honoured_and_capped() -> None:
    first = policy().increment(err(K.RATE_LIMITED))
    assert first.delay(retry_after=30.0) == 30.0
    assert first.delay(retry_after=3600.0) == 60.0  # max_retry_after
    assert first.delay(retry_after=0.5) == 2.0  # never below the backoff
    assert first.delay(retry_after=-10.0) == 2.0
    assert dataclasses.replace(first, max_retry_after=5.0).delay(retry_after=30.0) == 5.0


@pytest.mark.parametrize(
    "changes",
    [{"max_retries": -1}, {"base_delay": -1.0}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_nonsense_policies_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        policy(**changes)


def test_segment_backoff_doubles_honours_retry_after_and_stays_under_the_cap() -> None:
    waits = [segment_backoff(n, base=0.5, retry_after=None, cap=5.0) for n in (1, 2, 3, 4)]
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert segment_backoff(5, base=0.5, retry_after=None, cap=5.0) == 5.0
    assert segment_backoff(1, base=0.5, retry_after=3.0, cap=5.0) == 3.0
    assert segment_backoff(1, base=0.5, retry_after=120.0, cap=5.0) == 5.0
    assert segment_backoff(3, base=0.5, retry_after=0.1, cap=5.0) == 2.0
    assert segment_backoff(10_000, base=0.5, retry_after=None, cap=5.0) == 5.0


# --- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW - 90, usegmt=True), 0.0),
        (formatdate(NOW + 30, localtime=False), 30.0),  # "-0000" zone
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("1e9", None),
        ("Mon, 99 Foo 2026 25:61:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


# --- the coordinator ------------------------------------------------------------------------


def make(clock: FakeClock, **changes: object) -> RetryCoordinator[int]:
    return RetryCoordinator(policy(**changes), clock=clock)


def test_first_attempts_run_in_chapter_order() -> None:
    coordinator = make(FakeClock())
    coordinator.add_many([(3, 3), (1, 1), (2, 2)])
    assert [coordinator.pop_ready() for _ in range(4)] == [1, 2, 3, None]


def test_a_first_attempt_due_earlier_goes_before_a_later_retry() -> None:
    clock = FakeClock()
    coordinator = make(clock, base_delay=4.0)
    coordinator.add_many([(1, 1), (2, 2), (3, 3)])
    assert coordinator.pop_ready() == 1
    coordinator.record_failure(1, err())  # retry of chapter 1 due at t=4
    clock.advance(5)
    # Chapter 1 has the lower order key, but chapter 2 has been due since t=0.
    assert [coordinator.pop_ready() for _ in range(4)] == [2, 3, 1, None]


def test_a_retry_due_earlier_goes_before_a_first_attempt_added_later() -> None:
    clock = FakeClock()
    coordinator = make(clock)
    coordinator.add_many([(2, 2)])
    assert coordinator.pop_ready() == 2
    coordinator.record_failure(2, err())  # due at t=2
    clock.advance(3)
    coordinator.add_many([(1, 1)])  # due at t=3
    assert [coordinator.pop_ready() for _ in range(3)] == [2, 1, None]


def test_a_requeued_item_spends_no_retry() -> None:
    # An attempt lost to an outage goes back without counting against the budget.
    clock = FakeClock()
    coordinator = make(clock, max_retries=1)
    coordinator.add_many([(1, 1)])
    assert coordinator.pop_ready() == 1
    for _ in range(3):
        coordinator.requeue(1, clock() + 1.0)
        assert coordinator.pop_ready() is None
        clock.advance(1)
        assert coordinator.pop_ready() == 1
    assert coordinator.attempts(1) == 1
    assert coordinator.record_failure(1, err()).retry  # the one retry is still there


def test_equal_due_times_are_broken_by_order() -> None:
    clock = FakeClock()
    coordinator = make(clock)
    coordinator.add_many([(5, 5), (9, 9)])
    assert [coordinator.pop_ready(), coordinator.pop_ready()] == [5, 9]
    coordinator.record_failure(9, err())
    coordinator.record_failure(5, err())  # both due at t=2
    clock.advance(2)
    assert [coordinator.pop_ready(), coordinator.pop_ready()] == [5, 9]


def test_nothing_is_handed_out_before_it_is_due_and_next_due_says_when() -> None:
    clock = FakeClock(100.0)
    coordinator = make(clock)
    assert coordinator.next_due() is None
    coordinator.add_many([(1, 1)])
    assert coordinator.next_due() == 100.0
    assert coordinator.pop_ready() == 1
    decision = coordinator.record_failure(1, err())
    assert (decision.retry, decision.attempt, decision.delay, decision.due_at) == (
        True,
        2,
        2.0,
        102.0,
    )
    assert coordinator.next_due() == 102.0
    clock.advance(1.999)
    assert coordinator.pop_ready() is None
    clock.advance(0.001)
    assert coordinator.pop_ready() == 1
    assert coordinator.next_due() is None


def test_a_chapter_is_retried_max_retries_times_then_given_up() -> None:
    clock = FakeClock()
    coordinator = make(clock, max_retries=3)
    coordinator.add_many([(7, 7)])
    decisions = []
    while (item := coordinator.pop_ready()) is not None or coordinator.next_due() is not None:
        if item is None:
            clock.now = coordinator.next_due() or clock.now
            continue
        decisions.append(coordinator.record_failure(item, err(K.TIMEOUT)))
    assert [d.retry for d in decisions] == [True, True, True, False]
    assert [d.delay for d in decisions[:3]] == [2.0, 4.0, 8.0]
    assert clock.now == 14.0  # 2 + 4 + 8 seconds of waiting, all on the fake clock
    final = decisions[-1]
    assert final.reason is GiveUpReason.EXHAUSTED
    assert isinstance(final.error, RetriesExhausted)
    assert final.attempt == 4
    assert coordinator.attempts(7) == 4
    assert final.error.history == (K.TIMEOUT,) * 4
    assert coordinator.next_due() is None


@pytest.mark.parametrize("kind", [K.NOT_FOUND, K.INVALID_MEDIA, K.DISK, K.CANCELLED])
def test_coordinator_never_requeues_a_permanent_failure(kind: FailureKind) -> None:
    coordinator = make(FakeClock())
    coordinator.add_many([(1, 1)])
    coordinator.pop_ready()
    decision = coordinator.record_failure(1, err(kind))
    assert not decision.retry
    assert decision.reason in (GiveUpReason.PERMANENT, GiveUpReason.CANCELLED)
    assert decision.error.kind is kind
    assert coordinator.next_due() is None
    assert isinstance(decision.error, RetriesExhausted)
    assert decision.error.history == (kind,)


def test_coordinator_honours_a_servers_retry_after() -> None:
    clock = FakeClock()
    coordinator = make(clock)
    coordinator.add_many([(1, 1), (2, 2)])
    coordinator.pop_ready()
    coordinator.pop_ready()
    header = formatdate(NOW + 40, usegmt=True)
    slow = coordinator.record_failure(1, err(K.RATE_LIMITED, parse_retry_after(header, now=NOW)))
    hostile = coordinator.record_failure(2, err(K.RATE_LIMITED, retry_after=86_400.0))
    assert slow.delay == 40.0
    assert hostile.delay == 60.0
    assert hostile.kind is K.RATE_LIMITED


def test_success_keeps_the_attempt_count() -> None:
    clock = FakeClock()
    coordinator = make(clock)
    coordinator.add_many([(1, 1)])
    coordinator.pop_ready()
    coordinator.record_failure(1, err(K.AUTH))
    clock.advance(2)
    assert coordinator.pop_ready() == 1
    coordinator.record_success(1)
    assert coordinator.attempts(1) == 2
    assert coordinator.pop_ready() is None


def test_misuse_is_refused() -> None:
    coordinator = make(FakeClock())
    coordinator.add_many([(1, 1)])
    with pytest.raises(ValueError, match="already"):
        coordinator.add_many([(1, 1)])
    with pytest.raises(ValueError, match="not running"):
        coordinator.record_failure(1, err())  # still waiting
    with pytest.raises(ValueError, match="already"):
        coordinator.add_many([(2, 2), (3, 3), (2, 2)])
    coordinator.add_many([(2, 2)])  # a bad batch queued nothing: 2 is not known
    coordinator.pop_ready()
    coordinator.record_success(1)
    with pytest.raises(ValueError, match="not running"):
        coordinator.record_success(1)


def test_default_rng_jitters_within_bounds() -> None:
    clock = FakeClock()
    coordinator: RetryCoordinator[int] = RetryCoordinator(
        BackoffPolicy(max_retries=1, base_delay=10.0), clock=clock
    )
    coordinator.add_many([(i, i) for i in range(50)])
    delays = []
    while (item := coordinator.pop_ready()) is not None:
        delays.append(coordinator.record_failure(item, err()).delay)
    assert all(d is not None and 9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 1


# ordering property: the coordinator behaves like the obvious model "the earliest (due, order)
# among due items", whatever mix of adds, pops, failures and clock moves happens.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 20)),
        st.tuples(st.just("pop"), st.just(0)),
        st.tuples(st.just("fail"), st.integers(0, 30)),
        st.tuples(st.just("tick"), st.integers(0, 6)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_ordering_matches_a_simple_model(ops: list[tuple[str, int]]) -> None:
    clock = FakeClock()
    coordinator = make(clock, max_retries=1000)
    model: dict[int, tuple[float, int]] = {}  # item -> (due, order)
    orders: dict[int, int] = {}
    running: list[int] = []
    next_item = 0
    for op, value in ops:
        if op == "add":
            coordinator.add_many([(next_item, value)])
            model[next_item] = (clock.now, value)
            orders[next_item] = value
            next_item += 1
        elif op == "pop":
            ready = [(key, item) for item, key in model.items() if key[0] <= clock.now]
            expected = min(ready)[1] if ready else None
            # Ties on (due, order) between different items may go either way.
            got = coordinator.pop_ready()
            if expected is None:
                assert got is None
            else:
                assert got is not None
                assert model[got] == model[expected]
                running.append(got)
                del model[got]
        elif op == "fail" and running:
            item = running.pop(0)
            decision = coordinator.record_failure(item, err(K.RATE_LIMITED, float(value)))
            assert decision.due_at is not None
            model[item] = (decision.due_at, orders[item])
        elif op == "tick":
            clock.advance(value)
        expected_next = min((due for due, _ in model.values()), default=None)
        assert coordinator.next_due() == expected_next


def test_many_threads_lose_and_duplicate_nothing() -> None:
    items = 1000
    coordinator: RetryCoordinator[int] = RetryCoordinator(
        BackoffPolicy(max_retries=4, base_delay=0.0, jitter=0.0)
    )
    coordinator.add_many([(i, i) for i in range(items)])
    lock = threading.Lock()
    in_flight: set[int] = set()
    finished: Counter[int] = Counter()
    tries: Counter[int] = Counter()
    problems: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            with lock:
                if sum(finished.values()) >= items:
                    return
            item = coordinator.pop_ready()
            if item is None:
                time.sleep(0)
                continue
            with lock:
                if item in in_flight:
                    problems.append(f"{item} handed out twice")
                in_flight.add(item)
                tries[item] += 1
            fail = rng.random() < 0.5
            with lock:
                in_flight.discard(item)
            if fail:
                kind = rng.choice([K.NETWORK, K.NETWORK, K.HTTP_5XX, K.NOT_FOUND])
                decision = coordinator.record_failure(item, err(kind))
                if not decision.retry:
                    with lock:
                        finished[item] += 1
            else:
                coordinator.record_success(item)
                with lock:
                    finished[item] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    assert set(finished) == set(range(items))
    assert set(finished.values()) == {1}
    assert all(tries[i] == coordinator.attempts(i) for i in range(items))
    assert coordinator.next_due() is None


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, K.AUTH),
        (403, K.AUTH),
        (404, K.NOT_FOUND),
        (410, K.NOT_FOUND),
        (429, K.RATE_LIMITED),
        (408, K.TIMEOUT),
        (500, K.HTTP_5XX),
        (502, K.HTTP_5XX),
        (503, K.HTTP_5XX),
        (504, K.HTTP_5XX),
        (599, K.HTTP_5XX),
        (400, K.INVALID_MEDIA),
        (405, K.INVALID_MEDIA),
        (413, K.INVALID_MEDIA),
        (451, K.INVALID_MEDIA),
        (302, K.INVALID_MEDIA),
    ],
)
def test_classify_status(status: int, kind: FailureKind) -> None:
    assert classify_status(status) is kind


_POOL = urllib3.HTTPConnectionPool("127.0.0.1")  # constructing it opens no connection


def _response(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = http.client.responses.get(status, "")
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (requests.exceptions.ConnectTimeout("connect timed out"), K.NETWORK),
        (requests.exceptions.ReadTimeout("read timed out"), K.TIMEOUT),
        (requests.exceptions.Timeout("timed out"), K.TIMEOUT),
        (requests.exceptions.ConnectionError("reset"), K.NETWORK),
        (requests.exceptions.SSLError("bad handshake"), K.NETWORK),
        (requests.exceptions.ChunkedEncodingError("broken"), K.NETWORK),
        (requests.exceptions.ContentDecodingError("bad gzip"), K.NETWORK),
        (requests.exceptions.HTTPError(response=_response(503)), K.HTTP_5XX),
        (requests.exceptions.HTTPError(response=_response(429)), K.RATE_LIMITED),
        (requests.exceptions.HTTPError(response=_response(403)), K.AUTH),
        (requests.exceptions.HTTPError(response=_response(404)), K.NOT_FOUND),
        (requests.exceptions.HTTPError("no response attached"), K.NETWORK),
        (requests.exceptions.InvalidURL("http://[::1"), K.INVALID_MEDIA),
        (requests.exceptions.MissingSchema("seg.ts"), K.INVALID_MEDIA),
        (requests.exceptions.TooManyRedirects("loop"), K.INVALID_MEDIA),
        (urllib3.exceptions.ReadTimeoutError(_POOL, "/seg.ts", "read timed out"), K.TIMEOUT),
        (urllib3.exceptions.ProtocolError("Connection broken"), K.NETWORK),
        (http.client.IncompleteRead(b"abc", 10), K.NETWORK),
        (http.client.RemoteDisconnected("closed"), K.NETWORK),
        (OSError(errno.ENOSPC, "No space left on device"), K.DISK),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), K.DISK),
        (OSError(errno.EROFS, "Read-only file system"), K.DISK),
        (OSError(errno.EACCES, "Permission denied"), K.DISK),
        (OSError(errno.EPERM, "Operation not permitted"), K.DISK),
        (PermissionError("no errno at all"), K.DISK),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), K.NETWORK),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), K.NETWORK),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), K.NETWORK),
        (TimeoutError("timed out"), K.TIMEOUT),
        (ssl.SSLError(1, "[SSL] record layer failure"), K.NETWORK),  # 1 is not EPERM here
        (socket.gaierror(-2, "Name or service not known"), K.NETWORK),
        (subprocess.TimeoutExpired(["ffmpeg"], 30), K.FFMPEG_STALLED),
        (KeyboardInterrupt(), K.CANCELLED),
        (Interrupted("stopped"), K.CANCELLED),
        (SystemExit(1), K.CANCELLED),
        (DiskError("full"), K.DISK),
        (SegmentError("x", kind=K.AUTH), K.AUTH),
        (ValueError("bad playlist"), K.INVALID_MEDIA),
        (RuntimeError("a bug"), K.INVALID_MEDIA),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_classify_exception(exc: BaseException, kind: FailureKind) -> None:
    assert classify_exception(exc) is kind


def test_error_from_exception_writes_one_human_line() -> None:
    reset = error_from_exception(
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "segment 12"
    )
    assert reset.message == "segment 12: connection reset by server"
    assert reset.kind is K.NETWORK
    assert reset.hint

    full = error_from_exception(
        OSError(errno.ENOSPC, "No space left on device", "/lib/a.mp3"), "chapter 3"
    )
    assert isinstance(full, DiskError)
    assert full.message == "chapter 3: no space left on device: /lib/a.mp3"

    stalled = error_from_exception(subprocess.TimeoutExpired(["ffmpeg"], 30), "chapter 2")
    assert stalled.kind is K.FFMPEG_STALLED
    assert "30 s" in stalled.message

    bug = error_from_exception(RuntimeError("line one\nline two " + "x" * 500), "chapter 1")
    assert "\n" not in bug.message
    assert bug.message.startswith("chapter 1: RuntimeError: line one line two")
    assert len(bug.message) < 200

    known = SegmentError("segment 4: HTTP 404", kind=K.NOT_FOUND)
    assert error_from_exception(known, "chapter 1") is known


def test_error_from_exception_keeps_retry_after_of_an_http_error() -> None:
    limited = requests.exceptions.HTTPError(
        response=_response(429, {"Retry-After": formatdate(NOW + 45, usegmt=True)})
    )
    error = error_from_exception(limited, "segment 3", now=NOW)
    assert error.kind is K.RATE_LIMITED
    assert error.retry_after == 45.0
    assert error.message == "segment 3: HTTP 429 Too Many Requests"


# Real requests failures against a tiny misbehaving server on 127.0.0.1.


class _BadServer(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1")
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        path = request_line.split()[1]
        if path == "/503":
            self.wfile.write(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"
            )
        elif path == "/reset":
            linger = struct.pack("ii", 1, 0)  # close with RST, as a crashing server would
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
        elif path == "/truncated":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
        elif path == "/silent":
            self.server.release.wait(5)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def bad_server() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _BadServer)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _raised(url: str, *, timeout: float = 5.0) -> BaseException:
    try:
        with requests.get(url, timeout=timeout) as response:
            response.raise_for_status()
            _ = response.content
    except requests.RequestException as exc:
        return exc
    raise AssertionError(f"{url} did not fail")


def test_real_http_503_is_http_5xx_with_retry_after(bad_server: str) -> None:
    error = error_from_exception(_raised(bad_server + "/503"), "segment 9")
    assert (error.kind, error.retry_after) == (K.HTTP_5XX, 7.0)
    assert error.message == "segment 9: HTTP 503 Service Unavailable"


def test_real_connection_reset_is_network(bad_server: str) -> None:
    error = error_from_exception(_raised(bad_server + "/reset"), "segment 12")
    assert error.kind is K.NETWORK
    assert error.message == "segment 12: connection failed: connection reset by server"


def test_real_truncated_body_is_network(bad_server: str) -> None:
    exc = _raised(bad_server + "/truncated")
    assert isinstance(exc, requests.exceptions.ChunkedEncodingError)
    assert classify_exception(exc) is K.NETWORK


def test_real_read_timeout_is_timeout(bad_server: str) -> None:
    exc = _raised(bad_server + "/silent", timeout=0.3)
    assert isinstance(exc, requests.exceptions.ReadTimeout)
    assert error_from_exception(exc, "segment 1").kind is K.TIMEOUT


def test_real_refused_connection_is_network() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now: the connect is refused at once.
    error = error_from_exception(_raised(f"http://127.0.0.1:{port}/"), "chapter 1")
    assert error.kind is K.NETWORK
    assert error.message == "chapter 1: connection failed: connection refused"
