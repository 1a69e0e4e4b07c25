"""Download a book (and ``--demo``, and the ``--report`` JSON).

Each action takes validated :class:`Settings` and an :class:`Output`, and returns an
:class:`ExitCode`. Errors are raised (``TokysnatcherError``) for ``cli.main`` to print.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from tokysnatcher import __version__
from tokysnatcher.config.settings import SOURCE_NAMES, OutputFormat, Quality, Settings
from tokysnatcher.download.plan import BookPlan, ResumeMode, check_destination, prepare
from tokysnatcher.download.results import RunResult
from tokysnatcher.download.run import Runtime, execute, open_run, open_runtime, run_state
from tokysnatcher.download.state import BatchState, BookPhase, BookRun, RunState
from tokysnatcher.errors import (
    ExitCode,
    FailureKind,
    FfmpegError,
    Interrupted,
    TokysnatcherError,
    UsageError,
)
from tokysnatcher.ffmpeg.binary import MP3_TO_AAC_NOTICE, FfmpegInfo, resolve_ffmpeg
from tokysnatcher.library.manifest import ManifestManager
from tokysnatcher.sources.registry import again_command
from tokysnatcher.store.records import BookRecords
from tokysnatcher.ui.display import visible
from tokysnatcher.ui.output import Output
from tokysnatcher.ui.status_file import status_file
from tokysnatcher.utils.atomic import atomic_write_json
from tokysnatcher.utils.units import format_bytes, format_duration

if TYPE_CHECKING:
    from concurrent.futures import Future

    from tokysnatcher.m4b.book import M4bResult

DEMO_SLUG = "the-sample-book"
DEMO_LATENCY = 0.15  # seconds per request
DEMO_BANDWIDTH = 20_000  # bytes per second per connection


def resume_command(plan: BookPlan, settings: Settings) -> str:
    return command_for([plan.book.source_url or plan.book.slug], settings)


def command_for(refs: list[str], settings: Settings) -> str:
    """The command that resumes ``refs`` with this run's folder, format, sites and chapters."""
    env: list[str] = []
    names: list[str] = []
    site: list[str] = []
    for ref in refs:
        again = again_command(ref, ref, settings, site_from_page=False)
        *prefix, _tool, name = again.head
        env += [part for part in prefix if part not in env]
        names.append(name)
        site = site or again.site
    parts = [*env, "tokysnatcher", *names, "-d", str(settings.directory)]
    parts += ["--format", str(settings.output_format)]
    if settings.output is not None and not settings.output.is_default:
        parts += ["-o", settings.output.text]
    parts += site
    if settings.chapters:
        parts += ["--chapters", str(settings.chapters)]
    # What the rest must be fetched as, so a resumed book is all of a piece.
    if settings.quality is not Quality.STANDARD:
        parts += ["--quality", str(settings.quality)]
    parts += ["--no-cover"] if settings.no_cover else []
    parts += ["--no-sidecars"] if settings.no_sidecars else []
    parts.append("--resume")
    return shlex.join(parts)


def _ask_resume(plan: BookPlan, output: Output) -> ResumeMode | None:
    """In a terminal: resume / redownload all / cancel (None).

    Ctrl-C exits 130 saying nothing was changed; end of input reaches ``cli.main`` (also 130).
    """
    from rich.prompt import Prompt

    from tokysnatcher.ui.line_input import prompt_stream

    done, total = plan.complete_count, len(plan.chapters)
    todo = total - done
    output.err.print(
        escape(
            visible(
                f"{plan.folder} already holds {done} of {total} chapters, checked against the "
                f"manifest (size and SHA-256)"
                + (f"; {todo} still to fetch." if todo else "; nothing is left to fetch.")
            )
        ),
        soft_wrap=True,
    )
    try:
        answer = Prompt.ask(
            escape("[r]esume, re[d]ownload all, or [c]ancel?"),
            choices=["r", "d", "c"],
            default="r",
            console=output.err,
            stream=prompt_stream(),
        )
    except KeyboardInterrupt:
        output.err.print()
        raise Interrupted("cancelled at the prompt; nothing was changed") from None
    return {"r": ResumeMode.RESUME, "d": ResumeMode.REDOWNLOAD}.get(answer)


def download(ref: str, settings: Settings, output: Output) -> ExitCode:
    """Download one book (or plan it with ``--dry-run``)."""
    ffmpeg = resolve_ffmpeg(settings.ffmpeg)
    runtime = open_runtime(settings, log=output.log, ref=ref)
    try:
        batch = BatchState(books=[BookRun(number=1, ref=ref, label=ref)])
        with status_file(settings.status_file, batch, warn=output.warn):
            code = download_book(batch.books[0], settings, output, runtime, ffmpeg, batch=batch)
            with batch.lock:
                batch.exit_code = code
            return code
    finally:
        runtime.close()


