"""What the command prints: errors, summaries, plans, tables, search results.

Results (summary, plan, tables, search results) go to stdout; the live view, events, warnings
and errors go to stderr. A non-terminal gets plain lines without escape codes; ``NO_COLOR`` is
honoured (Rich reads it). Text from the site or from disk is printed through
:func:`~tokysnatcher.ui.display.visible`, so it cannot act on the terminal.

What is printed is only a view of the run: when the terminal or the pipe behind stdout or
stderr goes away, printing stops quietly and the run still ends as it should (children ended,
manifest saved, the right exit code).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import time
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tokysnatcher.config.settings import Verbosity
from tokysnatcher.download.state import BookPhase
from tokysnatcher.ui.display import visible
from tokysnatcher.utils.units import format_bytes, format_duration

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from tokysnatcher.diagnostics.doctor import Check
    from tokysnatcher.download.plan import BookPlan
    from tokysnatcher.download.results import RunResult
    from tokysnatcher.download.state import BatchState, RunState
    from tokysnatcher.library.scan import BookSummary
    from tokysnatcher.library.verify import VerifyReport, VerifyRow
    from tokysnatcher.sources.source import SearchPage
    from tokysnatcher.ui.status import Reporter


def _mute(fd: int) -> None:
    """Point ``fd`` at the null device: later writes to it, ours or Python's, succeed unseen."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def mute_terminal() -> None:
    """The terminal hung up: whatever would go to it goes nowhere from now on.

    A write to a terminal that is gone fails with EIO, or blocks while the far end is not
    reading; either would stall the wind-down that follows a hangup. Output redirected to a
    file or a pipe is left alone (the file still gets the summary and the resume command).
    """
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            # Not isatty(): a terminal that hung up no longer answers it. A character device
            # here is the terminal (or already the null device).
            if stat.S_ISCHR(os.fstat(fd).st_mode):
                _mute(fd)


