"""``download_all_chapters()``: the scheduler of a run.

Shape of a run
--------------
* ``connections`` daemon fetch workers (``download/workers.py``) take requests from one priority
  queue: chapter playlists first, then segments in chapter order. Work is scheduled per segment
  across chapters, so no connection idles while any started chapter has segments left (SPEC §7).
* A chapter is admitted (its playlist fetched) while fewer than ``jobs`` chapters are
  downloading, or early when the queue holds fewer segments than there are connections.
  Admission order is the :class:`RetryCoordinator`'s: due time, then chapter order, first
  attempts and retries alike (SPEC §5).
* When a chapter's last segment lands, a conversion runs on a ``ThreadPoolExecutor`` of
  ``jobs`` workers (ffmpeg, watched by the stall watchdog).
* Workers only post events. This thread owns every piece of shared state: the chapters, the
  :class:`RetryCoordinator`, the manifest (one writer) and the reporter.

How a run ends
--------------
* Every chapter finished (complete or failed): workers are released, nothing else is touched,
  so the caller may go on using the session and ffmpeg (an m4b is joined afterwards).
* A ``disk`` failure (or a manifest that cannot be written) stops the run: the stop flag ends
  transfers and conversions, unfinished chapters go back to ``pending``.
* Ctrl-C: the same, but at once: children are ended with a short grace and the wind-down
  waits only for conversions that are just finishing, so the command exits within a second.
"""

from __future__ import annotations

import os
import queue
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tokysnatcher.download.chapter import ChapterJob, ChapterWork, segment_path
from tokysnatcher.download.results import ChapterResult, RunResult, chapter_result
from tokysnatcher.download.retry import BackoffPolicy, RetryCoordinator
from tokysnatcher.download.workers import Event, FetchPool, Task, as_download_error
from tokysnatcher.errors import DiskError, DownloadError, FailureKind
from tokysnatcher.ffmpeg.processes import terminate_all
from tokysnatcher.library.manifest import ManifestManager
from tokysnatcher.library.manifest_schema import ExpectedDuration
from tokysnatcher.net.hls import Segment
from tokysnatcher.ui.status import ChapterState, Reporter, RunStatus
from tokysnatcher.utils.atomic import disk_error_for

__all__ = ["ChapterResult", "RunResult", "download_all_chapters"]

