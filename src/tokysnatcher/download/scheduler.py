"""``download_all_chapters()``: the scheduler of a run.

Shape of a run
--------------
* Fetch workers (``download/workers.py``) take requests from one priority queue: chapter
  playlists first, then segments in chapter order; as many run at once as the run's
  :class:`~tokysnatcher.net.limits.ConnectionLimit` allows (``--connections auto|N``). Work is
  scheduled per segment across chapters, so no connection idles while any started chapter has
  segments left (SPEC §7).
* A chapter is admitted (its playlist fetched) while fewer than ``jobs`` chapters are
  downloading, or early when the queue holds fewer segments than there are connections.
  Admission order is the :class:`RetryCoordinator`'s: due time, then chapter order, first
  attempts and retries alike (SPEC §5).
* The connection limit hears how every request ended (from the workers' events) and the bytes
  received; it adapts the limit, holds every request for a ``Retry-After``, and stops new
  requests while the network is down (an outage). A chapter attempt that fails in an outage
  waits again without spending a retry; when the outage outlasts ``--max-wait``, every chapter
  not yet converting fails with the outage named.
* When a chapter's last segment lands, a conversion runs on a ``ThreadPoolExecutor`` of
  ``jobs`` workers (ffmpeg, watched by the stall watchdog).
* Workers only post typed events (``download/events.py``). This thread owns every piece of
  shared state: each chapter's :class:`~tokysnatcher.download.state.Chapter`, the
  :class:`RetryCoordinator`, the manifest (one writer) and the reporter.

How a run ends
--------------
* Every chapter finished (complete or failed): workers are released, nothing else is touched,
  so the caller may go on using the session and ffmpeg (an m4b is joined afterwards).
* A ``disk`` failure (or a manifest that cannot be written) stops the run: the stop flag ends
  transfers and conversions, unfinished chapters go back to ``pending``.
* Ctrl-C: the same, but at once: children are ended with a short grace and the wind-down
  waits only for conversions that are just finishing, so the command exits within a second.

What the user asks while it runs
--------------------------------
The live view's keys post typed commands (``download/events.py``) to the same queue: pause or
resume the run or one chapter, change the connection limit. A paused run starts no request
(those under way finish) and admits no chapter; a paused chapter's requests are parked by the
workers, and it does not count against ``jobs``, so its connections serve the others.
"""

from __future__ import annotations

import os
import queue
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from tokysnatcher.download.chapter import ChapterJob, ChapterSteps, declared_length, segment_path
from tokysnatcher.download.events import (
    AttemptFailed,
    BytesReceived,
    ChangeConnections,
    Command,
    Converted,
    ConvertProgress,
    Event,
    PauseChapter,
    PauseRun,
    PlaylistResolved,
    RequestRetried,
    SegmentFetched,
)
from tokysnatcher.download.results import RunResult, chapter_result
from tokysnatcher.download.retry import BackoffPolicy, RetryCoordinator
from tokysnatcher.download.state import Phase, RunState
from tokysnatcher.download.workers import JOIN_TIMEOUT, FetchPool, Task, as_download_error
from tokysnatcher.errors import DiskError, DownloadError, FailureKind
from tokysnatcher.ffmpeg.processes import terminate_all
from tokysnatcher.library.manifest import ManifestManager
from tokysnatcher.net.limits import ConnectionLimit
from tokysnatcher.ui.status import Reporter
from tokysnatcher.utils.atomic import disk_error_for

_PLAYLIST_PRIORITY = 0
_SEGMENT_PRIORITY = 1
# Ctrl-C (SPEC §5): children get this long to exit before SIGKILL, and conversions that are
# just finishing this long to report; together well within the one second the user waits.
_INTERRUPT_GRACE = 0.4
_INTERRUPT_WIND_DOWN = 0.4
_SHOW_CONNECTIONS_EVERY = 0.1  # seconds: how fresh the view's count of open connections is
# Failures that say something about the server or the link (not ffmpeg's, not the disk's).
_REQUEST_KINDS = frozenset(
    (
        FailureKind.NETWORK,
        FailureKind.TIMEOUT,
        FailureKind.HTTP_5XX,
        FailureKind.RATE_LIMITED,
        FailureKind.AUTH,
        FailureKind.NOT_FOUND,
    )
)
# Manifest saves are coalesced to at most one per this many seconds (each writes the whole
# manifest; one per state change is quadratic in the chapter count). A kill -9 loses at most this
# much of the record, which only makes the next run redo or re-check those chapters.
_SAVE_MANIFEST_EVERY = 0.4


