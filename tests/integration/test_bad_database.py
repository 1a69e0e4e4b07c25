"""A database that cannot be trusted is one line and exit 2, and is never written to; a corrupt
one is moved aside by ``--rebuild-database`` and the archive rebuilt from the manifests
(issue 14 item 6)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from helpers import cli_env, fast_options, main_in_process, run_cli
from tokysnatcher.standin import StandinSite
from tokysnatcher.store.database import DATABASE_NAME, SCHEMA_VERSION

pytestmark = pytest.mark.integration

SLUG = "cover-book"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A data folder holding a good database (made by a --queue-list), for in-process runs."""
    folder = tmp_path / "data"
    for name in list(os.environ):
        if name.startswith("TOKYSNATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TOKYSNATCHER_DATA_DIR", str(folder))
    monkeypatch.setenv("TOKYSNATCHER_CONFIG", str(tmp_path / "absent.toml"))
    made = main_in_process(["--queue-list"], capsys)
    assert made.returncode == 0, made.stderr
    return folder


def corrupt(path: Path) -> Iterator[None]:
    path.write_bytes(os.urandom(8192))
    yield


def another_program(path: Path) -> Iterator[None]:
    path.unlink()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.commit()
    yield


def locked(path: Path) -> Iterator[None]:
    # Another program is in the middle of writing to it (a database browser, say).
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("DELETE FROM queue")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def read_only(path: Path) -> Iterator[None]:
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    yield


def newer(path: Path) -> Iterator[None]:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    yield


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (corrupt, "is corrupt: not an SQLite database - Move it aside"),
        (another_program, "is an SQLite file of another program - Move it aside"),
        (locked, "is locked by another program - Wait for it to finish"),
        (read_only, "is read-only - Make it and its folder writable"),
        (newer, f"was written by a newer tokysnatcher (schema {SCHEMA_VERSION + 1}; this version "),
    ],
    ids=["corrupt", "another-program", "locked", "read-only", "newer"],
)
def test_a_bad_database_is_one_line_exit_2_and_left_as_it_is(
    site: StandinSite,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spoil: Callable[[Path], Iterator[None]],
    message: str,
) -> None:
    path = data / DATABASE_NAME
    spoiling = spoil(path)
    next(spoiling)
    try:
        before = digest(path)
        requests = sum(site.stats.requests.values())
        commands = [["--queue-list"], [SLUG, *fast_options(site, tmp_path / "lib")]]
        if spoil is locked:
            del commands[1]  # each waits BUSY_TIMEOUT for the lock: one is enough here
        for args in commands:
            result = main_in_process(args, capsys)
            assert result.returncode == 2, (args, result.stderr)
            assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
            assert result.stderr.startswith(
                f"error: the database {path} "
            ) or result.stderr.startswith(f"error: {path} "), result.stderr
            assert message in result.stderr, result.stderr
            assert digest(path) == before
        # The download refused before asking the site anything or writing a file.
        assert sum(site.stats.requests.values()) == requests
        assert not (tmp_path / "lib").exists()
    finally:
        next(spoiling, None)


def test_rebuild_moves_a_corrupt_database_aside_and_rebuilds_the_archive(
    site: StandinSite, data: Path, tmp_path: Path
) -> None:
    env = cli_env(TOKYSNATCHER_DATA_DIR=str(data))
    root = tmp_path / "lib"
    done = run_cli([SLUG, *fast_options(site, root)], env=env)
    assert done.returncode == 0, done.stderr
    partial = run_cli(["the-sample-book", "--chapters", "1", *fast_options(site, root)], env=env)
    assert partial.returncode == 0, partial.stderr
    path = data / DATABASE_NAME
    garbage = os.urandom(8192)
    path.write_bytes(garbage)

    rebuilt = run_cli(["--rebuild-database", "-d", str(root)], env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    (aside,) = data.glob(f"{DATABASE_NAME}.corrupt-*")
    assert aside.read_bytes() == garbage
    assert f"moved aside to {aside}" in rebuilt.stderr
    # Only the complete book is archived; the one with a chapter of four is not.
    assert rebuilt.stdout == (
        f"database {path} rebuilt; 1 complete book(s) under {root} are in its archive\n"
    )
    before = sum(site.stats.requests.values())
    skipped = run_cli([SLUG, *fast_options(site, tmp_path / "elsewhere")], env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stderr.startswith(f"already downloaded (archive): tokybook {SLUG} (mp3)")
    assert sum(site.stats.requests.values()) == before

    # A database that checks out is kept: rebuilding only adds what the manifests prove.
    kept = run_cli(["--rebuild-database", "-d", str(root)], env=env)
    assert kept.returncode == 0, kept.stderr
    assert "kept (it checks out)" in kept.stdout
    assert len(list(data.glob(f"{DATABASE_NAME}.corrupt-*"))) == 1
