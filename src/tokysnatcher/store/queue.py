"""The persistent download queue: entries, their order, and the one ``--queue-run`` at a time.

Higher priority runs first; within a priority, first added runs first. An entry keeps the
format, chapters and library folder it was added with. The queue only says what to download
next: what is on disk, and how far a book got, is the manifests' to say. A book that a killed
run left ``running`` is simply the first to run again, and its manifest resumes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tokysnatcher.errors import ExitCode, UsageError
from tokysnatcher.store.database import Database, DatabaseError, utc_stamp

LOCK_NAME = "queue-run.lock"


class EntryState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    FAILED = "failed"  # tried in this --queue-run; the next --queue-run tries it again


@dataclass(frozen=True, kw_only=True)
class QueueEntry:
    """One book in the queue and how to download it."""

    id: int
    ref: str  # as the user gave it
    source: str
    book_id: str
    format: str
    chapters: str | None
    directory: str
    priority: int
    paused: bool
    state: EntryState
    added_at: str
    started_at: str | None = None
    exit_code: int | None = None
    message: str | None = None

    @property
    def shown_state(self) -> str:
        """What ``--queue-list`` says: a paused entry is paused whatever else it is."""
        return "paused" if self.paused and self.state is not EntryState.RUNNING else self.state


_FIELDS = tuple(QueueEntry.__dataclass_fields__)
# Running first, then what runs next, then paused and failed entries.
_ORDER = (
    "ORDER BY CASE WHEN state = 'running' THEN 0 WHEN paused THEN 2 "
    "WHEN state = 'failed' THEN 3 ELSE 1 END, priority DESC, id"
)


class QueueBusy(DatabaseError):
    """Another ``--queue-run`` holds the queue."""


class Queue:
    """The ``queue`` table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _select(self, where: str = "", params: tuple[object, ...] = ()) -> list[QueueEntry]:
        rows = self.database.rows(f"SELECT {', '.join(_FIELDS)} FROM queue {where}", params)
        return [
            QueueEntry(
                **{
                    **dict(row),
                    "paused": bool(row["paused"]),
                    "state": EntryState(row["state"]),
                }
            )
            for row in rows
        ]

    def entries(self) -> list[QueueEntry]:
        """Every entry: the one running, then in the order they will run, paused, failed."""
        return self._select(_ORDER)

    def get(self, entry_id: int) -> QueueEntry:
        """The entry ``entry_id`` (exit 2 if there is none)."""
        found = self._select("WHERE id = ?", (entry_id,))
        if not found:
            raise UsageError(
                f"no queue entry #{entry_id}", hint="See the entries with --queue-list."
            )
        return found[0]

    def add(
        self,
        *,
        ref: str,
        source: str,
        book_id: str,
        fmt: str,
        chapters: str | None,
        directory: Path,
        priority: int,
    ) -> tuple[QueueEntry, bool]:
        """Queue a book; (its entry, True) or, when it is queued already alike, (that, False)."""
        with self.database.write() as connection:
            same = connection.execute(
                "SELECT id FROM queue WHERE source = ? AND book_id = ? AND format = ? "
                "AND chapters IS ? AND directory = ?",
                (source, book_id, fmt, chapters, str(directory)),
            ).fetchone()
            if same is not None:
                entry_id, added = int(same[0]), False
            else:
                cursor = connection.execute(
                    "INSERT INTO queue (ref, source, book_id, format, chapters, directory, "
                    "priority, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ref, source, book_id, fmt, chapters, str(directory), priority, utc_stamp()),
                )
                entry_id, added = int(cursor.lastrowid or 0), True
        return self.get(entry_id), added

    def _update(self, entry_id: int, sql: str, params: tuple[object, ...]) -> QueueEntry:
        self.get(entry_id)
        with self.database.write() as connection:
            connection.execute(f"UPDATE queue SET {sql} WHERE id = ?", (*params, entry_id))
        return self.get(entry_id)

    def set_priority(self, entry_id: int, priority: int) -> QueueEntry:
        return self._update(entry_id, "priority = ?", (priority,))

    def set_paused(self, entry_id: int, paused: bool) -> QueueEntry:
        return self._update(entry_id, "paused = ?", (int(paused),))

    def remove(self, entry_id: int) -> QueueEntry:
        entry = self.get(entry_id)
        with self.database.write() as connection:
            connection.execute("DELETE FROM queue WHERE id = ?", (entry_id,))
        return entry

    def start_run(self) -> None:
        """A new ``--queue-run`` (holding :func:`run_lock`): what an earlier one left is waiting.

        An entry still ``running`` belongs to a run that was killed; its book resumes from its
        manifest. Failed entries get another try.
        """
        with self.database.write() as connection:
            connection.execute("UPDATE queue SET state = 'waiting' WHERE state != 'waiting'")

    def take_next(self) -> QueueEntry | None:
        """The next entry to download, marked running; None when nothing is left to run.

        Asked again after every book, so books added or reordered meanwhile are seen.
        """
        with self.database.write() as connection:
            row = connection.execute(
                "SELECT id FROM queue WHERE state = 'waiting' AND NOT paused "
                "ORDER BY priority DESC, id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            connection.execute(
                "UPDATE queue SET state = 'running', started_at = ? WHERE id = ?",
                (utc_stamp(), row[0]),
            )
        return self.get(int(row[0]))

    def finished(self, entry: QueueEntry, code: int, message: str | None = None) -> None:
        """A book's run ended with ``code``: done leaves the queue, interrupted waits again."""
        with self.database.write() as connection:
            if code == ExitCode.OK:
                connection.execute("DELETE FROM queue WHERE id = ?", (entry.id,))
            else:
                state = EntryState.WAITING if code == ExitCode.INTERRUPTED else EntryState.FAILED
                connection.execute(
                    "UPDATE queue SET state = ?, exit_code = ?, message = ? WHERE id = ?",
                    (str(state), code, message, entry.id),
                )


@contextmanager
def run_lock(data_dir: Path) -> Iterator[None]:
    """Hold the queue for one ``--queue-run``; another one refuses (:class:`QueueBusy`).

    The lock is an OS file lock (filelock): the kernel releases it when its process dies,
    even by ``kill -9``, so a killed run never blocks the next one.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(data_dir / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise QueueBusy(
            "another tokysnatcher --queue-run is working through the queue",
            hint="Let it finish, or stop it (Ctrl-C) and run --queue-run again.",
        ) from None
    except OSError as err:
        raise DatabaseError(
            f"cannot lock the queue in {data_dir}: {err.strerror or err}",
            hint="Check the folder's permissions, or set TOKYSNATCHER_DATA_DIR.",
        ) from err
    try:
        yield
    finally:
        lock.release()
