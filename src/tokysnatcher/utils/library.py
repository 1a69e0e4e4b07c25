"""The library on disk as read: manifest types and validation, folder scans, the book list.

Nothing here writes. :mod:`tokysnatcher.utils.manifest` owns the one writer
(:class:`~tokysnatcher.utils.manifest.ManifestManager`) and verification; it builds on the
types and checks below, which is why they live in this read-only module.

Everything read from disk is untrusted (SPEC §4): a manifest is validated field by field and any
entry name that could point outside its folder is dropped with a warning.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from tokysnatcher.errors import ManifestError
from tokysnatcher.utils.atomic import sha256_file
from tokysnatcher.utils.filenames import check_plain_name

SCHEMA_VERSION = 1
MANIFEST_NAME = ".tokysnatcher.json"
WORK_DIR_NAME = ".tokysnatcher"  # partial work: segments, .part files, m4b chapter parts
PARTS_DIR_NAME = "parts"  # under WORK_DIR_NAME: the per-chapter parts of an m4b
AUDIO_EXTS = ("mp3", "m4a", "m4b")
MAX_MANIFEST_BYTES = 32 * 1024 * 1024  # a 1000-chapter manifest is well under 1 MiB

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CHAPTER_FILE_RE = re.compile(r"(\d{1,5})\s*-\s*(.*)\.([A-Za-z0-9]+)")


def utc_now() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``: ``2026-11-23T10:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ChapterStatus(StrEnum):
    """A chapter's state in the manifest."""

    PENDING = "pending"
    DOWNLOADING = "downloading"
    COMPLETE = "complete"
    FAILED = "failed"


class ChapterCheck(StrEnum):
    """What a chapter file on disk looks like next to its manifest entry."""

    OK = "ok"
    MISSING = "missing"
    SIZE_MISMATCH = "size_mismatch"
    HASH_MISMATCH = "hash_mismatch"
    INCOMPLETE = "incomplete"  # the manifest does not claim it complete
    DECODE_ERROR = "decode_error"  # only from a deep check during verification


class BookState(StrEnum):
    """A book's overall state in ``--list-downloads``."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CORRUPT = "corrupt"  # unreadable or invalid manifest
    UNSUPPORTED = "unsupported"  # written by a newer tokysnatcher


@dataclass
class BookInfo:
    """What the manifest records about the book itself."""

    title: str
    author: str
    source_url: str
    slug: str
    format: str
    chapter_count: int
    narrator: str | None = None
    year: int | None = None
    cover_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChapterEntry:
    """One chapter of the manifest; ``extra`` keeps fields this version does not know."""

    index: int
    title: str
    status: ChapterStatus = ChapterStatus.PENDING
    size: int | None = None
    sha256: str | None = None
    attempts: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    last_error: Mapping[str, str] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in the manifest."""
        return {
            **self.extra,
            "index": self.index,
            "title": self.title,
            "status": str(self.status),
            "size": self.size,
            "sha256": self.sha256,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "last_error": dict(self.last_error) if self.last_error is not None else None,
        }


ENTRY_FIELDS = frozenset(ChapterEntry.__dataclass_fields__) - {"extra"}
BOOK_FIELDS = frozenset(BookInfo.__dataclass_fields__)


class BookFile(NamedTuple):
    """The merged book file of an m4b download."""

    name: str
    size: int
    sha256: str


@dataclass
class ManifestDoc:
    """A validated manifest; ``*_extra`` keep unknown fields so a save does not lose them."""

    book: BookInfo
    tool_version: str
    created_at: str | None
    updated_at: str | None
    chapters: dict[str, ChapterEntry]
    book_file: BookFile | None = None
    book_extra: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class CorruptManifest(Exception):
    """A manifest that is not JSON or not of the expected shape; ``str()`` says why."""


class NewerManifestError(ManifestError):
    """A manifest written by a newer tokysnatcher (higher ``schema_version``): left untouched."""

    default_hint = "It was written by a newer tokysnatcher: upgrade tokysnatcher to use it."


