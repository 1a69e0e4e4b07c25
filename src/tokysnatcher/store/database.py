"""The one SQLite file behind the queue, the archive and the history: opening, schema, migrations.

The file lives in the platform's user data folder (platformdirs; ``TOKYSNATCHER_DATA_DIR`` or
the ``data-dir`` config key moves it). It is opened in WAL mode so a ``--queue-add`` in one
terminal and a ``--queue-run`` in another never wait on each other for long. ``PRAGMA
user_version`` holds the schema version; :data:`MIGRATIONS` takes an older file up to it.

A file that cannot be trusted is never written to: a corrupt file, one another program holds
locked, a read-only file and a file of a newer schema each end in one :class:`DatabaseError`
(exit 2) before any write. ``--rebuild-database`` moves a corrupt file aside
(:func:`move_aside`) and the archive is rebuilt from the manifests.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokysnatcher.errors import ExitCode, TokysnatcherError

DATABASE_NAME = "tokysnatcher.sqlite3"
#: Marks the file as ours (``PRAGMA application_id``): b"toky".
APPLICATION_ID = 0x746F6B79
#: How long a statement waits for another process's write to end before "locked".
BUSY_TIMEOUT = 3.0

_V1 = """
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ref TEXT NOT NULL,
    source TEXT NOT NULL,
    book_id TEXT NOT NULL,
    format TEXT NOT NULL,
    chapters TEXT,
    directory TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'waiting',
    added_at TEXT NOT NULL,
    started_at TEXT,
    exit_code INTEGER,
    message TEXT
);
CREATE INDEX queue_order ON queue (state, paused, priority DESC, id);
CREATE TABLE archive (
    source TEXT NOT NULL,
    book_id TEXT NOT NULL,
    format TEXT NOT NULL,
    title TEXT NOT NULL,
    author TEXT NOT NULL,
    folder TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (source, book_id, format)
);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    book_id TEXT NOT NULL,
    title TEXT NOT NULL,
    format TEXT NOT NULL,
    folder TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    file_bytes INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    speed REAL NOT NULL DEFAULT 0,
    chapters_complete INTEGER NOT NULL DEFAULT 0,
    chapters_failed INTEGER NOT NULL DEFAULT 0,
    chapters_skipped INTEGER NOT NULL DEFAULT 0,
    chapters_unfinished INTEGER NOT NULL DEFAULT 0,
    chapter_retries INTEGER NOT NULL DEFAULT 0,
    request_retries INTEGER NOT NULL DEFAULT 0,
    retries_by_kind TEXT NOT NULL DEFAULT '{}',
    failure_kinds TEXT NOT NULL DEFAULT '{}',
    exit_code INTEGER NOT NULL,
    error TEXT
);
"""

#: ``MIGRATIONS[n]`` takes a database from schema version ``n`` to ``n + 1``.
MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)

REBUILD_HINT = (
    "Move it aside and start a new one with --rebuild-database (the archive is rebuilt from "
    "the manifests under -d)."
)


def _create(path: Path) -> None:
    """Make a new, empty database at ``path``, whole or not at all.

    It is made under a temporary name and linked into place, so a failure (a full disk) leaves
    no half-made file for the next run to call corrupt, and two runs creating it at once both
    end up with the one that was linked first.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        try:
            connection = sqlite3.connect(temp, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                Database(temp, connection)._migrate()
            finally:
                connection.close()
            os.link(temp, path)
        except FileExistsError:
            pass  # another run made it first: theirs is used
        except (OSError, sqlite3.Error, DatabaseError) as err:
            detail = getattr(err, "strerror", None) or getattr(err, "message", None) or str(err)
            raise DatabaseNotCreated(
                f"cannot create the database {path}: {detail}",
                hint="Free some space, or set TOKYSNATCHER_DATA_DIR to another folder.",
            ) from err
    finally:
        for leftover in (
            temp,
            temp.with_name(temp.name + "-wal"),
            temp.with_name(temp.name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)


class DatabaseError(TokysnatcherError):
    """The database cannot be used as it is (corrupt, locked, read-only, newer schema)."""

    exit_code = ExitCode.USAGE
    default_hint = REBUILD_HINT


class CorruptDatabase(DatabaseError):
    """The file is not a database, or not ours, or its pages are damaged."""


class DatabaseNotCreated(DatabaseError):
    """No database yet, and none could be made (a full disk, a file size limit): nothing of
    the user's is at stake, so a download may go on without its records."""


def default_data_dir() -> Path:
    """``<user data dir>/tokysnatcher`` (platformdirs)."""
    import platformdirs  # imported here: only runs that use the database need it

    return Path(platformdirs.user_data_dir("tokysnatcher"))


def database_path(data_dir: Path | None) -> Path:
    """The database file in ``data_dir`` (None: the platform's data folder)."""
    return (data_dir or default_data_dir()) / DATABASE_NAME


def utc_stamp(moment: datetime | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``: how every time is stored (sorts as text)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_only(path: Path) -> bool:
    """True when ``path`` or its folder may not be written (write bits count even for root)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        folder = path.parent
        return not os.access(folder, os.W_OK | os.X_OK)
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        return True
    # WAL mode writes -wal and -shm files next to the database.
    return not os.access(path.parent, os.W_OK | os.X_OK)


def _translate(err: sqlite3.Error, path: Path) -> DatabaseError:
    """The one-line :class:`DatabaseError` that a SQLite error means for ``path``."""
    code = getattr(err, "sqlite_errorcode", None)
    text = str(err).lower()
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return DatabaseError(
            f"the database {path} is locked by another program",
            hint="Wait for it to finish (another tokysnatcher, or a tool that has the file "
            "open), then run the command again.",
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM) or "readonly" in text:
        return _read_only_error(path)
    if code in (sqlite3.SQLITE_FULL,) or "disk is full" in text:
        return DatabaseError(
            f"cannot write the database {path}: no space left on the device",
            hint="Free some space, then run the command again.",
        )
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR) or "unable to open" in text:
        return DatabaseError(
            f"cannot open the database {path}",
            hint="Check the folder's permissions, or set TOKYSNATCHER_DATA_DIR to another folder.",
        )
    if code == sqlite3.SQLITE_NOTADB:
        return CorruptDatabase(f"the database {path} is corrupt: not an SQLite database")
    return CorruptDatabase(f"the database {path} is corrupt")


def _newer(path: Path, version: int) -> DatabaseError:
    return DatabaseError(
        f"the database {path} was written by a newer tokysnatcher (schema {version}; this "
        f"version knows up to {SCHEMA_VERSION})",
        hint="Upgrade tokysnatcher, or set TOKYSNATCHER_DATA_DIR to another folder.",
    )


def _not_ours(path: Path) -> CorruptDatabase:
    return CorruptDatabase(f"{path} is an SQLite file of another program")


def _check(path: Path) -> None:
    """Refuse a file that is corrupt, not ours or of a newer schema, without writing to it.

    Looked at through a read-only connection: closing a read-write one could fold a
    write-ahead log into the file (a checkpoint), and a file we refuse must stay as it is.
    """
    try:
        connection = sqlite3.connect(
            path.absolute().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT
        )
    except sqlite3.Error as err:
        raise _translate(err, path) from err
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        app_id = connection.execute("PRAGMA application_id").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        check = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.Error as err:
        raise _translate(err, path) from err
    finally:
        connection.close()
    if check != "ok":
        raise CorruptDatabase(f"the database {path} is corrupt: damaged pages")
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
        raise _not_ours(path)
    if version > SCHEMA_VERSION:
        raise _newer(path, version)


def _read_only_error(path: Path) -> DatabaseError:
    return DatabaseError(
        f"the database {path} is read-only",
        hint="Make it and its folder writable, or set TOKYSNATCHER_DATA_DIR to another folder.",
    )


class Database:
    """An open connection to the database file, checked and at the current schema version."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Database | None:
        """Open (or, with ``create``, create) the database at ``path``; None if absent.

        Raises :class:`DatabaseError` for a read-only, locked, corrupt or newer file, having
        written nothing to it.
        """
        exists = path.exists()
        if not exists and not create:
            return None
        if not exists:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise DatabaseError(
                    f"cannot create the data folder {path.parent}: {err.strerror or err}",
                    hint="Set TOKYSNATCHER_DATA_DIR to a folder you can write to.",
                ) from err
        elif not path.is_file():
            raise DatabaseError(
                f"the database {path} is not a file",
                hint="Remove it, or set TOKYSNATCHER_DATA_DIR to another folder.",
            )
        if _read_only(path):
            raise _read_only_error(path)
        if exists:
            _check(path)
        else:
            _create(path)
        try:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as err:
            raise _translate(err, path) from err
        connection.row_factory = sqlite3.Row
        database = cls(path, connection)
        try:
            database._migrate()
        except BaseException:
            connection.close()
            raise
        return database

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`.

        The write lock is taken even when there is nothing to do: a file another program holds
        locked is refused now, before a download, not when its outcome is to be recorded.
        """
        with self.write() as connection:
            # Read again under the lock: another process may have migrated it meanwhile.
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise _newer(self.path, version)
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if version == 0 and tables:
                raise _not_ours(self.path)
            for step in MIGRATIONS[version:]:
                for statement in filter(str.strip, step.split(";")):
                    connection.execute(statement)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # Outside a transaction: WAL is a property of the file, kept from now on.
        self._run(lambda c: c.execute("PRAGMA journal_mode = WAL").fetchone())

    def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            return work(self._connection)
        except sqlite3.Error as err:
            raise _translate(err, self.path) from err

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """The rows a query returns."""
        result: list[sqlite3.Row] = self._run(lambda c: c.execute(sql, params).fetchall())
        return result

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the body ends, rolled back if it raises."""
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise _translate(err, self.path) from err
        try:
            yield connection
        except BaseException as err:
            connection.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise _translate(err, self.path) from err
            raise
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as err:
            raise _translate(err, self.path) from err

    def close(self) -> None:
        self._connection.close()


@contextmanager
def opened(data_dir: Path | None) -> Iterator[Database]:
    """The database of ``data_dir`` (created if need be), closed when the body ends."""
    database = Database.open(database_path(data_dir))
    assert database is not None  # created if absent
    try:
        yield database
    finally:
        database.close()


def move_aside(path: Path) -> Path:
    """Rename the database (and its WAL files) to ``<name>.corrupt-<time>``; the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            try:
                old.rename(target.with_name(target.name + suffix))
            except OSError as err:
                raise DatabaseError(
                    f"cannot move the database {old} aside: {err.strerror or err}",
                    hint="Check the folder's permissions.",
                ) from err
    return target