def download_book(
    book: BookRun,
    settings: Settings,
    output: Output,
    runtime: Runtime,
    ffmpeg: FfmpegInfo,
    *,
    batch: BatchState,
    planned: Future[BookPlan] | None = None,
    ask: bool = True,
) -> ExitCode:
    """Download one book through an open runtime: a single run's, or a batch's shared one.

    Every book of every run goes through here. ``book`` is its entry in ``batch``, which this
    keeps up to date (resolving, running, how it ended). ``planned``: the plan, resolved ahead
    while the previous book finished (its errors are raised here). ``ask``: a terminal may be
    asked whether to resume (never during a batch).
    """
    with batch.lock:
        book.resolving()
    # The archive and history record every book, of a single run, a batch or the queue.
    with _ends_book(book, batch), BookRecords.open(settings, output) as records:
        if records.already_done(runtime.source, book.ref):
            return _ended(book, batch, ExitCode.OK)
        mode = ResumeMode.REDOWNLOAD if settings.force_redownload else ResumeMode.RESUME
        if planned is not None:
            plan = planned.result()
        else:
            plan = prepare(book.ref, settings, runtime.source, mode=mode)
        with batch.lock:
            book.resolved(plan.book.title, plan.book.author, plan.book.source_url)
        for warning in plan.warnings:
            output.warn(warning)
        if settings.dry_run:
            check_destination(plan, create=False)
            _say_encodes(plan, output)
            output.plan(plan)
            return _ended(book, batch, ExitCode.OK)
        # A prompt only when there is something to lose: chapters proven complete.
        if (
            ask
            and plan.complete_count
            and not settings.resume
            and not settings.force_redownload
            and output.interactive
        ):
            choice = _ask_resume(plan, output)
            if choice is None:
                output.info("cancelled; nothing was changed")
                return _ended(book, batch, ExitCode.OK)
            if choice is ResumeMode.REDOWNLOAD:
                plan = prepare(book.ref, settings, runtime.source, mode=choice)
        if plan.complete_count:  # the view's header says the rest; this says what resume skips
            output.info(
                f"{plan.complete_count} of {len(plan.chapters)} chapters already complete "
                f"(size and SHA-256 checked); fetching {len(plan.to_fetch)}"
            )
        state = run_state(plan, settings)
        with batch.lock:
            book.running(state)
        # One tokysnatcher per book, from the first write to the last; one manifest for all.
        with open_run(plan, settings) as manifest:
            reporter = output.reporter(settings.segment_retries, batch=batch)
            reporter.start(state)
            try:
                result = execute(plan, settings, runtime, ffmpeg, manifest, state, reporter)
                if settings.output_format is OutputFormat.M4B and result.ok:
                    joined = finish_m4b(plan, settings, ffmpeg, runtime, manifest, state)
                else:
                    joined = None
            finally:
                reporter.stop()
        if joined is not None:
            say_m4b(joined, output)
        code, why = _outcome(plan, result)
        records.ran(plan, state, result, code)  # first: a report that cannot be written is no
        if settings.report is not None:  # reason to forget a finished book
            write_report(settings.report, plan, result)
        output.summary(result, state, resume_command(plan, settings))
        if result.ok and plan.playlist.unavailable:
            output.error_line(
                f"the book is incomplete: {why}",
                "Run the same command again once the site publishes them.",
            )
        return _ended(book, batch, code, why)


def _outcome(plan: BookPlan, result: RunResult) -> tuple[ExitCode, str]:
    """How the book's run ended: its exit code, and what went wrong ("" when nothing did)."""
    if result.interrupted:
        return ExitCode.INTERRUPTED, "interrupted"
    if result.ok and plan.playlist.unavailable:
        # The book is not complete until the site publishes them: it fails.
        names = ", ".join(plan.playlist.unavailable)
        return ExitCode.FAILED, f"not available on the site yet: {names}"
    if result.ok:
        return ExitCode.OK, ""
    if result.stopped_by is not None:
        return ExitCode.FAILED, result.stopped_by.message
    return ExitCode.FAILED, f"{len(result.failed)} of {len(result.chapters)} chapters failed"


