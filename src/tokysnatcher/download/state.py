"""The one place a run's state lives: a :class:`Chapter` per chapter and the :class:`RunState`
of a book; the :class:`BatchState` holds the books of a run (one, or a batch) as
:class:`BookRun` s.

Only the scheduler thread changes chapters, through their methods, as it handles the workers'
events; the live view reads them under :attr:`RunState.lock`. The plain lines, the summary,
``--report``, ``--status-file`` and the manifest are projections of these objects, never second
copies.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from tokysnatcher.errors import DownloadError, FailureKind


class Phase(StrEnum):
    """Where a chapter is; the last four are ends (a run ends with every chapter in one)."""

    WAITING = "waiting"  # not admitted yet
    QUEUED = "queued"  # admitted: its requests are queued or under way, no byte yet
    DOWNLOADING = "downloading"
    CONVERTING = "converting"
    RETRYING = "retrying"  # the attempt failed; the next one is due at ``retry_due``
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # the run stopped before the chapter reached an end

    @property
    def finished(self) -> bool:
        """An end for this run: nothing more happens to the chapter."""
        return self in _FINISHED


_FINISHED = frozenset((Phase.DONE, Phase.FAILED, Phase.SKIPPED, Phase.INTERRUPTED))
# An attempt under way or waiting for its retry: the live view shows a bar for each.
_ACTIVE = frozenset((Phase.QUEUED, Phase.DOWNLOADING, Phase.CONVERTING, Phase.RETRYING))


@dataclass(kw_only=True)
class Chapter:
    """One chapter of a run: its phase, attempts, bytes, timings and failures.

    Counting is by running sums (segments on disk, bytes received): nothing is kept per segment,
    so memory stays flat however long the book is.
    """

    index: int
    title: str
    filename: str
    max_attempts: int = 1
    phase: Phase = Phase.WAITING
    attempt: int = 0  # the attempt under way (or the last one made); 0 before the first
    generation: int = 0  # bumped per attempt; events of older attempts are dropped
    # This attempt: segments listed / on disk, their bytes; bytes of requests still in flight.
    segments_total: int = 0
    segments_done: int = 0
    segment_bytes: int = 0
    inflight_bytes: int = 0
    duration: float | None = None  # seconds of audio, once the playlist says
    convert_fraction: float | None = None
    bytes_received: int = 0  # over the network for this chapter, every attempt of this run
    file_size: int = 0  # the finished file on disk (done or skipped)
    retry_due: float | None = None  # clock time of the next attempt (chapter retry)
    request_retry_due: float | None = None  # clock time a request's quick retry starts
    request_retry_kind: FailureKind | None = None  # why that request failed
    last_byte_at: float | None = None
    kinds: list[FailureKind] = field(default_factory=list)
    chapter_retries: int = 0  # attempts scheduled after a failed one
    request_retries: int = 0  # quick retries of one request inside an attempt
    request_kinds: Counter[FailureKind] = field(default_factory=Counter)  # ... and why
    kind: FailureKind | None = None
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    # Paused by the user (live view): no new request of it starts; what it has is kept.
    paused: bool = False

    # -- changes (scheduler thread only, under the run's lock) -------------------------------
    def start_attempt(self, attempt: int, now: float) -> None:
        """A new attempt begins: its playlist is being fetched; nothing of it is counted yet."""
        self.generation += 1
        self.attempt = attempt
        self.phase = Phase.QUEUED
        self.segments_total = self.segments_done = self.segment_bytes = self.inflight_bytes = 0
        self.retry_due = self.request_retry_due = None
        self.convert_fraction = None
        self.message = ""
        if self.started_at is None:
            self.started_at = now

    def resolved(self, segments: int, duration: float | None) -> None:
        """The playlist is in: ``segments`` requests make the chapter's audio."""
        self.segments_total = segments
        self.duration = duration

    def kept(self, size: int) -> None:
        """A segment an earlier attempt or run left on disk counts as fetched."""
        self.segments_done += 1
        self.segment_bytes += size

    def received(self, count: int, now: float) -> None:
        """``count`` more bytes arrived for a request of this attempt."""
        self.bytes_received += count
        self.inflight_bytes += count
        self.last_byte_at = now
        self.request_retry_due = None
        if self.phase is Phase.QUEUED:
            self.phase = Phase.DOWNLOADING

    def segment_done(self, size: int) -> None:
        """One request finished: its ``size`` bytes are on disk."""
        self.segments_done += 1
        self.segment_bytes += size
        self.inflight_bytes = max(0, self.inflight_bytes - size)

    def request_retrying(self, due: float, kind: FailureKind = FailureKind.TIMEOUT) -> None:
        """A request failed (``kind``) and is tried again at ``due`` (a quick retry)."""
        self.request_retries += 1
        self.request_kinds[kind] += 1
        self.request_retry_due = due
        self.request_retry_kind = kind
        self.inflight_bytes = 0  # what the failed request received is lost

    @property
    def segments_left(self) -> int:
        return self.segments_total - self.segments_done

    def start_convert(self) -> None:
        self.phase = Phase.CONVERTING
        self.convert_fraction = 0.0
        self.inflight_bytes = 0

    def convert_progress(self, seconds: float) -> None:
        if self.duration:
            self.convert_fraction = min(1.0, seconds / self.duration)

    def converted(self, size: int, now: float) -> None:
        self.phase = Phase.DONE
        self.file_size = size
        self.finished_at = now

    def retry_at(self, error: DownloadError, due: float) -> None:
        """The attempt failed; the next one is due at ``due``."""
        self.kinds.append(error.kind)
        self.kind = error.kind
        self.message = error.message
        self.phase = Phase.RETRYING
        self.chapter_retries += 1
        self.retry_due = due
        self.inflight_bytes = 0

    def failed(self, error: DownloadError, now: float) -> None:
        """The chapter failed for good."""
        self.kinds.append(error.kind)
        self.kind = error.kind
        self.message = error.message
        self.phase = Phase.FAILED
        self.finished_at = now

    def wait_for_network(self, error: DownloadError) -> None:
        """The attempt failed in an outage: the chapter waits again, no retry spent."""
        self.kinds.append(error.kind)
        self.phase = Phase.WAITING
        self.inflight_bytes = 0
        self.request_retry_due = None

    def attempt_lost(self, error: DownloadError) -> None:
        """The attempt ended with the run (it was cancelled): its kind is kept, nothing else."""
        self.kinds.append(error.kind)

    def skipped(self, size: int) -> None:
        self.phase = Phase.SKIPPED
        self.file_size = size

    def pause(self) -> None:
        """No new request of this chapter starts until :meth:`resume`; in-flight ones finish."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    @property
    def pausable(self) -> bool:
        """Only a download can be paused: a conversion is local work that just finishes."""
        return not self.phase.finished and self.phase is not Phase.CONVERTING

    def interrupted(self) -> None:
        if not self.phase.finished:
            self.phase = Phase.INTERRUPTED
            self.message = "not finished"

    # -- what the views read -------------------------------------------------------------------
    @property
    def bytes_done(self) -> int:
        """This attempt's bytes: segments on disk plus requests in flight."""
        return self.segment_bytes + self.inflight_bytes

    @property
    def bytes_expected(self) -> int | None:
        """Expected bytes of this attempt: extrapolated from the segments on disk so far."""
        if not self.segments_total or not self.segments_done:
            return None
        return self.segment_bytes * self.segments_total // self.segments_done

    def fraction(self) -> float | None:
        """Share downloaded: 1.0 only once the last segment is on disk."""
        if self.segments_total and self.segments_left == 0:
            return 1.0
        expected = self.bytes_expected
        if not expected:
            return None
        return min(0.999, self.bytes_done / expected)

    def seconds(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or now) - self.started_at


