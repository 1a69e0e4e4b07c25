"""The manifest's shape (SPEC §4): its types, its JSON form, and validation of what is read.

Nothing here writes, and nothing here knows about other modules of the library:
:mod:`tokysnatcher.library.manifest` owns the one writer, :mod:`tokysnatcher.library.scan` scans
and lists folders and :mod:`tokysnatcher.library.verify` checks a book folder, all on top of this.

Everything read from disk is untrusted: a manifest is validated field by field and any entry
name that could point outside its folder is dropped with a warning, never followed.
"""

from __future__ import annotations

import json
import math
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

from tokysnatcher.errors import ManifestError
from tokysnatcher.utils.filenames import check_plain_name

SCHEMA_VERSION = 1
MANIFEST_NAME = ".tokysnatcher.json"
WORK_DIR_NAME = ".tokysnatcher"  # partial work: segments, .part files, m4b chapter parts
PARTS_DIR_NAME = "parts"  # under WORK_DIR_NAME: the per-chapter parts of an m4b
JOIN_DIR_NAME = "m4b"  # under WORK_DIR_NAME: an m4b join's list, tags, cover and output
AUDIO_EXTS = ("mp3", "m4a", "m4b")
# About 100,000 chapters (far more than the site's 4 MiB chapter list holds in practice) of the
# ~300 bytes we write for each. A larger file is corrupt (or hostile): it is moved aside before
# it is read, so reading a manifest never takes more than a few hundred MB.
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
# How deep a field this version does not know may nest (lists and objects). Such fields are kept
# and written back; one nested ~1000 deep would make every save fail with RecursionError.
MAX_FIELD_DEPTH = 32

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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


_STATUSES = frozenset(ChapterStatus)


class ChapterCheck(StrEnum):
    """What a chapter file on disk looks like next to its manifest entry."""

    OK = "ok"
    MISSING = "missing"
    SIZE_MISMATCH = "size_mismatch"
    HASH_MISMATCH = "hash_mismatch"
    INCOMPLETE = "incomplete"  # the manifest does not claim it complete
    DECODE_ERROR = "decode_error"  # only from a deep check during verification
    DURATION_MISMATCH = "duration_mismatch"  # deep check: not as long as the site declared


class ExpectedDuration(NamedTuple):
    """How long a chapter's audio must be: what the site declared, give or take ``tolerance``.

    ``seconds`` is the sum of the playlist's EXTINF durations (or the API's duration of a direct
    file); ``tolerance`` covers encoder delay and the precision of that declaration.
    """

    seconds: float
    tolerance: float

    def mismatch(self, measured: float | None) -> str | None:
        """Why audio of ``measured`` seconds is not what was declared; None when it is."""
        if measured is None:
            return f"its length cannot be read ({self.seconds:.1f} s expected)"
        if abs(measured - self.seconds) <= self.tolerance:
            return None
        return (
            f"the audio lasts {measured:.1f} s, not the {self.seconds:.1f} s declared "
            f"(±{self.tolerance:g} s)"
        )

    def to_json(self) -> dict[str, float]:
        """The form stored in a manifest entry."""
        return {"seconds": self.seconds, "tolerance": self.tolerance}


# Every manifest written before 0.5.1 (schema 1 without ``book.source``) came from tokybook.com,
# the only source then, with the site's slug as the book's id.
LEGACY_SOURCE = "tokybook"
# How far below the library root a book folder lies when the manifest does not say:
# ``<root>/<Author>/<Title>``, the only layout before 0.5.1.
LEGACY_FOLDER_DEPTH = 2
MAX_FOLDER_DEPTH = 8


@dataclass
class BookInfo:
    """What the manifest records about the book itself.

    ``source`` and ``id`` say where the book came from (the source's name and its id for the
    book); ``output_template`` is the ``-o`` layout the folder was made with (None: the default)
    and ``folder_depth`` how many folders below the library root the book folder lies, so a
    resume finds the root again whatever the layout.
    """

    title: str
    author: str
    source_url: str
    slug: str
    format: str
    chapter_count: int
    narrator: str | None = None
    year: int | None = None
    cover_url: str | None = None
    source: str = LEGACY_SOURCE
    id: str = ""
    output_template: str | None = None
    folder_depth: int = LEGACY_FOLDER_DEPTH

    def __post_init__(self) -> None:
        if not self.id:
            self.id = self.slug


@dataclass(frozen=True, kw_only=True, slots=True)  # slots: a manifest may hold 100,000
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
    # Recorded with a complete chapter since 0.5.1 (None in older manifests): what --deep checks.
    expected_duration: ExpectedDuration | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in the manifest (``expected_duration`` only when known)."""
        duration: dict[str, Any] = {}
        if self.expected_duration is not None:
            duration["expected_duration"] = self.expected_duration.to_json()
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
            **duration,
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
    # The files written beside the audio for players (cover.jpg, desc.txt ...), by name.
    sidecars: dict[str, BookFile] = field(default_factory=dict)
    book_extra: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The manifest as it is saved (``warnings`` are not part of it)."""
        data: dict[str, Any] = {
            **self.extra,
            "schema_version": SCHEMA_VERSION,
            "tool_version": self.tool_version,
            "book": {**self.book_extra, **asdict(self.book)},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "chapters": {name: entry.to_json() for name, entry in self.chapters.items()},
        }
        if self.book_file is not None:
            data["book_file"] = self.book_file._asdict()
        if self.sidecars:
            data["sidecars"] = {
                name: {"size": f.size, "sha256": f.sha256} for name, f in self.sidecars.items()
            }
        return data