@contextmanager
def _ends_book(book: BookRun, batch: BatchState) -> Iterator[None]:
    """An error or Ctrl-C that leaves the block ends ``book``: failed, or interrupted."""
    try:
        yield
    except TokysnatcherError as err:
        phase = BookPhase.INTERRUPTED if isinstance(err, Interrupted) else BookPhase.FAILED
        with batch.lock:
            book.ended(phase, err.message)
        raise
    except KeyboardInterrupt:
        with batch.lock:
            book.ended(BookPhase.INTERRUPTED, "interrupted")
        raise


def _ended(book: BookRun, batch: BatchState, code: ExitCode, why: str = "") -> ExitCode:
    """``book`` ended with ``code`` (``why``: what went wrong); returns ``code``."""
    phase = {ExitCode.OK: BookPhase.COMPLETE, ExitCode.INTERRUPTED: BookPhase.INTERRUPTED}
    with batch.lock:
        book.ended(phase.get(code, BookPhase.FAILED), why)
    return code


def _say_encodes(plan: BookPlan, output: Output) -> None:
    """The plan's word on what ``--format m4a`` does to the audio (the run says it on its own).

    Direct files are MP3 (API §2); what an HLS stream carries (AAC, sometimes MP3) shows only
    once its audio is fetched.
    """
    if plan.output_format is not OutputFormat.M4A or not plan.to_fetch:
        return
    tracks = [plan.playlist.tracks[chapter.index - 1] for chapter in plan.to_fetch]
    if any(track.is_direct for track in tracks):
        output.warn(MP3_TO_AAC_NOTICE)
    else:
        output.info("m4a: AAC audio is kept as served; MP3 audio would be encoded to AAC")


def finish_m4b(
    plan: BookPlan,
    settings: Settings,
    ffmpeg: FfmpegInfo,
    runtime: Runtime,
    manifest: ManifestManager,
    state: RunState,
) -> M4bResult:
    """Join the downloaded parts into the book's single ``.m4b`` (chapters, tags, cover).

    The live view shows the join as its own step (``joining m4b N%``) from ``state``.
    """
    from tokysnatcher.m4b.book import make_book_file

    def joining(fraction: float) -> None:
        with state.lock:
            state.joining = fraction

    again = f"Run {resume_command(plan, settings)} to join them again."
    stopped = "stopped while joining the chapters into the m4b"
    joining(0.0)
    try:
        return make_book_file(
            plan,
            settings,
            ffmpeg,
            runtime.fetcher,
            runtime.stop,
            manifest,
            log=runtime.log,
            on_progress=joining,
        )
    except KeyboardInterrupt as err:
        interrupted(state)
        raise Interrupted(stopped, hint=again) from err
    except FfmpegError as err:
        if err.kind is FailureKind.CANCELLED:
            interrupted(state)
            raise Interrupted(stopped, hint=again) from err
        if not err.hint:
            err.hint = f"The chapters are kept in {plan.chapters[0].dest.parent}. {again}"
        raise
    finally:
        with state.lock:
            state.joining = None


def interrupted(state: RunState) -> None:
    """The live view's last frame says the run was interrupted."""
    with state.lock:
        state.interrupted = True


def say_m4b(made: M4bResult, output: Output) -> None:
    """What the join made: the book file, and where the parts stay."""
    if made.transcoded and made.rebuilt:
        output.warn(
            "the source audio is MP3: it was transcoded to AAC for the m4b "
            "(each chapter join carries about 35 ms of encoder padding)"
        )
    state = "made" if made.rebuilt else "already complete, verified"
    output.info(
        f"book file ({state}): {made.path} - {made.chapters} chapters, "
        f"{format_duration(made.seconds)}, {format_bytes(made.size)}"
        + ("" if made.cover or not made.rebuilt else ", no cover")
    )
    if made.kept_parts:
        output.info(f"chapter files kept next to it (--keep-parts): {len(made.kept_parts)}")
    output.info(
        f"chapter parts kept in {made.parts_dir} ({format_bytes(made.parts_bytes)}): "
        "--resume rebuilds the m4b from them without downloading again"
    )


