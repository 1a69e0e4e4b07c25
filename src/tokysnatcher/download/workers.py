"""The fetch workers of a run: ``connections`` daemon threads on one priority queue.

The scheduler (``download/scheduler.py``) queues a :class:`Task` per playlist, segment or direct
file; a worker runs it and posts the outcome as an event (``playlist``, ``segment``, ``failed``
or ``dropped``) back to the scheduler, which alone changes shared state. A task of an attempt
that is over (a newer generation, a finished chapter, a stopping run) is dropped unrun, and one
already running is cancelled at its next read.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tokysnatcher.download.chapter import ChapterJob, ChapterWork
from tokysnatcher.errors import DownloadError
from tokysnatcher.net.failures import error_from_exception
from tokysnatcher.net.hls import Segment

# (event name, chapter, attempt generation, payload)
Event = tuple[str, ChapterJob, int, Any]
Priority = tuple[int, int, int]
_RELEASE: Priority = (-1, 0, 0)  # before any task: a released worker ends at once


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
        work: ChapterWork,
        events: queue.SimpleQueue[Event],
        count_bytes: Callable[[ChapterJob], Callable[[int], None]],
        size: int,
    ) -> None:
        self.work = work
        self.stop = work.stop
        self.events = events
        self.count_bytes = count_bytes
        self.size = size
        self._tasks: queue.PriorityQueue[tuple[Priority, int, Task | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._released = False

    def start(self) -> None:
        """Start the workers."""
        for n in range(self.size):
            threading.Thread(target=self._work, name=f"fetch-{n}", daemon=True).start()

    def put(self, priority: Priority, task: Task) -> None:
        """Queue ``task``; lower priorities run first, ties in the order queued."""
        self._tasks.put((priority, next(self._seq), task))

    def release(self) -> None:
        """Let every worker end after its current task (idempotent); queued tasks are dropped."""
        if not self._released:
            self._released = True
            for _ in range(self.size):
                self._tasks.put((_RELEASE, next(self._seq), None))

    def _work(self) -> None:
        while True:
            try:
                _, _, task = self._tasks.get(timeout=0.5)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if task is None:
                return
            job = task.job
            stale = staleness_check(job, task.generation, self.stop)
            if stale():
                self.events.put(("dropped", job, task.generation, task))
                continue
            try:
                self._run(task, stale)
            except BaseException as err:  # every failure becomes an event with a kind
                self.events.put(("failed", job, task.generation, as_download_error(err, job)))

    def _run(self, task: Task, stale: Callable[[], bool]) -> None:
        job, work = task.job, self.work
        if task.kind == "playlist":
            self.events.put(("playlist", job, task.generation, work.resolve(job, stale)))
        elif task.kind == "segment":
            assert task.segment is not None
            size = work.fetch_segment(job, task.segment, self.count_bytes(job), stale)
            self.events.put(("segment", job, task.generation, (task.segment.index, size)))
        else:
            size = work.fetch_direct(job, self.count_bytes(job), stale)
            self.events.put(("segment", job, task.generation, (0, size)))


def staleness_check(job: ChapterJob, generation: int, stop: threading.Event) -> Callable[[], bool]:
    """True once the work of this attempt is no longer wanted (run stopping, attempt over)."""

    def stale() -> bool:
        return stop.is_set() or not job.live or job.generation != generation

    return stale


def as_download_error(err: BaseException, job: ChapterJob) -> DownloadError:
    """Any exception of a chapter's work as a :class:`DownloadError` with a failure kind."""
    if isinstance(err, DownloadError):
        return err
    return error_from_exception(err, f"chapter {job.index}")
