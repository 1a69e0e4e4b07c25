"""The connection limit on its own: AIMD steps, Retry-After holds, outages and their backoff.

The clock is a fake one moved by hand wherever a wait or a backoff is asserted; workers are
real threads where it matters that a request is held back.
"""

from __future__ import annotations

import threading
import time

import pytest

from tokysnatcher.errors import FailureKind
from tokysnatcher.net.limits import (
    AUTO_LOW,
    AUTO_START,
    MAX_CONNECTIONS,
    ConnectionLimit,
    Window,
    aimd_step,
    outage_backoff,
)

K = FailureKind
MB = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def window(limit: int, rate: float, **counts: int) -> Window:
    values = {"ended": 100, "failed": 0, "stalls": 0, **counts}
    return Window(limit=limit, rate=rate, saturated=True, **values)


# -- aimd_step: the pure decision ------------------------------------------------------------------
def test_a_connection_is_added_while_throughput_rises() -> None:
    first = aimd_step(window(4, 4 * MB), None, best_per_connection=MB, cooling=False)
    assert first is not None
    assert (first.limit, first.reason) == (5, "throughput rising")
    # 5 connections brought 20 % more: one more again.
    step = aimd_step(window(5, 4.8 * MB), window(4, 4 * MB), best_per_connection=MB, cooling=False)
    assert step is not None
    assert step.limit == 6


def test_an_increase_that_brings_nothing_is_taken_back() -> None:
    # A total cap: 5 connections carry what 4 did, each less than before.
    before = window(4, 8 * MB)
    step = aimd_step(window(5, 8 * MB), before, best_per_connection=2 * MB, cooling=False)
    assert step is not None
    assert (step.limit, step.reason) == (4, "throughput flat")


def test_no_increase_without_waiting_work_or_with_frequent_errors_or_at_the_top() -> None:
    idle = Window(limit=4, rate=MB, saturated=False, ended=50, failed=0, stalls=0)
    assert aimd_step(idle, None, best_per_connection=MB, cooling=False) is None
    failing = window(4, 4 * MB, failed=10)
    assert aimd_step(failing, None, best_per_connection=MB, cooling=False) is None
    top = window(MAX_CONNECTIONS, 16 * MB)
    assert aimd_step(top, None, best_per_connection=MB, cooling=False) is None
    throttled_at_5 = window(4, 4 * MB)
    assert aimd_step(throttled_at_5, None, best_per_connection=MB, cooling=False, ceiling=4) is None
    assert aimd_step(window(4, 4 * MB), None, best_per_connection=MB, cooling=True) is None


def test_a_rising_stall_rate_halves_but_never_below_the_floor() -> None:
    before = window(8, 8 * MB, stalls=1)
    step = aimd_step(window(8, 4 * MB, stalls=20), before, best_per_connection=MB, cooling=False)
    assert step is not None
    assert (step.limit, step.reason) == (4, "stalls rising")
    low = aimd_step(window(3, MB, stalls=20), None, best_per_connection=MB, cooling=False)
    assert low is not None
    assert low.limit == AUTO_LOW


def test_outage_probes_back_off_to_a_cap() -> None:
    assert [outage_backoff(n) for n in range(7)] == [1, 2, 4, 8, 15, 15, 15]
    assert outage_backoff(10_000) == 15


# -- ConnectionLimit ----------------------------------------------------------------------------
def test_auto_starts_at_four_and_a_fixed_count_never_moves() -> None:
    clock = Clock()
    auto = ConnectionLimit("auto", clock=clock)
    fixed = ConnectionLimit(3, clock=clock)
    assert (auto.limit, auto.view().reason) == (AUTO_START, "auto")
    assert (fixed.limit, fixed.view().reason) == (3, "")
    for limit in (auto, fixed):
        total = 0
        for _ in range(5):  # five windows of rising traffic, work always waiting
            clock.now += 1.0
            total += (limit.limit + 1) * MB
            limit.tick(total, backlog=100)
            limit.tick(total, backlog=100)
    assert auto.limit > AUTO_START
    assert auto.view().reason == "auto: throughput rising"
    assert fixed.limit == 3


def test_a_burst_of_429s_halves_at_once_and_is_reported_in_one_line() -> None:
    clock = Clock()
    limit = ConnectionLimit("auto", clock=clock)
    limit.set_limit(8)
    limit.auto = True  # by hand to 8, then auto again: the burst below must halve it
    limit.take_notices()
    for _ in range(4):
        limit.failed(K.RATE_LIMITED, "chapter 1 segment 2: HTTP 429", retry_after=3.0)
        clock.now += 0.2
    assert limit.limit == 4
    assert limit.view().reason == "auto: server throttling"
    warnings = [text for text, level in limit.take_notices() if level == "warning"]
    assert warnings == [
        "the site is limiting requests: 3 answers 429 (too many requests) in 1 s; "
        "waiting 3 s before trying again, with at most 4 connections"
    ]
    # Said once, not once per answer.
    limit.failed(K.RATE_LIMITED, "HTTP 429", retry_after=3.0)
    assert not [text for text, level in limit.take_notices() if level == "warning"]


