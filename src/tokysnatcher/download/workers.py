"""The fetch workers of a run: daemon threads on one priority queue, as many at work as the
run's :class:`~tokysnatcher.net.limits.ConnectionLimit` allows.

The scheduler (``download/scheduler.py``) queues a :class:`Task` per playlist, segment or direct
file; a worker runs it and posts what happens as typed events (``download/events.py``) back to
the scheduler, which alone changes shared state. A task of an attempt
that is over (a newer generation, a finished chapter, a stopping run) is dropped unrun, and one
already running is cancelled at its next read.

A worker takes a place under the connection limit before it takes a task; ``hold(True)``
pauses them all (the live view's ``p``). A task of a paused chapter (``Chapter.paused``) is
parked, not run, until :meth:`FetchPool.unpark`, so the connections serve the other chapters.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tokysnatcher.download.chapter import ChapterJob, ChapterSteps
from tokysnatcher.download.events import (
    AttemptFailed,
    BytesReceived,
    Command,
    Event,
    PlaylistResolved,
    RequestRetried,
    SegmentFetched,
)
from tokysnatcher.errors import DownloadError
from tokysnatcher.net.failures import error_from_exception
from tokysnatcher.net.hls import Segment
from tokysnatcher.net.limits import ConnectionLimit

# How long close() waits for a worker in a request: each one sees the stop flag within a second.
JOIN_TIMEOUT = 2.0
# A request's bytes go to the scheduler with its outcome; one that takes longer than this also
# reports them on the way, this often. An event per body would wake the scheduler thread once
# more per segment, which cost a third more CPU on a fast link.
REPORT_SLOW_EVERY = 0.5
Priority = tuple[int, int, int]
_Item = tuple[Priority, int, "Task | None"]
_RELEASE: Priority = (-1, 0, 0)  # before any task: a released worker ends at once
_GATE_WAIT = 0.5  # a waiting worker looks at the stop flag this often


@dataclass(frozen=True)
class Task:
    """One request of one chapter attempt."""

    kind: Literal["playlist", "segment", "direct"]
    job: ChapterJob
    generation: int
    segment: Segment | None = None


class FetchPool:
    """Daemon threads that run :class:`Task` values in priority order."""

    def __init__(
        self,
        work: ChapterSteps,
        events: queue.SimpleQueue[Event | Command],
        limit: ConnectionLimit,
    ) -> None:
        self.work = work
        self.stop = work.stop
        self.events = events
        self.limit = limit
        self.size = limit.threads
        self._threads: list[threading.Thread] = []
        self._tasks: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._released = False
        # Guards the hold and the parked tasks; held workers wait on it.
        self._gate = threading.Condition()
        self._held = False
        self._parked: dict[int, list[_Item]] = {}  # by chapter

    def start(self) -> None:
        """Start the workers."""
        for n in range(self.size):
            thread = threading.Thread(target=self._work, name=f"fetch-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def hold(self, held: bool) -> None:
        """``True``: no new request starts (those under way finish); ``False``: go on."""
        with self._gate:
            self._held = held
            self._gate.notify_all()

    def unpark(self, index: int) -> None:
        """Chapter ``index`` is no longer paused: its parked tasks are queued again."""
        with self._gate:
            for item in self._parked.pop(index, []):
                self._tasks.put(item)

    def put(self, priority: Priority, task: Task) -> None:
        """Queue ``task``; lower priorities run first, ties in the order queued."""
        self._tasks.put((priority, next(self._seq), task))

    def release(self) -> None:
        """Let every worker end after its current task (idempotent); queued tasks are dropped."""
        if not self._released:
            with self._gate:
                self._released = True
                self._gate.notify_all()
            for _ in range(self.size):
                self._tasks.put((_RELEASE, next(self._seq), None))

    def join(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) for the released workers to end."""
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _unheld(self) -> bool:
        """Wait while the run is paused; False when the worker is to end instead."""
        with self._gate:
            while self._held:
                if self._released or self.stop.is_set():
                    return False
                self._gate.wait(_GATE_WAIT)
            return True

    def _park(self, item: _Item) -> bool:
        """Put ``item`` aside when it may not run now; True when it was."""
        task = item[2]
        assert task is not None
        with self._gate:
            if self._held:
                self._tasks.put(item)  # taken just as the run paused: back in its place
                return True
            if task.job.state.paused:
                self._parked.setdefault(task.job.index, []).append(item)
                return True
        return False

    def _work(self) -> None:
        while True:
            if not self._unheld():
                return
            # A place under the connection limit first, then a task: a worker over the limit
            # never holds a task that another could run.
            if not self.limit.acquire(self.stop):
                if self.stop.is_set() or self._released:
                    return
                time.sleep(0.05)  # the limit was closed before the release: it comes next
                continue
            try:
                if not self._next():
                    return
            finally:
                self.limit.release()

    def _next(self) -> bool:
        """Run the next task, if one comes within half a second; False when the worker ends."""
        try:
            item = self._tasks.get(timeout=0.5)
        except queue.Empty:
            return not self.stop.is_set()
        task = item[2]
        if task is None:
            return False
        job = task.job
        stale = staleness_check(job, task.generation, self.stop)
        if stale() or self._park(item):
            return True
        try:
            self._run(task, stale)
        except BaseException as err:  # every failure becomes an event with a kind
            self.events.put(AttemptFailed(job, task.generation, as_download_error(err, job)))
        return True

    def _run(self, task: Task, stale: Callable[[], bool]) -> None:
        job, work, generation, put = task.job, self.work, task.generation, self.events.put
        unreported = 0  # bytes of the current try not yet in an event (this thread's own)
        since = time.monotonic()

        def received(count: int) -> None:
            nonlocal unreported, since
            unreported += count
            now = time.monotonic()
            if now - since >= REPORT_SLOW_EVERY:
                put(BytesReceived(job, generation, unreported))
                unreported, since = 0, now

        def retried(what: str) -> Callable[[DownloadError, int, float], None]:
            def post(error: DownloadError, number: int, delay: float) -> None:
                nonlocal unreported, since
                retry = RequestRetried(
                    job, generation, what, error.kind, error.message, number, delay, unreported,
                    error.retry_after,
                )  # fmt: skip
                put(retry)
                unreported, since = 0, time.monotonic()

            return post

        if task.kind == "playlist":
            resolved = work.resolve(job, stale, retried(f"chapter {job.index} playlist"))
            put(PlaylistResolved(job, generation, resolved))
        elif task.kind == "segment":
            assert task.segment is not None
            what = f"chapter {job.index} segment {task.segment.index + 1}"
            size = work.fetch_segment(job, task.segment, received, stale, retried(what))
            put(SegmentFetched(job, generation, task.segment.index, size, unreported))
        else:
            what = f"chapter {job.index} audio file"
            size = work.fetch_direct(job, received, stale, retried(what))
            put(SegmentFetched(job, generation, 0, size, unreported))


def staleness_check(job: ChapterJob, generation: int, stop: threading.Event) -> Callable[[], bool]:
    """True once the work of this attempt is no longer wanted (run stopping, attempt over)."""

    def stale() -> bool:
        return stop.is_set() or not job.live or job.state.generation != generation

    return stale


def as_download_error(err: BaseException, job: ChapterJob) -> DownloadError:
    """Any exception of a chapter's work as a :class:`DownloadError` with a failure kind."""
    if isinstance(err, DownloadError):
        return err
    return error_from_exception(err, f"chapter {job.index}")
