"""What one book's run records: the archive's word before it, archive and history after it.

``actions.download`` opens a :class:`BookRecords` around each book, whether the book is a
single run, one of a batch or a queue entry, so every run is recorded the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tokysnatcher.config.settings import Settings
from tokysnatcher.download.plan import BookPlan
from tokysnatcher.download.results import RunResult
from tokysnatcher.download.state import RunState
from tokysnatcher.errors import ExitCode, TokysnatcherError
from tokysnatcher.sources.source import Source
from tokysnatcher.store import history
from tokysnatcher.store.archive import (
    Archive,
    ArchivedBook,
    DatabaseArchive,
    TextArchive,
    still_complete,
)
from tokysnatcher.store.database import (
    Database,
    DatabaseError,
    DatabaseNotCreated,
    database_path,
)

if TYPE_CHECKING:
    from tokysnatcher.ui.output import Output


class BookRecords:
    """The archive and history of one book's run (none are written by a ``--dry-run``)."""

    def __init__(
        self, settings: Settings, output: Output, database: Database | None, archive: Archive | None
    ) -> None:
        self.settings = settings
        self.output = output
        self.database = database
        self.archive = archive
        self.started = datetime.now(UTC)
        self.source: str | None = None
        self.book_id: str | None = None
        self._recorded = False

    @classmethod
    @contextmanager
    def open(cls, settings: Settings, output: Output) -> Iterator[BookRecords]:
        """Open the database (exit 2 if it cannot be trusted) for the body: one book's run.

        A book that ends in an error once its id is known gets a history row saying so.
        """
        path = database_path(settings.data_dir)
        # A dry run writes nothing: it reads an archive that is already there, creates none.
        try:
            database = Database.open(path, create=not settings.dry_run)
        except DatabaseNotCreated as err:  # nothing of the user's at stake: download anyway
            output.warn(f"{err.message}; this run is not recorded in the archive and history")
            database = None
        try:
            archive: Archive | None
            if settings.download_archive is not None:
                archive = TextArchive(settings.download_archive)
            else:
                archive = DatabaseArchive(database) if database is not None else None
            records = cls(settings, output, database, archive)
            try:
                yield records
            except TokysnatcherError as err:
                records.ended_early(err.exit_code, err.message)
                raise
            except KeyboardInterrupt:
                records.ended_early(ExitCode.INTERRUPTED, "interrupted")
                raise
        finally:
            if database is not None:
                database.close()

    def already_done(self, source: Source, ref: str) -> bool:
        """True (and says so in one line) when the archive records the book as finished.

        Reads the reference only: nothing is asked of the site. ``--force-redownload``
        downloads it anyway.
        """
        self.source, self.book_id = source.name, source.book_slug(ref)
        if self.archive is None or self.settings.force_redownload:
            return False
        fmt = str(self.settings.output_format)
        found = self.archive.find(self.source, self.book_id, fmt)
        if found is None:
            return False
        # Where the finished folder still is, its manifest has the last word: a chapter deleted
        # or a manifest rebuilt since means the usual run mends it.
        if found.folder and still_complete(Path(found.folder)) is False:
            return False
        where = f" in {found.folder}" if found.folder else ""
        when = f" on {found.completed_at[:10]}" if found.completed_at else ""
        archive = (
            str(self.settings.download_archive) if self.settings.download_archive else "archive"
        )
        self.output.info(
            f"already downloaded ({archive}): {self.source} {self.book_id} ({fmt}){where}{when}"
            " - skipped; --force-redownload downloads it again"
        )
        return True

    def ran(self, plan: BookPlan, state: RunState, result: RunResult, code: ExitCode) -> None:
        """The book's chapters ran and it ended with ``code``: a history row; if the whole
        book is complete, an archive record."""
        if self.settings.dry_run or self.source is None or self.book_id is None:
            return
        self._recorded = True
        fmt = str(plan.output_format)
        try:
            if self.database is not None:
                history.append(
                    self.database,
                    history.run_record(
                        source=self.source,
                        book_id=self.book_id,
                        fmt=fmt,
                        state=state,
                        result=result,
                        exit_code=code,
                    ),
                )
            whole = len(plan.chapters) == len(plan.playlist.tracks)
            if code == ExitCode.OK and whole and self.archive is not None:
                self.archive.add(
                    ArchivedBook(
                        source=self.source,
                        book_id=self.book_id,
                        format=fmt,
                        title=plan.book.title,
                        author=plan.book.author,
                        folder=str(plan.folder),
                    )
                )
        except TokysnatcherError as err:  # the book is done: not recording it is a warning
            self.output.warn(f"the book was not recorded: {err.message}")

    def ended_early(self, code: int, message: str) -> None:
        """The book ended in an error before :meth:`ran`: a history row with the error."""
        if (
            self._recorded
            or self.settings.dry_run
            or self.database is None
            or self.source is None
            or self.book_id is None
        ):
            return
        self._recorded = True
        record = history.error_record(
            source=self.source,
            book_id=self.book_id,
            fmt=str(self.settings.output_format),
            started=self.started,
            exit_code=code,
            error=message,
        )
        try:
            history.append(self.database, record)
        except DatabaseError as err:
            self.output.warn(f"the book was not recorded: {err.message}")
