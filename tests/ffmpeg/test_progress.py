"""FfmpegProgressTracker: parsing ffmpeg's -progress stream and stall detection, fake clock."""

from __future__ import annotations

import pytest

from tokysnatcher.ffmpeg.progress import FfmpegProgressTracker, ProgressSample


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def block(
    tracker: FfmpegProgressTracker, *, us: int, size: int, end: bool = False
) -> ProgressSample | None:
    sample = None
    for line in (
        "bitrate=  64.0kbits/s",
        f"total_size={size}",
        f"out_time_us={us}",
        f"out_time_ms={us}",
        f"out_time=00:00:{us / 1e6:09.6f}",
        "dup_frames=0",
        "speed= 12.5x",
        f"progress={'end' if end else 'continue'}",
    ):
        sample = tracker.feed(line + "\n", duration=10.0)
    return sample


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_fresh_tracker_stalls_only_after_the_timeout(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=30, clock=clock)
    clock.advance(29.9)
    assert not tracker.stalled()
    clock.advance(0.1)
    assert tracker.stalled()


def test_advancing_output_time_keeps_it_alive(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    for second in range(1, 20):
        clock.advance(4)
        block(tracker, us=second * 1_000_000, size=1000)  # size frozen, time advances
        assert not tracker.stalled()
    assert tracker.seconds_done == pytest.approx(19.0)


def test_growing_size_alone_is_an_advance(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    for step in range(1, 10):
        clock.advance(4)
        block(tracker, us=0, size=step * 100)
        assert not tracker.stalled()
    assert tracker.total_size == 900


def test_repeated_identical_blocks_are_a_stall(clock: FakeClock) -> None:
    """ffmpeg keeps printing the same block while it waits for input: that is not progress."""
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    block(tracker, us=2_000_000, size=5000)
    for _ in range(4):
        clock.advance(1)
        block(tracker, us=2_000_000, size=5000)
    assert not tracker.stalled()
    clock.advance(1)
    block(tracker, us=2_000_000, size=5000)
    assert tracker.stalled()


def test_stalled_accepts_an_explicit_now(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    assert tracker.stalled(now=clock.now + 5)
    assert not tracker.stalled(now=clock.now + 4.99)


def test_block_end_returns_a_sample_with_fraction_and_speed(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    sample = block(tracker, us=2_500_000, size=40_000)
    assert sample == ProgressSample(
        seconds_done=2.5, total_size=40_000, speed=12.5, fraction=0.25, finished=False
    )
    assert tracker.fraction(None) is None
    assert tracker.fraction(2.0) == 1.0  # clamped


def test_end_marker_finishes_and_restarts_the_stall_window(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    block(tracker, us=1_000_000, size=10)
    clock.advance(4)
    sample = block(tracker, us=1_000_000, size=10, end=True)
    assert sample is not None
    assert sample.finished
    assert sample.fraction == 1.0
    assert tracker.finished
    clock.advance(4.9)
    assert not tracker.stalled()  # ffmpeg still gets a window to exit after "end"
    clock.advance(0.1)
    assert tracker.stalled()


def test_only_non_block_lines_return_none(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    assert tracker.feed("out_time_us=10") is None
    assert tracker.feed(b"progress=continue\n") is not None


@pytest.mark.parametrize(
    "line",
    [
        "out_time_us=N/A",
        "out_time_ms=N/A",
        "out_time=N/A",
        "total_size=N/A",
        "speed=N/A",
        "garbage without equals",
        "",
        "out_time=-00:00:00.023220",
        "\xff\xfe=\x00",
    ],
)
def test_unusable_values_are_ignored_and_not_an_advance(clock: FakeClock, line: str) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    clock.advance(5)
    assert tracker.feed(line) is None
    assert tracker.stalled()
    assert tracker.seconds_done == 0.0
    assert tracker.speed is None


def test_out_time_clock_format_and_bytes_input(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    tracker.feed(b"out_time=01:02:03.500000\n")
    assert tracker.seconds_done == pytest.approx(3723.5)


def test_time_never_goes_backwards(clock: FakeClock) -> None:
    tracker = FfmpegProgressTracker(stall_timeout=5, clock=clock)
    tracker.feed("out_time_us=3000000")
    tracker.feed("out_time_us=1000000")
    assert tracker.seconds_done == 3.0


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_timeout"):
        FfmpegProgressTracker(stall_timeout=0)
