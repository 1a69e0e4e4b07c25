"""The library on disk as read: folder scans (adopting older downloads) and the book list.

Nothing here writes. The manifest's types and validation live in
:mod:`tokysnatcher.library.manifest_schema` (re-exported here for callers that read a library);
the one writer is :class:`~tokysnatcher.library.manifest.ManifestManager`.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from tokysnatcher.errors import ManifestError
from tokysnatcher.library.manifest_schema import (
    AUDIO_EXTS,
    BOOK_FIELDS,
    ENTRY_FIELDS,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    PARTS_DIR_NAME,
    SCHEMA_VERSION,
    WORK_DIR_NAME,
    BookFile,
    BookInfo,
    ChapterCheck,
    ChapterEntry,
    ChapterStatus,
    CorruptManifest,
    ManifestDoc,
    NewerManifestError,
    check_entry_name,
    format_timestamp,
    parse_manifest,
    read_manifest,
    utc_now,
)
from tokysnatcher.utils.atomic import folder_in_use, sha256_file

__all__ = [
    "AUDIO_EXTS",
    "BOOK_FIELDS",
    "ENTRY_FIELDS",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "PARTS_DIR_NAME",
    "SCHEMA_VERSION",
    "WORK_DIR_NAME",
    "BookFile",
    "BookInfo",
    "BookState",
    "BookSummary",
    "ChapterCheck",
    "ChapterEntry",
    "ChapterStatus",
    "CorruptManifest",
    "ManifestDoc",
    "NewerManifestError",
    "ScannedFile",
    "audio_files",
    "chapter_ext",
    "check_entry_name",
    "check_file",
    "format_timestamp",
    "infer_format",
    "list_downloads",
    "parse_manifest",
    "read_manifest",
    "scan_doc",
    "scan_folder",
    "summarize",
    "utc_now",
]

_CHAPTER_FILE_RE = re.compile(r"(\d{1,5})\s*-\s*(.*)\.([A-Za-z0-9]+)")


class BookState(StrEnum):
    """A book's overall state in ``--list-downloads``."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CORRUPT = "corrupt"  # unreadable or invalid manifest
    UNSUPPORTED = "unsupported"  # written by a newer tokysnatcher
    ACTIVE = "in use"  # another tokysnatcher is downloading or verifying it right now


def chapter_ext(fmt: str) -> str:
    """The extension of a chapter file in ``fmt`` (an m4b is made of per-chapter m4a parts)."""
    return "m4a" if fmt == "m4b" else fmt


@dataclass(frozen=True)
class ScannedFile:
    """An ``NN - Title.ext`` audio file found in a folder."""

    name: str
    path: Path
    index: int
    title: str
    ext: str
    size: int
    sha256: str


