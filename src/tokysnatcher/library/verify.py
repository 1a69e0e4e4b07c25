"""``--verify-folder``: check a book folder against its manifest (SPEC §4).

Each chapter file is compared with its manifest entry (size, then SHA-256, then optionally a full
decode and the length the site declared, when the entry records it); a chapter found bad is
marked ``pending`` so the next ``--resume`` fetches it again. A folder without a manifest is
adopted (its ``NN - Title.ext`` files become complete chapters), a corrupt manifest is moved
aside and rebuilt the same way, and entries whose names could point outside the folder are
dropped. The result is data; the CLI renders it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tokysnatcher import __version__
from tokysnatcher.errors import DiskError, UsageError
from tokysnatcher.library.manifest import ManifestManager
from tokysnatcher.library.manifest_schema import MANIFEST_NAME, utc_now
from tokysnatcher.library.scan import (
    BookInfo,
    ChapterCheck,
    ChapterEntry,
    ChapterStatus,
    audio_files,
    list_downloads,
)
from tokysnatcher.utils.atomic import folder_lock, remove_stale_temps

# a file -> (why it does not decode or None, seconds of audio it holds or None)
DeepCheck = Callable[[Path], tuple[str | None, float | None]]


@dataclass(frozen=True, slots=True)  # slots: a report may hold 200,000 of them
class VerifyRow:
    """One checked file: a chapter, or the merged m4b (``is_book_file``)."""

    name: str
    index: int
    title: str
    check: ChapterCheck
    detail: str
    marked_pending: bool = False
    is_book_file: bool = False
    is_sidecar: bool = False  # cover.jpg, desc.txt ... (also ``is_book_file``: not a chapter)


@dataclass(kw_only=True)
class VerifyReport:
    """The outcome of :func:`verify_folder`, as data for the CLI to render."""

    book_dir: Path
    book: BookInfo | None = None
    rows: list[VerifyRow] = field(default_factory=list)
    unknown_files: list[str] = field(default_factory=list)
    adopted: int | None = None  # files adopted into a new manifest, when there was none
    rebuilt: str | None = None  # why the manifest on disk was corrupt and had to be rebuilt
    corrupt_copy: Path | None = None  # where a corrupt manifest was moved before the rebuild
    rejected: list[str] = field(default_factory=list)  # entries dropped: unsafe names
    books_below: int = 0  # manifests in subfolders, when this folder itself holds no book
    warnings: list[str] = field(default_factory=list)

    @property
    def nothing_found(self) -> bool:
        """No manifest and no chapter file: there was nothing to verify."""
        return self.book is None

    @property
    def problems(self) -> list[VerifyRow]:
        """Rows that are not ``ok``."""
        return [row for row in self.rows if row.check is not ChapterCheck.OK]

    @property
    def clean(self) -> bool:
        """Every chapter (and book file) verified, and the manifest itself was sound.

        Unknown audio files are reported but allowed (a bonus track the user added). A manifest
        that had to be rebuilt or had entries rejected is a problem found, even when every file
        is fine now.
        """
        return (
            not self.nothing_found
            and bool(self.rows)
            and not self.problems
            and self.rebuilt is None
            and not self.rejected
        )


_DETAILS = {
    ChapterCheck.OK: "ok",
    ChapterCheck.MISSING: "file missing",
    ChapterCheck.SIZE_MISMATCH: "size differs from the manifest",
    ChapterCheck.HASH_MISMATCH: "SHA-256 differs from the manifest",
    ChapterCheck.DECODE_ERROR: "does not decode",
    ChapterCheck.DURATION_MISMATCH: "not as long as the site declared",
}


def _verify_chapter(
    manager: ManifestManager, name: str, entry: ChapterEntry, deep_check: DeepCheck | None
) -> VerifyRow:
    check = manager.check_chapter(name)
    detail = _DETAILS.get(check, "")
    if check is ChapterCheck.INCOMPLETE:
        error = entry.last_error
        detail = f"not complete ({entry.status})" + (
            f": {error['kind']}: {error['message']}" if error else ""
        )
    elif check is ChapterCheck.OK and deep_check is not None:
        problem, seconds = deep_check(manager.chapter_path(name))
        expected = entry.expected_duration
        if problem is not None:
            check, detail = ChapterCheck.DECODE_ERROR, f"does not decode: {problem}"
        elif expected is not None and (wrong := expected.mismatch(seconds)) is not None:
            check, detail = ChapterCheck.DURATION_MISMATCH, wrong
    # A file that is there but wrong, or a run that died mid-download, must be redone; a
    # pending or failed chapter is redone by --resume anyway and keeps its last error.
    redo = check not in (ChapterCheck.OK, ChapterCheck.INCOMPLETE) or (
        entry.status is ChapterStatus.DOWNLOADING
    )
    if redo:
        manager.mark_pending(name)
    return VerifyRow(name, entry.index, entry.title, check, detail, marked_pending=redo)


def _verify_book_file(manager: ManifestManager, deep_check: DeepCheck | None) -> VerifyRow:
    book_file = manager.book_file
    title = manager.book.title
    if book_file is None:
        return VerifyRow(
            "(m4b book file)", 0, title, ChapterCheck.INCOMPLETE, "not made yet", False, True
        )
    check = manager.check_book_file()
    detail = _DETAILS.get(check, "")
    if check is ChapterCheck.OK and deep_check is not None:
        problem, _ = deep_check(manager.book_dir / book_file.name)
        if problem is not None:
            check, detail = ChapterCheck.DECODE_ERROR, f"does not decode: {problem}"
    bad = check is not ChapterCheck.OK
    if bad:
        manager.clear_book_file()  # the next --resume merges the book again
    return VerifyRow(book_file.name, 0, title, check, detail, bad, True)


def _verify_sidecar(manager: ManifestManager, name: str) -> VerifyRow:
    """A sidecar (``cover.jpg`` ...) checked like a chapter; a bad one is forgotten, so the next
    run writes it again."""
    check = manager.check_sidecar(name)
    bad = check is not ChapterCheck.OK
    if bad:
        manager.forget_sidecar(name)
    detail = _DETAILS.get(check, "")
    return VerifyRow(name, 0, "(beside the audio)", check, detail, bad, True, is_sidecar=True)


def verify_folder(
    book_dir: Path,
    *,
    tool_version: str = __version__,
    deep_check: DeepCheck | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> VerifyReport:
    """Verify a book folder against its manifest (SPEC §4 ``--verify-folder``).

    No manifest: the ``NN - Title.ext`` files found are adopted into a new one. A corrupt
    manifest is moved aside and rebuilt. Each chapter is checked (size, then SHA-256, then
    ``deep_check`` if given, and its length against the recorded one); chapters found bad are
    marked ``pending`` so the next ``--resume`` redoes them. Holds the folder's writer lock
    throughout, and removes temporary files a killed run left. Raises :class:`UsageError` when
    ``book_dir`` is not a folder and :class:`ManifestError` for a newer schema or a folder
    another tokysnatcher is writing.
    """
    if not book_dir.is_dir():
        raise UsageError(
            f"{book_dir} is not a folder", hint="Pass the folder of one book to --verify-folder."
        )
    if not os.path.lexists(book_dir / MANIFEST_NAME) and not audio_files(book_dir):
        # Nothing of ours to check or adopt (an empty folder, a library root): no lock either,
        # whose file would be the one thing written.
        return VerifyReport(book_dir=book_dir, books_below=len(list_downloads(book_dir)))
    with folder_lock(book_dir):
        return _verify_locked(book_dir, tool_version, deep_check, clock)


def _verify_locked(
    book_dir: Path,
    tool_version: str,
    deep_check: DeepCheck | None,
    clock: Callable[[], datetime],
) -> VerifyReport:
    report = VerifyReport(book_dir=book_dir)
    manager = ManifestManager.load(book_dir, tool_version=tool_version, clock=clock)
    if manager is None:
        manager = ManifestManager.from_scan(book_dir, None, tool_version=tool_version, clock=clock)
        report.adopted = len(manager.chapters) + (manager.book_file is not None)
        if not report.adopted:
            report.unknown_files = audio_files(book_dir)
            report.books_below = len(list_downloads(book_dir))
            return report  # nothing of ours here: write nothing
        report.warnings.append(
            f"no manifest: adopted {report.adopted} audio files found (an older download, not "
            "checkable against earlier hashes; --deep decodes them)"
        )
    for name in remove_stale_temps(book_dir):
        report.warnings.append(f"removed {name}, left by an interrupted run")
    report.rebuilt = manager.corrupt_reason
    report.rejected = list(manager.rejected)
    try:
        with manager.batch():  # one save at the end, of everything found
            if report.rebuilt is not None or report.adopted or report.rejected:
                manager.save()  # moves a corrupt manifest aside first; drops rejected entries
            report.book = manager.book
            chapters = sorted(manager.chapters.items(), key=lambda kv: (kv[1].index, kv[0]))
            for name, entry in chapters:
                report.rows.append(_verify_chapter(manager, name, entry, deep_check))
            if manager.format == "m4b":
                report.rows.append(_verify_book_file(manager, deep_check))
            for name in sorted(manager.sidecars):
                report.rows.append(_verify_sidecar(manager, name))
    except DiskError as err:  # a read-only backup can still be checked
        report.warnings.append(f"the findings could not be saved to the manifest: {err.message}")
    report.corrupt_copy = manager.corrupt_copy
    # For m4b, chapter-named files beside the book are the --keep-parts copies.
    known = set(manager.chapters)
    if manager.book_file is not None:
        known.add(manager.book_file.name)
    report.unknown_files = [n for n in audio_files(book_dir) if n not in known]
    report.warnings[:0] = [w for w in manager.warnings if w not in report.rejected]
    return report
