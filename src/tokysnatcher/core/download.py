"""``download_all_chapters()``: the scheduler of a run.

Shape of a run
--------------
* ``connections`` daemon worker threads take requests from one priority queue: chapter
  playlists first, then segments in chapter order. Work is scheduled per segment across
  chapters, so no connection idles while any started chapter has segments left (SPEC §7).
* A chapter is admitted (its playlist fetched) while fewer than ``jobs`` chapters are
  downloading, or early when the queue holds fewer segments than there are connections.
* When a chapter's last segment lands, a conversion runs on a ``ThreadPoolExecutor`` of
  ``jobs`` workers (ffmpeg, watched by the stall watchdog).
* Workers only post events. This thread owns every piece of shared state: the chapters, the
  :class:`RetryCoordinator`, the manifest (one writer) and the reporter.
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tokysnatcher.core.chapter import ChapterJob, ChapterWork, segment_path
from tokysnatcher.core.hls import Segment
from tokysnatcher.core.processes import terminate_all
from tokysnatcher.core.retry import BackoffPolicy, RetryCoordinator, error_from_exception
from tokysnatcher.core.status import ChapterState, Reporter, RunStatus
from tokysnatcher.errors import DownloadError, FailureKind
from tokysnatcher.utils.manifest import ManifestManager

_PLAYLIST_PRIORITY = 0
_SEGMENT_PRIORITY = 1


@dataclass(frozen=True)
class _Task:
    kind: str  # "playlist" | "segment" | "direct"
    job: ChapterJob
    generation: int
    segment: Segment | None = None


@dataclass
class ChapterResult:
    """How one chapter ended, for the summary and the JSON report (SPEC §6)."""

    index: int
    title: str
    filename: str
    status: str  # complete | failed | skipped | pending (interrupted)
    attempts: int = 0
    kinds: list[str] = field(default_factory=list)
    kind: str | None = None
    message: str = ""
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class RunResult:
    chapters: list[ChapterResult]
    bytes_received: int
    seconds: float
    retries: int
    interrupted: bool = False
    stopped_by: DownloadError | None = None  # a disk error that ended the run

    @property
    def failed(self) -> list[ChapterResult]:
        return [c for c in self.chapters if c.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.stopped_by is None and not self.failed


class _Scheduler:
    def __init__(
        self,
        work: ChapterWork,
        jobs: list[ChapterJob],
        *,
        manifest: ManifestManager,
        reporter: Reporter,
        status: RunStatus,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.work = work
        self.settings = work.settings
        self.jobs = {job.index: job for job in jobs}
        self.manifest = manifest
        self.reporter = reporter
        self.status = status
        self.clock = clock
        self.stop = work.stop
        self.tasks: queue.PriorityQueue[tuple[tuple[int, int, int], int, _Task | None]] = (
            queue.PriorityQueue()
        )
        self.events: queue.Queue[tuple[str, ChapterJob, int, Any]] = queue.Queue()
        self.seq = itertools.count()
        self.queued_segments = 0
        self.converting: set[int] = set()
        self.stopped_by: DownloadError | None = None
        policy = BackoffPolicy(
            max_retries=self.settings.max_retries,
            base_delay=self.settings.retry_delay,
            max_retry_after=self.settings.max_retry_after,
        )
        self.retry = RetryCoordinator[int](policy, clock=clock, rng=rng)
        for job in jobs:
            job.view.max_attempts = self.settings.max_retries + 1
            self.retry.add(job.index, order=job.index)

    # -- worker side ------------------------------------------------------------------------
    def _put_task(self, priority: tuple[int, int, int], task: _Task | None) -> None:
        self.tasks.put((priority, next(self.seq), task))

    def _worker(self) -> None:
        while True:
            try:
                _, _, task = self.tasks.get(timeout=0.5)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if task is None:
                return
            job = task.job
            if self.stop.is_set() or not job.live or job.generation != task.generation:
                self.events.put(("dropped", job, task.generation, task))
                continue
            try:
                if task.kind == "playlist":
                    self.events.put(("playlist", job, task.generation, self.work.resolve(job)))
                elif task.kind == "segment":
                    assert task.segment is not None
                    seg = task.segment
                    size = self.work.fetch_segment(job, seg, self._byte_counter(job))
                    self.events.put(("segment", job, task.generation, (seg.index, size)))
                else:
                    size = self.work.fetch_direct(job, self._byte_counter(job))
                    self.events.put(("segment", job, task.generation, (0, size)))
            except BaseException as err:  # every failure becomes an event with a kind
                self.events.put(("failed", job, task.generation, _as_download_error(err, job)))

    def _byte_counter(self, job: ChapterJob) -> Callable[[int], None]:
        def count(n: int) -> None:
            with self.status.lock:
                job.view.bytes_done += n
                self.status.bytes_total += n

        return count

    def _convert(self, job: ChapterJob, generation: int) -> None:
        def progress(seconds: float) -> None:
            if job.duration:
                job.view.message = f"converting {min(100.0, 100 * seconds / job.duration):.0f}%"

        try:
            result = self.work.convert(job, progress)
        except BaseException as err:
            self.events.put(("failed", job, generation, _as_download_error(err, job)))
        else:
            self.events.put(("converted", job, generation, result))

    # -- scheduler side ---------------------------------------------------------------------
    def _set_state(self, job: ChapterJob, state: ChapterState, message: str = "") -> None:
        with self.status.lock:
            job.view.state = state
            job.view.message = message
        self.reporter.event(job.view)

    def _downloading(self) -> int:
        return sum(1 for j in self.jobs.values() if j.live and j.index not in self.converting)

    def _admit(self) -> None:
        limit = max(self.settings.jobs, self.settings.connections)
        while not self.stop.is_set():
            active = self._downloading()
            starved = self.queued_segments < self.settings.connections
            if not (active < self.settings.jobs or (starved and active < limit)):
                return
            index = self.retry.pop_ready()
            if index is None:
                return
            self._start_attempt(self.jobs[index])

    def _start_attempt(self, job: ChapterJob) -> None:
        job.generation += 1
        job.live = True
        job.remaining = 0
        with self.status.lock:
            job.view.attempt = self.retry.attempts(job.index)
            job.view.retry_due = None
            job.view.bytes_done = 0
            if job.view.started_at is None:
                job.view.started_at = self.clock()
        self.manifest.mark_downloading(job.key)
        self._set_state(job, ChapterState.DOWNLOADING)
        if job.track.is_direct:
            self._put_task((_SEGMENT_PRIORITY, job.index, 0), _Task("direct", job, job.generation))
            job.remaining = 1
            self.queued_segments += 1
        else:
            priority = (_PLAYLIST_PRIORITY, job.index, 0)
            self._put_task(priority, _Task("playlist", job, job.generation))

    def _on_playlist(self, job: ChapterJob, segments: tuple[Segment, ...]) -> None:
        job.segments = segments
        done_bytes = 0
        for segment in segments:
            path = segment_path(job.workdir, segment)
            if path.is_file():  # fetched by an earlier attempt or run: keep it
                size = path.stat().st_size
                job.segment_bytes[segment.index] = size
                done_bytes += size
                continue
            job.remaining += 1
            self.queued_segments += 1
            task = _Task("segment", job, job.generation, segment)
            self._put_task((_SEGMENT_PRIORITY, job.index, segment.index), task)
        with self.status.lock:
            job.view.bytes_done = done_bytes
            self._estimate(job)
        if job.remaining == 0:
            self._start_convert(job)

    def _estimate(self, job: ChapterJob) -> None:
        """Expected bytes of a chapter: exact once all its segments are in, else extrapolated."""
        if not job.segments or not job.segment_bytes:
            return
        known = len(job.segment_bytes)
        average = sum(job.segment_bytes.values()) / known
        job.view.bytes_expected = int(average * len(job.segments))
        if known == len(job.segments):
            job.view.bytes_expected = sum(job.segment_bytes.values())

    def _on_segment(self, job: ChapterJob, index: int, size: int) -> None:
        job.remaining -= 1
        self.queued_segments -= 1
        with self.status.lock:
            job.segment_bytes[index] = size
            self._estimate(job)
        if job.remaining == 0:
            self._start_convert(job)

    def _start_convert(self, job: ChapterJob) -> None:
        self.converting.add(job.index)
        self._set_state(job, ChapterState.CONVERTING)
        self.converter.submit(self._convert, job, job.generation)

    def _on_converted(self, job: ChapterJob, size: int, digest: str) -> None:
        self.converting.discard(job.index)
        job.live = False
        self.retry.record_success(job.index)
        self.manifest.mark_complete(job.key, size=size, sha256=digest)
        with self.status.lock:
            job.view.size = size
            job.view.finished_at = self.clock()
        self._set_state(job, ChapterState.DONE)

    def _end_attempt(self, job: ChapterJob) -> None:
        """Forget the attempt's queued work (workers drop stale tasks by generation)."""
        job.live = False
        self.converting.discard(job.index)
        self.queued_segments -= job.remaining
        job.remaining = 0

    def _on_failed(self, job: ChapterJob, error: DownloadError) -> None:
        self._end_attempt(job)
        with self.status.lock:
            job.view.kinds.append(error.kind)
            job.view.kind = error.kind
        if error.kind is FailureKind.CANCELLED:
            return
        if error.kind.stops_run:
            self.stopped_by = error
            self._fail(job, error)
            self.stop.set()
            return
        decision = self.retry.record_failure(job.index, error)
        if decision.retry:
            with self.status.lock:
                self.status.retries += 1
                job.view.retry_due = decision.due_at
                job.view.attempt = decision.attempt - 1
            self.manifest.mark_pending(job.key)
            self._set_state(job, ChapterState.RETRYING, error.message)
        else:
            self._fail(job, error)

    def _fail(self, job: ChapterJob, error: DownloadError) -> None:
        self.manifest.mark_failed(job.key, error.kind, error.message)
        with self.status.lock:
            job.view.finished_at = self.clock()
        self._set_state(job, ChapterState.FAILED, error.message)

    def _handle(self, event: tuple[str, ChapterJob, int, Any]) -> None:
        name, job, generation, payload = event
        if name == "dropped" or generation != job.generation or not job.live:
            return
        if name == "playlist":
            self._on_playlist(job, payload)
        elif name == "segment":
            self._on_segment(job, *payload)
        elif name == "converted":
            self._on_converted(job, *payload)
        elif name == "failed":
            self._on_failed(job, payload)

    def _finished(self) -> bool:
        return all(j.view.state.finished for j in self.jobs.values())

    def run(self) -> bool:
        """Drive the run to its end; returns False when interrupted by the user."""
        workers = [
            threading.Thread(target=self._worker, name=f"fetch-{n}", daemon=True)
            for n in range(self.settings.connections)
        ]
        for worker in workers:
            worker.start()
        self.converter = ThreadPoolExecutor(self.settings.jobs, thread_name_prefix="convert")
        interrupted = False
        try:
            while not self._finished() and not self.stop.is_set():
                self._admit()
                wait = 0.25
                due = self.retry.next_due()
                if due is not None:
                    wait = max(0.01, min(wait, due - self.clock()))
                try:
                    self._handle(self.events.get(timeout=wait))
                    while True:
                        self._handle(self.events.get_nowait())
                except queue.Empty:
                    pass
                with self.status.lock:
                    self.status.active_connections = self.work.fetcher.transfer.active
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.stop.set()
            self.converter.shutdown(wait=False, cancel_futures=True)
            terminate_all(self.settings.kill_grace)
            for _ in workers:
                self._put_task((-1, 0, 0), None)
            self._wind_down()
        return not interrupted

    def _wind_down(self) -> None:
        """Leave the manifest consistent: unfinished chapters go back to ``pending``."""
        deadline = time.monotonic() + 1.0
        # Conversions that already finished may still have an event waiting: record them.
        while time.monotonic() < deadline:
            try:
                name, job, generation, payload = self.events.get(timeout=0.05)
            except queue.Empty:
                if not any(j.index in self.converting for j in self.jobs.values()):
                    break
                continue
            if name == "converted" and generation == job.generation and job.live:
                self._on_converted(job, *payload)
            elif name == "failed" and job.index in self.converting and generation == job.generation:
                self.converting.discard(job.index)
        for job in self.jobs.values():
            if not job.view.state.finished:
                job.live = False
                self.manifest.mark_pending(job.key)
                with self.status.lock:
                    job.view.state = ChapterState.WAITING
                    job.view.message = "not finished"


