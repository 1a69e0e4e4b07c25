"""The plan of a run: resolve the book and decide, per chapter, download, skip or redo.

``prepare()`` asks the site and reads the disk but writes nothing (it also serves ``--dry-run``).
The run (``download/run.py``) carries a plan out.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from tokysnatcher import __version__
from tokysnatcher.config.settings import OutputFormat, Settings
from tokysnatcher.errors import UsageError
from tokysnatcher.ffmpeg.binary import Target
from tokysnatcher.library.layout import layout_of
from tokysnatcher.library.manifest import (
    BookInfo,
    ChapterCheck,
    ChapterEntry,
    ChapterStatus,
    ManifestManager,
)
from tokysnatcher.library.manifest_schema import (
    JOIN_DIR_NAME,
    MANIFEST_NAME,
    PARTS_DIR_NAME,
    WORK_DIR_NAME,
)
from tokysnatcher.library.scan import chapter_ext
from tokysnatcher.sources.source import Book, Source, TrackList
from tokysnatcher.utils.filenames import (
    LONGEST_BOOK_FILE_TAIL,
    FittedNames,
    NameParts,
    PathTooLong,
    book_file_parts,
    fit_path_budget,
    folder_path,
    max_path_units,
)
from tokysnatcher.utils.links import points_inside
from tokysnatcher.utils.units import format_bytes

# Bytes per second of audio, for the plan's estimates when the site gives a duration; measured
# on the stand-in's 64 kbit/s sources. An mp3 from a stream is an encode from AAC (libmp3lame
# V4: 9,300 B/s measured; an MP3 stream copied is 8,060, so 9,000 is within 4 % of the one and
# 12 % of the other); a direct file is MP3, copied as it is (8,100). AAC is copied (64 kbit/s).
_MP3_FROM_STREAM = 9_000
_MP3_FROM_FILE = 8_100
_AAC = 8_000


def estimated_size(fmt: OutputFormat, seconds: float | None, *, direct: bool) -> int | None:
    """A chapter file's likely size from its length; None when the site gives no length."""
    if not seconds:
        return None
    if fmt is OutputFormat.MP3:
        rate = _MP3_FROM_FILE if direct else _MP3_FROM_STREAM
    else:
        rate = _AAC
    return int(seconds * rate)


TARGETS: dict[OutputFormat, Target] = {
    OutputFormat.MP3: "mp3",
    OutputFormat.M4A: "m4a",
    OutputFormat.M4B: "m4a-part",  # an m4b is joined from per-chapter m4a parts
}


class Action(StrEnum):
    DOWNLOAD = "download"
    SKIP = "skip"
    REDO = "redo"


class ResumeMode(StrEnum):
    RESUME = "resume"  # keep what the manifest proves complete
    REDOWNLOAD = "redownload"  # fetch everything again


@dataclass(kw_only=True)
class PlannedChapter:
    index: int
    title: str
    dest: Path
    action: Action
    reason: str
    estimated_bytes: int | None  # to download: an estimate; a skip: its size in the manifest


@dataclass(kw_only=True)
class BookPlan:
    """Everything ``--dry-run`` shows and ``execute()`` needs."""

    book: Book
    playlist: TrackList
    folder: Path
    book_file: str | None  # the m4b's name (None for other formats)
    output_format: OutputFormat
    chapters: list[PlannedChapter]
    manifest: ManifestManager | None  # the manifest found on disk (None: a fresh download)
    mode: ResumeMode = ResumeMode.RESUME
    warnings: list[str] = field(default_factory=list)

    @property
    def complete_count(self) -> int:
        return sum(1 for c in self.chapters if c.action is Action.SKIP)

    @property
    def to_fetch(self) -> list[PlannedChapter]:
        return [c for c in self.chapters if c.action is not Action.SKIP]

    def estimated_bytes(self) -> int:
        return sum(c.estimated_bytes or 0 for c in self.to_fetch)


def chapter_title(index: int, raw: str) -> str:
    return raw.strip() or f"Chapter {index:02d}"


