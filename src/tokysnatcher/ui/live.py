"""How a run shows its progress: the reporters a run talks to (``ui/status.py``'s ``Reporter``).

The Rich live view for terminals, plain lines for pipes and logs, and the quiet one. Rich is
imported here and nowhere else outside ``ui/``.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tokysnatcher.download.events import (
    ChangeConnections,
    Command,
    PauseChapter,
    PauseRun,
    RequestRetried,
)
from tokysnatcher.download.state import (
    BatchState,
    BookPhase,
    Chapter,
    Phase,
    RunState,
    Tally,
)
from tokysnatcher.ui.display import visible
from tokysnatcher.ui.keys import Key, KeyReader, keys_available
from tokysnatcher.ui.status import (
    Reporter,
    SmoothedRate,
    SpeedMeter,
    event_line,
    network_wait_text,
    request_retry_line,
    state_text,
)
from tokysnatcher.utils.units import format_bytes, format_duration

# ---------------------------------------------------------------------------------------------
# Reporters: the Rich live view, plain lines for pipes and logs, and the quiet one.
# ---------------------------------------------------------------------------------------------

#: At most this many redraws a second (SPEC §6: smooth, no flicker, <= 10/s). Each frame costs
#: ~10 ms of CPU on a 2-core machine; 8 a second was 8% of a core for no visible gain.
REFRESH_PER_SECOND = 4
_STATE_STYLE = {
    Phase.WAITING: "dim",
    Phase.QUEUED: "dim",
    Phase.DOWNLOADING: "cyan",
    Phase.CONVERTING: "magenta",
    Phase.RETRYING: "yellow",
    Phase.DONE: "green",
    Phase.FAILED: "red",
    Phase.SKIPPED: "green",
    Phase.INTERRUPTED: "yellow",
}


class _Row(NamedTuple):
    chapter: Chapter
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

    With ``keys`` (stdin is a terminal) a footer line names the keys: ``p`` pauses the run,
    up/down select a chapter (marked ``>``), space pauses it, ``+``/``-`` change the connection
    limit, ``q`` stops as Ctrl-C does. Keys become commands posted to the run
    (:meth:`controls`); which chapter is selected is the view's own state.
    """

    def __init__(
        self,
        console: Console,
        *,
        verbose: bool = False,
        debug: bool = False,
        max_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_rows: int = 12,
        batch: BatchState | None = None,
        prefix: str = "",
        keys: bool = False,
    ) -> None:
        self.console = console
        self.verbose = verbose or debug
        self.debug = debug
        self.max_retries = max_retries
        self.clock = clock
        self.max_rows = max_rows
        self.batch = batch if batch is not None and batch.is_batch else None
        self.prefix = prefix  # a book of a batch: lines printed above the view say which
        self.status: RunState | None = None
        self._live: Live | None = None
        self._speed = SpeedMeter()
        self._rate = 0.0  # the header's last speed, bytes/s
        # Per chapter while it is on screen; a chapter that leaves the view leaves this too.
        self._chapter_speed: dict[int, SmoothedRate] = {}
        self._widths = [len("downloading"), 0]  # state and detail columns
        # Keys: the reader thread, where commands go, the chapters on screen and the selection
        # (written by the reader and the refresh thread, under _keys_lock).
        self._keys = KeyReader(self.on_key) if keys else None
        self._keys_on = False
        self._keys_lock = threading.Lock()
        self._post: Callable[[Command], None] | None = None
        self._shown: list[int] = []
        self._selected: int | None = None
        arrows = (console.encoding or "").lower().startswith("utf")
        self._arrows = "\u2191/\u2193" if arrows else "up/down"

    def start(self, status: RunState) -> None:
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
        if self._keys is not None:
            self._keys_on = self._keys.start()

    def controls(self, post: Callable[[Command], None] | None) -> None:
        with self._keys_lock:
            self._post = post

    def on_key(self, key: Key) -> None:
        """What a key does (called on the key reader's thread)."""
        if key is Key.QUIT:
            _thread.interrupt_main()  # exactly what Ctrl-C does, wherever the run is
            return
        with self._keys_lock:
            post = self._post
            if key in (Key.UP, Key.DOWN):
                self._move_selection(-1 if key is Key.UP else 1)
                return
            selected = self._selected
        if post is None:
            return  # the run takes no commands now (before it starts, or while it ends)
        if key is Key.PAUSE_RUN:
            post(PauseRun())
        elif key is Key.PAUSE_CHAPTER and selected is not None:
            post(PauseChapter(selected))
        elif key is Key.MORE_CONNECTIONS:
            post(ChangeConnections(+1))
        elif key is Key.FEWER_CONNECTIONS:
            post(ChangeConnections(-1))

    def _move_selection(self, step: int) -> None:
        shown = self._shown
        if not shown:
            return
        if self._selected not in shown:
            self._selected = shown[0] if step > 0 else shown[-1]
            return
        position = shown.index(self._selected) + step
        self._selected = shown[max(0, min(len(shown) - 1, position))]

    def event(self, chapter: Chapter) -> None:
        if chapter.phase is Phase.FAILED:
            self.console.print(
                escape(
                    visible(
                        f"{self.prefix}chapter {chapter.index} failed [{chapter.kind}] "
                        f"{chapter.message}"
                    )
                ),
                style="red",
            )
        elif self.verbose:
            total = _label_total(self.status)
            parts = self.status is not None and self.status.parts
            line = event_line(chapter, total, self.clock(), parts=parts)
            if line is not None:
                self.console.print(
                    escape(visible(self.prefix + line)), style=_STATE_STYLE[chapter.phase]
                )

    def retried(self, chapter: Chapter, event: RequestRetried) -> None:
        if self.verbose:
            line = request_retry_line(event, self.max_retries, detail=self.debug)
            self.console.print(escape(visible(self.prefix + line)), style="yellow")

    def stop(self) -> None:
        if self._keys is not None:
            self._keys.stop()  # the terminal's mode back first, whatever comes next
            self._keys_on = False
        if self._live is not None:
            self._live.stop()  # draws the final frame (final counts) and leaves it on screen
            self._live = None

    def _rows(self) -> int:
        # Header (3 lines, 4 in a batch) and footer (1) stay visible; the rest holds bars.
        header = 5 if self.batch is None else 6
        return max(1, min(self.max_rows, self.console.size.height - header))

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
            table_rows = [self._row(chapter, now) for chapter in active[:rows]]
            selected = self._select([row.chapter.index for row in table_rows])
            table = self._table(table_rows, now, selected)
            footer = []
            if len(active) > rows:
                footer.append(f"{len(active) - rows} more active")
            if waiting := tally.counts[Phase.WAITING]:
                footer.append(f"{waiting} waiting")
            if interrupted := tally.counts[Phase.INTERRUPTED]:
                footer.append(f"{interrupted} not finished")
            shown = {row.chapter.index for row in table_rows}
            for index in [i for i in self._chapter_speed if i not in shown]:
                del self._chapter_speed[index]
            paused = status.paused
        if self.batch is not None:  # read once the book's lock is let go: never both at once
            header = Text.assemble(self._batch_line(self.batch, tally), header)
        parts: list[RenderableType] = [header, table]
        if footer:
            parts.append(Text(", ".join(footer), style="dim"))
        if self._keys_on:
            parts.append(self._keys_line(paused))
        return Group(*parts)

    def _keys_line(self, paused: bool) -> Text:
        """The one-line footer that names the keys."""
        return Text(
            f"p {'resume' if paused else 'pause'}  {self._arrows} select  "
            "space pause/resume chapter  +/- connections  q quit",
            style="dim",
            no_wrap=True,
            overflow="ellipsis",
        )

    def _select(self, shown: list[int]) -> int | None:
        """The selected chapter, kept on screen (the first row, when its own left)."""
        if not self._keys_on:
            return None
        with self._keys_lock:
            self._shown = shown
            # Nothing is marked until the first up/down; then a chapter always is.
            if self._selected is not None and self._selected not in shown:
                self._selected = shown[0] if shown else None
            return self._selected

    def _header(self, status: RunState, tally: Tally, now: float) -> Text:
        speed = self._rate = self._speed.sample(now, status.bytes_received)
        counts = tally.counts
        done = counts[Phase.DONE] + counts[Phase.SKIPPED]
        left = tally.bytes_left
        if status.paused and left != 0:
            eta = "--:--"  # nothing moves until the user resumes
        elif left == 0:
            eta = "0:00"
        else:
            eta = format_duration(left / speed) if left is not None and speed > 0 else "--:--"
        limit = f" (limit {format_bytes(status.speed_limit)}/s)" if status.speed_limit else ""
        figures = [
            f"chapters {done}/{status.total_chapters} done",
            f"connections {status.active_connections}/{status.connections}",
            f"{format_bytes(speed)}/s{limit}",
            f"ETA {eta}",
        ]
        if status.connections_reason:
            # Why the limit is what it is, when the line has room for it (it must not wrap).
            why = f"{figures[1]} ({status.connections_reason})"
            if len("  ".join(figures)) + len(why) - len(figures[1]) <= self.console.width:
                figures[1] = why
        header = Text.assemble(
            (visible(status.book_title), "bold"),
            f" by {visible(status.author or 'Unknown Author')}\n",
            (f"-> {visible(str(status.destination))}\n", "dim"),
            "  ".join(figures),
        )
        # Trouble gets a line of its own: added to the figures it would wrap at 100 columns.
        trouble = Text()
        if status.network_retry_at is not None and not status.interrupted:
            trouble.append(f"{network_wait_text(status.network_retry_at, now)}  ", style="yellow")
        if counts[Phase.FAILED]:
            trouble.append(f"failed {counts[Phase.FAILED]}  ", style="red")
        retries = tally.chapter_retries
        requests = tally.request_retries
        if retries or requests:
            levels = [
                f"{n} {level}" for n, level in ((retries, "chapter"), (requests, "request")) if n
            ]
            trouble.append(f"retries {', '.join(levels)}  ", style="yellow")
        if status.interrupted:
            trouble.append("interrupted", style="yellow")
        elif status.paused:
            trouble.append("paused - p resumes", style="yellow")
        if trouble:
            trouble.rstrip()
            header.append("\n")
            header.append_text(trouble)
        if status.joining is not None and not status.interrupted:
            header.append(f"\njoining m4b {100 * status.joining:.0f}%", style="magenta")
        return header

    def _batch_line(self, batch: BatchState, tally: Tally) -> Text:
        """``book 2/5  books done 1  total 12.3 MB  batch ETA 4:10``: the batch over its books."""
        books = batch.tally()
        counts = books.counts
        number = books.current.number if books.current is not None else len(batch.books)
        left = batch.bytes_left(tally.bytes_left)
        speed = self._rate
        eta = format_duration(left / speed) if left is not None and speed > 0 else "--:--"
        line = Text(f"book {number}/{len(batch.books)}  ", style="bold")
        line.append(f"books done {counts[BookPhase.COMPLETE]}  ")
        if counts[BookPhase.FAILED]:
            line.append(f"failed {counts[BookPhase.FAILED]}  ", style="red")
        line.append(f"total {format_bytes(books.bytes_received)}  batch ETA {eta}\n")
        return line

    def _row(self, chapter: Chapter, now: float) -> _Row:
        meter = self._chapter_speed.setdefault(chapter.index, SmoothedRate())
        speed = meter.sample(now, chapter.bytes_done)
        fraction = chapter.fraction()
        state = (
            ""
            if self.status is None
            else state_text(chapter, now, self.status.stall_timeout, run_paused=self.status.paused)
        )
        if chapter.phase is Phase.QUEUED and not chapter.paused:
            return _Row(chapter, visible(chapter.title), state, None, "", "")
        detail = format_bytes(chapter.bytes_done)
        if fraction is not None:
            detail = f"{100 * fraction:5.1f}% {detail}"
        short = f"{100 * fraction:5.1f}%" if fraction is not None else detail
        if chapter.phase is Phase.DOWNLOADING and speed > 0 and state == "downloading":
            detail += f"  {format_bytes(speed)}/s"
            expected = chapter.bytes_expected
            if expected:
                rest = max(0, expected - chapter.bytes_done)
                detail += f"  ETA {format_duration(rest / speed)}"
        return _Row(chapter, visible(chapter.title), state, fraction, detail, short)

    def _table(self, rows: list[_Row], now: float, selected: int | None = None) -> Table:
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
            marker = "> " if chapter.index == selected else ""
            cells: list[RenderableType] = [
                f"{marker}{chapter.index}",
                Text(
                    row.title,
                    overflow="ellipsis",
                    no_wrap=True,
                    style="reverse" if marker else "",
                ),
                Text(
                    row.state,
                    style="yellow" if row.state == "paused" else _STATE_STYLE[chapter.phase],
                ),
            ]
            if bar_width:
                cells.append(
                    ProgressBar(
                        total=100.0,
                        completed=100.0 * (row.fraction or 0.0),
                        width=bar_width,
                        pulse=row.fraction is None and chapter.phase is Phase.DOWNLOADING,
                        animation_time=now,
                    )
                )
            cells.append(detail)
            table.add_row(*cells)
        return table