def _as_download_error(err: BaseException, job: ChapterJob) -> DownloadError:
    if isinstance(err, DownloadError):
        return err
    return error_from_exception(err, f"chapter {job.index}")


def download_all_chapters(
    work: ChapterWork,
    jobs: list[ChapterJob],
    *,
    manifest: ManifestManager,
    reporter: Reporter,
    status: RunStatus,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> RunResult:
    """Download and convert ``jobs``; always returns, with every chapter's outcome.

    Each job's manifest entry must exist (``ensure_chapter``). A ``KeyboardInterrupt`` is
    turned into ``RunResult.interrupted`` after children are ended and the manifest is saved.
    """
    started = clock()
    scheduler = _Scheduler(
        work,
        jobs,
        manifest=manifest,
        reporter=reporter,
        status=status,
        clock=clock,
        rng=rng or random.Random(),
    )
    completed = scheduler.run()
    results = []
    for job in jobs:
        view = job.view
        state = {
            ChapterState.DONE: "complete",
            ChapterState.FAILED: "failed",
            ChapterState.SKIPPED: "skipped",
        }.get(view.state, "pending")
        begun, ended = view.started_at, view.finished_at or clock()
        results.append(
            ChapterResult(
                index=job.index,
                title=view.title,
                filename=job.dest.name,
                status=state,
                attempts=scheduler.retry.attempts(job.index) if view.started_at else 0,
                kinds=[str(k) for k in view.kinds],
                kind=str(view.kind) if state == "failed" and view.kind else None,
                message=view.message if state == "failed" else "",
                bytes=sum(job.segment_bytes.values()),
                seconds=(ended - begun) if begun is not None else 0.0,
            )
        )
    return RunResult(
        chapters=results,
        bytes_received=status.bytes_total,
        seconds=clock() - started,
        retries=status.retries,
        interrupted=not completed,
        stopped_by=scheduler.stopped_by,
    )