class CorruptManifest(Exception):
    """A manifest that is not JSON or not of the expected shape; ``str()`` says why."""


class NewerManifestError(ManifestError):
    """A manifest written by a newer tokysnatcher (higher ``schema_version``): left untouched."""

    default_hint = (
        "It was written by a newer tokysnatcher: upgrade to use this folder "
        "(the manifest was left untouched)."
    )


def check_entry_name(name: str) -> str:
    """``name`` when it may name a chapter or book file in the manifest, else ``ValueError``.

    Only plain, visible file names: no separators, ``..``, NUL or drive colon, no control
    characters, no hidden dot-name (which could be the manifest or the work folder itself).
    """
    check_plain_name(name)
    # One regular expression, not a loop per character: a manifest may hold 100,000 names.
    if name.startswith(".") or _CONTROL_RE.search(name):
        raise ValueError(f"{name!r} is not a plain visible file name")
    if len(name) > 63 and len(name.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError(f"{name[:40]!r}… is too long for a file name")
    return name


def is_sha256(value: object) -> bool:
    """True for a SHA-256 as the manifest stores it: 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


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


def _kept(fields: dict[str, Any], where: str) -> dict[str, Any]:
    """``fields`` (unknown ones, written back at every save) when none nests too deep."""
    # Iterative on purpose: the value may be nested deeper than Python's recursion limit.
    stack: list[tuple[object, int]] = [(value, 1) for value in fields.values()]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_FIELD_DEPTH:
            raise CorruptManifest(f"a field of {where} is nested over {MAX_FIELD_DEPTH} deep")
        stack.extend((child, depth + 1) for child in children)
    return fields


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
    _migrate_origin(book, raw, where)
    if book.format not in AUDIO_EXTS:
        raise CorruptManifest(f"book.format is not one of {', '.join(AUDIO_EXTS)}")
    return book, _kept({k: v for k, v in raw.items() if k not in BOOK_FIELDS}, "book")


def _migrate_origin(book: BookInfo, raw: Mapping[str, Any], where: str) -> None:
    """Where the book came from and where its folder lies; 0.5.0 manifests say neither.

    Those books are tokybook books (the only source then) whose id is the slug, in
    ``<root>/<Author>/<Title>``: the defaults of :class:`BookInfo`, written back at the next save.
    """
    if "source" in raw:
        book.source = _get(raw, "source", str, where)
    if "id" in raw:
        book.id = _get(raw, "id", str, where) or book.slug
    if "output_template" in raw:
        book.output_template = _get(raw, "output_template", (str, type(None)), where)
    if "folder_depth" in raw:
        depth = _count(raw, "folder_depth", where, minimum=1)
        if depth > MAX_FOLDER_DEPTH:
            raise CorruptManifest(f"{where}folder_depth is above {MAX_FOLDER_DEPTH}")
        book.folder_depth = depth


def _parse_entry(name: str, raw: object) -> ChapterEntry:
    where = f"chapters[{name!r}]."
    if not isinstance(raw, dict):
        raise CorruptManifest(f"{where[:-1]} is not an object")
    status_text = raw.get("status")
    if not isinstance(status_text, str) or status_text not in _STATUSES:
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
        expected_duration=_parse_expected_duration(raw.get("expected_duration"), where),
        index=_count(raw, "index", where, minimum=1),
        title=_get(raw, "title", str, where),
        status=status,
        size=size,
        sha256=sha,
        attempts=_count(raw, "attempts", where) if "attempts" in raw else 0,
        started_at=_get(raw, "started_at", (str, type(None)), where),
        completed_at=_get(raw, "completed_at", (str, type(None)), where),
        last_error=None if error is None else {"kind": error["kind"], "message": error["message"]},
        extra=_kept({k: v for k, v in raw.items() if k not in ENTRY_FIELDS}, where[:-1]),
    )


def _parse_expected_duration(raw: object, where: str) -> ExpectedDuration | None:
    """An entry's ``expected_duration``: absent (manifests before 0.5.1) or two finite numbers."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise CorruptManifest(f"{where}expected_duration is not an object")
    seconds, tolerance = raw.get("seconds"), raw.get("tolerance")
    if not (_is_length(seconds) and _is_length(tolerance)):
        raise CorruptManifest(f"{where}expected_duration needs finite seconds and tolerance")
    return ExpectedDuration(float(seconds), float(tolerance))


def _is_length(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
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


def _parse_sidecars(raw: object, warnings: list[str]) -> dict[str, BookFile]:
    """The ``sidecars`` object (absent before 0.5.1): name -> size and SHA-256."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CorruptManifest("sidecars is not an object")
    files: dict[str, BookFile] = {}
    for name, entry in raw.items():
        where = f"sidecars[{name!r}]."
        if not isinstance(entry, dict):
            raise CorruptManifest(f"{where[:-1]} is not an object")
        size = _count(entry, "size", where)
        sha = _get(entry, "sha256", str, where)
        if not _SHA256_RE.fullmatch(sha):
            raise CorruptManifest(f"{where}sha256 is not 64 lowercase hex digits")
        try:
            check_entry_name(name)
        except ValueError as err:
            warnings.append(f"manifest sidecar dropped: {err}")
            continue
        files[name] = BookFile(name, size, sha)
    return files


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
        sidecars=_parse_sidecars(doc.get("sidecars"), warnings),
        book_extra=book_extra,
        extra=_kept(
            {k: v for k, v in doc.items() if k not in known | {"book_file", "sidecars"}},
            "manifest",
        ),
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
    try:
        return parse_manifest(doc)
    except NewerManifestError as err:
        raise NewerManifestError(f"{path}: {err.message}") from err