def _regular_files(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def scan_folder(book_dir: Path, *, audio_exts: tuple[str, ...] = AUDIO_EXTS) -> list[ScannedFile]:
    """Every visible ``NN - Title.ext`` audio file in ``book_dir``, hashed, in chapter order.

    Symbolic links and hidden files are ignored; this is how a folder made by an older version
    (or without a manifest) is adopted.
    """
    exts = {e.lower() for e in audio_exts}
    found: list[ScannedFile] = []
    for entry in _regular_files(book_dir):
        match = _CHAPTER_FILE_RE.fullmatch(entry.name)
        if entry.name.startswith(".") or not match or match.group(3).lower() not in exts:
            continue
        index = int(match.group(1))
        if index < 1:
            continue
        title = match.group(2).strip() or f"Chapter {index:02d}"
        size, digest = sha256_file(Path(entry.path))
        found.append(
            ScannedFile(entry.name, Path(entry.path), index, title, match.group(3), size, digest)
        )
    return sorted(found, key=lambda f: (f.index, f.name))


def audio_files(folder: Path, audio_exts: tuple[str, ...] = AUDIO_EXTS) -> list[str]:
    """Names of the visible audio files directly in ``folder`` (no hashing), sorted."""
    exts = {e.lower() for e in audio_exts}
    return sorted(
        e.name
        for e in _regular_files(folder)
        if not e.name.startswith(".") and e.name.rpartition(".")[2].lower() in exts
    )


def infer_format(book_dir: Path) -> str:
    """The most likely ``--format`` of a folder without a usable manifest."""
    names = audio_files(book_dir)
    if any(n.lower().endswith(".m4b") and not _CHAPTER_FILE_RE.fullmatch(n) for n in names):
        return "m4b"
    counts = Counter(n.rpartition(".")[2].lower() for n in names)
    return counts.most_common(1)[0][0] if counts else "mp3"


def _chapter_entry_from_scan(found: ScannedFile, stamp: str) -> ChapterEntry:
    return ChapterEntry(
        index=found.index,
        title=found.title,
        status=ChapterStatus.COMPLETE,
        size=found.size,
        sha256=found.sha256,
        attempts=0,
        completed_at=stamp,
        extra={"adopted": True},
    )


def scan_doc(book_dir: Path, book: BookInfo | None, tool_version: str, now: str) -> ManifestDoc:
    """A manifest describing the audio files already in ``book_dir`` (SPEC §4 adoption).

    The chapters are the ``NN - Title.ext`` files of the book's format (for m4b: the ``.m4a``
    parts in the work folder) and, for m4b, the one merged ``.m4b``. Without ``book``, the
    author and title come from the folder names (``<root>/<Author>/<Title>``) and the format
    from the files.
    """
    fmt = book.format if book is not None else infer_format(book_dir)
    is_m4b = fmt == "m4b"
    # Only files of the book's format: others are left alone, reported as unknown files.
    found = scan_folder(
        book_dir / WORK_DIR_NAME / PARTS_DIR_NAME if is_m4b else book_dir,
        audio_exts=(chapter_ext(fmt),),
    )
    book_file = None
    if is_m4b:
        merged = [n for n in audio_files(book_dir, ("m4b",)) if not _CHAPTER_FILE_RE.fullmatch(n)]
        preferred = f"{book_dir.name}.m4b"
        name = preferred if preferred in merged else (merged[0] if len(merged) == 1 else None)
        if name is not None:
            size, digest = sha256_file(book_dir / name)
            book_file = BookFile(name, size, digest)
    if book is None:
        book = BookInfo(
            title=book_dir.name,
            author=book_dir.parent.name,
            source_url="",
            slug="",
            format=fmt,
            chapter_count=max((f.index for f in found), default=0),
        )
    return ManifestDoc(
        book=replace(book, format=str(book.format)),
        tool_version=tool_version,
        created_at=now,
        updated_at=now,
        chapters={f.name: _chapter_entry_from_scan(f, now) for f in found},
        book_file=book_file,
    )


def check_file(path: Path, size: int, sha256: str) -> ChapterCheck:
    """``ok`` when ``path`` is a regular file of this size and SHA-256 (symlinks: ``missing``)."""
    try:
        info = path.lstat()
    except OSError:
        return ChapterCheck.MISSING
    if not stat.S_ISREG(info.st_mode):
        return ChapterCheck.MISSING
    if info.st_size != size:
        return ChapterCheck.SIZE_MISMATCH
    try:
        _, digest = sha256_file(path)
    except OSError:
        return ChapterCheck.MISSING
    return ChapterCheck.OK if digest == sha256 else ChapterCheck.HASH_MISMATCH


@dataclass(frozen=True, kw_only=True)
class BookSummary:
    """One row of ``--list-downloads``."""

    folder: Path
    title: str
    author: str
    format: str
    complete: int
    total: int
    size: int
    updated_at: str | None
    state: BookState
    problem: str | None = None  # why a corrupt or unsupported manifest cannot be read


def summarize(folder: Path, doc: ManifestDoc) -> BookSummary:
    """A :class:`BookSummary` from a validated manifest (no disk check: listing stays fast)."""
    entries = list(doc.chapters.values())
    done = [e for e in entries if e.status is ChapterStatus.COMPLETE]
    total = doc.book.chapter_count or len(entries)
    is_m4b = doc.book.format == "m4b"
    size = sum(e.size or 0 for e in done)
    if is_m4b and doc.book_file is not None:
        size = doc.book_file.size
    if any(e.status is ChapterStatus.FAILED for e in entries):
        state = BookState.FAILED
    elif len(done) >= total and (not is_m4b or doc.book_file is not None):
        state = BookState.COMPLETE
    else:
        state = BookState.INCOMPLETE
    return BookSummary(
        folder=folder,
        title=doc.book.title,
        author=doc.book.author,
        format=doc.book.format,
        complete=len(done),
        total=total,
        size=size,
        updated_at=doc.updated_at,
        state=state,
    )


def _summary_of(folder: Path) -> BookSummary:
    try:
        doc = read_manifest(folder / MANIFEST_NAME)
        if doc is not None:
            summary = summarize(folder, doc)
            if summary.state is not BookState.COMPLETE and folder_in_use(folder):
                summary = replace(summary, state=BookState.ACTIVE)
            return summary
        state, problem = BookState.CORRUPT, "the manifest disappeared"
    except CorruptManifest as err:
        state, problem = BookState.CORRUPT, f"corrupt manifest: {err}"
    except ManifestError as err:
        newer = isinstance(err, NewerManifestError)
        state = BookState.UNSUPPORTED if newer else BookState.CORRUPT
        problem = err.message
    return BookSummary(
        folder=folder,
        title=folder.name,
        author=folder.parent.name,
        format="",
        complete=0,
        total=0,
        size=0,
        updated_at=None,
        state=state,
        problem=problem,
    )


def list_downloads(root: Path, *, max_depth: int = 3) -> list[BookSummary]:
    """Every book under ``root`` that has a manifest, sorted by author then title.

    Folders are walked ``max_depth`` levels deep (``root/Author/Title`` is depth 2) without
    following symbolic links or entering hidden folders. A manifest that cannot be read is
    listed with state ``corrupt`` (or ``unsupported`` when a newer version wrote it); a book
    another tokysnatcher is working on right now is ``in use``.
    """
    found: list[BookSummary] = []
    pending = [(root, 0)]
    while pending:
        folder, depth = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue  # unreadable or vanished folders are not books we can list
        for entry in entries:
            if entry.name == MANIFEST_NAME and not entry.is_dir(follow_symlinks=False):
                found.append(_summary_of(folder))
            elif (
                depth < max_depth
                and not entry.name.startswith(".")
                and entry.is_dir(follow_symlinks=False)
            ):
                pending.append((Path(entry.path), depth + 1))
    return sorted(found, key=lambda s: (s.author.casefold(), s.title.casefold(), str(s.folder)))
