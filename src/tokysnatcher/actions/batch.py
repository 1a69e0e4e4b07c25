"""Several books in one run: ``tokysnatcher REF [REF ...]`` and ``--batch-file FILE``.

Books run in order through one runtime (one pooled session, one rate limit, one stop flag), and
each goes through :func:`~tokysnatcher.actions.download.download_book`, as a single reference
does. Once no chapter of the current book is left to admit, the next book is resolved on a
thread of its own, with a source of its own (a source holds one book's credentials), so its
first requests follow the current book's last ones without a pause.

A book that fails (a bad reference, a book the site does not know, chapters that failed) never
stops the rest. Ctrl-C, or a disk that refuses a write, stops the batch; the batch summary then
names the command that resumes the books not finished.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tokysnatcher.actions.download import command_for, download_book
from tokysnatcher.config.settings import Settings
from tokysnatcher.download.plan import BookPlan, ResumeMode, prepare
from tokysnatcher.download.run import Runtime, open_runtime
from tokysnatcher.download.state import BatchState, BookPhase, BookRun
from tokysnatcher.errors import ExitCode, Interrupted, TokysnatcherError, UsageError
from tokysnatcher.ffmpeg.binary import FfmpegInfo, resolve_ffmpeg
from tokysnatcher.sources.registry import source_name
from tokysnatcher.ui.output import Output
from tokysnatcher.ui.status_file import status_file

STDIN = "-"
_GATE_POLL = 0.25  # seconds between two looks at whether the current book admitted its last


@dataclass(frozen=True)
class BatchRef:
    """One reference of a batch, and the batch file line it came from (None: the command line)."""

    ref: str
    line: int | None = None


def read_batch_file(path: Path, stdin: TextIO | None = None) -> list[BatchRef]:
    """The references of a batch file (``-``: standard input), one a line.

    Blank lines and lines starting with ``#`` are ignored. A file that cannot be read is a
    :class:`UsageError` (exit 2): nothing has been downloaded yet.
    """
    if str(path) == STDIN:
        try:
            text = (stdin or sys.stdin).read()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--batch-file -: cannot read standard input ({err})") from None
    else:
        try:
            text = path.read_text("utf-8-sig")
        except UnicodeDecodeError:
            raise UsageError(
                f"--batch-file {path}: not UTF-8 text",
                hint="Save the file as UTF-8 text, one book URL or slug a line.",
            ) from None
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise UsageError(f"--batch-file {path}: cannot read it ({reason})") from None
    refs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            refs.append(BatchRef(line, number))
    return refs


def batch_refs(refs: list[str], batch_file: Path | None) -> list[BatchRef]:
    """The command line's references, then the batch file's; none at all is a usage error."""
    found = [BatchRef(ref) for ref in refs]
    if batch_file is not None:
        found += read_batch_file(batch_file)
        if not found:
            raise UsageError(
                f"--batch-file {batch_file}: no book in it",
                hint="Put one book URL or slug a line; blank lines and # comments are ignored.",
            )
    return found


def _books(refs: list[BatchRef], runtime: Runtime, output: Output) -> list[BookRun]:
    """A :class:`BookRun` per reference; a bad one is failed at once and said in one line, a
    repeated one is dropped (the first runs it)."""
    books: list[BookRun] = []
    seen: dict[tuple[str, str], BatchRef] = {}
    for item in refs:
        where = f"batch file line {item.line}" if item.line is not None else "argument"
        try:
            name = source_name(item.ref, runtime.settings)
            slug = runtime.with_own_source(item.ref).source.book_slug(item.ref)
        except UsageError as err:  # a bad reference: said now, and failed
            output.error(f"{where}: {err.message}", "skipped; the other books run")
            book = BookRun(number=len(books) + 1, ref=item.ref, label=item.ref, line=item.line)
            book.ended(BookPhase.FAILED, f"bad reference: {err.message}")
            books.append(book)
            continue
        except Interrupted:
            raise
        except TokysnatcherError:  # a book page that could not be read now: its turn tries again
            books.append(
                BookRun(number=len(books) + 1, ref=item.ref, label=item.ref, line=item.line)
            )
            continue
        if (name, slug) in seen:
            first = seen[name, slug]
            said = f"line {first.line}" if first.line is not None else "the command line"
            output.info(f"{where}: {item.ref!r} is already in this batch ({said}); once is enough")
            continue
        seen[name, slug] = item
        books.append(BookRun(number=len(books) + 1, ref=item.ref, label=slug, line=item.line))
    return books


class _Ahead:
    """The next book, resolved on a thread of its own while the current one finishes.

    It waits until the current book has admitted its last chapter (or ended), then asks the site
    through a source of its own. ``planned`` holds the plan, or the error that
    :func:`download_book` raises for the book. A daemon thread: a run that stops does not wait
    for it (its API calls see the stop flag).
    """

    def __init__(
        self, book: BookRun, current: BookRun, settings: Settings, runtime: Runtime
    ) -> None:
        self.book = book
        self.runtime = runtime.with_own_source(book.ref)
        self.planned: Future[BookPlan] = Future()
        self._current = current
        self._settings = settings
        threading.Thread(target=self._resolve, name="resolve-next", daemon=True).start()

    def _current_admitted(self) -> bool:
        current = self._current
        return current.phase.finished or (current.run is not None and current.run.all_admitted())

    def _resolve(self) -> None:
        stop = self.runtime.stop
        while not self._current_admitted() and not stop.wait(_GATE_POLL):
            pass
        if stop.is_set():
            self.planned.set_exception(Interrupted("the run stopped before the book was resolved"))
            return
        mode = ResumeMode.REDOWNLOAD if self._settings.force_redownload else ResumeMode.RESUME
        try:
            plan = prepare(self.book.ref, self._settings, self.runtime.source, mode=mode)
        except BaseException as err:  # raised where the book runs, as if resolved there
            self.planned.set_exception(err)
        else:
            self.planned.set_result(plan)


def run_batch(refs: list[BatchRef], settings: Settings, output: Output) -> ExitCode:
    """Download every book of ``refs`` in order; exit 0 only if every one completed."""
    ffmpeg = resolve_ffmpeg(settings.ffmpeg)
    runtime = open_runtime(settings, log=output.log)
    try:
        batch = BatchState(books=_books(refs, runtime, output))
        with status_file(settings.status_file, batch, warn=output.warn):
            code = _run_books(batch, settings, output, runtime, ffmpeg)
            with batch.lock:
                batch.exit_code = code
        return code
    finally:
        runtime.close()


def _run_books(
    batch: BatchState, settings: Settings, output: Output, runtime: Runtime, ffmpeg: FfmpegInfo
) -> ExitCode:
    total = len(batch.books)
    todo = [book for book in batch.books if book.phase is BookPhase.WAITING]
    ahead: _Ahead | None = None
    stopped_at: BookRun | None = None
    for position, book in enumerate(todo):
        if ahead is not None and ahead.book is book:
            book_runtime, planned = ahead.runtime, ahead.planned
        else:
            book_runtime, planned = runtime.with_own_source(book.ref), None
        following = todo[position + 1] if position + 1 < len(todo) else None
        ahead = _Ahead(following, book, settings, runtime) if following is not None else None
        out = output.for_book(f"[{book.number}/{total} {book.label}] ")
        try:
            code = download_book(
                book, settings, out, book_runtime, ffmpeg, batch=batch, planned=planned, ask=False
            )
        except TokysnatcherError as err:
            out.error(err.message, err.hint)
            code = err.exit_code
        except KeyboardInterrupt:
            out.error("interrupted")
            code = ExitCode.INTERRUPTED
        # Ctrl-C, or a disk that refused a write: the books after this one would fare no better.
        if code is ExitCode.INTERRUPTED or runtime.stop.is_set():
            runtime.stop.set()  # the next book's resolution ends too
            stopped_at = book
            with batch.lock:
                batch.interrupted = code is ExitCode.INTERRUPTED
            break
    rest = [] if stopped_at is None else [stopped_at, *todo[todo.index(stopped_at) + 1 :]]
    failed = [b for b in batch.books if b.phase is BookPhase.FAILED and b not in rest]
    # Only books that got as far as their chapters are worth running again as they are.
    again = [b.resume_ref for b in failed if b.run is not None]
    output.batch_summary(
        batch,
        resume_rest=command_for([b.resume_ref for b in rest], settings) if rest else None,
        retry_failed=command_for(again, settings) if again else None,
        dry_run=settings.dry_run,
    )
    if batch.interrupted:
        return ExitCode.INTERRUPTED
    if failed or rest:
        return ExitCode.FAILED
    return ExitCode.OK
