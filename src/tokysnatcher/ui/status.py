"""The live state of a run, and the tiny interface through which the core reports it.

The pipeline mutates a :class:`RunStatus` (under its lock) and tells a :class:`Reporter` about
state changes; the Rich live view re-reads the status on its own refresh, the plain printer
prints one line per event, the quiet one prints nothing. Nothing here imports Rich.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple, Protocol

from tokysnatcher.errors import FailureKind
from tokysnatcher.utils.units import format_bytes


class ChapterState(StrEnum):
    WAITING = "waiting"
    DOWNLOADING = "downloading"
    CONVERTING = "converting"
    RETRYING = "retrying"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset((ChapterState.DONE, ChapterState.FAILED, ChapterState.SKIPPED))
# An attempt under way or waiting for its retry: the live view shows a bar for each.
_ACTIVE = frozenset(
    (ChapterState.DOWNLOADING, ChapterState.CONVERTING, ChapterState.RETRYING, ChapterState.PAUSED)
)


@dataclass
class ChapterView:
    """What the display shows of one chapter."""

    index: int
    title: str
    filename: str
    state: ChapterState = ChapterState.WAITING
    bytes_done: int = 0
    bytes_expected: int | None = None
    attempt: int = 0
    max_attempts: int = 1
    retry_due: float | None = None  # monotonic time of the next attempt
    kind: FailureKind | None = None
    message: str = ""
    size: int = 0
    kinds: list[FailureKind] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    def fraction(self) -> float | None:
        if not self.bytes_expected:
            return None
        return min(1.0, self.bytes_done / self.bytes_expected)

    def retry_text(self, now: float) -> str:
        """``retrying n/N in Ss``: retry n of the N allowed, due in about S seconds."""
        wait = max(0.0, (self.retry_due or now) - now)
        return f"retrying {self.attempt}/{self.max_attempts - 1} in {math.ceil(wait)}s"

    def state_text(self, now: float) -> str:
        """What the display says of the state: ``downloading``, ``retrying 1/3 in 4s`` ..."""
        state = self.state
        if state is ChapterState.RETRYING:
            return self.retry_text(now)
        if state is ChapterState.DOWNLOADING and self.attempt > 1:
            return f"downloading (retry {self.attempt - 1}/{self.max_attempts - 1})"
        if state is ChapterState.CONVERTING and self.message.startswith("converting "):
            return self.message
        return str(state)

    def event_line(self, total: int | str, now: float) -> str | None:
        """One plain line for this chapter's latest event; None when it is not worth one
        at normal verbosity (a conversion starting, a chapter going back to waiting)."""
        where = f"chapter {self.index}/{total} {self.title!r}"
        state = self.state
        if state is ChapterState.RETRYING:
            return f"{where}: {self.retry_text(now)} after [{self.kind}] {self.message}"
        if state is ChapterState.FAILED:
            return f"{where}: failed [{self.kind}] {self.message}"
        if state is ChapterState.DONE:
            return f"{where}: done ({format_bytes(self.size)}) -> {self.filename}"
        if state is ChapterState.SKIPPED:
            return f"{where}: skipped (already complete)"
        if state is ChapterState.DOWNLOADING:
            return f"{where}: {self.state_text(now)}"
        return None


class SpeedMeter:
    """Bytes per second over the last few seconds, from periodic samples of a byte counter."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total: int) -> float:
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()
        first_t, first_b = self._samples[0]
        return (total - first_b) / (now - first_t) if now > first_t else 0.0


@dataclass
class RunStatus:
    """Shared by the pipeline (writer) and the views (readers)."""

    book_title: str
    author: str
    destination: Path
    total_chapters: int  # chapters in this run (a --chapters selection may be fewer)
    connections: int
    book_chapters: int = 0  # chapters in the whole book: the N of "chapter n/N"
    speed_limit: float | None = None
    chapters: dict[int, ChapterView] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    bytes_total: int = 0  # bytes received over the network this run
    active_connections: int = 0
    retries: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def tally(self) -> Tally:
        """Counts by state, bytes still to come and the active chapters, in one pass.

        The live view needs all three every frame; one pass keeps a frame of a 100,000-chapter
        book to milliseconds (and the lock the byte counters wait for, too).
        """
        with self.lock:
            counts = dict.fromkeys(ChapterState, 0)
            active: list[ChapterView] = []
            pending = known = left = expected = 0
            for chapter in self.chapters.values():
                state = chapter.state
                counts[state] += 1
                if state in _FINISHED:
                    continue
                pending += 1
                if state in _ACTIVE:
                    active.append(chapter)
                if chapter.bytes_expected:
                    known += 1
                    expected += chapter.bytes_expected
                    left += max(0, chapter.bytes_expected - chapter.bytes_done)
        if not pending:
            bytes_left: int | None = 0
        elif not known:
            bytes_left = None
        else:
            bytes_left = int(left + expected / known * (pending - known))
        return Tally(counts, bytes_left, active)


class Tally(NamedTuple):
    """What :meth:`RunStatus.tally` found."""

    counts: dict[ChapterState, int]
    bytes_left: int | None  # estimated bytes still to come (None: unknown yet)
    active: list[ChapterView]  # chapters with an attempt under way, in chapter order


class Reporter(Protocol):
    """How the core tells the outside world what happens (start / update / finish)."""

    def start(self, status: RunStatus) -> None:
        """The run begins; ``status`` stays live until :meth:`stop`."""

    def event(self, chapter: ChapterView) -> None:
        """``chapter`` changed state (its fields say to what and why)."""

    def log(self, message: str, *, level: str = "info") -> None:
        """A message for the user (``level``: debug, info, warning, error)."""

    def stop(self) -> None:
        """The run is over: end any live display (idempotent)."""


class SilentReporter:
    """Reports nothing (library use, tests)."""

    def start(self, status: RunStatus) -> None:
        pass

    def event(self, chapter: ChapterView) -> None:
        pass

    def log(self, message: str, *, level: str = "info") -> None:
        pass

    def stop(self) -> None:
        pass