_PLAYLIST_PRIORITY = 0
_SEGMENT_PRIORITY = 1
# Ctrl-C (SPEC §5): children get this long to exit before SIGKILL, and conversions that are
# just finishing this long to report; together well within the one second the user waits.
_INTERRUPT_GRACE = 0.4
_INTERRUPT_WIND_DOWN = 0.4
_SHOW_CONNECTIONS_EVERY = 0.1  # seconds: how fresh the view's count of open connections is
# Manifest saves are coalesced to at most one per this many seconds (each writes the whole
# manifest; one per state change is quadratic in the chapter count). A kill -9 loses at most this
# much of the record, which only makes the next run redo or re-check those chapters.
_SAVE_MANIFEST_EVERY = 0.4


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
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()  # C-fast: one put per segment
        self.pool = FetchPool(work, self.events, self._byte_counter, self.settings.connections)
        self.queued_segments = 0
        # Chapters by where their current attempt is; kept up to date so that each event costs
        # O(1) however long the book is.
        self.downloading: set[int] = set()
        self.converting: set[int] = set()
        self.unfinished = {job.index for job in jobs if not job.view.state.finished}
        self.stopped_by: DownloadError | None = None
        self.manifest_failed = False
        policy = BackoffPolicy(
            max_retries=self.settings.max_retries,
            base_delay=self.settings.retry_delay,
            max_retry_after=self.settings.max_retry_after,
        )
        self.retry = RetryCoordinator[int](policy, clock=clock, rng=rng)
        for job in jobs:
            job.view.max_attempts = self.settings.max_retries + 1
        self.retry.add_many((job.index, job.index) for job in jobs)

    # -- worker side ------------------------------------------------------------------------
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
            self.events.put(("failed", job, generation, as_download_error(err, job)))
        else:
            self.events.put(("converted", job, generation, result))

    # -- scheduler side ---------------------------------------------------------------------
    def _set_state(self, job: ChapterJob, state: ChapterState, message: str = "") -> None:
        with self.status.lock:
            job.view.state = state
            job.view.message = message
        self.reporter.event(job.view)

    def _may_admit(self) -> bool:
        active = len(self.downloading)
        # The next chapter is admitted while fewer than two segments per connection are queued,
        # so its playlist arrives before any connection runs dry.
        starved = self.queued_segments < 2 * self.settings.connections
        limit = max(self.settings.jobs, self.settings.connections)
        return active < self.settings.jobs or (starved and active < limit)

    def _admit(self) -> None:
        due = self.retry.next_due()
        if due is not None and due <= self.clock() and self._may_admit():
            # Several admissions at once make one manifest write; a disk that refuses it stops
            # the run like any other manifest write.
            self._record(self._admit_batch)

    def _admit_batch(self) -> None:
        with self.manifest.batch():
            while not self.stop.is_set() and self._may_admit():
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
        self.downloading.add(job.index)
        job.done_count = job.done_bytes = 0
        if job.track.is_direct:
            self.pool.put((_SEGMENT_PRIORITY, job.index, 0), Task("direct", job, job.generation))
            job.remaining = 1
            self.queued_segments += 1
        else:
            priority = (_PLAYLIST_PRIORITY, job.index, 0)
            self.pool.put(priority, Task("playlist", job, job.generation))
        # The request first: the manifest write (an fsync) need not delay it.
        self._record(lambda: self.manifest.mark_downloading(job.key))
        self._set_state(job, ChapterState.DOWNLOADING)

    def _on_playlist(self, job: ChapterJob, segments: tuple[Segment, ...]) -> None:
        job.segments = segments
        on_disk = _files_in(job.workdir)  # one directory read, not a stat per segment
        for segment in segments:
            size = on_disk.get(segment_path(job.workdir, segment).name)
            if size is not None:  # fetched by an earlier attempt or run: keep it
                job.done_count += 1
                job.done_bytes += size
                continue
            job.remaining += 1
            self.queued_segments += 1
            task = Task("segment", job, job.generation, segment)
            self.pool.put((_SEGMENT_PRIORITY, job.index, segment.index), task)
        with self.status.lock:
            job.view.bytes_done = job.done_bytes
            self._estimate(job)
        if job.remaining == 0:
            self._start_convert(job)

    def _estimate(self, job: ChapterJob) -> None:
        """Expected bytes of a chapter: exact once all its segments are in, else extrapolated."""
        if job.segments and job.done_count:
            job.view.bytes_expected = job.done_bytes * len(job.segments) // job.done_count

    def _on_segment(self, job: ChapterJob, index: int, size: int) -> None:
        job.remaining -= 1
        self.queued_segments -= 1
        with self.status.lock:
            job.done_count += 1
            job.done_bytes += size
            self._estimate(job)
        if job.remaining == 0:
            self._start_convert(job)

    def _start_convert(self, job: ChapterJob) -> None:
        self.downloading.discard(job.index)
        self.converting.add(job.index)
        # Under --force-redownload the saved manifest may still call the old file complete:
        # that record must be gone before the conversion replaces the file.
        self._record(lambda: self.manifest.settle(job.key))
        self._set_state(job, ChapterState.CONVERTING)
        self.converter.submit(self._convert, job, job.generation)

    def _on_converted(
        self, job: ChapterJob, size: int, digest: str, expected: ExpectedDuration | None
    ) -> None:
        self.converting.discard(job.index)
        self.unfinished.discard(job.index)
        job.live = False
        job.segments = ()  # a finished chapter keeps nothing per segment: memory stays flat
        self.retry.record_success(job.index)
        self._record(
            lambda: self.manifest.mark_complete(
                job.key, size=size, sha256=digest, expected_duration=expected
            )
        )
        with self.status.lock:
            job.view.size = size
            job.view.finished_at = self.clock()
        self._set_state(job, ChapterState.DONE)

    def _end_attempt(self, job: ChapterJob) -> None:
        """Forget the attempt's queued work (workers drop stale tasks by generation)."""
        job.live = False
        self.downloading.discard(job.index)
        self.converting.discard(job.index)
        self.queued_segments -= job.remaining
        job.remaining = 0

    def _on_failed(self, job: ChapterJob, error: DownloadError) -> None:
        self._end_attempt(job)
        with self.status.lock:
            job.view.kinds.append(error.kind)
            job.view.kind = error.kind
        if error.kind is FailureKind.CANCELLED and self.stop.is_set():
            return  # the run is ending: the wind-down puts the chapter back to pending
        if error.kind.stops_run:
            self._stop_run(error)
            self._fail(job, error)
            return
        decision = self.retry.record_failure(job.index, error)
        if decision.retry:
            with self.status.lock:
                self.status.retries += 1
                job.view.retry_due = decision.due_at
                job.view.attempt = decision.attempt - 1
            self._record(lambda: self.manifest.mark_pending(job.key))
            self._set_state(job, ChapterState.RETRYING, error.message)
        else:
            self._fail(job, error)

    def _fail(self, job: ChapterJob, error: DownloadError) -> None:
        self.unfinished.discard(job.index)
        job.segments = ()
        self._record(lambda: self.manifest.mark_failed(job.key, error.kind, error.message))
        with self.status.lock:
            job.view.finished_at = self.clock()
        self._set_state(job, ChapterState.FAILED, error.message)

    def _handle(self, event: tuple[str, ChapterJob, int, Any]) -> None:
        name, job, generation, payload = event
        if name == "dropped" or generation != job.generation or not job.live:
            return
        if self.stop.is_set() and name != "converted":
            return  # the run is stopping: what is not finished goes back to pending
        if name == "playlist":
            self._on_playlist(job, payload)
        elif name == "segment":
            self._on_segment(job, *payload)
        elif name == "converted":
            self._on_converted(job, *payload)
        elif name == "failed":
            self._on_failed(job, payload)

    def _finished(self) -> bool:
        return not self.unfinished

    def run(self) -> bool:
        """Drive the run to its end; returns False when interrupted by the user."""
        self.pool.start()
        self.converter = ThreadPoolExecutor(self.settings.jobs, thread_name_prefix="convert")
        interrupted = False
        shown = -_SHOW_CONNECTIONS_EVERY
        self.manifest.coalesce_saves(_SAVE_MANIFEST_EVERY, clock=self.clock)
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
                self._record(lambda: self.manifest.flush(due_only=True))
                now = self.clock()
                if now - shown >= _SHOW_CONNECTIONS_EVERY:  # for the view; adds up per thread
                    shown = now
                    with self.status.lock:
                        self.status.active_connections = self.work.fetcher.transfer.active
            # Someone else (a library caller) set the stop flag: that is an interruption too.
            interrupted = self.stopped_by is None and not self._finished()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for _ in range(3):  # another Ctrl-C must not skip saving the manifest
                try:
                    self._shut_down(interrupted=interrupted)
                    break
                except KeyboardInterrupt:
                    interrupted = True
            # Whatever comes after the run (the m4b join, a library caller) saves each change.
            self.manifest.coalesce_saves(None)
        return not interrupted

    def _shut_down(self, *, interrupted: bool) -> None:
        """End workers and children, then leave the manifest consistent (idempotent)."""
        if interrupted or self.stopped_by is not None:
            self.stop.set()
        self.converter.shutdown(wait=False, cancel_futures=True)
        if interrupted:
            # Ctrl-C must end within a second: a short grace before SIGKILL. Partial output
            # lives in the work folder, so a killed ffmpeg cannot harm a finished file.
            terminate_all(min(self.settings.kill_grace, _INTERRUPT_GRACE))
        self.pool.release()
        grace = _INTERRUPT_WIND_DOWN if interrupted else self.settings.kill_grace + 1.0
        self._wind_down(time.monotonic() + grace)

    def _wind_down(self, deadline: float) -> None:
        """Leave the manifest consistent: unfinished chapters go back to ``pending``."""
        # Conversions that already finished may still have an event waiting: record them.
        while self.converting and time.monotonic() < deadline:
            try:
                name, job, generation, payload = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if generation != job.generation or job.index not in self.converting:
                continue
            if name == "converted" and job.live:
                self._on_converted(job, *payload)
            elif name == "failed":
                self.converting.discard(job.index)
        unfinished = [job for job in self.jobs.values() if not job.view.state.finished]
        for job in unfinished:
            job.live = False
            with self.status.lock:
                job.view.state = ChapterState.WAITING
                job.view.message = "not finished"
        # Only chapters whose attempt began changed on disk; a chapter never started keeps its
        # manifest entry (under --force-redownload that is a still-valid "complete" file).
        keys = [job.key for job in unfinished if job.generation > 0]
        if keys:
            self._record(lambda: self._mark_all_pending(keys))
        self._record(self.manifest.flush)  # every change the run coalesced, now on disk

    def _mark_all_pending(self, keys: list[str]) -> None:
        with self.manifest.batch():  # one change, however many chapters were in flight
            for key in keys:
                self.manifest.mark_pending(key)

    def _record(self, change: Callable[[], object]) -> None:
        """Apply one manifest change; a disk that refuses it stops the run (SPEC §5 ``disk``)."""
        if self.manifest_failed:
            return  # already reported; the manifest on disk is the last one that was saved
        try:
            change()
        except (DiskError, OSError) as err:
            self.manifest_failed = True
            error = (
                err
                if isinstance(err, DiskError)
                else disk_error_for(err, self.manifest.path)
                or DiskError(f"cannot write {self.manifest.path}: {err.strerror or err}")
            )
            self._stop_run(error)

    def _stop_run(self, error: DownloadError) -> None:
        if self.stopped_by is None:
            self.stopped_by = error
        self.stop.set()


def _files_in(folder: Path) -> dict[str, int]:
    """Names and sizes of the files in ``folder`` (empty when it does not exist yet)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name: e.stat().st_size for e in entries if e.is_file(follow_symlinks=False)}
    except FileNotFoundError:
        return {}


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
    now = clock()
    results = [chapter_result(job, scheduler.retry.attempts(job.index), now=now) for job in jobs]
    return RunResult(
        chapters=results,
        bytes_received=status.bytes_total,
        seconds=clock() - started,
        retries=status.retries,
        interrupted=not completed,
        stopped_by=scheduler.stopped_by,
    )