class _Stream(io.TextIOBase, TextIO):
    """stdout or stderr as the consoles write to it: a failing write ends the output, not the run.

    A closed terminal answers EIO, a pipe whose reader is gone EPIPE (Rich would turn the
    latter into ``SystemExit`` in the middle of a run). The stream is muted instead, so the
    buffered rest and every later write, ours or Python's at exit, go to the null device.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._muted = False

    @property
    def encoding(self) -> str:  # type: ignore[override]  # read-only: the wrapped stream's
        return self._stream.encoding

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def write(self, text: str) -> int:
        if not self._muted:
            try:
                self._stream.write(text)
            except (OSError, ValueError):  # ValueError: the wrapped stream was closed
                self._mute()
        return len(text)

    def flush(self) -> None:
        if not self._muted:
            try:
                self._stream.flush()
            except (OSError, ValueError):  # ValueError: closed (Python 3.13 reports it at exit)
                self._mute()

    def _mute(self) -> None:
        self._muted = True
        with contextlib.suppress(OSError, ValueError):  # no descriptor (a test's capture)
            _mute(self._stream.fileno())


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Off a terminal, never wrap: one event stays one line for scripts and logs.
    return Console(
        file=_Stream(stream),
        stderr=stderr,
        width=None if tty else 10_000,
        highlight=False,
        soft_wrap=not tty,
    )


class Output:
    """Printing for one invocation, at one verbosity."""

    def __init__(
        self, verbosity: Verbosity, out: Console, err: Console, *, prefix: str = ""
    ) -> None:
        self.verbosity = verbosity
        self.out = out
        self.err = err
        self.prefix = prefix  # what each line of a book of a batch starts with: "[2/5 slug] "

    def for_book(self, prefix: str) -> Output:
        """The same output, each line of a book's run starting with ``prefix``."""
        return Output(self.verbosity, self.out, self.err, prefix=prefix)

    @classmethod
    def for_terminal(cls, verbosity: Verbosity) -> Output:
        return cls(verbosity, _console(stderr=False), _console(stderr=True))

    @property
    def interactive(self) -> bool:
        """Prompts are allowed only with a terminal on both ends and outside CI."""
        return sys.stdin.isatty() and self.err.is_terminal and not os.environ.get("CI")

    @property
    def quiet(self) -> bool:
        return self.verbosity is Verbosity.QUIET

    @property
    def debug(self) -> bool:
        return self.verbosity is Verbosity.DEBUG

    @staticmethod
    def error_line(message: str, hint: str, *, new_line: bool = False) -> None:
        """One line on stderr: the problem and what to do.

        ``new_line``: in a terminal, start on a fresh line (after a prompt and an echoed ^C).
        """
        console = _console(stderr=True)
        if new_line and console.file.isatty():
            console.line()
        text = f"error: {message}" + (f" - {hint}" if hint else "")
        console.print(escape(visible(text)), style="red", soft_wrap=True)

    def traceback(self) -> None:
        self.err.print_exception(show_locals=False)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.err.print(escape(visible(self.prefix + message)), soft_wrap=True)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.err.print(
                escape(visible(f"{self.prefix}warning: {message}")), style="yellow", soft_wrap=True
            )

    def error(self, message: str, hint: str = "") -> None:
        """An error that ends a book of a batch, not the run: one line, as ``error_line``."""
        text = f"{self.prefix}error: {message}" + (f" - {hint}" if hint else "")
        self.err.print(escape(visible(text)), style="red", soft_wrap=True)

    def log(self, message: str, level: str) -> None:
        if level == "debug" and self.verbosity is not Verbosity.DEBUG:
            return
        if level == "info" and self.verbosity not in (Verbosity.VERBOSE, Verbosity.DEBUG):
            return
        if level == "warning":
            self.warn(message)
        elif level == "error":
            self.error(message)
        else:
            self.info(message)

    def reporter(self, max_retries: int, *, batch: BatchState | None = None) -> Reporter:
        """How a download shows its progress; ``max_retries``: quick retries of a request.

        ``batch``: the run's books; with more than one, the live view shows a batch header.
        """
        # Imported here: only a download reports progress (the live view pulls in rich.live).
        from tokysnatcher.ui.live import make_reporter

        return make_reporter(self.err, self.verbosity, max_retries, batch=batch, prefix=self.prefix)

    # -- results ---------------------------------------------------------------------------
    def plan(self, plan: BookPlan) -> None:
        book = plan.book
        self.out.print(
            escape(visible(f"{book.title} by {book.author or 'Unknown Author'}")),
            style="bold",
            soft_wrap=True,
        )
        self.out.print(escape(visible(f"destination: {plan.folder}")), soft_wrap=True)
        table = Table(show_edge=False, box=None, pad_edge=False)
        for column in ("#", "action", "file", "size", "why"):
            table.add_column(column, justify="right" if column in ("#", "size") else "left")
        for ch in plan.chapters:
            # A skip's size is exact (its manifest entry); anything else is an estimate.
            size = format_bytes(ch.estimated_bytes) if ch.estimated_bytes else "?"
            if ch.estimated_bytes and ch.action != "skip":
                size = "~" + size
            table.add_row(
                str(ch.index), str(ch.action), escape(visible(ch.dest.name)), size, ch.reason
            )
        self.out.print(table)
        fetch = len(plan.to_fetch)
        self.out.print(
            f"plan: {fetch} to download, {plan.complete_count} to skip, "
            f"about {format_bytes(plan.estimated_bytes())}; nothing was written (dry run)"
        )

    def summary(self, result: RunResult, state: RunState, resume_command: str) -> None:
        """The closing line (and, unless quiet, failures and the folder) of a download."""
        chapters = result.chapters
        done = sum(1 for c in chapters if c.status == "complete")
        skipped = sum(1 for c in chapters if c.status == "skipped")
        failed = result.failed
        pending = [c for c in chapters if c.status == "pending"]
        rate = result.success_rate
        speed = result.bytes_received / result.seconds if result.seconds > 0 else 0.0
        noun = "parts" if state.parts else "files"
        p = self.prefix
        line = (
            ("interrupted: " if result.interrupted else "")
            + f"{done} complete, {len(failed)} failed, {skipped} skipped"
            + (f", {len(pending)} not finished" if pending else "")
            + f"; retries: {result.chapter_retries} chapter, {result.request_retries} request"
            + (f"; success {100 * rate:.0f}%" if rate is not None else "")
            + f"; {noun} {format_bytes(result.file_bytes)}"
            + f"; downloaded {format_bytes(result.bytes_received)} in "
            f"{format_duration(result.seconds)} ({format_bytes(speed)}/s)"
        )
        if self.quiet:
            self.out.print(escape(visible(f"{p}{state.book_title}: {line}")), soft_wrap=True)
        else:
            self.out.print(
                escape(visible(f"{p}{state.book_title} - {line}")), style="bold", soft_wrap=True
            )
            for chapter in failed:
                self.out.print(
                    escape(
                        visible(
                            f"{p}  failed {chapter.index:>3} {chapter.filename}: [{chapter.kind}] "
                            f"{chapter.message}"
                        )
                    ),
                    style="red",
                    soft_wrap=True,
                )
            self.out.print(escape(visible(f"{p}files: {state.destination}")), soft_wrap=True)
        if (stopped := result.stopped_by) is not None:
            self.out.print(
                escape(visible(f"{p}stopped: {stopped.message} - {stopped.hint}")),
                style="red",
                soft_wrap=True,
            )
        if failed or pending or result.interrupted or result.stopped_by is not None:
            self.out.print(escape(visible(f"{p}to resume: {resume_command}")), soft_wrap=True)

    def batch_summary(
        self,
        batch: BatchState,
        *,
        resume_rest: str | None,
        retry_failed: str | None,
        dry_run: bool = False,
    ) -> None:
        """The closing lines of a batch: the count of books by outcome and each failed one."""
        tally = batch.tally()
        counts = tally.counts
        failed = [book for book in batch.books if book.phase is BookPhase.FAILED]
        not_run = counts[BookPhase.WAITING] + counts[BookPhase.INTERRUPTED]
        seconds = time.monotonic() - batch.started
        line = (
            ("interrupted: " if batch.interrupted else "")
            + f"batch of {len(batch.books)}: {counts[BookPhase.COMPLETE]} "
            + ("planned (dry run), " if dry_run else "complete, ")
            + f"{len(failed)} failed"
            + (f", {not_run} not finished" if not_run else "")
            + f"; downloaded {format_bytes(tally.bytes_received)} in {format_duration(seconds)}"
        )
        style = "bold" if not failed and not batch.interrupted else "bold red"
        self.out.print(escape(visible(line)), style=style, soft_wrap=True)
        for book in failed:
            where = f" (batch file line {book.line})" if book.line is not None else ""
            name = f"{book.title!r} ({book.ref})" if book.title else repr(book.ref)
            self.out.print(
                escape(
                    visible(
                        f"  failed [{book.number}/{len(batch.books)}] {name}{where}: {book.message}"
                    )
                ),
                style="red",
                soft_wrap=True,
            )
        if retry_failed:
            self.out.print(
                escape(visible(f"to retry the failed books: {retry_failed}")), soft_wrap=True
            )
        if resume_rest:
            self.out.print(escape(visible(f"to resume the rest: {resume_rest}")), soft_wrap=True)

    def search_results(self, page: SearchPage, *, numbered_from: int = 1) -> None:
        if not page.results:
            self.out.print("no results")
            return
        for number, item in enumerate(page.results, start=numbered_from):
            authors = ", ".join(item.authors) or "Unknown Author"
            self.out.print(
                escape(visible(f"{number:>3}. {item.title} - {authors}  {item.url}")),
                soft_wrap=True,
            )
        last = page.offset + len(page.results)
        self.out.print(f"results {page.offset + 1}-{last} of {page.total}")

    # -- library: --verify-folder and --list-downloads ---------------------------------------
    def verify_report(self, report: VerifyReport, resume_command: str | None) -> None:
        """The ``--verify-folder`` result: a row per chapter, unknown files, a verdict line."""
        if report.book is None:
            self.out.print(
                escape(
                    visible(
                        f"nothing to verify in {report.book_dir}: no manifest and no "
                        "'NN - Title' audio files"
                    )
                ),
                soft_wrap=True,
            )
            if report.books_below:
                self.out.print(
                    escape(
                        visible(
                            f"it holds {report.books_below} book folder(s) further down: pass "
                            f"one of them, or list them with --list-downloads -d {report.book_dir}"
                        )
                    ),
                    soft_wrap=True,
                )
            for name in report.unknown_files:
                self.out.print(escape(visible(f"  other audio file: {name}")), soft_wrap=True)
            return
        book = report.book
        self.out.print(
            escape(visible(f"{book.title} by {book.author or 'Unknown Author'} ({book.format})")),
            style="bold",
            soft_wrap=True,
        )
        self.out.print(escape(visible(f"folder: {report.book_dir}")), soft_wrap=True)
        if report.rows:
            self._verify_rows(report)
        chapter_rows = sum(1 for row in report.rows if not row.is_book_file)
        if 0 < chapter_rows < book.chapter_count:
            self.out.print(
                f"note: the manifest records {chapter_rows} of the book's "
                f"{book.chapter_count} chapters"
            )
        if report.unknown_files:
            self.out.print("audio files the manifest does not know (left alone):")
            for name in report.unknown_files:
                self.out.print(escape(visible(f"  {name}")), soft_wrap=True)
        audio = [row for row in report.rows if not row.is_sidecar]
        counts: dict[str, int] = {}
        for row in audio:
            label = _check_label(row)
            counts[label] = counts.get(label, 0) + 1
        parts = [f"{counts.pop('ok', 0)} of {len(audio)} ok"]
        parts += [f"{n} {label}" for label, n in counts.items()]
        if not audio:
            parts = ["the manifest lists no chapters"]
        marked = sum(1 for row in audio if row.marked_pending)
        if marked:
            parts.append(f"{marked} marked to be fetched again")
        sidecars = [row for row in report.rows if row.is_sidecar]
        if sidecars:
            bad = sum(1 for row in sidecars if row.marked_pending)
            parts.append(
                f"{len(sidecars) - bad} of {len(sidecars)} files beside the audio ok"
                + (f" ({bad} written again by the next run)" if bad else "")
            )
        if report.rebuilt is not None:
            parts.append("the manifest was corrupt and has been rebuilt")
        if report.rejected:
            parts.append(f"{len(report.rejected)} unsafe manifest entries rejected")
        verdict = "verified: " if report.clean else "problems found: "
        self.out.print(
            escape(visible(verdict + ", ".join(parts))),
            style="green" if report.clean else "red",
            soft_wrap=True,
        )
        if not report.clean and resume_command:
            self.out.print(
                escape(visible(f"to fetch what is missing: {resume_command}")), soft_wrap=True
            )

    def _verify_rows(self, report: VerifyReport) -> None:
        """The table of ``--verify-folder``: a line per chapter, in columns.

        Not a Rich table: laying one out measures every cell and holds the whole rendering, which
        for a 200,000-chapter manifest took minutes and hundreds of MB. Lines go out in chunks.
        """
        rows = report.rows
        header = ("#", "file", "status", "detail")
        names = [visible(row.name) for row in rows]  # names on disk are not ours: made inert
        widths = [
            max(len(header[0]), *(len(str(row.index)) for row in rows)),
            max(len(header[1]), *(len(name) for name in names)),
            max(len(header[2]), *(len(_check_label(row)) for row in rows)),
        ]

        def line(number: str, name: str, label: str, detail: str) -> str:
            text = f"{number:>{widths[0]}}  {name:<{widths[1]}}  {label:<{widths[2]}}  {detail}"
            return text.rstrip() + "\n"

        chunk = Text()
        chunk.append(line(*header), style="bold")
        for row, name in zip(rows, names, strict=True):
            ok = row.check == "ok"
            detail = "" if ok else visible(row.detail)
            if row.marked_pending:
                detail += " - marked for download" if not row.is_book_file else " - will be remade"
            number = "" if row.is_book_file else str(row.index)
            style = None if ok else ("yellow" if row.check == "incomplete" else "red")
            chunk.append(line(number, name, _check_label(row), detail), style=style)
            if len(chunk) > 64_000:
                self.out.print(chunk, soft_wrap=True, end="")
                chunk = Text()
        self.out.print(chunk, soft_wrap=True, end="")

    def library_table(self, books: Sequence[BookSummary], root: Path) -> None:
        """The ``--list-downloads`` table: one numbered row per book, then a count by state."""
        if not books:
            self.out.print(escape(visible(f"no downloads found under {root}")), soft_wrap=True)
            return
        table = Table(show_edge=False, box=None, pad_edge=False)
        # The size of the book's files on disk: the figure a download's summary calls "files".
        columns = ("#", "title", "author", "format", "chapters", "file size", "updated", "state")
        for column in columns:
            right = column in ("#", "chapters", "file size")
            table.add_column(column, justify="right" if right else "left")
        for number, book in enumerate(books, start=1):
            state = str(book.state)
            table.add_row(
                str(number),
                escape(visible(book.title)),
                escape(visible(book.author or "Unknown Author")),
                escape(visible(book.format or "-")),
                f"{book.complete}/{book.total}" if book.format else "-",
                format_bytes(book.size) if book.size else "-",
                _local_time(book.updated_at),
                state,
                style=_STATE_STYLES.get(state),
            )
        self.out.print(table)
        for number, book in enumerate(books, start=1):
            if book.problem:
                self.out.print(
                    escape(visible(f"{number:>3}: {book.problem} ({book.folder})")),
                    style="red",
                    soft_wrap=True,
                )
        counts: dict[str, int] = {}
        for book in books:
            counts[str(book.state)] = counts.get(str(book.state), 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in counts.items())
        self.out.print(
            escape(visible(f"{len(books)} book(s) under {root}: {summary}")), soft_wrap=True
        )

    def doctor_report(self, checks: Sequence[Check], *, as_json: bool) -> None:
        """``--doctor``: one row per check (status, check, what was found, the fix), then a
        count; or, ``as_json``, the same as one JSON object."""
        failed = [check for check in checks if not check.passed]
        if as_json:
            import json

            data = {
                "ok": not failed,
                "checks": [
                    {"name": c.name, "status": str(c.status), "detail": c.detail, "fix": c.fix}
                    for c in checks
                ],
            }
            self.out.file.write(json.dumps(data, indent=2) + "\n")
            self.out.file.flush()
            return
        styles = {"ok": "green", "warning": "yellow", "failed": "red", "skipped": "dim"}
        table = Table(show_edge=False, box=None, pad_edge=False)
        for column in ("status", "check", "found", "fix"):
            table.add_column(column, overflow="fold")
        for check in checks:
            table.add_row(
                str(check.status),
                escape(visible(check.name)),
                escape(visible(check.detail)),
                escape(visible(check.fix)),
                style=styles[check.status],
            )
        self.out.print(table)
        if failed:
            broken = [check.name for check in failed if check.status == "failed"]
            line = f"{len(broken)} of {len(checks)} checks failed: {', '.join(broken)}"
            if skipped := len(failed) - len(broken):
                line += f"; {skipped} not checked"
        else:
            line = f"all {len(checks)} checks passed"
        self.out.print(escape(visible(line)), soft_wrap=True)


# For the library methods above: check and state names as the tables show them.
_CHECK_LABELS = {
    "ok": "ok",
    "missing": "missing",
    "size_mismatch": "size mismatch",
    "hash_mismatch": "hash mismatch",
    "incomplete": "incomplete",
    "decode_error": "decode error",
    "duration_mismatch": "wrong length",
}


def _check_label(row: VerifyRow) -> str:
    return _CHECK_LABELS.get(str(row.check), str(row.check))


_STATE_STYLES = {
    "complete": "green",
    "incomplete": "yellow",
    "in use": "cyan",
    "failed": "red",
    "corrupt": "red",
    "unsupported": "red",
}


def _local_time(stamp: str | None) -> str:
    """A manifest's UTC timestamp as local ``YYYY-MM-DD HH:MM`` (unparsable text shown as is)."""
    from datetime import UTC, datetime

    if not stamp:
        return "-"
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return escape(visible(stamp[:20]))
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")
