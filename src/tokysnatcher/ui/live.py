"""Progress reporting: ffmpeg's ``-progress`` stream and how a run shows its progress.

The first section holds :class:`FfmpegProgressTracker`, the pure parser behind the ffmpeg
watchdog (SPEC §5). It knows nothing about processes or threads; ``ffmpeg/binary.py`` feeds it
lines and asks it whether ffmpeg is still advancing. Time comes from an injected clock so tests
never sleep.

The second section holds the reporters the core talks to (``ui/status.py``'s ``Reporter``):
the Rich live view for terminals, plain lines for pipes and logs, and the quiet one. Rich is
imported here and nowhere else outside ``ui/``.
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

from tokysnatcher.ui.display import visible
from tokysnatcher.ui.status import (
    ChapterState,
    ChapterView,
    Reporter,
    RunStatus,
    SpeedMeter,
    Tally,
)
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

#: At most this many redraws a second (SPEC §6: smooth, no flicker, <= 10/s). Each frame costs
#: ~10 ms of CPU on a 2-core machine; 8 a second was 8% of a core for no visible gain.
REFRESH_PER_SECOND = 4
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
_LOG_STYLE = {"warning": "yellow", "error": "red", "debug": "dim"}


class _Row(NamedTuple):
    chapter: ChapterView
    title: str  # as shown: site text, escaped
    state: str
    fraction: float | None
    detail: str  # percentage, bytes, speed and ETA
    short: str  # percentage or bytes, for very narrow screens


class LiveView:
    """The Rich live view: a header for the book and one bar per active chapter.

    Finished chapters leave the table and only count in the header. Messages printed through
    ``console`` while the view runs appear above it (Rich keeps the view at the bottom), and
    stray writes to ``sys.stdout``/``sys.stderr`` are redirected the same way.
    """

    def __init__(
        self,
        console: Console,
        *,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_rows: int = 12,
    ) -> None:
        self.console = console
        self.verbose = verbose
        self.clock = clock
        self.max_rows = max_rows
        self.status: RunStatus | None = None
        self._live: Live | None = None
        self._speed = SpeedMeter()
        self._chapter_speed: dict[int, SpeedMeter] = {}
        self._widths = [len("downloading"), 0]  # state and detail columns

    def start(self, status: RunStatus) -> None:
        self.status = status
        self._live = Live(
            console=self.console,
            get_renderable=self.render,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=False,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        # Rich hides the cursor while the view runs and shows it again on stop; a run killed
        # with SIGKILL never stops, and would leave the shell without a cursor. So it is never
        # hidden: the show follows the hide in the same write (one buffered console block).
        with self.console:
            self._live.start()
            self.console.show_cursor(True)

    def event(self, chapter: ChapterView) -> None:
        if chapter.state is ChapterState.FAILED:
            self.console.print(
                escape(
                    visible(f"chapter {chapter.index} failed [{chapter.kind}] {chapter.message}")
                ),
                style="red",
            )
        elif self.verbose:
            total = _label_total(self.status)
            line = chapter.event_line(total, self.clock())
            if line is not None:
                self.console.print(escape(visible(line)), style=_STATE_STYLE[chapter.state])

    def log(self, message: str, *, level: str = "info") -> None:
        self.console.print(escape(visible(message)), style=_LOG_STYLE.get(level, ""))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()  # draws the final frame (final counts) and leaves it on screen
            self._live = None

    def _rows(self) -> int:
        # Header (3 lines) and footer (1) stay visible; the rest of the screen holds bars.
        return max(1, min(self.max_rows, self.console.size.height - 5))

    def render(self) -> RenderableType:
        """One frame; called by Rich's refresh thread (at most REFRESH_PER_SECOND a second)."""
        status = self.status
        if status is None:
            return Text("")
        now = self.clock()
        with status.lock:
            tally = status.tally()
            header = self._header(status, tally, now)
            active = tally.active
            rows = self._rows()
            # Only a window of the chapters is drawn, however long the book.
            table = self._table([self._row(chapter, now) for chapter in active[:rows]], now)
            footer = []
            if len(active) > rows:
                footer.append(f"{len(active) - rows} more active")
            if waiting := tally.counts[ChapterState.WAITING]:
                footer.append(f"{waiting} waiting")
        parts: list[RenderableType] = [header, table]
        if footer:
            parts.append(Text(", ".join(footer), style="dim"))
        return Group(*parts)

    def _header(self, status: RunStatus, tally: Tally, now: float) -> Text:
        speed = self._speed.sample(now, status.bytes_total)
        counts = tally.counts
        done = counts[ChapterState.DONE] + counts[ChapterState.SKIPPED]
        left = tally.bytes_left
        if left == 0:
            eta = "0:00"
        else:
            eta = format_duration(left / speed) if left is not None and speed > 0 else "--:--"
        limit = f" (limit {format_bytes(status.speed_limit)}/s)" if status.speed_limit else ""
        header = Text.assemble(
            (visible(status.book_title), "bold"),
            f" by {visible(status.author or 'Unknown Author')}\n",
            (f"-> {visible(str(status.destination))}\n", "dim"),
            f"chapters {done}/{status.total_chapters} done  "
            f"connections {status.active_connections}/{status.connections}  "
            f"{format_bytes(speed)}/s{limit}  ETA {eta}",
        )
        if counts[ChapterState.FAILED]:
            header.append(f"  failed {counts[ChapterState.FAILED]}", style="red")
        if status.retries:
            header.append(f"  retries {status.retries}", style="yellow")
        return header

    def _row(self, chapter: ChapterView, now: float) -> _Row:
        meter = self._chapter_speed.setdefault(chapter.index, SpeedMeter())
        speed = meter.sample(now, chapter.bytes_done)
        fraction = chapter.fraction()
        detail = format_bytes(chapter.bytes_done)
        if fraction is not None:
            detail = f"{100 * fraction:5.1f}% {detail}"
        short = f"{100 * fraction:5.1f}%" if fraction is not None else detail
        if chapter.state is ChapterState.DOWNLOADING and speed > 0:
            detail += f"  {format_bytes(speed)}/s"
            if chapter.bytes_expected:
                rest = max(0, chapter.bytes_expected - chapter.bytes_done)
                detail += f"  ETA {format_duration(rest / speed)}"
        return _Row(
            chapter, visible(chapter.title), chapter.state_text(now), fraction, detail, short
        )

    def _table(self, rows: list[_Row], now: float) -> Table:
        """The chapter rows, laid out so that only the title gives way on a narrow screen."""
        # Columns only ever grow during a run, so that nothing jitters from frame to frame.
        self._widths[0] = max([self._widths[0], *(len(row.state) for row in rows)])
        self._widths[1] = max([self._widths[1], *(len(row.detail) for row in rows)])
        state_width, detail_width = self._widths
        title_width = min(32, max((len(row.title) for row in rows), default=0))
        index_width = max((len(str(row.chapter.index)) for row in rows), default=1) + 2
        details = [row.detail for row in rows]
        room = self.console.width - index_width - state_width - 4
        if room - detail_width < 8:
            details = [row.short for row in rows]
            detail_width = max(map(len, details), default=0)
        room -= detail_width
        # The bar shrinks, then goes, before the title gets shorter than 12 characters.
        bar_width = next((w for w in (20, 10) if room - w - 1 >= min(title_width, 12)), 0)
        title_width = max(4, min(title_width, room - bar_width - (1 if bar_width else 0)))
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", width=index_width, no_wrap=True)
        table.add_column(width=title_width, no_wrap=True, overflow="ellipsis")
        table.add_column(width=state_width, no_wrap=True)
        if bar_width:
            table.add_column(width=bar_width, no_wrap=True)
        table.add_column(justify="right", width=detail_width, no_wrap=True)
        for row, detail in zip(rows, details, strict=True):
            chapter = row.chapter
            cells: list[RenderableType] = [
                str(chapter.index),
                Text(row.title, overflow="ellipsis", no_wrap=True),
                Text(row.state, style=_STATE_STYLE[chapter.state]),
            ]
            if bar_width:
                cells.append(
                    ProgressBar(
                        total=100.0,
                        completed=100.0 * (row.fraction or 0.0),
                        width=bar_width,
                        pulse=row.fraction is None and chapter.state is ChapterState.DOWNLOADING,
                        animation_time=now,
                    )
                )
            cells.append(detail)
            table.add_row(*cells)
        return table