def prepare(
    ref: str,
    settings: Settings,
    source: Source,
    *,
    mode: ResumeMode = ResumeMode.RESUME,
) -> BookPlan:
    """Resolve the book and decide per chapter: download, skip (proven complete) or redo.

    Asks the site and reads the disk but writes nothing, not even to move a corrupt manifest
    aside (``execute`` does that). A manifest of another format is refused unless ``mode`` is
    ``REDOWNLOAD``: mixing formats in one book is never done silently.
    """
    slug = source.book_slug(ref)
    check_library_root(settings.directory)
    book, playlist = source.resolve(slug)
    if not playlist.tracks:
        raise UsageError(f"the book {book.title!r} lists no chapter with audio")
    total = len(playlist.tracks)
    wanted = settings.chapters.select(total) if settings.chapters else list(range(1, total + 1))
    fmt = settings.output_format
    layout = _fit_names(settings, book, playlist, wanted)
    folder = folder_path(settings.directory, layout.folders)
    manifest = ManifestManager.load(
        folder, book=_book_info(book, playlist, settings, folder), tool_version=__version__
    )
    warnings = [f"track without audio skipped: {title}" for title in playlist.skipped]
    warnings += [f"not available yet, not downloaded: {name}" for name in playlist.unavailable]
    if layout.shortened:
        warnings.append(
            f"names shortened to fit this system's limit of {max_path_units()} characters per "
            f"path: the book goes to {folder}"
        )
    usable = manifest
    if manifest is not None:
        warnings.extend(manifest.warnings)
        old = manifest.format
        if old != fmt:
            old_files = sum(e.status is ChapterStatus.COMPLETE for e in manifest.chapters.values())
            old_files += manifest.book_file is not None
            if mode is ResumeMode.RESUME:
                raise UsageError(
                    f"{folder} holds this book as {old}, and you asked for {fmt}",
                    hint=f"Use --format {old} to resume it, or --force-redownload --format {fmt} "
                    f"to download it again as {fmt} (the {old} files stay until you delete them).",
                )
            warnings.append(
                f"downloading the book again as {fmt}: the {old_files} {old} file(s) of the "
                f"earlier download stay in {folder} until you delete them"
            )
            usable = None  # its entries describe files of the other format
    part_dir = folder / WORK_DIR_NAME / PARTS_DIR_NAME
    chapters: list[PlannedChapter] = []
    unowned = 0
    for index in wanted:
        track = playlist.tracks[index - 1]
        name = layout.files[index - 1]
        dest = (part_dir if fmt is OutputFormat.M4B else folder) / name
        action, reason = Action.DOWNLOAD, "new"
        estimate = estimated_size(fmt, track.duration, direct=track.is_direct)
        entry = usable.chapter(name) if usable is not None else None
        if usable is not None and entry is not None:
            if mode is ResumeMode.REDOWNLOAD:
                action, reason = Action.REDO, "--force-redownload"
            else:
                check = usable.check_chapter(name)
                if check is ChapterCheck.OK:
                    action, reason = Action.SKIP, "complete (size and SHA-256 match)"
                    estimate = entry.size
                else:
                    action, reason = Action.REDO, _redo_reason(check, entry)
        elif dest.is_file() or dest.is_symlink():
            unowned += 1
            reason = "new (replaces a file no manifest vouches for)"
        chapters.append(
            PlannedChapter(
                index=index,
                title=chapter_title(index, track.title),
                dest=dest,
                action=action,
                reason=reason,
                estimated_bytes=estimate,
            )
        )
    if unowned and mode is ResumeMode.RESUME:
        warnings.append(
            f"{unowned} chapter file(s) in {folder} are not in its manifest and will be "
            "downloaded again; to keep them instead, stop now and run --verify-folder on that "
            "folder (it adopts them), then --resume"
        )
    return BookPlan(
        book=book,
        playlist=playlist,
        folder=folder,
        book_file=layout.files[-1] if fmt is OutputFormat.M4B else None,
        output_format=fmt,
        chapters=chapters,
        manifest=manifest,
        mode=mode,
        warnings=warnings,
    )


# What a chapter's path gains while an m4b is made: its parts live in ``.tokysnatcher/parts/``.
_M4B_PARTS_UNITS = len(f"/{WORK_DIR_NAME}/{PARTS_DIR_NAME}")
# The longest names of the tool's own in a book folder: the manifest and the work files.
_OWN_PATHS = (
    MANIFEST_NAME,
    f"{WORK_DIR_NAME}/0001/segments.txt",
    f"{WORK_DIR_NAME}/{JOIN_DIR_NAME}/tags.ffmetadata",
)


