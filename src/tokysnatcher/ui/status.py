"""How a chapter's state reads, and the tiny interface through which a run reports it.

The scheduler changes each :class:`~tokysnatcher.download.state.Chapter` and tells a
:class:`Reporter` when one changes phase or retries a request; the Rich live view re-reads the
:class:`~tokysnatcher.download.state.RunState` on its own refresh, the plain printer prints one
line per event, the quiet one prints failures only. The texts here are the one wording all of
them share. Nothing here imports Rich.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

from tokysnatcher.download.events import Command, RequestRetried
from tokysnatcher.download.state import Chapter, Phase, RunState
from tokysnatcher.errors import FailureKind
from tokysnatcher.utils.units import format_bytes

# No byte for this long (or half the stall timeout, if shorter) while downloading: the chapter
# is shown as stalled.
STALL_SHOWN_AFTER = 3.0


def retry_text(chapter: Chapter, now: float) -> str:
    """``retrying n/N in Ss``: retry n of the N allowed, due in about S seconds."""
    wait = max(0.0, (chapter.retry_due or now) - now)
    return f"retrying {chapter.attempt}/{chapter.max_attempts - 1} in {math.ceil(wait)}s"


def network_wait_text(retry_at: float, now: float) -> str:
    """``waiting for the network - next try in Ns``: every request failed; the run waits."""
    return f"waiting for the network - next try in {max(0, math.ceil(retry_at - now))}s"


def stall_text(chapter: Chapter, now: float, stall_timeout: float) -> str | None:
    """``stalled - retry in Ns`` while a request gets no byte or waits to be tried again after a
    stall; after another failure its kind, e.g. ``http_5xx - retry in 1s``."""
    if chapter.request_retry_due is not None and chapter.request_retry_due > now:
        kind = chapter.request_retry_kind
        cause = "stalled" if kind in (None, FailureKind.TIMEOUT) else str(kind)
        return f"{cause} - retry in {math.ceil(chapter.request_retry_due - now)}s"
    last = chapter.last_byte_at
    if last is not None and now - last >= min(STALL_SHOWN_AFTER, stall_timeout / 2):
        return f"stalled - retry in {max(0, math.ceil(stall_timeout - (now - last)))}s"
    return None


def state_text(
    chapter: Chapter, now: float, stall_timeout: float = math.inf, *, run_paused: bool = False
) -> str:
    """What the display says of the phase: ``queued``, ``retrying 1/3 in 4s``, ``paused`` ..."""
    phase = chapter.phase
    if (chapter.paused or run_paused) and chapter.pausable:
        return "paused"
    if phase is Phase.RETRYING:
        return retry_text(chapter, now)
    if phase is Phase.QUEUED and chapter.request_retry_due is not None:
        return stall_text(chapter, now, stall_timeout) or str(phase)
    if phase is Phase.DOWNLOADING:
        stalled = stall_text(chapter, now, stall_timeout)
        if stalled is not None:
            return stalled
        if chapter.attempt > 1:
            return f"downloading (retry {chapter.attempt - 1}/{chapter.max_attempts - 1})"
    if phase is Phase.CONVERTING and chapter.convert_fraction is not None:
        return f"converting {100 * chapter.convert_fraction:.0f}%"
    return str(phase)


def sizes_text(chapter: Chapter, *, parts: bool) -> str:
    """The two figures of a finished chapter: its file, and what was downloaded for it."""
    noun = "part" if parts else "file"
    return (
        f"{noun} {format_bytes(chapter.file_size)}, "
        f"downloaded {format_bytes(chapter.bytes_received)}"
    )


def event_line(
    chapter: Chapter, total: int | str, now: float, *, parts: bool = False
) -> str | None:
    """One plain line for this chapter's latest change; None when it is not worth one at
    normal verbosity (queued, a conversion starting)."""
    where = f"chapter {chapter.index}/{total} {chapter.title!r}"
    phase = chapter.phase
    if phase is Phase.RETRYING:
        return f"{where}: {retry_text(chapter, now)} after [{chapter.kind}] {chapter.message}"
    if phase is Phase.FAILED:
        return f"{where}: failed [{chapter.kind}] {chapter.message}"
    if phase is Phase.DONE:
        # An m4b's chapters are parts in the work folder, joined into the book file later.
        target = f"part {chapter.filename}" if parts else chapter.filename
        return f"{where}: done ({sizes_text(chapter, parts=parts)}) -> {target}"
    if phase is Phase.SKIPPED:
        return f"{where}: skipped (already complete)"
    if phase is Phase.DOWNLOADING:
        return f"{where}: {state_text(chapter, now)}"
    return None


def request_retry_line(event: RequestRetried, max_retries: int, *, detail: bool) -> str:
    """``chapter 3 segment 2: retry 1/5 in 0.5 s [http_5xx]``; ``detail`` adds the HTTP text."""
    line = f"{event.what}: retry {event.number}/{max_retries} in {event.delay:.1f} s [{event.kind}]"
    if detail:
        # The message names the request itself ("chapter 3 segment 2: HTTP 503 ..."): said once.
        line += f" - {event.message.removeprefix(event.what + ': ')}"
    return line


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


class SmoothedRate:
    """A rate smoothed exponentially, so an ETA made from it does not jump with each burst.

    ``half_life`` seconds: the weight of older samples halves that fast.
    """

    def __init__(self, half_life: float = 5.0) -> None:
        self.half_life = half_life
        self.rate: float | None = None
        self._last: tuple[float, int] | None = None

    def sample(self, now: float, total: int) -> float:
        if self._last is None or total < self._last[1]:
            self._last = (now, total)  # first sample, or a new attempt started from zero
            return self.rate or 0.0
        then, before = self._last
        if now <= then:
            return self.rate or 0.0
        current = (total - before) / (now - then)
        weight = 1 - 0.5 ** ((now - then) / self.half_life)
        self.rate = current if self.rate is None else self.rate + weight * (current - self.rate)
        self._last = (now, total)
        return self.rate


class Reporter(Protocol):
    """How the run tells the outside world what happens (start / event / retried / stop)."""

    def start(self, state: RunState) -> None:
        """The run begins; ``state`` stays live until :meth:`stop`."""

    def event(self, chapter: Chapter) -> None:
        """``chapter`` changed phase (its fields say to what and why)."""

    def retried(self, chapter: Chapter, event: RequestRetried) -> None:
        """A request of ``chapter`` failed and is tried again (a quick retry)."""

    def controls(self, post: Callable[[Command], None] | None) -> None:
        """The run takes the user's commands through ``post`` from now on (None: no more).

        The live view reads keys and posts them; the other reporters take no input.
        """

    def stop(self) -> None:
        """The run is over: end any live display (idempotent)."""