def check_entry_name(name: str) -> str:
    """``name`` when it may name a chapter or book file in the manifest, else ``ValueError``.

    Only plain, visible file names: no separators, ``..``, NUL or drive colon, no control
    characters, no hidden dot-name (which could be the manifest or the work folder itself).
    """
    check_plain_name(name)
    if name.startswith(".") or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValueError(f"{name!r} is not a plain visible file name")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError(f"{name[:40]!r}… is too long for a file name")
    return name


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    # bool is an int subclass; a count or size of `true` is corruption, not 1.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CorruptManifest(f"{where}{key} is missing or not {_type_names(kind)}")
    return value


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _count(obj: Mapping[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
    value: int = _get(obj, key, int, where)
    if value < minimum:
        raise CorruptManifest(f"{where}{key} is below {minimum}")
    return value


def _parse_book(raw: object) -> tuple[BookInfo, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise CorruptManifest("book is missing or not an object")
    where = "book."
    year = raw.get("year")
    book = BookInfo(
        title=_get(raw, "title", str, where),
        author=_get(raw, "author", str, where),
        source_url=raw.get("source_url") or "",
        slug=raw.get("slug") or "",
        format=_get(raw, "format", str, where),
        chapter_count=_count(raw, "chapter_count", where),
        narrator=_get(raw, "narrator", (str, type(None)), where),
        year=year if isinstance(year, int) and not isinstance(year, bool) else None,
        cover_url=_get(raw, "cover_url", (str, type(None)), where),
    )
    if not isinstance(book.source_url, str) or not isinstance(book.slug, str):
        raise CorruptManifest("book.source_url and book.slug must be text")
    return book, {k: v for k, v in raw.items() if k not in BOOK_FIELDS}


def _parse_entry(name: str, raw: object) -> ChapterEntry:
    where = f"chapters[{name!r}]."
    if not isinstance(raw, dict):
        raise CorruptManifest(f"{where[:-1]} is not an object")
    status_text = raw.get("status")
    if not isinstance(status_text, str) or status_text not in set(ChapterStatus):
        raise CorruptManifest(f"{where}status is not a known status")
    status = ChapterStatus(status_text)
    sha = _get(raw, "sha256", (str, type(None)), where)
    if sha is not None and not _SHA256_RE.fullmatch(sha):
        raise CorruptManifest(f"{where}sha256 is not 64 lowercase hex digits")
    size = _get(raw, "size", (int, type(None)), where)
    if size is not None and size < 0:
        raise CorruptManifest(f"{where}size is negative")
    if status is ChapterStatus.COMPLETE and (size is None or sha is None):
        raise CorruptManifest(f"{where[:-1]} is complete without a size and SHA-256")
    error = _get(raw, "last_error", (dict, type(None)), where)
    if error is not None and not all(isinstance(error.get(k), str) for k in ("kind", "message")):
        raise CorruptManifest(f"{where}last_error needs a text kind and message")
    return ChapterEntry(
        index=_count(raw, "index", where, minimum=1),
        title=_get(raw, "title", str, where),
        status=status,
        size=size,
        sha256=sha,
        attempts=_count(raw, "attempts", where) if "attempts" in raw else 0,
        started_at=_get(raw, "started_at", (str, type(None)), where),
        completed_at=_get(raw, "completed_at", (str, type(None)), where),
        last_error=None if error is None else {"kind": error["kind"], "message": error["message"]},
        extra={k: v for k, v in raw.items() if k not in ENTRY_FIELDS},
    )


def _parse_book_file(raw: object, warnings: list[str]) -> BookFile | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise CorruptManifest("book_file is not an object")
    name = _get(raw, "name", str, "book_file.")
    size = _count(raw, "size", "book_file.")
    sha = _get(raw, "sha256", str, "book_file.")
    if not _SHA256_RE.fullmatch(sha):
        raise CorruptManifest("book_file.sha256 is not 64 lowercase hex digits")
    try:
        check_entry_name(name)
    except ValueError as err:
        warnings.append(f"manifest book file dropped: {err}")
        return None
    return BookFile(name, size, sha)


def parse_manifest(doc: object) -> ManifestDoc:
    """Validate a decoded manifest.

    Raises :class:`CorruptManifest` for a wrong shape and :class:`ManifestError` for a schema
    newer than this tool understands. Unsafe entry names are dropped and reported in
    ``warnings``.
    """
    if not isinstance(doc, dict):
        raise CorruptManifest("the top level is not an object")
    version = _get(doc, "schema_version", int, "")
    if version > SCHEMA_VERSION:
        raise NewerManifestError(
            f"the manifest has schema version {version}; this tokysnatcher understands "
            f"up to {SCHEMA_VERSION}"
        )
    if version < 1:
        raise CorruptManifest(f"schema_version {version} is not valid")
    book, book_extra = _parse_book(doc.get("book"))
    raw_chapters = _get(doc, "chapters", dict, "")
    warnings: list[str] = []
    chapters: dict[str, ChapterEntry] = {}
    for name, raw in raw_chapters.items():
        try:
            check_entry_name(name)
        except ValueError as err:
            warnings.append(f"manifest entry dropped: {err}")
            continue
        chapters[name] = _parse_entry(name, raw)
    known = {"schema_version", "tool_version", "book", "created_at", "updated_at", "chapters"}
    return ManifestDoc(
        book=book,
        tool_version=_get(doc, "tool_version", str, "") if "tool_version" in doc else "unknown",
        created_at=_get(doc, "created_at", (str, type(None)), ""),
        updated_at=_get(doc, "updated_at", (str, type(None)), ""),
        chapters=chapters,
        book_file=_parse_book_file(doc.get("book_file"), warnings),
        book_extra=book_extra,
        extra={k: v for k, v in doc.items() if k not in known | {"book_file"}},
        warnings=warnings,
    )


def read_manifest(path: Path) -> ManifestDoc | None:
    """Read and validate the manifest at ``path``; None when there is none.

    Raises :class:`CorruptManifest` (not JSON, wrong shape, not a regular file, too large) and
    :class:`ManifestError` (unreadable, or a newer schema).
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ManifestError(f"cannot read {path}: {err.strerror or err}") from err
    if not stat.S_ISREG(info.st_mode):
        raise CorruptManifest("it is not a regular file")  # a symlink is never followed
    if info.st_size > MAX_MANIFEST_BYTES:
        raise CorruptManifest(f"it is {info.st_size} bytes, far too large")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ManifestError(
            f"cannot read {path}: {err.strerror or err}",
            hint="Check the permissions of the book folder and its manifest.",
        ) from err
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CorruptManifest(f"it is not valid JSON ({type(err).__name__})") from err
    return parse_manifest(doc)


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

    The chapters are the ``NN - Title.ext`` files (for m4b: the parts in the work folder) and,
    for m4b, the one merged ``.m4b``. Without ``book``, the author and title come from the
    folder names (``<root>/<Author>/<Title>``) and the format from the files.
    """
    fmt = book.format if book is not None else infer_format(book_dir)
    is_m4b = fmt == "m4b"
    found = scan_folder(book_dir / WORK_DIR_NAME / PARTS_DIR_NAME if is_m4b else book_dir)
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
            return summarize(folder, doc)
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
    listed with state ``corrupt`` (or ``unsupported`` when a newer version wrote it).
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
