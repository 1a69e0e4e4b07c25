"""The per-book manifest ``<book>/.tokysnatcher.json`` (SPEC §4) and :class:`ManifestManager`.

The manifest records every chapter's state and, once complete, the size and SHA-256 of its file,
so a later run can prove what is done. It is written atomically after every state change, or,
while a download runs, at most a few times a second (see :meth:`ManifestManager.coalesce_saves`).

Everything read from a manifest is untrusted: the shape is validated field by field, a file that
is not valid JSON or has the wrong shape is moved aside (never deleted) and rebuilt by scanning
the folder, and an entry whose name could point outside the folder is dropped, never followed.
The types, validation and JSON form live in :mod:`tokysnatcher.library.manifest_schema`, scans in
:mod:`tokysnatcher.library.scan` and verification in :mod:`tokysnatcher.library.verify`; this
module owns the one writer.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tokysnatcher import __version__
from tokysnatcher.errors import FailureKind
from tokysnatcher.library.manifest_schema import (
    ENTRY_FIELDS,
    MANIFEST_NAME,
    PARTS_DIR_NAME,
    WORK_DIR_NAME,
    BookFile,
    BookInfo,
    ChapterCheck,
    ChapterEntry,
    ChapterStatus,
    CorruptManifest,
    ExpectedDuration,
    ManifestDoc,
    check_entry_name,
    format_timestamp,
    is_sha256,
    read_manifest,
    utc_now,
)
from tokysnatcher.library.scan import check_file, scan_doc
from tokysnatcher.utils.atomic import atomic_write_json, reraise_disk_refusal
from tokysnatcher.utils.links import is_real_dir

# Re-exported: callers need these with the manager.
__all__ = [
    "BookFile",
    "BookInfo",
    "ChapterCheck",
    "ChapterEntry",
    "ChapterStatus",
    "ManifestManager",
    "build_manifest_from_scan",
    "check_file",
]

Clock = Callable[[], datetime]


class ManifestManager:
    """The one writer of a book's manifest.

    Every state change saves the whole manifest atomically before returning (unless saves are
    coalesced, see :meth:`coalesce_saves`); a lock makes change-and-save one step, so worker
    threads may call the ``mark_*`` methods at once. Only one process should write a book's
    manifest at a time.

    A new manifest is written at the first state change, never at open. A corrupt one found at
    open is replaced in memory by a scan of the folder and moved aside to
    ``.tokysnatcher.json.corrupt-<time>`` at that first save (so ``--dry-run`` changes nothing).
    """

    def __init__(
        self,
        book_dir: Path,
        doc: ManifestDoc,
        *,
        tool_version: str,
        clock: Clock = utc_now,
    ) -> None:
        self.book_dir = book_dir
        self.path = book_dir / MANIFEST_NAME
        self.tool_version = tool_version
        self.warnings: list[str] = list(doc.warnings)
        self.corrupt_reason: str | None = None  # why the file on disk was not used, if it was not
        self.corrupt_copy: Path | None = None  # where the corrupt file went, once moved
        # Entries dropped at load because their names could point outside the folder.
        self.rejected: list[str] = list(doc.warnings)
        self._clock = clock
        self._doc = doc
        self._lock = threading.RLock()
        self._batch_depth = 0
        self._unsaved = False
        self._save_every: float | None = None  # seconds, while saves are coalesced
        self._monotonic: Callable[[], float] = time.monotonic
        self._next_save = -math.inf
        self.saves = 0  # how many times the manifest was written by this manager
        # Chapters the file on disk still calls complete although they are not any more.
        self._stale_complete: set[str] = set()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, book_dir: Path, book: BookInfo, *, tool_version: str, clock: Clock = utc_now
    ) -> ManifestManager:
        """The manifest of ``book_dir`` for a run on ``book``; see :meth:`load` for validation.

        An existing manifest keeps its chapters and format (change it with :meth:`set_format`);
        the other book details are refreshed from ``book``. Chapters left ``downloading`` by a run
        that died are ``pending`` again: nobody else is writing this manifest.
        """
        manager = cls._read(book_dir, book, tool_version=tool_version, clock=clock)
        if manager is None:
            now = format_timestamp(clock())
            doc = ManifestDoc(
                book=replace(book, format=str(book.format)),
                tool_version=tool_version,
                created_at=now,
                updated_at=now,
                chapters={},
            )
            return cls(book_dir, doc, tool_version=tool_version, clock=clock)
        with manager._lock:
            doc = manager._doc
            if manager.corrupt_reason is None:
                stored, doc.book = doc.book, replace(book, format=doc.book.format)
                for key in ("narrator", "year", "cover_url"):  # the site may omit them this time
                    if getattr(doc.book, key) is None:
                        setattr(doc.book, key, getattr(stored, key))
            for name, entry in doc.chapters.items():
                if entry.status is ChapterStatus.DOWNLOADING:
                    doc.chapters[name] = replace(entry, status=ChapterStatus.PENDING)
        return manager

    @classmethod
    def load(
        cls,
        book_dir: Path,
        *,
        book: BookInfo | None = None,
        tool_version: str = __version__,
        clock: Clock = utc_now,
    ) -> ManifestManager | None:
        """The manifest of ``book_dir`` as it is, or None when the folder has none.

        Unsafe entry names are dropped (see ``rejected``). A corrupt manifest yields a manager
        rebuilt from the audio files found (``corrupt_reason`` says why), of ``book``'s format
        when given, else of the format most files have; a manifest of a newer schema, or one
        that cannot be read, raises :class:`ManifestError`. Nothing is written.
        """
        return cls._read(book_dir, book, tool_version=tool_version, clock=clock)

    @classmethod
    def from_scan(
        cls,
        book_dir: Path,
        book: BookInfo | None,
        *,
        tool_version: str,
        clock: Clock = utc_now,
    ) -> ManifestManager:
        """A manifest (not yet saved) adopting the ``NN - Title.ext`` files in ``book_dir``."""
        doc = scan_doc(book_dir, book, tool_version, format_timestamp(clock()))
        return cls(book_dir, doc, tool_version=tool_version, clock=clock)

    @classmethod
    def _read(
        cls, book_dir: Path, book: BookInfo | None, *, tool_version: str, clock: Clock
    ) -> ManifestManager | None:
        try:
            doc = read_manifest(book_dir / MANIFEST_NAME)
        except CorruptManifest as err:
            manager = cls.from_scan(book_dir, book, tool_version=tool_version, clock=clock)
            manager.corrupt_reason = str(err)
            manager.warnings.append(
                f"{MANIFEST_NAME} in {book_dir} is corrupt ({err}): it is moved aside and "
                f"rebuilt from the {len(manager._doc.chapters)} audio files found"
            )
            return manager
        if doc is None:
            return None
        return cls(book_dir, doc, tool_version=tool_version, clock=clock)

    # -- reading ------------------------------------------------------------------------------

    @property
    def data(self) -> dict[str, Any]:
        """A deep copy of the manifest as it would be saved."""
        with self._lock:
            return copy.deepcopy(self._doc.to_json())

    @property
    def book(self) -> BookInfo:
        """A copy of the book details."""
        with self._lock:
            return replace(self._doc.book)

    @property
    def format(self) -> str:
        """The output format the chapters were (or are being) made in."""
        return self._doc.book.format

    @property
    def chapters(self) -> Mapping[str, ChapterEntry]:
        """A read-only snapshot: file name -> entry."""
        with self._lock:
            return MappingProxyType(dict(self._doc.chapters))

    def chapter(self, name: str) -> ChapterEntry | None:
        """The entry for ``name``, or None."""
        with self._lock:
            return self._doc.chapters.get(name)

    @property
    def book_file(self) -> BookFile | None:
        """The merged m4b file, once it is made."""
        return self._doc.book_file

    def chapter_path(self, name: str) -> Path:
        """Where the chapter file ``name`` lives: the book folder, or the parts folder for m4b."""
        check_entry_name(name)
        return self._path_of(name)

    def _path_of(self, name: str) -> Path:
        if self.format == "m4b":
            return self.book_dir / WORK_DIR_NAME / PARTS_DIR_NAME / name
        return self.book_dir / name

    def check_chapter(self, name: str) -> ChapterCheck:
        """Compare the chapter's file with its entry: size first, then SHA-256.

        A chapter the manifest does not know, or does not claim complete, is ``incomplete``. A
        symbolic link or anything but a regular file counts as ``missing``, and so does an m4b
        part whose work or parts folder is a link: we never made that link, nor the part.
        """
        entry = self.chapter(name)
        if entry is None or entry.status is not ChapterStatus.COMPLETE:
            return ChapterCheck.INCOMPLETE
        # parse_manifest and mark_complete guarantee both for a complete entry
        assert entry.size is not None
        assert entry.sha256 is not None
        work = self.book_dir / WORK_DIR_NAME
        if self.format == "m4b" and not (is_real_dir(work) and is_real_dir(work / PARTS_DIR_NAME)):
            return ChapterCheck.MISSING
        # Names in the manifest were checked when read or added (check_entry_name).
        return check_file(self._path_of(name), entry.size, entry.sha256)

    @property
    def sidecars(self) -> Mapping[str, BookFile]:
        """The files beside the audio for players (``cover.jpg`` ...), by name."""
        with self._lock:
            return MappingProxyType(dict(self._doc.sidecars))

    def check_sidecar(self, name: str) -> ChapterCheck:
        """:meth:`check_chapter` for a sidecar file (``incomplete`` when none is recorded)."""
        found = self._doc.sidecars.get(name)
        if found is None:
            return ChapterCheck.INCOMPLETE
        return check_file(self.book_dir / found.name, found.size, found.sha256)

    def set_sidecars(self, files: Mapping[str, BookFile]) -> None:
        """Record the sidecar files now beside the audio (plain names in the book folder)."""
        for name in files:
            check_entry_name(name)
        with self._lock:
            if dict(files) != self._doc.sidecars:
                self._doc.sidecars = dict(files)
                self._save_locked()

    def forget_sidecar(self, name: str) -> None:
        """Stop vouching for a sidecar (it is missing or changed; the next run writes it)."""
        with self._lock:
            if self._doc.sidecars.pop(name, None) is not None:
                self._save_locked()

    def check_book_file(self) -> ChapterCheck:
        """:meth:`check_chapter` for the merged m4b file (``incomplete`` until it is made)."""
        book_file = self.book_file
        if book_file is None:
            return ChapterCheck.INCOMPLETE
        return check_file(self.book_dir / book_file.name, book_file.size, book_file.sha256)

    # -- changing -----------------------------------------------------------------------------

    def _now(self) -> str:
        return format_timestamp(self._clock())

    def _change(self, name: str, **changes: Any) -> ChapterEntry:
        with self._lock:
            entry = self._doc.chapters.get(name)
            if entry is None:
                raise KeyError(f"{name!r} is not in the manifest; call ensure_chapter first")
            updated = replace(entry, **changes)
            if updated != entry:
                self._doc.chapters[name] = updated
                if (
                    entry.status is ChapterStatus.COMPLETE
                    and updated.status is not ChapterStatus.COMPLETE
                ):
                    self._stale_complete.add(name)
                self._save_locked()
            return updated

    def ensure_chapter(self, name: str, *, index: int, title: str, **extra: Any) -> ChapterEntry:
        """Add ``name`` as a pending chapter, or refresh its index, title and extra fields."""
        check_entry_name(name)
        if clash := ENTRY_FIELDS & extra.keys():
            raise ValueError(f"extra fields may not replace {sorted(clash)}")
        with self._lock:
            entry = self._doc.chapters.get(name)
            if entry is None:
                entry = ChapterEntry(index=index, title=title, extra=extra)
                self._doc.chapters[name] = entry
                self._save_locked()
                return entry
            return self._change(name, index=index, title=title, extra={**entry.extra, **extra})

    def mark_downloading(self, name: str) -> ChapterEntry:
        """A new attempt starts: ``attempts`` + 1, ``started_at`` now."""
        with self._lock:
            entry = self.chapter(name)
            attempts = (entry.attempts if entry is not None else 0) + 1
            return self._change(
                name,
                status=ChapterStatus.DOWNLOADING,
                attempts=attempts,
                started_at=self._now(),
                completed_at=None,
                size=None,
                sha256=None,
                expected_duration=None,
            )

    def mark_complete(
        self,
        name: str,
        *,
        size: int,
        sha256: str,
        expected_duration: ExpectedDuration | None = None,
    ) -> ChapterEntry:
        """The chapter's file is in place with this size and SHA-256.

        ``expected_duration`` is the length the site declared, which the audio was checked
        against; ``--verify-folder --deep`` checks it again.
        """
        if not is_sha256(sha256) or size < 0:
            raise ValueError(f"bad size or SHA-256 for {name!r}: {size}, {sha256!r}")
        return self._change(
            name,
            status=ChapterStatus.COMPLETE,
            size=size,
            sha256=sha256,
            completed_at=self._now(),
            last_error=None,
            expected_duration=expected_duration,
        )

    def mark_failed(self, name: str, kind: FailureKind | str, message: str) -> ChapterEntry:
        """The chapter failed for good (this run): ``last_error`` says how."""
        return self._change(
            name,
            status=ChapterStatus.FAILED,
            size=None,
            sha256=None,
            completed_at=None,
            expected_duration=None,
            last_error={"kind": str(kind), "message": message},
        )

    def mark_pending(self, name: str) -> ChapterEntry:
        """Back to the queue (interrupted, or its file failed verification)."""
        return self._change(
            name,
            status=ChapterStatus.PENDING,
            size=None,
            sha256=None,
            completed_at=None,
            expected_duration=None,
        )

    def set_book_file(self, name: str, size: int, sha256: str) -> None:
        """Record the merged m4b file (a plain name in the book folder)."""
        check_entry_name(name)
        if not is_sha256(sha256) or size < 0:
            raise ValueError(f"bad size or SHA-256 for {name!r}: {size}, {sha256!r}")
        with self._lock:
            self._doc.book_file = BookFile(name, size, sha256)
            self._save_locked()

    def clear_book_file(self) -> None:
        """Forget the merged m4b file (it is missing or must be made again)."""
        with self._lock:
            if self._doc.book_file is not None:
                self._doc.book_file = None
                self._save_locked()

    def set_format(self, fmt: str) -> None:
        """Switch the output format; a different one starts the chapter list afresh.

        The entries describe files of the old format (which stay on disk, unknown to the
        manifest), so they cannot prove anything about the new one.
        """
        with self._lock:
            if fmt == self._doc.book.format:
                return
            if self._doc.chapters or self._doc.book_file:
                self.warnings.append(
                    f"format changed from {self._doc.book.format} to {fmt}: "
                    f"{len(self._doc.chapters)} chapter entries start afresh"
                )
            self._doc.book.format = str(fmt)
            self._doc.chapters.clear()
            self._doc.book_file = None
            self._save_locked()

    def save(self) -> None:
        """Write the manifest now, or at the end of the open batch (also moves a corrupt
        predecessor aside first)."""
        with self._lock:
            self._save_locked(coalesce=False)

    def coalesce_saves(
        self, interval: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Save state changes at most once per ``interval`` seconds (None: after every change).

        A long book changes state thousands of times and every save writes the whole manifest,
        so saving each change costs time quadratic in the chapter count. While coalesced, a
        change is saved at once when the last save is old enough, else it waits for
        :meth:`flush`. The gap after a save is also at least four times what that save took, so
        writing stays a small share of the run however large the manifest is. Crash safety is
        unchanged: a chapter is only ever recorded complete once its file is in place, and a
        change lost to a kill (a fraction of a second's worth) only makes the next run redo or
        re-check that chapter. Switching back (None) does not save: call :meth:`flush` first.
        """
        with self._lock:
            self._save_every = interval
            self._monotonic = clock
            self._next_save = -math.inf

    def settle(self, name: str) -> None:
        """Save now if the file on disk may still call ``name`` complete.

        Call it before the chapter's file is replaced: a coalesced save must never leave the
        manifest claiming complete a file that has changed since.
        """
        with self._lock:
            if name in self._stale_complete and not self._batch_depth:
                self._write_locked()

    def flush(self, *, due_only: bool = False) -> None:
        """Write the changes not saved yet; with ``due_only``, only when a save is due."""
        with self._lock:
            if self._batch_depth or not self._unsaved:
                return  # a batch saves at its end
            if not (due_only and self._monotonic() < self._next_save):
                self._write_locked()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make several changes one step: one save at the end instead of one per change.

        Other threads wait until the batch ends (the lock is held), so nobody sees half of it.
        """
        with self._lock:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._unsaved:
                    self._save_locked()

    # -- persistence --------------------------------------------------------------------------

    def _save_locked(self, *, coalesce: bool = True) -> None:
        """Save a change: now, or later when a batch is open or saves are coalesced."""
        if self._batch_depth or (
            coalesce and self._save_every is not None and self._monotonic() < self._next_save
        ):
            self._unsaved = True
            return
        self._write_locked()

    def _write_locked(self) -> None:
        started = self._monotonic()
        self._unsaved = False
        if self.corrupt_reason is not None and self.corrupt_copy is None:
            self._move_corrupt_aside()
        try:
            self.book_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reraise_disk_refusal(err, self.book_dir, action="create")
        self._doc.tool_version = self.tool_version
        self._doc.updated_at = self._now()
        atomic_write_json(self.path, self._doc.to_json())
        self.saves += 1
        self._stale_complete.clear()
        if self._save_every is not None:
            finished = self._monotonic()
            self._next_save = finished + max(self._save_every, 4 * (finished - started))

    def _move_corrupt_aside(self) -> None:
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{MANIFEST_NAME}.corrupt-{stamp}")
        n = 1
        while target.exists() or target.is_symlink():
            target = self.path.with_name(f"{MANIFEST_NAME}.corrupt-{stamp}-{n}")
            n += 1
        try:
            self.path.rename(target)
        except FileNotFoundError:
            pass  # already gone: nothing left to keep
        except OSError as err:
            reraise_disk_refusal(err, self.path, action="move aside")
        else:
            self.corrupt_copy = target
            self.warnings.append(f"the corrupt manifest was kept as {target.name}")


def build_manifest_from_scan(
    book_dir: Path, book: BookInfo | None, tool_version: str, *, clock: Clock = utc_now
) -> ManifestManager:
    """Adopt the ``NN - Title.ext`` files in ``book_dir`` as complete chapters and save.

    Without ``book``, the author and title come from the folder names (``<root>/<Author>/
    <Title>``) and the format from the files. Any manifest already there is replaced.
    """
    manager = ManifestManager.from_scan(book_dir, book, tool_version=tool_version, clock=clock)
    manager.save()
    return manager