def report_data(plan: BookPlan, result: RunResult) -> dict[str, Any]:
    """The ``--report`` JSON (SPEC §6, with issue 12's labelled figures).

    ``success_rate`` counts only chapters that reached an end (None when none did);
    ``file_bytes`` are sizes on disk, ``downloaded_bytes`` what came over the network.
    """
    chapters = result.chapters
    complete = sum(1 for c in chapters if c.status == "complete")
    return {
        "tool_version": __version__,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "book": {
            "title": plan.book.title,
            "author": plan.book.author,
            "source_url": plan.book.source_url,
            "folder": str(plan.folder),
            "format": str(plan.output_format),
        },
        "summary": {
            "complete": complete,
            "failed": len(result.failed),
            "skipped": sum(1 for c in chapters if c.status == "skipped"),
            "not_finished": sum(1 for c in chapters if c.status == "pending"),
            "chapter_retries": result.chapter_retries,
            "request_retries": result.request_retries,
            "success_rate": result.success_rate,
            "file_bytes": result.file_bytes,
            "downloaded_bytes": result.bytes_received,
            "seconds": round(result.seconds, 3),
            "average_speed": (result.bytes_received / result.seconds) if result.seconds else 0.0,
            "interrupted": result.interrupted,
            "stopped_by": result.stopped_by.message if result.stopped_by else None,
        },
        "chapters": [
            {
                "index": c.index,
                "title": c.title,
                "file": c.filename,
                "status": c.status,
                "attempts": c.attempts,
                "chapter_retries": c.chapter_retries,
                "request_retries": c.request_retries,
                "failure_kinds": c.kinds,
                "error": {"kind": c.kind, "message": c.message} if c.status == "failed" else None,
                "file_bytes": c.file_size,
                "downloaded_bytes": c.bytes_received,
                "seconds": round(c.seconds, 3),
                "average_speed": (c.bytes_received / c.seconds) if c.seconds else 0.0,
            }
            for c in chapters
        ],
    }


def write_report(path: Path, plan: BookPlan, result: RunResult) -> None:
    try:
        atomic_write_json(path, report_data(plan, result))
    except OSError as err:
        raise UsageError(f"--report {path}: cannot write ({err})") from err


def demo(
    settings: Settings, output: Output, *, directory_given: bool, site: str | None = None
) -> ExitCode:
    """Start a stand-in site on 127.0.0.1 and download its sample book.

    ``site`` (``--demo librivox``, or ``--source librivox``) picks the LibriVox stand-in.
    """
    from tokysnatcher.standin import Faults, StandinSite

    name = (site or settings.source).strip().lower()
    if name not in SOURCE_NAMES:
        raise UsageError(
            f"--demo: no stand-in site named {site!r}",
            hint=f"Use --demo alone, or one of: {', '.join(SOURCE_NAMES)}.",
        )
    folder = (
        settings.directory
        if directory_given
        else Path(tempfile.mkdtemp(prefix="tokysnatcher-demo-"))
    )
    if name == "librivox":
        return _librivox_demo(settings, output, folder)
    output.info(
        "starting the bundled stand-in site on 127.0.0.1 (generating audio on first use)..."
    )
    # A local server answers in microseconds; a distant one's latency and a modest per-connection
    # rate make the demo last a few seconds, long enough to watch the live view work.
    with (
        StandinSite(faults=Faults(latency=DEMO_LATENCY, bandwidth=DEMO_BANDWIDTH)) as standin,
        _demo_records() as data,
    ):
        demo_settings = settings.replace(
            base_url=standin.base_url, directory=folder, data_dir=data, download_archive=None
        )
        output.info(f"stand-in site at {standin.base_url}; downloading {DEMO_SLUG!r} into {folder}")
        code = download(DEMO_SLUG, demo_settings, output)
    output.info(f"demo finished; your files are under {folder}")
    return code


@contextmanager
def _demo_records() -> Iterator[Path]:
    """A data folder of the demo's own: the sample book is no real book, and stays out of the
    user's archive and history."""
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-demo-data-") as data:
        yield Path(data)


def _librivox_demo(settings: Settings, output: Output, folder: Path) -> ExitCode:
    """The LibriVox stand-in's sample book, as one m4b."""
    from tokysnatcher.standin import Faults
    from tokysnatcher.standin.librivox.catalog import SAMPLE_ID, default_catalog
    from tokysnatcher.standin.librivox.server import LibrivoxSite

    output.info(
        "starting the bundled LibriVox stand-in on 127.0.0.1 (generating audio on first use)..."
    )
    faults = Faults(latency=DEMO_LATENCY, bandwidth=DEMO_BANDWIDTH)
    sample = {SAMPLE_ID: default_catalog()[SAMPLE_ID]}  # only its audio is generated
    with LibrivoxSite(sample, faults=faults) as site, _demo_records() as data:
        demo_settings = settings.replace(
            data_dir=data,
            download_archive=None,
            librivox_url=site.base_url,
            archive_url=site.base_url,
            librivox_interval=0.0,  # a local site: no need to be polite
            output_format=OutputFormat.M4B,
            directory=folder,
        )
        ref = f"librivox:{SAMPLE_ID}"
        output.info(f"stand-in LibriVox at {site.base_url}; downloading {ref} into {folder}")
        code = download(ref, demo_settings, output)
    output.info(f"demo finished; your files are under {folder}")
    return code
