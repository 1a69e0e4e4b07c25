"""``--status-file``: the run's state as JSON, rewritten at most once a second for scripts.

A view of the one run state (:class:`~tokysnatcher.download.state.BatchState`, each book's
:class:`~tokysnatcher.download.state.RunState` and its chapters), read under their locks and
written atomically (``utils/atomic.py``), so a reader always finds a whole document. The last
version, written when the run ends, carries the outcome (``state`` and ``exit_code``).

Every ``*_bytes`` figure only grows during a run: they are bytes received over the network and
sizes of finished files, never the progress of an attempt that a retry starts again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokysnatcher import __version__
from tokysnatcher.download.state import BatchState, BookPhase, BookRun, Chapter, Phase, RunState
from tokysnatcher.errors import ExitCode, TokysnatcherError, UsageError
from tokysnatcher.ui.status import SpeedMeter, state_text
from tokysnatcher.utils.atomic import atomic_write_json

SCHEMA_VERSION = 1
#: Seconds between two versions at least; more when writing one takes long (a huge book), so
#: that the file never costs more than a tenth of the run's time.
INTERVAL = 1.0
_STOP_JOIN = 10.0
_OUTCOMES: dict[int, str] = {
    ExitCode.OK: "complete",
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "failed",
    ExitCode.INTERRUPTED: "interrupted",
}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(max(0.0, value), 1)


def _chapter(chapter: Chapter, now: float, stall_timeout: float) -> dict[str, Any]:
    phase = chapter.phase
    due = chapter.retry_due if phase is Phase.RETRYING else chapter.request_retry_due
    fraction = chapter.fraction()
    return {
        "index": chapter.index,
        "title": chapter.title,
        "file": chapter.filename,
        "state": str(phase),
        "detail": state_text(chapter, now, stall_timeout),
        "attempt": chapter.attempt,
        "progress": None if phase.finished or fraction is None else round(fraction, 3),
        "downloaded_bytes": chapter.bytes_received,
        "file_bytes": chapter.file_size,
        "retry_in_seconds": _seconds(due - now) if due is not None and due > now else None,
        "retries": {"chapter": chapter.chapter_retries, "request": chapter.request_retries},
        "error": (
            {"kind": str(chapter.kind), "message": chapter.message}
            if phase is Phase.FAILED
            else None
        ),
    }


def _run(run: RunState, now: float) -> tuple[dict[str, Any], int | None, bool]:
    """A book's chapter figures, its bytes still to come, and whether it only waits."""
    tally = run.tally()
    with run.lock:
        chapters = [_chapter(c, now, run.stall_timeout) for c in run.chapters.values()]
        joining = run.joining
    counts = tally.counts
    active = tally.active
    waiting = bool(active) and all(
        c.phase is Phase.RETRYING or (c.request_retry_due or 0) > now for c in active
    )
    figures = {
        "folder": str(run.destination),
        "downloaded_bytes": run.bytes_received,
        "file_bytes": sum(c["file_bytes"] for c in chapters),
        "chapters_total": run.total_chapters,
        "chapters_complete": counts[Phase.DONE],
        "chapters_skipped": counts[Phase.SKIPPED],
        "chapters_failed": counts[Phase.FAILED],
        "chapters_waiting": counts[Phase.WAITING],
        "retries": {"chapter": tally.chapter_retries, "request": tally.request_retries},
        "joining_m4b": None if joining is None else round(joining, 3),
        "chapters": chapters,
    }
    return figures, tally.bytes_left, waiting


def _book(book: BookRun, now: float) -> tuple[dict[str, Any], int | None, bool]:
    data: dict[str, Any] = {
        "number": book.number,
        "ref": book.ref,
        "batch_file_line": book.line,
        "state": str(book.phase),
        "title": book.title or None,
        "author": book.author or None,
        "error": book.message if book.phase is BookPhase.FAILED else None,
        "downloaded_bytes": 0,
        "file_bytes": 0,
    }
    if book.run is None:
        return data, None, False
    figures, left, waiting = _run(book.run, now)
    data.update(figures)
    return data, left, waiting