class Tally(NamedTuple):
    """What :meth:`RunState.tally` found."""

    counts: dict[Phase, int]
    bytes_left: int | None  # estimated bytes still to come (None: unknown yet)
    active: list[Chapter]  # chapters with an attempt under way, in chapter order
    chapter_retries: int
    request_retries: int


@dataclass(kw_only=True)
class RunState:
    """The whole run: its chapters, totals and phase; written by the scheduler thread only."""

    book_title: str
    author: str
    destination: Path
    connections: int
    book_chapters: int = 0  # chapters in the whole book: the N of "chapter n/N"
    speed_limit: float | None = None
    stall_timeout: float = 30.0
    parts: bool = False  # chapter files are an m4b's parts, not the book's files
    chapters: dict[int, Chapter] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    bytes_received: int = 0  # over the network this run
    active_connections: int = 0
    paused: bool = False  # the whole run: no new request starts (the live view's ``p``)
    connections_reason: str = ""  # why the limit last changed: "auto: throughput rising"
    network_retry_at: float | None = None  # the network is down: clock time of the next try
    interrupted: bool = False
    joining: float | None = None  # the m4b join under way: its share done
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def total_chapters(self) -> int:
        """Chapters in this run (a --chapters selection may be fewer than the book's)."""
        return len(self.chapters)

    def tally(self) -> Tally:
        """Counts by phase, bytes still to come, the active chapters and retries, in one pass.

        The live view needs them all every frame; one pass keeps a frame of a 100,000-chapter
        book to milliseconds (and the lock the scheduler waits for, too).
        """
        with self.lock:
            counts = dict.fromkeys(Phase, 0)
            active: list[Chapter] = []
            pending = known = left = expected_sum = chapter_retries = request_retries = 0
            for chapter in self.chapters.values():
                phase = chapter.phase
                counts[phase] += 1
                chapter_retries += chapter.chapter_retries
                request_retries += chapter.request_retries
                if phase in _FINISHED:
                    continue
                pending += 1
                if phase in _ACTIVE:
                    active.append(chapter)
                expected = chapter.bytes_expected
                if expected:
                    known += 1
                    expected_sum += expected
                    left += max(0, expected - chapter.bytes_done)
        if not pending:
            bytes_left: int | None = 0
        elif not known:
            bytes_left = None
        else:
            bytes_left = int(left + expected_sum / known * (pending - known))
        return Tally(counts, bytes_left, active, chapter_retries, request_retries)

    def all_admitted(self) -> bool:
        """True once no chapter waits to be admitted: the last ones are under way.

        Chapters are admitted in chapter order, so the scan from the end usually stops at once.
        """
        with self.lock:
            return not any(c.phase is Phase.WAITING for c in reversed(self.chapters.values()))