def _label_total(status: RunStatus | None) -> int | str:
    """The N of "chapter n/N": the book's chapter count, even for a --chapters selection."""
    if status is None:
        return "?"
    return status.book_chapters or status.total_chapters


class PlainLines:
    """One line per chapter event, no cursor tricks and no escape codes (pipes, CI, logs)."""

    def __init__(
        self,
        console: Console,
        *,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.verbose = verbose
        self.clock = clock
        self.status: RunStatus | None = None

    def start(self, status: RunStatus) -> None:
        self.status = status
        self.console.print(
            escape(
                visible(
                    f"{status.book_title} by {status.author or 'Unknown Author'}: "
                    f"{status.total_chapters} chapters -> {status.destination}"
                )
            ),
            soft_wrap=True,
        )

    def event(self, chapter: ChapterView) -> None:
        total = _label_total(self.status)
        line = chapter.event_line(total, self.clock())
        if line is None and self.verbose:
            line = f"chapter {chapter.index}/{total} {chapter.title!r}: {chapter.state}"
        if line is not None:
            style = "red" if chapter.state is ChapterState.FAILED else ""
            self.console.print(escape(visible(line)), soft_wrap=True, style=style)

    def log(self, message: str, *, level: str = "info") -> None:
        self.console.print(
            escape(visible(message)), soft_wrap=True, style=_LOG_STYLE.get(level, "")
        )

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
                escape(
                    visible(
                        f"error: chapter {chapter.index} failed [{chapter.kind}] {chapter.message}"
                    )
                ),
                style="red",
                soft_wrap=True,
            )

    def log(self, message: str, *, level: str = "info") -> None:
        if level == "error":
            self.console.print(escape(visible(f"error: {message}")), style="red", soft_wrap=True)

    def stop(self) -> None:
        pass


def make_reporter(console: Console, verbosity: str) -> Reporter:
    """The live view in a terminal, plain lines otherwise, nothing but errors when quiet."""
    if verbosity == "quiet":
        return QuietReporter(console)
    verbose = verbosity in ("verbose", "debug")
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveView(console, verbose=verbose)
    return PlainLines(console, verbose=verbose)
