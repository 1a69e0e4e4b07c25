"""The scheduler on its own: a fake chapter-steps object, an injected clock and random source.

No server and no ffmpeg: :class:`FakeSteps` stands in for the chapter steps (playlist, segment,
conversion) and is scripted per test. The clock moves on by a fixed step each time it is read,
so backoff due times are exact and no test waits for a retry in real time. What is asserted is
what the run tells the user and writes down: each chapter's end, its attempts and retries, the
manifest, and the order things happened in.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tokysnatcher.config.settings import Settings
from tokysnatcher.download.chapter import ChapterJob, Resolved
from tokysnatcher.download.events import (
    ChangeConnections,
    Command,
    PauseChapter,
    RequestRetried,
)
from tokysnatcher.download.results import RunResult
from tokysnatcher.download.scheduler import download_all_chapters
from tokysnatcher.download.state import Chapter, Phase, RunState
from tokysnatcher.errors import DiskError, DownloadError, FailureKind
from tokysnatcher.library.manifest import ChapterStatus, ManifestManager
from tokysnatcher.library.manifest_schema import BookInfo, ExpectedDuration
from tokysnatcher.net.hls import Segment
from tokysnatcher.sources.source import MediaKind, Track

SEGMENT = 1000  # bytes per fake segment


class SteppingClock:
    """Moves on by ``step`` seconds each time it is read (only the scheduler thread reads it)."""

    def __init__(self, step: float = 0.05) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class NoJitter(random.Random):
    """The injected random source: no jitter, so every backoff delay is exact."""

    def uniform(self, a: float, b: float) -> float:
        return 0.0


Script = Callable[[ChapterJob, int], None]  # (job, segment index): raise to fail the request


@dataclass
class FakeSteps:
    """The chapter steps the scheduler calls, scripted: every request succeeds unless told."""

    settings: Settings
    segments: int = 3
    fail: Script = lambda job, index: None
    stop: threading.Event = field(default_factory=threading.Event)
    fetched: dict[tuple[int, int], set[int]] = field(default_factory=dict)  # by attempt
    converted_with: dict[int, set[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def resolve(
        self,
        job: ChapterJob,
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> Resolved:
        segments = tuple(
            Segment(index=n, url=f"http://127.0.0.1/{job.index}/{n}.ts", duration=1.0)
            for n in range(self.segments)
        )
        return Resolved(segments, float(self.segments), None)

    def fetch_segment(
        self,
        job: ChapterJob,
        segment: Segment,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> int:
        self.fail(job, segment.index)
        on_bytes(SEGMENT)
        with self.lock:
            self.fetched.setdefault((job.index, job.generation), set()).add(segment.index)
        return SEGMENT

    def fetch_direct(
        self,
        job: ChapterJob,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool] | None = None,
        on_retry: Callable[[DownloadError, int, float], None] | None = None,
    ) -> int:
        raise AssertionError("no direct tracks here")

    def convert(
        self, job: ChapterJob, on_progress: Callable[[float], None]
    ) -> tuple[int, str, ExpectedDuration | None]:
        with self.lock:
            self.converted_with[job.index] = set(self.fetched.get((job.index, job.generation), ()))
        on_progress(1.0)
        return 2 * SEGMENT, "0" * 64, None

    def connections_in_use(self) -> int:
        return 0


class Recorder:
    """A reporter that keeps every phase change with the clock time it happened at."""

    def __init__(self, clock: SteppingClock, *, interrupt_on: Phase | None = None) -> None:
        self.clock = clock
        self.changes: list[tuple[int, Phase, float, float | None]] = []
        self.retries: list[RequestRetried] = []
        self.interrupt_on = interrupt_on
        self.state: RunState | None = None
        self.post: Callable[[Command], None] | None = None
        self.at_start: list[Command] = []  # posted as the run starts taking commands
        self.when: dict[tuple[int, Phase], Command] = {}  # posted when a chapter reaches it

    def start(self, state: RunState) -> None:
        self.state = state

    def event(self, chapter: Chapter) -> None:
        self.changes.append((chapter.index, chapter.phase, self.clock.now, chapter.retry_due))
        command = self.when.get((chapter.index, chapter.phase))
        if command is not None and self.post is not None:
            self.post(command)
        if chapter.phase is self.interrupt_on:
            raise KeyboardInterrupt  # as Ctrl-C arrives: in the scheduler's own thread

    def retried(self, chapter: Chapter, event: RequestRetried) -> None:
        self.retries.append(event)

    def controls(self, post: Callable[[Command], None] | None) -> None:
        self.post = post
        if post is not None:
            for command in self.at_start:
                post(command)

    def stop(self) -> None:
        pass

    def phases(self, index: int) -> list[Phase]:
        return [phase for number, phase, _, _ in self.changes if number == index]


@dataclass
class Run:
    result: RunResult
    state: RunState
    manifest: ManifestManager
    steps: FakeSteps
    recorder: Recorder


def run(
    tmp_path: Path,
    *,
    chapters: int = 3,
    fail: Script = lambda job, index: None,
    interrupt_on: Phase | None = None,
    at_start: list[Command] | None = None,
    when: dict[tuple[int, Phase], Command] | None = None,
    **options: object,
) -> Run:
    settings = Settings(
        directory=tmp_path, retry_delay=1.0, max_retries=3, jobs=1, connections=2
    ).replace(**options)
    clock = SteppingClock()
    steps = FakeSteps(settings, fail=fail)
    info = BookInfo(
        title="Book", author="A", source_url="x", slug="b", format="mp3", chapter_count=chapters
    )
    manifest = ManifestManager.open(tmp_path, info, tool_version="test")
    state = RunState(book_title="Book", author="A", destination=tmp_path, connections=2)
    jobs = []
    for index in range(1, chapters + 1):
        name = f"{index:02d} - C.mp3"
        manifest.ensure_chapter(name, index=index, title="C")
        chapter = Chapter(index=index, title="C", filename=name)
        state.chapters[index] = chapter
        jobs.append(
            ChapterJob(
                index=index,
                track=Track(
                    index=index,
                    title="C",
                    url=f"http://127.0.0.1:9/a/{index}.m3u8",
                    kind=MediaKind.HLS,
                ),
                dest=tmp_path / name,
                workdir=tmp_path / "work" / f"{index:04d}",
                state=chapter,
            )
        )
    recorder = Recorder(clock, interrupt_on=interrupt_on)
    recorder.at_start = at_start or []
    recorder.when = when or {}
    recorder.start(state)
    ended: list[float] = []
    result = download_all_chapters(
        steps,
        jobs,
        manifest=manifest,
        reporter=recorder,
        state=state,
        clock=clock,
        rng=NoJitter(),
        # The real one ends every ffmpeg of this process, and refuses new ones from then on.
        end_children=ended.append,
    )
    return Run(result, state, manifest, steps, recorder)


def statuses(manifest: ManifestManager) -> list[ChapterStatus]:
    return [entry.status for _, entry in sorted(manifest.chapters.items())]


def test_every_chapter_completes_in_order_and_one_at_a_time(tmp_path: Path) -> None:
    done = run(tmp_path, jobs=1, connections=1)
    assert done.result.ok
    assert [c.status for c in done.result.chapters] == ["complete"] * 3
    assert statuses(done.manifest) == [ChapterStatus.COMPLETE] * 3
    started = [index for index, phase, _, _ in done.recorder.changes if phase is Phase.QUEUED]
    assert started == [1, 2, 3]
    # One job, one connection: a chapter is admitted only once the one before it is converting.
    for index, phase, _, _ in done.recorder.changes:
        if phase is Phase.QUEUED and index > 1:
            assert Phase.CONVERTING in done.recorder.phases(index - 1)
    first = done.result.chapters[0]
    assert (first.attempts, first.chapter_retries, first.request_retries) == (1, 0, 0)
    assert first.bytes_received == 3 * SEGMENT
    assert first.file_size == 2 * SEGMENT
    assert done.result.bytes_received == 9 * SEGMENT


def test_a_transient_failure_is_retried_after_its_backoff(tmp_path: Path) -> None:
    failures = {"left": 2}

    def fail(job: ChapterJob, index: int) -> None:
        if job.index == 2 and index == 1 and failures["left"]:
            failures["left"] -= 1
            raise DownloadError("connection reset", kind=FailureKind.NETWORK)

    done = run(tmp_path, fail=fail)
    assert done.result.ok
    chapter = done.result.chapters[1]
    assert (chapter.attempts, chapter.chapter_retries) == (3, 2)
    assert chapter.kinds == ["network", "network"]
    assert done.result.chapter_retries == 2
    # Each retry was due retry_delay * 2**(n-1) after its failure, and started no earlier.
    retrying = [(at, due) for i, phase, at, due in done.recorder.changes
                if i == 2 and phase is Phase.RETRYING]  # fmt: skip
    # (A few clock reads, 0.05 s each, lie between the due time's making and its report.)
    assert [due - at for at, due in retrying] == pytest.approx([1.0, 2.0], abs=0.25)
    starts = [at for i, phase, at, _ in done.recorder.changes if i == 2 and phase is Phase.QUEUED]
    assert len(starts) == 3
    for (_, due), start in zip(retrying, starts[1:], strict=True):
        assert start >= due


def test_a_permanent_failure_is_not_retried_and_the_rest_completes(tmp_path: Path) -> None:
    def fail(job: ChapterJob, index: int) -> None:
        if job.index == 1:
            raise DownloadError("HTTP 404", kind=FailureKind.NOT_FOUND)

    done = run(tmp_path, fail=fail)
    assert not done.result.ok
    assert [c.status for c in done.result.chapters] == ["failed", "complete", "complete"]
    failed = done.result.chapters[0]
    assert (failed.attempts, failed.chapter_retries, failed.kind) == (1, 0, "not_found")
    assert statuses(done.manifest)[0] is ChapterStatus.FAILED
    assert done.result.success_rate == pytest.approx(2 / 3)


def test_a_full_disk_stops_the_run_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    def fail(job: ChapterJob, index: int) -> None:
        if job.index == 2:
            raise DiskError("no space left on device")

    done = run(tmp_path, fail=fail)
    assert done.result.stopped_by is not None
    assert done.result.stopped_by.kind is FailureKind.DISK
    assert not done.result.interrupted
    assert [c.status for c in done.result.chapters] == ["complete", "failed", "pending"]
    assert done.state.chapters[3].phase is Phase.INTERRUPTED
    assert statuses(done.manifest) == [
        ChapterStatus.COMPLETE,
        ChapterStatus.FAILED,
        ChapterStatus.PENDING,
    ]


def test_an_interruption_ends_the_run_with_nothing_left_downloading(tmp_path: Path) -> None:
    done = run(tmp_path, interrupt_on=Phase.CONVERTING, jobs=1, connections=1)
    assert done.result.interrupted
    assert done.state.interrupted
    assert done.result.chapters[0].status in ("complete", "pending")
    assert all(c.status == "pending" for c in done.result.chapters[1:])
    assert all(c.phase in (Phase.DONE, Phase.INTERRUPTED) for c in done.state.chapters.values())
    assert ChapterStatus.DOWNLOADING not in statuses(done.manifest)
    # Nothing reached an end: no success rate at all, rather than a made-up 100 %.
    if done.result.chapters[0].status == "pending":
        assert done.result.success_rate is None


def test_events_of_an_attempt_that_is_over_are_dropped(tmp_path: Path) -> None:
    # Attempt 1 of chapter 1: segment 0 fails at once while segment 1 is still being fetched;
    # segment 1 then finishes anyway. Its event belongs to an attempt that is over: it must not
    # count towards attempt 2, which converts only once its own three segments are in.
    release = threading.Event()
    failed_once = threading.Event()

    def fail(job: ChapterJob, index: int) -> None:
        if job.index != 1:
            return
        if job.generation == 2 and index == 2:
            release.wait(0.3)  # an early conversion would start before this one is in
            return
        if job.generation != 1:
            return
        if index == 0:
            failed_once.set()
            raise DownloadError("reset", kind=FailureKind.NETWORK)
        if index == 1:
            failed_once.wait(5)
            release.wait(0.3)  # finishes after the attempt was declared failed

    done = run(tmp_path, chapters=1, fail=fail, connections=2)
    assert done.result.ok
    assert done.result.chapters[0].attempts == 2
    # Attempt 1's segment 1 did come in late, yet attempt 2 converted with its own three.
    assert 1 in done.steps.fetched[(1, 1)]
    assert done.steps.converted_with[1] == {0, 1, 2}
    assert done.state.chapters[1].segments_done == 3


# -- the user's commands (the live view's keys) -------------------------------------------------
def test_a_paused_chapter_lets_the_others_run_and_completes_once_resumed(tmp_path: Path) -> None:
    # One job at a time: chapter 1, paused as the run starts, must not hold up 2 and 3; it is
    # resumed once 3 is done, and completes in its first attempt with what it had.
    done = run(
        tmp_path,
        jobs=1,
        at_start=[PauseChapter(1)],
        when={(3, Phase.DONE): PauseChapter(1)},
    )
    assert done.result.ok
    finished = [index for index, phase, _, _ in done.recorder.changes if phase is Phase.DONE]
    assert finished == [2, 3, 1]
    assert done.result.chapters[0].attempts == 1
    assert done.steps.converted_with[1] == {0, 1, 2}
    assert not done.state.chapters[1].paused


def test_the_connection_limit_moves_within_its_bounds(tmp_path: Path) -> None:
    raised = run(tmp_path / "a", at_start=[ChangeConnections(+1), ChangeConnections(+1)])
    assert raised.result.ok
    assert raised.state.connections == 4
    lowered = run(tmp_path / "b", at_start=[ChangeConnections(-1)] * 5)
    assert lowered.result.ok
    assert lowered.state.connections == 1
    capped = run(tmp_path / "c", at_start=[ChangeConnections(+1)] * 30)
    assert capped.state.connections == 16