def _fit_names(
    settings: Settings, book: Book, playlist: TrackList, wanted: list[int]
) -> FittedNames:
    """The book's folder and file names (the ``-o`` layout), shortened where the platform's
    path limit needs it.

    Every chapter counts, not only those asked for, so a chapter keeps its name whichever
    chapters a run selects. For an m4b the last file is the book's own.
    """
    layout = layout_of(settings.output)
    fmt = settings.output_format
    total = len(playlist.tracks)
    ext = chapter_ext(fmt)
    files = [
        layout.chapter_parts(book, i, total, t.title, ext) for i, t in enumerate(playlist.tracks, 1)
    ]
    work_units = 0
    book_file = None
    loose = []
    if fmt is OutputFormat.M4B:
        book_file = book_file_parts(book.title, wanted, total)
        # Counted with the longest tail any selection of chapters may give it.
        loose.append(NameParts("", book_file.body, LONGEST_BOOK_FILE_TAIL))
        work_units = _M4B_PARTS_UNITS
    try:
        fitted = fit_path_budget(
            settings.directory,
            layout.folder_names(book),
            files,
            work_units=work_units,
            fixed=_OWN_PATHS,
            loose=loose,
        )
    except PathTooLong as err:
        raise UsageError(str(err), hint="Choose a shorter library folder with -d.") from err
    if book_file is None:
        return fitted
    body = fitted.files[-1].removesuffix(LONGEST_BOOK_FILE_TAIL)
    return replace(fitted, files=(*fitted.files[:-1], body + book_file.tail))


def _redo_reason(check: ChapterCheck, entry: ChapterEntry) -> str:
    if check is ChapterCheck.MISSING:
        return "file missing"
    if check is ChapterCheck.SIZE_MISMATCH:
        return "size differs from the manifest (truncated or altered)"
    if check is ChapterCheck.HASH_MISMATCH:
        return "SHA-256 differs from the manifest (altered)"
    if entry.status is ChapterStatus.FAILED and entry.last_error:
        return f"failed last time ({entry.last_error['kind']})"
    return "not finished"


def check_library_root(folder: Path) -> Path:
    """The nearest existing folder at or above ``folder`` must be a writable folder (exit 2)."""
    root = folder
    while not root.exists() and root.parent != root:
        root = root.parent
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder", hint="Choose another folder with -d.")
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"{root} is not writable", hint="Choose another folder with -d.")
    return root


def check_destination(plan: BookPlan, *, create: bool) -> None:
    """The book folder must be creatable, writable and have room for the plan (exit 2 if not)."""
    root = check_library_root(plan.folder)
    free = shutil.disk_usage(root).free
    need = plan.estimated_bytes() * 2  # segments plus output, until a chapter is converted
    if need and free < need:
        raise UsageError(
            f"not enough free space in {root}: {format_bytes(free)} free, "
            f"about {format_bytes(need)} needed",
            hint="Free some space or choose another folder with -d.",
        )
    work = plan.folder / WORK_DIR_NAME
    if work.is_symlink() and not points_inside(work, plan.folder):
        raise UsageError(
            f"{work} is a link to {os.path.realpath(work)}, outside the book folder",
            hint="Remove the link: tokysnatcher keeps its partial work inside the book folder.",
        )
    if create:
        try:
            if work.is_symlink():
                work.unlink()  # it leads inside the book, where we never make links: planted
            work.mkdir(parents=True, exist_ok=True)
            # A real write proves the folder is writable even where os.access is optimistic.
            with tempfile.TemporaryFile(dir=work):
                pass
        except OSError as err:
            code = errno.errorcode.get(err.errno or 0, "")
            raise UsageError(
                f"cannot write to {plan.folder}: {err.strerror or code}",
                hint="Choose another folder with -d.",
            ) from err


def book_info(plan: BookPlan, settings: Settings) -> BookInfo:
    """What the manifest records about the planned book."""
    return _book_info(plan.book, plan.playlist, settings, plan.folder)


def _book_info(book: Book, playlist: TrackList, settings: Settings, folder: Path) -> BookInfo:
    layout = settings.output
    return BookInfo(
        title=book.title,
        author=book.author,
        source_url=book.source_url,
        slug=book.slug,
        format=str(settings.output_format),
        chapter_count=len(playlist.tracks),
        narrator=book.narrator,
        year=book.year,
        cover_url=book.cover_url,
        source=book.source,
        id=book.slug,
        output_template=None if layout is None or layout.is_default else layout.text,
        folder_depth=len(folder.relative_to(settings.directory).parts),
    )
