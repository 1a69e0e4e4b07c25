"""The archive of finished books: what a run skips without asking the site anything.

A book is archived when a run completes all of its chapters (source name, the source's id for
the book, format, folder). The database's archive is keyed by (source, id, format): a book
downloaded as mp3 is not "done" when m4b is asked for. ``--download-archive FILE`` keeps the
archive in a plain text file instead, one ``<source> <id>`` a line as yt-dlp writes it (any
format counts there). Either way the archive never proves files: the manifests do; the archive
only says a book was finished once, wherever its folder went since.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tokysnatcher.errors import ManifestError, UsageError
from tokysnatcher.library.manifest_schema import MANIFEST_NAME, CorruptManifest
from tokysnatcher.library.scan import (
    BookState,
    ChapterStatus,
    list_downloads,
    read_manifest,
    summarize,
)
from tokysnatcher.store.database import Database, utc_stamp


@dataclass(frozen=True, kw_only=True)
class ArchivedBook:
    """One finished book. The text archive knows only ``source`` and ``book_id``."""

    source: str
    book_id: str
    format: str | None = None
    title: str | None = None
    author: str | None = None
    folder: str | None = None
    completed_at: str | None = None


class Archive(Protocol):
    """Where finished books are recorded."""

    def find(self, source: str, book_id: str, fmt: str) -> ArchivedBook | None:
        """The record of the book finished in ``fmt``, if there is one."""
        ...

    def add(self, book: ArchivedBook) -> None:
        """Record a finished book (again: its record is replaced)."""
        ...


class DatabaseArchive:
    """The ``archive`` table of the database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def find(self, source: str, book_id: str, fmt: str) -> ArchivedBook | None:
        rows = self.database.rows(
            "SELECT source, book_id, format, title, author, folder, completed_at FROM archive "
            "WHERE source = ? AND book_id = ? AND format = ?",
            (source, book_id, fmt),
        )
        return ArchivedBook(**dict(rows[0])) if rows else None

    def add(self, book: ArchivedBook) -> None:
        with self.database.write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO archive "
                "(source, book_id, format, title, author, folder, completed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    book.source,
                    book.book_id,
                    book.format,
                    book.title or book.book_id,
                    book.author or "",
                    book.folder or "",
                    book.completed_at or utc_stamp(),
                ),
            )

    def books(self) -> list[ArchivedBook]:
        """Every archived book, oldest first."""
        rows = self.database.rows(
            "SELECT source, book_id, format, title, author, folder, completed_at FROM archive "
            "ORDER BY completed_at, source, book_id"
        )
        return [ArchivedBook(**dict(row)) for row in rows]


class TextArchive:
    """``--download-archive FILE``: ``<source> <id>`` lines; blank lines and ``#`` comments kept.

    The file is read whole when opened (a line that is not two words is an exit-2 error naming
    its number, and the file is left alone); a finished book is appended as one line, flushed
    and fsynced, so a crash never leaves half a line behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: set[tuple[str, str]] = set()
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            if not path.parent.is_dir():
                raise UsageError(
                    f"--download-archive {path}: the folder {path.parent} does not exist"
                ) from None
            return
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--download-archive {path}: cannot read it ({err})") from err
        self._ends_in_newline = text.endswith("\n") or not text
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) != 2:
                raise UsageError(
                    f"--download-archive {path} line {number}: expected '<source> <id>', "
                    f"not {line.strip()[:80]!r}",
                    hint="Fix or remove that line; the file was left as it is.",
                )
            self._done.add((words[0], words[1]))

    _ends_in_newline = True

    def find(self, source: str, book_id: str, fmt: str) -> ArchivedBook | None:
        if (source, book_id) in self._done:
            return ArchivedBook(source=source, book_id=book_id)
        return None

    def add(self, book: ArchivedBook) -> None:
        if (book.source, book.book_id) in self._done:
            return
        line = f"{book.source} {book.book_id}\n"
        if not self._ends_in_newline:
            line = "\n" + line
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise UsageError(
                f"--download-archive {self.path}: cannot write it ({err.strerror or err})"
            ) from err
        self._ends_in_newline = True
        self._done.add((book.source, book.book_id))


def still_complete(folder: Path) -> bool | None:
    """Whether an archived book's folder still holds the whole book, by its manifest.

    None when the folder is gone (moved into a player's library, deleted): the archive alone
    speaks for the book then. Otherwise True only when the manifest is readable, calls the book
    complete, and every file it names is there with its recorded size. Only sizes are looked at
    (the files are not hashed): this runs for every archived book of a batch.
    """
    if not folder.is_dir():
        return None
    try:
        doc = read_manifest(folder / MANIFEST_NAME)
    except (CorruptManifest, ManifestError):
        return False
    if doc is None or summarize(folder, doc).state is not BookState.COMPLETE:
        return False
    if doc.book_file is not None:
        files = [(folder / doc.book_file.name, doc.book_file.size)]
    else:
        files = [
            (folder / name, -1 if entry.size is None else entry.size)
            for name, entry in doc.chapters.items()
            if entry.status is ChapterStatus.COMPLETE
        ]
    for path, size in files:
        try:
            if path.lstat().st_size != size:
                return False
        except OSError:
            return False
    return True


def rebuild_from_manifests(archive: Archive, root: Path) -> int:
    """Archive every complete book whose manifest is under ``root``; how many were added.

    Each manifest names its source and the book's id there (one written before sources were
    recorded is read as a tokybook book, its id the slug).
    """
    added = 0
    for summary in list_downloads(root):
        if summary.state is not BookState.COMPLETE:
            continue
        try:
            doc = read_manifest(summary.folder / MANIFEST_NAME)
        except (CorruptManifest, ManifestError):  # changed since it was listed
            continue
        if doc is None or not (doc.book.id or doc.book.slug):
            continue
        archive.add(
            ArchivedBook(
                source=doc.book.source,
                book_id=doc.book.id or doc.book.slug,
                format=doc.book.format,
                title=doc.book.title,
                author=doc.book.author,
                folder=str(summary.folder),
                completed_at=doc.updated_at,
            )
        )
        added += 1
    return added