def status_data(batch: BatchState, now: float, speed: float) -> dict[str, Any]:
    """The document: the run, then each book and its chapters (see the README's status file)."""
    with batch.lock:
        books = list(batch.books)
        exit_code = batch.exit_code
    documents = []
    current_left: int | None = None
    waiting = False
    current: int | None = None
    for book in books:  # one lock at a time: never the batch's and a book's together
        document, left, only_waiting = _book(book, now)
        documents.append(document)
        if book.phase in (BookPhase.RESOLVING, BookPhase.RUNNING):
            current, current_left, waiting = book.number, left, only_waiting
    left = batch.bytes_left(current_left) if current is not None else 0
    phases = [book.phase for book in books]
    state = "running" if exit_code is None else _OUTCOMES.get(exit_code, "failed")
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "updated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "state": state,
        "exit_code": exit_code,
        "elapsed_seconds": _seconds(now - batch.started),
        "downloaded_bytes": sum(d["downloaded_bytes"] for d in documents),
        "file_bytes": sum(d["file_bytes"] for d in documents),
        "speed": round(speed, 1) if exit_code is None else 0.0,
        "eta_seconds": (
            _seconds(left / speed) if left is not None and speed > 0 and exit_code is None else None
        ),
        "waiting": waiting,
        "current_book": current,
        "books_total": len(books),
        "books_complete": phases.count(BookPhase.COMPLETE),
        "books_failed": phases.count(BookPhase.FAILED),
        "books": documents,
    }


class StatusFile:
    """Rewrites ``path`` from ``batch`` on a thread of its own until :meth:`close`."""

    def __init__(
        self,
        path: Path,
        batch: BatchState,
        *,
        warn: Callable[[str], None] = lambda message: None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = INTERVAL,
    ) -> None:
        self.path = path
        self.batch = batch
        self.warn = warn
        self.clock = clock
        self.interval = interval
        self._speed = SpeedMeter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-file", daemon=True)
        self._failed = False

    def open(self) -> None:
        """Write the first version; a path that cannot be written is a usage error (exit 2)."""
        try:
            self.write()
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise UsageError(f"--status-file {self.path}: cannot write ({reason})") from None
        except TokysnatcherError as err:  # the disk refused it (utils.atomic words it)
            raise UsageError(f"--status-file {self.path}: cannot write ({err.message})") from None
        self._thread.start()

    def write(self) -> float:
        """Write one version now; returns how long that took."""
        started = self.clock()
        speed = self._speed.sample(started, self.batch.tally().bytes_received)
        atomic_write_json(self.path, status_data(self.batch, started, speed))
        return self.clock() - started

    def _loop(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            try:
                took = self.write()
            except (OSError, TokysnatcherError) as err:
                if not self._failed:  # said once; the download goes on regardless
                    self._failed = True
                    self.warn(f"--status-file {self.path}: cannot write ({err})")
                took = 0.0
            wait = max(self.interval, 10 * took)

    def close(self) -> None:
        """Stop the thread and write the last version (the outcome); idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(_STOP_JOIN)
        try:
            self.write()
        except (OSError, TokysnatcherError) as err:
            self.warn(f"--status-file {self.path}: cannot write the last version ({err})")


@contextmanager
def status_file(
    path: Path | None, batch: BatchState, *, warn: Callable[[str], None] = lambda m: None
) -> Iterator[None]:
    """Keep ``path`` (if given) up to date while the block runs; the last version says how the
    run ended: ``batch.exit_code``, or the error or interruption that left the block."""
    if path is None:
        yield
        return
    writer = StatusFile(path, batch, warn=warn)
    writer.open()
    try:
        yield
    except TokysnatcherError as err:
        _ended(batch, err.exit_code)
        raise
    except KeyboardInterrupt:
        _ended(batch, ExitCode.INTERRUPTED)
        raise
    except BaseException:
        _ended(batch, ExitCode.FAILED)
        raise
    finally:
        _ended(batch, ExitCode.FAILED)  # a block that returned without saying: not complete
        writer.close()


def _ended(batch: BatchState, code: int) -> None:
    with batch.lock:
        if batch.exit_code is None:
            batch.exit_code = code