class Scheduler:
    """Admits chapters, applies the workers' events to their state, retries and ends the run."""

    def __init__(
        self,
        work: ChapterSteps,
        jobs: list[ChapterJob],
        *,
        manifest: ManifestManager,
        reporter: Reporter,
        state: RunState,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        end_children: Callable[[float], object] = terminate_all,
        connections: ConnectionLimit | None = None,
        log: Callable[[str, str], None] = lambda message, level: None,
    ) -> None:
        self.work = work
        self.log = log
        self.end_children = end_children  # Ctrl-C ends every ffmpeg (tests pass their own)
        self.settings = work.settings
        self.jobs = {job.index: job for job in jobs}
        self.manifest = manifest
        self.reporter = reporter
        self.state = state
        self.clock = clock
        self.stop = work.stop
        # C-fast: one put per segment. The user's commands come this way too.
        self.events: queue.SimpleQueue[Event | Command] = queue.SimpleQueue()
        # The one owner of how many requests may be in flight (live-view keys change it too).
        self.limit = connections or ConnectionLimit(
            self.settings.connections,
            max_wait=self.settings.max_wait,
            max_retry_after=self.settings.max_retry_after,
            clock=clock,
        )
        self.pool = FetchPool(work, self.events, self.limit)
        self.converter: ThreadPoolExecutor | None = None
        self.conversions: dict[int, Future[None]] = {}  # by chapter, until its event is handled
        self.queued_segments = 0
        # Chapters by where their current attempt is; kept up to date so that each event costs
        # O(1) however long the book is.
        self.downloading: set[int] = set()
        self.converting: set[int] = set()
        self.paused: set[int] = set()  # chapters the user paused (Chapter.paused), for O(1)
        self.unfinished = {job.index for job in jobs if not job.state.phase.finished}
        self.stopped_by: DownloadError | None = None
        self.manifest_failed = False
        policy = BackoffPolicy(
            max_retries=self.settings.max_retries,
            base_delay=self.settings.retry_delay,
            max_retry_after=self.settings.max_retry_after,
        )
        self.retry = RetryCoordinator[int](policy, clock=clock, rng=rng or random.Random())
        for job in jobs:
            job.state.max_attempts = self.settings.max_retries + 1
        self.retry.add_many((job.index, job.index) for job in jobs)

    # -- conversion thread -------------------------------------------------------------------
    def _convert(self, job: ChapterJob, generation: int) -> None:
        put = self.events.put
        try:
            size, digest, expected = self.work.convert(
                job, lambda seconds: put(ConvertProgress(job, generation, seconds))
            )
        except BaseException as err:
            put(AttemptFailed(job, generation, as_download_error(err, job)))
        else:
            put(Converted(job, generation, size, digest, expected))

    # -- scheduler side ---------------------------------------------------------------------
    def _changed(self, job: ChapterJob) -> None:
        self.reporter.event(job.state)

    def _may_admit(self) -> bool:
        # A paused chapter neither counts as downloading nor as queued work: its connections
        # serve the others, so another chapter is admitted in its place.
        held = [self.jobs[index] for index in self.paused if index in self.downloading]
        active = len(self.downloading) - len(held)
        if self.limit.waiting_for_network:
            return not active  # one chapter's requests probe the network; the rest wait
        # The next chapter is admitted while fewer than two segments per connection are queued,
        # so its playlist arrives before any connection runs dry.
        connections = self.limit.limit
        queued = self.queued_segments - sum(job.remaining for job in held)
        starved = queued < 2 * connections
        limit = max(self.settings.jobs, connections)
        return active < self.settings.jobs or (starved and active < limit)

    def _admit(self) -> None:
        if self.state.paused:
            return
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
                if index in self.unfinished:  # not failed while waiting (an outage given up)
                    self._start_attempt(self.jobs[index])

    def _start_attempt(self, job: ChapterJob) -> None:
        with self.state.lock:
            job.state.start_attempt(self.retry.attempts(job.index), self.clock())
        job.live = True
        job.remaining = 0
        self.downloading.add(job.index)
        generation = job.state.generation
        if job.track.is_direct:
            job.expected = declared_length(job.track)
            self.pool.put((_SEGMENT_PRIORITY, job.index, 0), Task("direct", job, generation))
            job.remaining = 1
            self.queued_segments += 1
            with self.state.lock:
                job.state.resolved(1, job.track.duration)
        else:
            priority = (_PLAYLIST_PRIORITY, job.index, 0)
            self.pool.put(priority, Task("playlist", job, generation))
        # The request first: the manifest write (an fsync) need not delay it.
        self._record(lambda: self.manifest.mark_downloading(job.key))
        self._changed(job)

    def _on_playlist(self, job: ChapterJob, event: PlaylistResolved) -> None:
        self.limit.succeeded()
        resolved = event.resolved
        job.segments = resolved.segments
        job.expected = resolved.expected
        on_disk = _files_in(job.workdir)  # one directory read, not a stat per segment
        generation = job.state.generation
        with self.state.lock:
            job.state.resolved(len(resolved.segments), resolved.duration)
            for segment in resolved.segments:
                size = on_disk.get(segment_path(job.workdir, segment).name)
                if size is not None:  # fetched by an earlier attempt or run: keep it
                    job.state.kept(size)
                    continue
                job.remaining += 1
                self.queued_segments += 1
                task = Task("segment", job, generation, segment)
                self.pool.put((_SEGMENT_PRIORITY, job.index, segment.index), task)
        if job.remaining == 0:
            self._start_convert(job)

    def _on_segment(self, job: ChapterJob, event: SegmentFetched) -> None:
        self.limit.succeeded()
        job.remaining -= 1
        self.queued_segments -= 1
        self._on_bytes(job, event.received)
        with self.state.lock:
            job.state.segment_done(event.size)
        if job.remaining == 0:
            self._start_convert(job)

    def _on_bytes(self, job: ChapterJob, count: int) -> None:
        if not count:
            return
        with self.state.lock:
            first = job.state.phase is Phase.QUEUED
            job.state.received(count, self.clock())
            self.state.bytes_received += count
        if first:
            self._changed(job)

    def _on_request_retry(self, job: ChapterJob, event: RequestRetried) -> None:
        self.limit.failed(
            event.kind, event.message, retry_after=event.retry_after, wait=event.delay
        )
        self._on_bytes(job, event.received)
        with self.state.lock:
            job.state.request_retrying(self.clock() + event.delay, event.kind)
        self.reporter.retried(job.state, event)

    def _start_convert(self, job: ChapterJob) -> None:
        self._unpause(job)  # its last request landed: nothing of it is left to hold back
        self.downloading.discard(job.index)
        self.converting.add(job.index)
        # Under --force-redownload the saved manifest may still call the old file complete:
        # that record must be gone before the conversion replaces the file.
        self._record(lambda: self.manifest.settle(job.key))
        with self.state.lock:
            job.state.start_convert()
        self._changed(job)
        assert self.converter is not None
        self.conversions[job.index] = self.converter.submit(
            self._convert, job, job.state.generation
        )

    def _on_converted(self, job: ChapterJob, event: Converted) -> None:
        self.converting.discard(job.index)
        self.conversions.pop(job.index, None)
        self.unfinished.discard(job.index)
        job.live = False
        job.segments = ()  # a finished chapter keeps nothing per segment: memory stays flat
        self.retry.record_success(job.index)
        self._record(
            lambda: self.manifest.mark_complete(
                job.key, size=event.size, sha256=event.sha256, expected_duration=event.expected
            )
        )
        with self.state.lock:
            job.state.converted(event.size, self.clock())
        self._changed(job)

    def _end_attempt(self, job: ChapterJob) -> None:
        """Forget the attempt's queued work (workers drop stale tasks by generation)."""
        job.live = False
        self.downloading.discard(job.index)
        self.converting.discard(job.index)
        self.conversions.pop(job.index, None)
        self.queued_segments -= job.remaining
        job.remaining = 0

    def _on_failed(self, job: ChapterJob, error: DownloadError) -> None:
        self._end_attempt(job)
        if error.kind is FailureKind.CANCELLED and self.stop.is_set():
            with self.state.lock:
                job.state.attempt_lost(error)
            return  # the run is ending: the wind-down puts the chapter back to pending
        if error.kind.stops_run:
            self._stop_run(error)
            self._fail(job, error)
            return
        if error.kind in _REQUEST_KINDS:
            self.limit.failed(error.kind, error.message, retry_after=error.retry_after)
        if error.kind is FailureKind.NETWORK and self.limit.waiting_for_network:
            # The link or the site is down: no fault of the chapter's, no retry spent.
            self.retry.requeue(job.index, self.clock())
            with self.state.lock:
                job.state.wait_for_network(error)
            self._record(lambda: self.manifest.mark_pending(job.key))
            self._changed(job)
            return
        decision = self.retry.record_failure(job.index, error)
        if decision.retry:
            assert decision.due_at is not None
            with self.state.lock:
                job.state.retry_at(error, decision.due_at)
            self._record(lambda: self.manifest.mark_pending(job.key))
            self._changed(job)
        else:
            self._fail(job, error)

    def _fail(self, job: ChapterJob, error: DownloadError) -> None:
        self._unpause(job)
        self.unfinished.discard(job.index)
        job.segments = ()
        self._record(lambda: self.manifest.mark_failed(job.key, error.kind, error.message))
        with self.state.lock:
            job.state.failed(error, self.clock())
        self._changed(job)

    # -- the user's commands -------------------------------------------------------------------
    def _command(self, command: Command) -> None:
        if isinstance(command, PauseRun):
            with self.state.lock:
                self.state.paused = not self.state.paused
            self.pool.hold(self.state.paused)
        elif isinstance(command, PauseChapter):
            job = self.jobs.get(command.index)
            if job is None:
                return
            if job.state.paused:
                self._unpause(job)
            elif job.state.pausable:
                with self.state.lock:
                    job.state.pause()
                self.paused.add(job.index)
        elif isinstance(command, ChangeConnections):
            self.set_connection_limit(self.limit.limit + command.delta)

    def _unpause(self, job: ChapterJob) -> None:
        if job.state.paused:
            with self.state.lock:
                job.state.resume()
            self.paused.discard(job.index)
            self.pool.unpark(job.index)  # after resume(): a worker parks only paused chapters

    def set_connection_limit(self, limit: int) -> None:
        """Let ``limit`` requests run at once, by hand (the live view's ``+``/``-``; auto
        adjustment stops); takes effect at once for more, as requests end for fewer."""
        limit = self.limit.set_limit(limit)
        with self.state.lock:
            self.state.connections = limit

    def _handle(self, event: Event | Command) -> None:
        if isinstance(event, Command):
            if not self.stop.is_set():
                self._command(event)
            return
        job = event.job
        if event.generation != job.state.generation or not job.live:
            return
        if self.stop.is_set() and not isinstance(event, Converted):
            return  # the run is stopping: what is not finished goes back to pending
        if isinstance(event, BytesReceived):
            self.limit.succeeded(ended=False)
            self._on_bytes(job, event.count)
        elif isinstance(event, SegmentFetched):
            self._on_segment(job, event)
        elif isinstance(event, PlaylistResolved):
            self._on_playlist(job, event)
        elif isinstance(event, RequestRetried):
            self._on_request_retry(job, event)
        elif isinstance(event, ConvertProgress):
            with self.state.lock:
                job.state.convert_progress(event.seconds)
        elif isinstance(event, Converted):
            self._on_converted(job, event)
        elif isinstance(event, AttemptFailed):
            self._on_failed(job, event.error)

    def _finished(self) -> bool:
        return not self.unfinished

    def _give_up_waiting(self) -> None:
        """The outage outlasted --max-wait: every chapter not converting fails, naming it."""
        error = self.limit.outage_error()
        for index in sorted(self.unfinished - self.converting):
            job = self.jobs[index]
            if job.live:
                self._end_attempt(job)
            self._fail(job, error)

    def _tick(self) -> None:
        """Tell the connection limit how the run goes; show what it decided."""
        self.limit.tick(self.state.bytes_received, self.queued_segments)
        for message, level in self.limit.take_notices():
            self.log(message, level)
        if self.limit.gave_up and self.unfinished - self.converting:
            self._give_up_waiting()

    def run(self) -> bool:
        """Drive the run to its end; returns False when interrupted by the user."""
        self.pool.start()
        self.reporter.controls(self.events.put)
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
                self._tick()
                now = self.clock()
                if now - shown >= _SHOW_CONNECTIONS_EVERY:  # for the view; adds up per thread
                    shown = now
                    view = self.limit.view()
                    with self.state.lock:
                        self.state.active_connections = self.work.connections_in_use()
                        self.state.connections = view.limit
                        self.state.connections_reason = view.reason
                        self.state.network_retry_at = view.network_retry_at
            # Someone else (a library caller) set the stop flag: that is an interruption too.
            interrupted = self.stopped_by is None and not self._finished()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self.reporter.controls(None)
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
        if self.converter is not None:
            self.converter.shutdown(wait=False, cancel_futures=True)
        if interrupted:
            # Ctrl-C must end within a second: a short grace before SIGKILL. Partial output
            # lives in the work folder, so a killed ffmpeg cannot harm a finished file.
            self.end_children(min(self.settings.kill_grace, _INTERRUPT_GRACE))
        self.pool.release()
        self.limit.close()  # workers held by the limit (an outage) see the release too
        with self.state.lock:
            self.state.network_retry_at = None
        grace = _INTERRUPT_WIND_DOWN if interrupted else self.settings.kill_grace + 1.0
        self._wind_down(time.monotonic() + grace)
        with self.state.lock:
            self.state.interrupted = interrupted
        # Workers see the stop flag or their release within a second; waiting longer would
        # only delay the summary (they are daemons and hold nothing the run still needs).
        join_by = time.monotonic() + (_INTERRUPT_WIND_DOWN if interrupted else JOIN_TIMEOUT)
        self.pool.join(join_by)
        if self.conversions:
            wait(self.conversions.values(), timeout=max(0.0, join_by - time.monotonic()))

    def _wind_down(self, deadline: float) -> None:
        """Leave the manifest consistent: unfinished chapters go back to ``pending``."""
        # Conversions that already finished may still have an event waiting: record them.
        while self.converting and time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(event, Command):
                continue  # the run is ending: a key pressed now asks nothing more of it
            job = event.job
            if event.generation != job.state.generation or job.index not in self.converting:
                continue
            if isinstance(event, Converted) and job.live:
                self._on_converted(job, event)
            elif isinstance(event, AttemptFailed):
                self.converting.discard(job.index)
        unfinished = [job for job in self.jobs.values() if not job.state.phase.finished]
        with self.state.lock:
            for job in unfinished:
                job.live = False
                job.state.interrupted()
        # Only chapters whose attempt began changed on disk; a chapter never started keeps its
        # manifest entry (under --force-redownload that is a still-valid "complete" file).
        keys = [job.key for job in unfinished if job.state.generation > 0]
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
            error = err if isinstance(err, DiskError) else disk_error_for(err, self.manifest.path)
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
    work: ChapterSteps,
    jobs: list[ChapterJob],
    *,
    manifest: ManifestManager,
    reporter: Reporter,
    state: RunState,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    end_children: Callable[[float], object] = terminate_all,
    connections: ConnectionLimit | None = None,
    log: Callable[[str, str], None] = lambda message, level: None,
) -> RunResult:
    """Download and convert ``jobs``; always returns, with every chapter's outcome.

    Each job's manifest entry must exist (``ensure_chapter``). A ``KeyboardInterrupt`` is
    turned into ``RunResult.interrupted`` after children are ended and the manifest is saved.
    ``connections`` is the run's connection limit (one from the settings when None); ``log``
    prints the limit's messages (throttling, outages, and with -v each change of the limit).
    """
    started = clock()
    scheduler = Scheduler(
        work,
        jobs,
        manifest=manifest,
        reporter=reporter,
        state=state,
        clock=clock,
        rng=rng,
        end_children=end_children,
        connections=connections,
        log=log,
    )
    completed = scheduler.run()
    now = clock()
    return RunResult(
        chapters=[chapter_result(job.state, now=now) for job in jobs],
        bytes_received=state.bytes_received,
        seconds=now - started,
        interrupted=not completed,
        stopped_by=scheduler.stopped_by,
    )
