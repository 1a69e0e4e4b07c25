"""A whole book from reference to files on disk: resolve, plan, download, finish.

``prepare()`` asks the site and reads the disk but writes nothing (it also serves ``--dry-run``);
``execute()`` runs a plan. The CLI decides between them and renders what they return.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import requests

from tokysnatcher import __version__
from tokysnatcher.config.settings import OutputFormat, Settings
from tokysnatcher.download.chapter import ChapterJob, ChapterWork
from tokysnatcher.download.scheduler import ChapterResult, RunResult, download_all_chapters
from tokysnatcher.errors import UsageError
from tokysnatcher.ffmpeg.binary import FfmpegInfo, Target
from tokysnatcher.library.manifest import (
    BookInfo,
    ChapterCheck,
    ChapterEntry,
    ChapterStatus,
    ManifestManager,
)
from tokysnatcher.library.manifest_schema import JOIN_DIR_NAME
from tokysnatcher.library.scan import PARTS_DIR_NAME, WORK_DIR_NAME, chapter_ext
from tokysnatcher.net.http import Fetcher, make_session
from tokysnatcher.net.limits import RateLimiter
from tokysnatcher.sources.registry import open_source
from tokysnatcher.sources.source import Book, Source, TrackList
from tokysnatcher.ui.status import ChapterView, Reporter, RunStatus
from tokysnatcher.utils.atomic import folder_lock, remove_stale_temps
from tokysnatcher.utils.filenames import book_dir, chapter_filename
from tokysnatcher.utils.links import points_inside, remove_links_in, remove_tree

WORK_DIR = WORK_DIR_NAME
# A rough size for the plan when the site gives a duration: 64 kbit/s AAC, 48 kbit/s VBR MP3.
_BYTES_PER_SECOND = {OutputFormat.MP3: 6_000, OutputFormat.M4A: 8_000, OutputFormat.M4B: 8_000}


_TARGETS: dict[OutputFormat, Target] = {
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
    track_title: str
    dest: Path
    action: Action
    reason: str
    estimated_bytes: int | None


@dataclass(kw_only=True)
class BookPlan:
    """Everything ``--dry-run`` shows and ``execute()`` needs."""

    book: Book
    playlist: TrackList
    folder: Path
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
    folder = book_dir(settings.directory, book.author, book.title)
    total = len(playlist.tracks)
    wanted = settings.chapters.select(total) if settings.chapters else list(range(1, total + 1))
    fmt = settings.output_format
    manifest = ManifestManager.load(
        folder, book=_book_info(book, playlist, fmt), tool_version=__version__
    )
    warnings = [f"track without audio skipped: {title}" for title in playlist.skipped]
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
    part_dir = folder / WORK_DIR / PARTS_DIR_NAME
    chapters: list[PlannedChapter] = []
    unowned = 0
    for index in wanted:
        track = playlist.tracks[index - 1]
        name = chapter_filename(index, total, track.title, chapter_ext(fmt))
        dest = (part_dir if fmt is OutputFormat.M4B else folder) / name
        action, reason = Action.DOWNLOAD, "new"
        entry = usable.chapter(name) if usable is not None else None
        if usable is not None and entry is not None:
            if mode is ResumeMode.REDOWNLOAD:
                action, reason = Action.REDO, "--force-redownload"
            else:
                check = usable.check_chapter(name)
                if check is ChapterCheck.OK:
                    action, reason = Action.SKIP, "complete (size and SHA-256 match)"
                else:
                    action, reason = Action.REDO, _redo_reason(check, entry)
        elif dest.is_file() or dest.is_symlink():
            unowned += 1
            reason = "new (replaces a file no manifest vouches for)"
        estimate = int(track.duration * _BYTES_PER_SECOND[fmt]) if track.duration else None
        chapters.append(
            PlannedChapter(
                index=index,
                title=chapter_title(index, track.title),
                track_title=track.title,
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
        output_format=fmt,
        chapters=chapters,
        manifest=manifest,
        mode=mode,
        warnings=warnings,
    )


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
            f"not enough free space in {root}: {free // 2**20} MiB free, "
            f"about {need // 2**20} MiB needed",
            hint="Free some space or choose another folder with -d.",
        )
    work = plan.folder / WORK_DIR
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
    return _book_info(plan.book, plan.playlist, settings.output_format)


def _book_info(book: Book, playlist: TrackList, fmt: OutputFormat) -> BookInfo:
    return BookInfo(
        title=book.title,
        author=book.author,
        source_url=book.source_url,
        slug=book.slug,
        format=str(fmt),
        chapter_count=len(playlist.tracks),
        narrator=book.narrator,
        year=book.year,
        cover_url=book.cover_url,
    )


@contextmanager
def claim_folder(plan: BookPlan) -> Iterator[None]:
    """Create the book folder and hold its writer lock: one tokysnatcher per book at a time.

    Raises :class:`ManifestError` (exit 2) when another process is working on the book, and
    :class:`UsageError` when the work folder is a link out of the book folder. While held, what
    a killed run left is removed: temporary files, and an m4b join's output (its ffmpeg may
    outlive a ``kill -9`` and finish writing; nothing proved that file). Links planted in the
    work folder are removed, never followed. On the way out, an empty work folder is removed
    too, so a finished book holds only its files and manifest.
    """
    check_destination(plan, create=True)
    work = plan.folder / WORK_DIR
    with folder_lock(plan.folder):
        remove_links_in(work)
        remove_stale_temps(plan.folder)
        remove_stale_temps(work / PARTS_DIR_NAME)
        with suppress(OSError):
            remove_tree(work / JOIN_DIR_NAME)
        try:
            yield
        finally:
            tidy_work_dir(plan.folder)


def tidy_work_dir(folder: Path) -> None:
    """Remove ``<book>/.tokysnatcher/`` (and its ``parts/``) if nothing is left in it."""
    work = folder / WORK_DIR
    for empty in (work / PARTS_DIR_NAME, work):
        try:
            empty.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return  # not empty: partial work is kept for the next run


def execute(
    plan: BookPlan,
    settings: Settings,
    source: Source,
    fetcher: Fetcher,
    ffmpeg: FfmpegInfo,
    reporter: Reporter,
    stop: threading.Event,
    *,
    log: Callable[[str, str], None],
) -> tuple[RunResult, RunStatus]:
    """Download every chapter the plan fetches; the manifest records each state change.

    Holds the book folder's lock (see :func:`claim_folder`) for the whole run.
    """
    with claim_folder(plan):
        manifest = ManifestManager.open(
            plan.folder, book_info(plan, settings), tool_version=__version__
        )
        status = RunStatus(
            book_title=plan.book.title,
            author=plan.book.author,
            destination=plan.folder,
            total_chapters=len(plan.chapters),
            book_chapters=len(plan.playlist.tracks),
            connections=settings.connections,
            speed_limit=settings.speed_limit,
        )
        jobs: list[ChapterJob] = []
        with manifest.batch():  # one save for the whole setup, not one per chapter
            manifest.set_format(str(settings.output_format))
            if manifest.rejected:
                manifest.save()  # the unsafe entries it was read with are gone from disk too
            for planned in plan.chapters:
                track = plan.playlist.tracks[planned.index - 1]
                view = ChapterView(
                    index=planned.index, title=planned.title, filename=planned.dest.name
                )
                status.chapters[planned.index] = view
                name = planned.dest.name
                manifest.ensure_chapter(name, index=planned.index, title=planned.title)
                if planned.action is Action.SKIP:
                    view.state = view.state.SKIPPED
                    view.size = planned.dest.stat().st_size if planned.dest.exists() else 0
                    continue
                entry = manifest.chapter(name)
                workdir = plan.folder / WORK_DIR / f"{planned.index:04d}"
                if plan.mode is ResumeMode.REDOWNLOAD:
                    # "Fetch everything again": segments kept by an earlier run are not reused. A
                    # complete entry stays complete (its file is intact) until the chapter's new
                    # attempt starts, so a run killed before then loses nothing.
                    with suppress(OSError):
                        remove_tree(workdir)
                elif entry is not None and entry.status is ChapterStatus.COMPLETE:
                    manifest.mark_pending(name)  # its file failed the check: it proves nothing
                jobs.append(
                    ChapterJob(
                        index=planned.index,
                        track=track,
                        dest=planned.dest,
                        workdir=workdir,
                        view=view,
                    )
                )
        work = ChapterWork(
            book=plan.book,
            source=source,
            fetcher=fetcher,
            ffmpeg=ffmpeg,
            settings=settings,
            target=_TARGETS[settings.output_format],
            total_tracks=len(plan.playlist.tracks),
            stop=stop,
            log=log,
        )
        reporter.start(status)
        try:
            result = download_all_chapters(
                work, jobs, manifest=manifest, reporter=reporter, status=status
            )
        finally:
            reporter.stop()
        # Chapters proven complete never became jobs; the summary and --report count them too.
        result.chapters = sorted(
            [
                *result.chapters,
                *(
                    ChapterResult(
                        index=planned.index,
                        title=planned.title,
                        filename=planned.dest.name,
                        status="skipped",
                        bytes=0,
                    )
                    for planned in plan.chapters
                    if planned.action is Action.SKIP
                ),
            ],
            key=lambda chapter: chapter.index,
        )
        return result, status


@dataclass
class Runtime:
    """The long-lived parts of a run: one pooled session, the source, the stop flag."""

    settings: Settings
    session: requests.Session
    source: Source
    fetcher: Fetcher
    stop: threading.Event

    def close(self) -> None:
        self.session.close()


def open_runtime(settings: Settings, stop: threading.Event | None = None) -> Runtime:
    session = make_session(settings.connections)
    stop = stop or threading.Event()
    source = open_source(session, settings, wait=stop.wait)
    fetcher = Fetcher(
        session,
        connect_timeout=settings.connect_timeout,
        stall_timeout=settings.stall_timeout,
        transfer_timeout=settings.transfer_timeout,
        stop=stop,
        limiter=RateLimiter(settings.speed_limit) if settings.speed_limit else None,
    )
    return Runtime(settings=settings, session=session, source=source, fetcher=fetcher, stop=stop)