def _label_total(status: RunState | None) -> int | str:
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
        debug: bool = False,
        max_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "",
    ) -> None:
        self.console = console
        self.verbose = verbose or debug
        self.debug = debug
        self.max_retries = max_retries
        self.clock = clock
        self.prefix = prefix  # a book of a batch: every line says which
        self.status: RunState | None = None

    def start(self, status: RunState) -> None:
        self.status = status
        self.console.print(
            escape(
                visible(
                    f"{self.prefix}{status.book_title} by {status.author or 'Unknown Author'}: "
                    f"{status.total_chapters} chapters -> {status.destination}"
                )
            ),
            soft_wrap=True,
        )

    def event(self, chapter: Chapter) -> None:
        total = _label_total(self.status)
        parts = self.status is not None and self.status.parts
        line = event_line(chapter, total, self.clock(), parts=parts)
        if line is None and self.verbose:
            line = f"chapter {chapter.index}/{total} {chapter.title!r}: {chapter.phase}"
        if line is not None:
            style = "red" if chapter.phase is Phase.FAILED else ""
            self.console.print(escape(visible(self.prefix + line)), soft_wrap=True, style=style)

    def retried(self, chapter: Chapter, event: RequestRetried) -> None:
        if self.verbose:
            line = request_retry_line(event, self.max_retries, detail=self.debug)
            self.console.print(escape(visible(self.prefix + line)), soft_wrap=True)

    def controls(self, post: Callable[[Command], None] | None) -> None:
        pass  # plain lines read no keys

    def stop(self) -> None:
        pass


