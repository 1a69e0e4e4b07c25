"""Carry a plan out: claim the book folder once, open its manifest once, run the scheduler.

The folder lock and the manifest are opened here and handed forward: to the scheduler
(``download/scheduler.py``) and, for an m4b, to the join that follows the chapters.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

from tokysnatcher import __version__
from tokysnatcher.config.settings import OutputFormat, Settings
from tokysnatcher.download.chapter import ChapterJob, ChapterWork
from tokysnatcher.download.plan import (
    TARGETS,
    Action,
    BookPlan,
    ResumeMode,
    book_info,
    check_destination,
)
from tokysnatcher.download.results import RunResult, chapter_result
from tokysnatcher.download.scheduler import download_all_chapters
from tokysnatcher.download.state import Chapter, RunState
from tokysnatcher.errors import DiskError, DownloadError, FailureKind
from tokysnatcher.ffmpeg.binary import FfmpegInfo
from tokysnatcher.library.manifest import ChapterStatus, ManifestManager
from tokysnatcher.library.manifest_schema import JOIN_DIR_NAME, PARTS_DIR_NAME, WORK_DIR_NAME
from tokysnatcher.library.sidecars import sidecar_files, write_sidecars
from tokysnatcher.m4b.cover import fetch_cover_jpeg
from tokysnatcher.net.http import Fetcher, make_session
from tokysnatcher.net.limits import MAX_CONNECTIONS, RateLimiter, start_limit
from tokysnatcher.sources.registry import open_source
from tokysnatcher.sources.source import Source
from tokysnatcher.ui.status import Reporter
from tokysnatcher.utils.atomic import folder_lock, remove_stale_temps
from tokysnatcher.utils.links import remove_links_in, remove_tree

COVER_DIR_NAME = "cover"  # under WORK_DIR_NAME: the run's cover image, removed at its end


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
    work = plan.folder / WORK_DIR_NAME
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
    work = folder / WORK_DIR_NAME
    for empty in (work / PARTS_DIR_NAME, work / COVER_DIR_NAME, work):
        try:
            empty.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return  # not empty: partial work is kept for the next run


@contextmanager
def open_run(plan: BookPlan, settings: Settings) -> Iterator[ManifestManager]:
    """Claim the book folder (see :func:`claim_folder`) and open its manifest, once per run.

    Everything the run writes (the scheduler, an m4b's join) uses the manifest yielded here.
    """
    with claim_folder(plan):
        manifest = ManifestManager.open(
            plan.folder, book_info(plan, settings), tool_version=__version__
        )
        yield manifest


def run_state(plan: BookPlan, settings: Settings) -> RunState:
    """The run's state: a :class:`Chapter` per planned chapter, all waiting."""
    state = RunState(
        book_title=plan.book.title,
        author=plan.book.author,
        destination=plan.folder,
        book_chapters=len(plan.playlist.tracks),
        connections=start_limit(settings.connections),
        speed_limit=settings.speed_limit,
        stall_timeout=settings.stall_timeout,
        parts=settings.output_format is OutputFormat.M4B,
    )
    for planned in plan.chapters:
        state.chapters[planned.index] = Chapter(
            index=planned.index, title=planned.title, filename=planned.dest.name
        )
    return state


def execute(
    plan: BookPlan,
    settings: Settings,
    runtime: Runtime,
    ffmpeg: FfmpegInfo,
    manifest: ManifestManager,
    state: RunState,
    reporter: Reporter,
) -> RunResult:
    """Download every chapter the plan fetches; the manifest records each state change.

    ``manifest`` is the one :func:`open_run` opened; ``state`` holds a chapter per planned one.
    """
    jobs: list[ChapterJob] = []
    with manifest.batch():  # one save for the whole setup, not one per chapter
        manifest.set_format(str(settings.output_format))
        if manifest.rejected:
            manifest.save()  # the unsafe entries it was read with are gone from disk too
        for planned in plan.chapters:
            track = plan.playlist.tracks[planned.index - 1]
            chapter = state.chapters[planned.index]
            name = planned.dest.name
            manifest.ensure_chapter(name, index=planned.index, title=planned.title)
            if planned.action is Action.SKIP:
                chapter.skipped(planned.dest.stat().st_size if planned.dest.exists() else 0)
                continue
            entry = manifest.chapter(name)
            workdir = plan.folder / WORK_DIR_NAME / f"{planned.index:04d}"
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
                    state=chapter,
                )
            )
    cover = book_cover(plan, settings, runtime, ffmpeg)
    try:
        if not settings.no_sidecars:
            files = sidecar_files(plan.book, plan.playlist.tracks, _read(cover))
            try:
                write_sidecars(plan.folder, files, manifest)
            except DiskError as err:  # the chapters meet it too, and stop the run as they do
                runtime.log(f"files beside the audio not written: {err.message}", "warning")
        work = ChapterWork(
            book=plan.book,
            cover=cover if settings.output_format is not OutputFormat.M4B else None,
            source=runtime.source,
            fetcher=runtime.fetcher,
            ffmpeg=ffmpeg,
            settings=settings,
            target=TARGETS[settings.output_format],
            total_tracks=len(plan.playlist.tracks),
            stop=runtime.stop,
            log=runtime.log,
        )
        result = download_all_chapters(
            work, jobs, manifest=manifest, reporter=reporter, state=state, log=runtime.log
        )
    finally:
        if cover is not None:
            with suppress(OSError):
                cover.unlink()
    # Chapters proven complete never became jobs; the summary and --report count them too.
    result.chapters = sorted(
        [
            *result.chapters,
            *(
                chapter_result(state.chapters[planned.index], now=0.0)
                for planned in plan.chapters
                if planned.action is Action.SKIP
            ),
        ],
        key=lambda chapter: chapter.index,
    )
    return result


