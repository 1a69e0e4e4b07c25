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
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from tokysnatcher import __version__
from tokysnatcher.config import OutputFormat, Settings
from tokysnatcher.core.chapter import ChapterJob, ChapterWork
from tokysnatcher.core.download import RunResult, download_all_chapters
from tokysnatcher.core.ffmpeg import FfmpegInfo, Target
from tokysnatcher.core.http import Fetcher, RateLimiter, make_session
from tokysnatcher.core.status import ChapterView, Reporter, RunStatus
from tokysnatcher.errors import UsageError
from tokysnatcher.sources.tokybook import Book, Playlist, TokybookClient, parse_book_ref
from tokysnatcher.utils.filenames import book_dir, chapter_filename
from tokysnatcher.utils.manifest import BookInfo, ChapterStatus, ManifestManager
from tokysnatcher.utils.units import parse_chapter_spec

WORK_DIR = ".tokysnatcher"
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
    playlist: Playlist
    folder: Path
    output_format: OutputFormat
    chapters: list[PlannedChapter]
    manifest: ManifestManager | None
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
    client: TokybookClient,
    *,
    mode: ResumeMode = ResumeMode.RESUME,
) -> BookPlan:
    """Resolve the book and decide per chapter: download, skip (proven complete) or redo."""
    slug = parse_book_ref(ref, settings.base_url)
    check_library_root(settings.directory)
    book = client.book(slug)
    playlist = client.playlist(book)
    if not playlist.tracks:
        raise UsageError(f"the book {book.title!r} lists no chapter with audio")
    folder = book_dir(settings.directory, book.author, book.title)
    total = len(playlist.tracks)
    wanted = (
        parse_chapter_spec(settings.chapters, total)
        if settings.chapters
        else list(range(1, total + 1))
    )
    manifest = ManifestManager.load(folder)
    warnings = [f"track without audio skipped: {title}" for title in playlist.skipped]
    if manifest is not None:
        warnings.extend(manifest.warnings)
        old = manifest.data.get("book", {}).get("format")
        if old and old != settings.output_format and mode is ResumeMode.RESUME:
            raise UsageError(
                f"{folder} was downloaded as {old}, not {settings.output_format}",
                hint=f"Use --format {old} to resume it, or --force-redownload to replace it.",
            )
    extension = "m4a" if settings.output_format is OutputFormat.M4B else settings.output_format
    part_dir = folder / WORK_DIR / "parts"
    chapters: list[PlannedChapter] = []
    for index in wanted:
        track = playlist.tracks[index - 1]
        name = chapter_filename(index, total, track.title, extension)
        dest = (part_dir if settings.output_format is OutputFormat.M4B else folder) / name
        action, reason = Action.DOWNLOAD, "new"
        if manifest is not None and manifest.chapter(name) is not None:
            if mode is ResumeMode.REDOWNLOAD:
                action, reason = Action.REDO, "--force-redownload"
            else:
                check = manifest.check_chapter(name)
                if check == "ok":
                    action, reason = Action.SKIP, "complete (size and SHA-256 match)"
                else:
                    action, reason = Action.REDO, str(check).replace("_", " ")
        estimate = (
            int(track.duration * _BYTES_PER_SECOND[settings.output_format])
            if track.duration
            else None
        )
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
    return BookPlan(
        book=book,
        playlist=playlist,
        folder=folder,
        output_format=settings.output_format,
        chapters=chapters,
        manifest=manifest,
        warnings=warnings,
    )


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
    if create:
        try:
            (plan.folder / WORK_DIR).mkdir(parents=True, exist_ok=True)
            # A real write proves the folder is writable even where os.access is optimistic.
            with tempfile.TemporaryFile(dir=plan.folder / WORK_DIR):
                pass
        except OSError as err:
            code = errno.errorcode.get(err.errno or 0, "")
            raise UsageError(
                f"cannot write to {plan.folder}: {err.strerror or code}",
                hint="Choose another folder with -d.",
            ) from err


def book_info(plan: BookPlan, settings: Settings) -> BookInfo:
    return BookInfo(
        title=plan.book.title,
        author=plan.book.author,
        source_url=plan.book.source_url,
        slug=plan.book.slug,
        format=str(settings.output_format),
        chapter_count=len(plan.playlist.tracks),
        narrator=plan.book.narrator,
        year=plan.book.year,
    )


def execute(
    plan: BookPlan,
    settings: Settings,
    client: TokybookClient,
    fetcher: Fetcher,
    ffmpeg: FfmpegInfo,
    reporter: Reporter,
    stop: threading.Event,
    *,
    log: Callable[[str, str], None],
) -> tuple[RunResult, RunStatus]:
    """Download every chapter the plan fetches; the manifest records each state change."""
    check_destination(plan, create=True)
    manifest = ManifestManager.open(
        plan.folder, book_info(plan, settings), tool_version=__version__
    )
    if manifest.data.get("book", {}).get("format") != settings.output_format:
        manifest.set_format(str(settings.output_format))
    status = RunStatus(
        book_title=plan.book.title,
        author=plan.book.author,
        destination=plan.folder,
        total_chapters=len(plan.chapters),
        connections=settings.connections,
        speed_limit=settings.speed_limit,
    )
    jobs: list[ChapterJob] = []
    for planned in plan.chapters:
        track = plan.playlist.tracks[planned.index - 1]
        view = ChapterView(index=planned.index, title=planned.title, filename=planned.dest.name)
        status.chapters[planned.index] = view
        manifest.ensure_chapter(planned.dest.name, index=planned.index, title=planned.title)
        if planned.action is Action.SKIP:
            view.state = view.state.SKIPPED
            view.size = planned.dest.stat().st_size if planned.dest.exists() else 0
            continue
        if manifest.chapter(planned.dest.name).status is ChapterStatus.COMPLETE:  # type: ignore[union-attr]
            manifest.mark_pending(planned.dest.name)
        jobs.append(
            ChapterJob(
                index=planned.index,
                track=track,
                dest=planned.dest,
                workdir=plan.folder / WORK_DIR / f"{planned.index:04d}",
                view=view,
            )
        )
    work = ChapterWork(
        book=plan.book,
        client=client,
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
    return result, status


@dataclass
class Runtime:
    """The long-lived parts of a run: one pooled session, the site client, the stop flag."""

    settings: Settings
    client: TokybookClient
    fetcher: Fetcher
    stop: threading.Event

    def close(self) -> None:
        self.client.session.close()


def open_runtime(settings: Settings, stop: threading.Event | None = None) -> Runtime:
    session = make_session(settings.connections)
    stop = stop or threading.Event()
    client = TokybookClient(
        session,
        settings.base_url,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.stall_timeout,
    )
    fetcher = Fetcher(
        session,
        connect_timeout=settings.connect_timeout,
        stall_timeout=settings.stall_timeout,
        stop=stop,
        limiter=RateLimiter(settings.speed_limit) if settings.speed_limit else None,
    )
    return Runtime(settings=settings, client=client, fetcher=fetcher, stop=stop)