def test_retry_after_holds_every_request_to_the_host_until_it_passes() -> None:
    clock = Clock()
    limit = ConnectionLimit(8, clock=clock)
    stop = threading.Event()
    limit.failed(K.RATE_LIMITED, "HTTP 429", retry_after=5.0)
    started: list[int] = []

    def worker(n: int) -> None:
        if limit.acquire(stop):
            started.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)
    assert started == []  # 8 places free, yet nobody may ask the host for 5 s
    clock.now += 5.0
    for thread in threads:
        thread.join(2)
    assert sorted(started) == [0, 1, 2]


def test_the_limit_caps_requests_in_flight_and_set_limit_changes_it_at_run_time() -> None:
    limit = ConnectionLimit(2, clock=Clock())
    stop = threading.Event()
    assert limit.acquire(stop)
    assert limit.acquire(stop)
    third = threading.Thread(target=limit.acquire, args=(stop,))
    third.start()
    third.join(0.4)
    assert third.is_alive()  # a third request waits for a place
    assert limit.set_limit(3) == 3
    third.join(2)
    assert not third.is_alive()
    assert limit.view().reason == "set by hand"
    assert limit.set_limit(99) == limit.threads
    stop.set()


def test_an_outage_lets_one_probe_through_with_backoff_and_ends_on_a_success() -> None:
    clock = Clock()
    limit = ConnectionLimit("auto", max_wait=60.0, clock=clock)
    stop = threading.Event()
    for _ in range(2):
        limit.failed(K.NETWORK, "connection refused")
    assert not limit.waiting_for_network  # a streak of two is a hiccup
    clock.now += 1.5
    limit.failed(K.NETWORK, "chapter 2 segment 1: connection refused")
    assert limit.waiting_for_network
    assert limit.view().network_retry_at == clock.now + 1.0
    assert limit.take_notices()[-1] == (
        "every request fails (chapter 2 segment 1: connection refused): the network or the "
        "site is down; waiting up to 60 s for it, next try in 1s",
        "warning",
    )
    # Nothing starts before the probe is due; then exactly one request, the probe.
    holder = threading.Thread(target=limit.acquire, args=(stop,))
    holder.start()
    holder.join(0.3)
    assert holder.is_alive()
    clock.now += 1.0
    holder.join(2)
    assert not holder.is_alive()
    second = threading.Thread(target=limit.acquire, args=(stop,))
    second.start()
    second.join(0.3)
    assert second.is_alive()  # the probe is in flight: nothing else goes
    # The probe fails: the next one is 2 s away.
    limit.failed(K.NETWORK, "connection refused")
    limit.release()
    assert limit.view().network_retry_at == clock.now + 2.0
    limit.succeeded()
    assert not limit.waiting_for_network
    second.join(2)
    assert not second.is_alive()
    assert limit.take_notices()[-1][0].startswith("the site answers again after")
    stop.set()


def test_an_outage_longer_than_max_wait_gives_up_naming_it() -> None:
    clock = Clock()
    limit = ConnectionLimit(4, max_wait=30.0, clock=clock)
    for _ in range(3):
        clock.now += 1.0
        limit.failed(K.NETWORK, "chapter 1 playlist: connection refused")
    assert limit.waiting_for_network
    assert not limit.gave_up
    clock.now += 29.0
    limit.failed(K.NETWORK, "chapter 1 playlist: connection refused")
    assert limit.gave_up
    error = limit.outage_error()
    assert error.kind is K.NETWORK
    assert error.message == (
        "the network or the site was down for 31 s (--max-wait 30); "
        "last error: chapter 1 playlist: connection refused"
    )


@pytest.mark.parametrize("kind", [K.HTTP_5XX, K.TIMEOUT, K.NOT_FOUND])
def test_answers_from_the_server_are_no_outage(kind: FailureKind) -> None:
    clock = Clock()
    limit = ConnectionLimit("auto", clock=clock)
    for _ in range(10):
        clock.now += 1.0
        limit.failed(kind, "x")
    assert not limit.waiting_for_network


def test_a_lone_429_keeps_auto_below_the_limit_the_server_objected_to_for_a_while() -> None:
    clock = Clock()
    limit = ConnectionLimit("auto", clock=clock)
    limit.set_limit(6)
    limit.auto = True
    total = 0

    def second(connections: int) -> None:
        nonlocal total
        clock.now += 1.0
        total += connections * MB  # every connection carries the same: growth pays
        limit.tick(total, backlog=100)

    second(6)
    limit.failed(K.RATE_LIMITED, "HTTP 429")
    second(6)
    assert (limit.limit, limit.view().reason) == (5, "auto: server throttling")
    for _ in range(25):
        second(limit.limit)
        assert limit.limit <= 5
    for _ in range(10):  # the 429 is forgotten after 30 s: auto probes above again
        second(limit.limit)
    assert limit.limit > 5