def book_cover(
    plan: BookPlan, settings: Settings, runtime: Runtime, ffmpeg: FfmpegInfo
) -> Path | None:
    """The book's cover as a JPEG in its work folder, when a sidecar or a chapter needs it.

    ``--no-cover`` means no cover at all: none embedded, no ``cover.jpg``.
    """
    embeds = settings.output_format is not OutputFormat.M4B and bool(plan.to_fetch)
    if not plan.book.cover_url or settings.no_cover or (settings.no_sidecars and not embeds):
        return None
    try:
        return fetch_cover_jpeg(
            plan.book.cover_url,
            runtime.fetcher,
            ffmpeg,
            plan.folder / WORK_DIR_NAME / COVER_DIR_NAME,
            log=runtime.log,
        )
    except DiskError as err:  # the chapters meet it too, and stop the run as they do
        runtime.log(f"cover not used: {err.message}", "warning")
    except DownloadError as err:
        if err.kind is not FailureKind.CANCELLED:
            raise
    return None  # no cover, or the run is stopping (the scheduler ends it as interrupted)


def _read(path: Path | None) -> bytes | None:
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


@dataclass
class Runtime:
    """The long-lived parts of a run: one pooled session, the source, the stop flag.

    ``log(message, level)`` prints a message of the run (a renewed token, an m4b step).
    """

    settings: Settings
    session: requests.Session
    source: Source
    fetcher: Fetcher
    stop: threading.Event
    log: Callable[[str, str], None]

    def close(self) -> None:
        self.session.close()

    def with_own_source(self, ref: str) -> Runtime:
        """The same session, limits and stop flag, with a source of its own for ``ref``.

        A source holds the credentials of the book it resolved last: a batch resolves the next
        book on another one while the current book's requests go on with theirs. Books of a
        batch may come from different sources.
        """
        source = open_source(self.session, self.settings, wait=self.stop.wait, ref=ref)
        return dataclasses.replace(self, source=source)


def open_runtime(
    settings: Settings,
    stop: threading.Event | None = None,
    *,
    log: Callable[[str, str], None] = lambda message, level: None,
    ref: str | None = None,
) -> Runtime:
    """The run's session, stop flag and fetcher, and the source of ``ref`` (or ``--source``)."""
    session = make_session(MAX_CONNECTIONS)  # the most connections the limit may reach
    stop = stop or threading.Event()
    source = open_source(session, settings, wait=stop.wait, ref=ref)
    fetcher = Fetcher(
        session,
        connect_timeout=settings.connect_timeout,
        stall_timeout=settings.stall_timeout,
        transfer_timeout=settings.transfer_timeout,
        stop=stop,
        limiter=RateLimiter(settings.speed_limit) if settings.speed_limit else None,
    )
    return Runtime(
        settings=settings, session=session, source=source, fetcher=fetcher, stop=stop, log=log
    )
