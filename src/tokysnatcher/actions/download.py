"""Download a book (and ``--demo``, and the ``--report`` JSON).

Each action takes validated :class:`Settings` and an :class:`Output`, and returns an
:class:`ExitCode`. Errors are raised (``TokysnatcherError``) for ``cli.main`` to print.
"""

from __future__ import annotations

import shlex
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from tokysnatcher import __version__
from tokysnatcher.config.settings import OutputFormat, Settings
from tokysnatcher.download.plan import BookPlan, ResumeMode, check_destination, prepare
from tokysnatcher.download.results import RunResult
from tokysnatcher.download.run import Runtime, execute, open_run, open_runtime, run_state
from tokysnatcher.download.state import RunState
from tokysnatcher.errors import ExitCode, FailureKind, FfmpegError, Interrupted, UsageError
from tokysnatcher.ffmpeg.binary import MP3_TO_AAC_NOTICE, FfmpegInfo, resolve_ffmpeg
from tokysnatcher.library.manifest import ManifestManager
from tokysnatcher.sources.tokybook import base_url_args
from tokysnatcher.store.records import BookRecords
from tokysnatcher.ui.display import visible
from tokysnatcher.ui.output import Output
from tokysnatcher.utils.atomic import atomic_write_json
from tokysnatcher.utils.units import format_bytes, format_duration

if TYPE_CHECKING:
    from tokysnatcher.m4b.book import M4bResult

DEMO_SLUG = "the-sample-book"
DEMO_LATENCY = 0.15  # seconds per request
DEMO_BANDWIDTH = 20_000  # bytes per second per connection


def resume_command(plan: BookPlan, settings: Settings) -> str:
    parts = ["tokysnatcher", plan.book.source_url, "-d", str(settings.directory)]
    parts += ["--format", str(settings.output_format)]
    parts += base_url_args(settings.base_url)
    if settings.chapters:
        parts += ["--chapters", str(settings.chapters)]
    parts.append("--resume")
    return shlex.join(parts)


def _ask_resume(plan: BookPlan, output: Output) -> ResumeMode | None:
    """In a terminal: resume / redownload all / cancel (None).

    Ctrl-C exits 130 saying nothing was changed; end of input reaches ``cli.main`` (also 130).
    """
    from rich.prompt import Prompt

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
        )
    except KeyboardInterrupt:
        output.err.print()
        raise Interrupted("cancelled at the prompt; nothing was changed") from None
    return {"r": ResumeMode.RESUME, "d": ResumeMode.REDOWNLOAD}.get(answer)


def download(ref: str, settings: Settings, output: Output) -> ExitCode:
    """Download one book (or plan it with ``--dry-run``), recorded in the archive and history."""
    with BookRecords.open(settings, output) as records:
        return _download(ref, settings, output, records)


def _download(ref: str, settings: Settings, output: Output, records: BookRecords) -> ExitCode:
    ffmpeg = resolve_ffmpeg(settings.ffmpeg)
    runtime = open_runtime(settings, log=output.log)
    try:
        if records.already_done(runtime.source, ref):
            return ExitCode.OK
        mode = ResumeMode.REDOWNLOAD if settings.force_redownload else ResumeMode.RESUME
        plan = prepare(ref, settings, runtime.source, mode=mode)
        for warning in plan.warnings:
            output.warn(warning)
        if settings.dry_run:
            check_destination(plan, create=False)
            _say_encodes(plan, output)
            output.plan(plan)
            return ExitCode.OK
        # A prompt only when there is something to lose: chapters proven complete.
        if (
            plan.complete_count
            and not settings.resume
            and not settings.force_redownload
            and output.interactive
        ):
            choice = _ask_resume(plan, output)
            if choice is None:
                output.info("cancelled; nothing was changed")
                return ExitCode.OK
            if choice is ResumeMode.REDOWNLOAD:
                plan = prepare(ref, settings, runtime.source, mode=choice)
        if plan.complete_count:  # the view's header says the rest; this says what resume skips
            output.info(
                f"{plan.complete_count} of {len(plan.chapters)} chapters already complete "
                f"(size and SHA-256 checked); fetching {len(plan.to_fetch)}"
            )
        state = run_state(plan, settings)
        # One tokysnatcher per book, from the first write to the last; one manifest for all.
        with open_run(plan, settings) as manifest:
            reporter = output.reporter(settings.segment_retries)
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
        if settings.report is not None:
            write_report(settings.report, plan, result)
        output.summary(result, state, resume_command(plan, settings))
        if result.interrupted:
            code = ExitCode.INTERRUPTED
        else:
            code = ExitCode.OK if result.ok else ExitCode.FAILED
        records.ran(plan, state, result, code)
        return code
    finally:
        runtime.close()


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


def demo(settings: Settings, output: Output, *, directory_given: bool) -> ExitCode:
    """Start the stand-in site on 127.0.0.1 and download its sample book."""
    from tokysnatcher.standin import Faults, StandinSite

    folder = (
        settings.directory
        if directory_given
        else Path(tempfile.mkdtemp(prefix="tokysnatcher-demo-"))
    )
    output.info(
        "starting the bundled stand-in site on 127.0.0.1 (generating audio on first use)..."
    )
    # A local server answers in microseconds; a distant one's latency and a modest per-connection
    # rate make the demo last a few seconds, long enough to watch the live view work.
    with (
        StandinSite(faults=Faults(latency=DEMO_LATENCY, bandwidth=DEMO_BANDWIDTH)) as site,
        # The sample book is no real book: it stays out of the user's archive and history.
        tempfile.TemporaryDirectory(prefix="tokysnatcher-demo-data-") as data,
    ):
        demo_settings = settings.replace(
            base_url=site.base_url, directory=folder, data_dir=Path(data), download_archive=None
        )
        output.info(f"stand-in site at {site.base_url}; downloading {DEMO_SLUG!r} into {folder}")
        code = download(DEMO_SLUG, demo_settings, output)
    output.info(f"demo finished; your files are under {folder}")
    return code
