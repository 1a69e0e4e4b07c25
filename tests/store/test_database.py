"""The database file: created at the current schema in WAL mode, migrated, never trusted blindly.

Bad files (corrupt, another program's, locked, read-only, newer) are covered end to end through
the command line in tests/integration/test_bad_database.py; here, the opening rules themselves.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tokysnatcher.store import database as db
from tokysnatcher.store.database import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    CorruptDatabase,
    Database,
    DatabaseError,
    database_path,
    move_aside,
)


def pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]


def test_a_new_database_is_created_in_wal_mode_at_the_current_schema(tmp_path: Path) -> None:
    path = database_path(tmp_path / "nested" / "data")
    database = Database.open(path)
    assert database is not None
    database.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert pragma(path, "application_id") == APPLICATION_ID
    assert pragma(path, "journal_mode") == "wal"
    # Opening it again changes nothing.
    before = path.read_bytes()
    again = Database.open(path)
    assert again is not None
    again.close()
    assert path.read_bytes() == before


def test_without_create_a_missing_database_is_none_and_nothing_is_made(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    assert Database.open(path, create=False) is None
    assert not path.exists()


def test_migrations_run_from_the_version_a_file_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = database_path(tmp_path)
    opened = Database.open(path)
    assert opened is not None
    opened.close()
    # A later version adds a column: only that step runs on a version-1 file.
    later = (*db.MIGRATIONS, "ALTER TABLE queue ADD COLUMN note TEXT")
    monkeypatch.setattr(db, "MIGRATIONS", later)
    monkeypatch.setattr(db, "SCHEMA_VERSION", len(later))
    migrated = Database.open(path)
    assert migrated is not None
    assert [row[1] for row in migrated.rows("PRAGMA table_info(queue)")][-1] == "note"
    migrated.close()
    assert pragma(path, "user_version") == 2


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    opened = Database.open(path)
    assert opened is not None
    opened.close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="newer tokysnatcher") as raised:
        Database.open(path)
    assert raised.value.exit_code == 2
    assert path.read_bytes() == before


def test_another_programs_sqlite_file_is_not_taken_over(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    with pytest.raises(CorruptDatabase, match="another program"):
        Database.open(path)
    assert path.read_bytes() == before


def test_move_aside_keeps_the_file_and_its_wal_under_a_new_name(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    path.write_bytes(b"garbage")
    path.with_name(path.name + "-wal").write_bytes(b"wal")
    moved = move_aside(path)
    assert not path.exists()
    assert moved.read_bytes() == b"garbage"
    assert moved.with_name(moved.name + "-wal").read_bytes() == b"wal"
    assert moved.name.startswith(path.name + ".corrupt-")