class QuietReporter:
    """``-q``: failures only; the summary line is printed by the caller."""

    def __init__(self, console: Console, *, prefix: str = "") -> None:
        self.console = console
        self.prefix = prefix

    def start(self, status: RunState) -> None:
        pass

    def event(self, chapter: Chapter) -> None:
        if chapter.phase is Phase.FAILED:
            self.console.print(
                escape(
                    visible(
                        f"{self.prefix}error: chapter {chapter.index} failed [{chapter.kind}] "
                        f"{chapter.message}"
                    )
                ),
                style="red",
                soft_wrap=True,
            )

    def retried(self, chapter: Chapter, event: RequestRetried) -> None:
        pass

    def controls(self, post: Callable[[Command], None] | None) -> None:
        pass  # --quiet reads no keys

    def stop(self) -> None:
        pass


def make_reporter(
    console: Console,
    verbosity: str,
    max_retries: int,
    *,
    batch: BatchState | None = None,
    prefix: str = "",
) -> Reporter:
    """The live view in a terminal, plain lines otherwise, nothing but errors when quiet.

    ``-v`` adds every chapter event and request retry, ``-vv`` the HTTP detail of each retry;
    ``max_retries`` is the quick-retry budget of one request, for ``retry n/N``. A book of a
    batch: the live view adds the batch's header, each line starts with ``prefix``.
    """
    if verbosity == "quiet":
        return QuietReporter(console, prefix=prefix)
    verbose = verbosity in ("verbose", "debug")
    debug = verbosity == "debug"
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveView(
            console,
            verbose=verbose,
            debug=debug,
            max_retries=max_retries,
            batch=batch,
            prefix=prefix,
            keys=keys_available(),
        )
    return PlainLines(console, verbose=verbose, debug=debug, max_retries=max_retries, prefix=prefix)