class BookPhase(StrEnum):
    """Where a book of a run (one reference, or one of a batch) is."""

    WAITING = "waiting"  # not started yet
    RESOLVING = "resolving"  # asking the site for the book and its chapters
    RUNNING = "running"  # its chapters are being downloaded (or its m4b joined)
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in (BookPhase.COMPLETE, BookPhase.FAILED, BookPhase.INTERRUPTED)


@dataclass(kw_only=True)
class BookRun:
    """One book of a run: its reference, where it is, its chapters' :class:`RunState` once it
    runs, and why it failed. Changed by the thread that runs the books, under the batch's lock.
    """

    number: int  # 1-based position in the run
    ref: str  # as the user gave it
    label: str  # how lines name it: the site's name for the book, else the reference
    line: int | None = None  # its line in the batch file
    phase: BookPhase = BookPhase.WAITING
    title: str = ""  # once resolved
    author: str = ""
    source_url: str = ""  # the book's page, once resolved: what resumes it
    run: RunState | None = None
    message: str = ""  # why it failed (or was not run)

    def resolving(self) -> None:
        self.phase = BookPhase.RESOLVING

    def resolved(self, title: str, author: str, source_url: str) -> None:
        self.title, self.author, self.source_url = title, author, source_url

    def running(self, run: RunState) -> None:
        self.run = run
        self.phase = BookPhase.RUNNING

    def ended(self, phase: BookPhase, message: str = "") -> None:
        self.phase = phase
        self.message = message

    @property
    def resume_ref(self) -> str:
        """The reference that runs this book again: its page once known, else as given."""
        return self.source_url or self.ref

    @property
    def bytes_received(self) -> int:
        return self.run.bytes_received if self.run is not None else 0


class BatchTally(NamedTuple):
    """What :meth:`BatchState.tally` found."""

    counts: dict[BookPhase, int]
    bytes_received: int  # over the network, every book of the run so far
    current: BookRun | None  # the book under way


@dataclass(kw_only=True)
class BatchState:
    """The books of a run, in order: one for a single reference, several for a batch.

    Each book's chapters live in its :class:`RunState`; this holds only which book is where.
    The live view's batch header and the ``--status-file`` are views of it.
    """

    books: list[BookRun]
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False
    exit_code: int | None = None  # set once the run has ended
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def is_batch(self) -> bool:
        return len(self.books) > 1

    def tally(self) -> BatchTally:
        with self.lock:
            counts = dict.fromkeys(BookPhase, 0)
            current = None
            total = 0
            for book in self.books:
                counts[book.phase] += 1
                total += book.bytes_received
                if book.phase in (BookPhase.RESOLVING, BookPhase.RUNNING):
                    current = book
        return BatchTally(counts, total, current)

    def bytes_left(self, current_left: int | None) -> int | None:
        """Bytes still to come over the batch: the current book's ``current_left`` plus, for
        each book not started yet, the mean of the books downloaded so far (None: unknown)."""
        with self.lock:
            waiting = sum(1 for book in self.books if book.phase is BookPhase.WAITING)
            sizes = [b.bytes_received for b in self.books if b.phase is BookPhase.COMPLETE]
            current = next((b for b in self.books if b.phase is BookPhase.RUNNING), None)
        if current_left is None:
            return None
        if not waiting:
            return current_left
        if not sizes and current is not None:
            sizes = [current.bytes_received + current_left]
        if not sizes or not any(sizes):
            return None
        return current_left + waiting * sum(sizes) // len(sizes)
