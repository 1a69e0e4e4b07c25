"""Progress reporting: ffmpeg's ``-progress`` stream and how a run shows its progress.

The first section holds :class:`FfmpegProgressTracker`, the pure parser behind the ffmpeg
watchdog (SPEC §5). It knows nothing about processes or threads; ``core/ffmpeg.py`` feeds it
lines and asks it whether ffmpeg is still advancing. Time comes from an injected clock so tests
never sleep.

The second section holds the reporters the core talks to (``core/status.py``'s ``Reporter``):
the Rich live view for terminals, plain lines for pipes and logs, and the quiet one. Rich is
imported here and nowhere else in ``core/``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tokysnatcher.core.status import ChapterState, ChapterView, Reporter, RunStatus, SpeedMeter
from tokysnatcher.utils.units import format_bytes, format_duration

# ---------------------------------------------------------------------------------------------
# ffmpeg -progress tracking
# ---------------------------------------------------------------------------------------------

_OUT_TIME = re.compile(r"^(-)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


class ProgressSample(NamedTuple):
    """One completed ``-progress`` block, as reported to ``on_progress`` callbacks."""

    seconds_done: float
    total_size: int | None
    speed: float | None
    fraction: float | None
    finished: bool


class FfmpegProgressTracker:
    """Follows ffmpeg's ``-progress`` key=value stream and tells when it stops advancing.

    An *advance* is a larger output time or a larger output size than seen before. Repeated
    blocks with the same values (ffmpeg keeps printing them while it waits for input) are
    not an advance, so a blocked ffmpeg still counts as stalled. The end marker
    (``progress=end``) counts as an advance too: from then on ffmpeg gets one more
    ``stall_timeout`` to exit.
    """

    def __init__(
        self, *, stall_timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be positive, got {stall_timeout!r}")
        self.stall_timeout = stall_timeout
        self._clock = clock
        self.last_advance = clock()
        self._seconds_done = 0.0
        self._total_size: int | None = None
        self._speed: float | None = None
        self._finished = False

    @property
    def seconds_done(self) -> float:
        """Media seconds written so far (the largest ``out_time`` seen, never negative)."""
        return self._seconds_done

    @property
    def total_size(self) -> int | None:
        """Bytes written so far, when ffmpeg knows."""
        return self._total_size

    @property
    def speed(self) -> float | None:
        """Processing speed as a multiple of real time (``speed=12.5x``), when known."""
        return self._speed

    @property
    def finished(self) -> bool:
        """True once ffmpeg printed ``progress=end``."""
        return self._finished

    def feed(self, line: str | bytes, duration: float | None = None) -> ProgressSample | None:
        """Take one line of the stream; return a sample when it closes a block.

        Unknown keys, ``N/A`` values and malformed lines are ignored: the stream is advisory
        and must never break a conversion.
        """
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        key, value = key.strip(), value.strip()
        if key == "out_time_us" or key == "out_time_ms":
            # ffmpeg has always printed microseconds under out_time_ms too (a historical bug
            # kept for compatibility), so both keys are read the same way.
            self._advance_time(_parse_int(value), scale=1e-6)
        elif key == "out_time":
            self._advance_time(_parse_clock(value), scale=1.0)
        elif key == "total_size":
            size = _parse_int(value)
            if size is not None and (self._total_size is None or size > self._total_size):
                self._total_size = size
                self.last_advance = self._clock()
        elif key == "speed":
            self._speed = _parse_float(value.removesuffix("x"))
        elif key == "progress":
            if value == "end" and not self._finished:
                self._finished = True
                self.last_advance = self._clock()
            return self.sample(duration)
        return None

    def stalled(self, now: float | None = None) -> bool:
        """True when nothing advanced for ``stall_timeout`` seconds."""
        now = self._clock() if now is None else now
        return now - self.last_advance >= self.stall_timeout

    def fraction(self, duration: float | None) -> float | None:
        """Share of ``duration`` (media seconds) done, clamped to 0..1; None when unknown."""
        if self._finished:
            return 1.0
        if duration is None or duration <= 0:
            return None
        return min(1.0, max(0.0, self._seconds_done / duration))

    def sample(self, duration: float | None = None) -> ProgressSample:
        """The current state as a :class:`ProgressSample`."""
        return ProgressSample(
            seconds_done=self._seconds_done,
            total_size=self._total_size,
            speed=self._speed,
            fraction=self.fraction(duration),
            finished=self._finished,
        )

    def _advance_time(self, value: float | None, *, scale: float) -> None:
        if value is None:
            return
        seconds = value * scale
        if seconds > self._seconds_done:
            self._seconds_done = seconds
            self.last_advance = self._clock()


def _parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _parse_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_clock(value: str) -> float | None:
    """``HH:MM:SS.micro`` (optionally negative) to seconds."""
    match = _OUT_TIME.match(value)
    if match is None:
        return None
    sign, hours, minutes, seconds = match.groups()
    total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return -total if sign else total


# ---------------------------------------------------------------------------------------------
# end of ffmpeg -progress tracking
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Reporters: the Rich live view, plain lines for pipes and logs, and the quiet one.
# ---------------------------------------------------------------------------------------------

_STATE_STYLE = {
    ChapterState.WAITING: "dim",
    ChapterState.DOWNLOADING: "cyan",
    ChapterState.CONVERTING: "magenta",
    ChapterState.RETRYING: "yellow",
    ChapterState.PAUSED: "yellow",
    ChapterState.DONE: "green",
    ChapterState.FAILED: "red",
    ChapterState.SKIPPED: "green",
}


def _state_text(chapter: ChapterView, now: float) -> str:
    if chapter.state is ChapterState.RETRYING:
        wait = max(0.0, (chapter.retry_due or now) - now)
        return f"retrying {chapter.attempt + 1}/{chapter.max_attempts} in {wait:.0f}s"
    if chapter.state is ChapterState.DOWNLOADING and chapter.attempt > 1:
        return f"downloading (try {chapter.attempt}/{chapter.max_attempts})"
    return str(chapter.state)


class LiveView:
    """The Rich live view: a header for the book and one bar per active chapter."""

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_rows: int = 12,
    ) -> None:
        self.console = console
        self.clock = clock
        self.max_rows = max_rows
        self.status: RunStatus | None = None
        self._live: Live | None = None
        self._speed = SpeedMeter()
        self._chapter_speed: dict[int, SpeedMeter] = {}

    def start(self, status: RunStatus) -> None:
        self.status = status
        self._live = Live(
            console=self.console,
            get_renderable=self.render,
            refresh_per_second=8,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def event(self, chapter: ChapterView) -> None:
        if chapter.state is ChapterState.FAILED:
            self.console.print(
                escape(f"chapter {chapter.index} failed: {chapter.message}"), style="red"
            )

    def log(self, message: str, *, level: str = "info") -> None:
        style = {"warning": "yellow", "error": "red", "debug": "dim"}.get(level, "")
        self.console.print(escape(message), style=style)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def render(self) -> RenderableType:
        status = self.status
        if status is None:
            return Text("")
        now = self.clock()
        with status.lock:
            speed = self._speed.sample(now, status.bytes_total)
            counts = status.counts()
            done = counts[ChapterState.DONE] + counts[ChapterState.SKIPPED]
            left = status.bytes_expected()
            eta = format_duration(left / speed) if left is not None and speed > 0 else "--:--"
            limit = f" (limit {format_bytes(status.speed_limit)}/s)" if status.speed_limit else ""
            header = Text.assemble(
                (status.book_title, "bold"),
                (f" by {status.author or 'Unknown Author'}", ""),
                ("\n", ""),
                (f"-> {status.destination}", "dim"),
                ("\n", ""),
                (
                    f"chapters {done}/{status.total_chapters}  "
                    f"connections {status.active_connections}/{status.connections}  "
                    f"{format_bytes(speed)}/s{limit}  ETA {eta}",
                    "",
                ),
            )
            if counts[ChapterState.FAILED]:
                header.append(f"  failed {counts[ChapterState.FAILED]}", style="red")
            table = Table.grid(padding=(0, 1))
            table.add_column(justify="right", width=4)
            table.add_column(overflow="ellipsis", no_wrap=True, max_width=36)
            table.add_column(no_wrap=True, width=26)
            table.add_column(width=24)
            table.add_column(justify="right", no_wrap=True)
            active = [
                c
                for c in status.chapters.values()
                if c.state
                in (
                    ChapterState.DOWNLOADING,
                    ChapterState.CONVERTING,
                    ChapterState.RETRYING,
                    ChapterState.PAUSED,
                )
            ]
            for chapter in active[: self.max_rows]:
                meter = self._chapter_speed.setdefault(chapter.index, SpeedMeter())
                chapter_speed = meter.sample(now, chapter.bytes_done)
                fraction = chapter.fraction()
                bar = ProgressBar(
                    total=100.0,
                    completed=100.0 * (fraction or 0.0),
                    width=24,
                    pulse=fraction is None and chapter.state is ChapterState.DOWNLOADING,
                    animation_time=now,
                )
                detail = format_bytes(chapter.bytes_done)
                if fraction is not None:
                    detail = f"{100 * fraction:5.1f}% {detail}"
                if chapter.state is ChapterState.DOWNLOADING and chapter_speed > 0:
                    detail += f" {format_bytes(chapter_speed)}/s"
                    if chapter.bytes_expected:
                        rest = max(0, chapter.bytes_expected - chapter.bytes_done)
                        detail += f" ETA {format_duration(rest / chapter_speed)}"
                table.add_row(
                    f"{chapter.index:>3}",
                    escape(chapter.title),
                    Text(_state_text(chapter, now), style=_STATE_STYLE[chapter.state]),
                    bar,
                    detail,
                )
            hidden = len(active) - self.max_rows
            waiting = counts[ChapterState.WAITING]
            footer = []
            if hidden > 0:
                footer.append(f"{hidden} more active")
            if waiting:
                footer.append(f"{waiting} waiting")
            parts: list[RenderableType] = [header, table]
            if footer:
                parts.append(Text(", ".join(footer), style="dim"))
            return Group(*parts)


class PlainLines:
    """One line per chapter event, no cursor tricks (pipes, CI, logs)."""

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.status: RunStatus | None = None

    def start(self, status: RunStatus) -> None:
        self.status = status
        self.console.print(
            escape(
                f"{status.book_title} by {status.author or 'Unknown Author'}: "
                f"{status.total_chapters} chapters -> {status.destination}"
            ),
            soft_wrap=True,
        )

    def event(self, chapter: ChapterView) -> None:
        total = self.status.total_chapters if self.status else "?"
        where = f"chapter {chapter.index}/{total} {chapter.title!r}"
        state = chapter.state
        if state is ChapterState.RETRYING:
            wait = max(0.0, (chapter.retry_due or time.monotonic()) - time.monotonic())
            text = (
                f"{where}: retrying {chapter.attempt + 1}/{chapter.max_attempts} in "
                f"{wait:.0f}s after [{chapter.kind}] {chapter.message}"
            )
        elif state is ChapterState.FAILED:
            text = f"{where}: failed [{chapter.kind}] {chapter.message}"
        elif state is ChapterState.DONE:
            text = f"{where}: done ({format_bytes(chapter.size)}) -> {chapter.filename}"
        elif state is ChapterState.SKIPPED:
            text = f"{where}: skipped (already complete)"
        elif self.verbose or state is ChapterState.DOWNLOADING:
            text = f"{where}: {state}"
        else:
            return
        self.console.print(
            escape(text), soft_wrap=True, style="red" if state is ChapterState.FAILED else ""
        )

    def log(self, message: str, *, level: str = "info") -> None:
        self.console.print(escape(message), soft_wrap=True)

    def stop(self) -> None:
        pass


class QuietReporter:
    """``-q``: failures only; the summary line is printed by the caller."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def start(self, status: RunStatus) -> None:
        pass

    def event(self, chapter: ChapterView) -> None:
        if chapter.state is ChapterState.FAILED:
            self.console.print(
                escape(f"error: chapter {chapter.index} failed [{chapter.kind}] {chapter.message}"),
                style="red",
                soft_wrap=True,
            )

    def log(self, message: str, *, level: str = "info") -> None:
        if level == "error":
            self.console.print(escape(f"error: {message}"), style="red", soft_wrap=True)

    def stop(self) -> None:
        pass


def make_reporter(console: Console, verbosity: str) -> Reporter:
    """The live view in a terminal, plain lines otherwise, nothing but errors when quiet."""
    if verbosity == "quiet":
        return QuietReporter(console)
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveView(console)
    return PlainLines(console, verbose=verbosity in ("verbose", "debug"))
