"""The ``tokysnatcher`` command: options -> Settings -> actions, errors -> exit codes.

Nothing here decides how a book is downloaded; this module parses, dispatches to ``actions``,
prints what they return and maps errors to exit codes (SPEC §2).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from typer.exceptions import TyperException

from tokysnatcher import __version__
from tokysnatcher.config import OutputFormat, Settings, Verbosity
from tokysnatcher.config.sources import load_settings
from tokysnatcher.errors import ExitCode, TokysnatcherError, UsageError
from tokysnatcher.render import Output

EPILOG = """\
[bold]Examples[/bold]

  Download a book (mp3, into ~/Music/Audiobooks/<Author>/<Title>/):
    [cyan]tokysnatcher https://tokybook.com/post/some-book[/cyan]

  One m4b with chapter markers, into another folder:
    [cyan]tokysnatcher some-book --format m4b -d ~/Audiobooks[/cyan]

  Resume an interrupted download without a prompt:
    [cyan]tokysnatcher some-book --resume[/cyan]

  See what would happen, write nothing:
    [cyan]tokysnatcher some-book --dry-run[/cyan]

  Check a book folder against its manifest / list every download:
    [cyan]tokysnatcher --verify-folder "~/Music/Audiobooks/Author/Title"[/cyan]
    [cyan]tokysnatcher --list-downloads[/cyan]

  Search, or try everything against the bundled stand-in site:
    [cyan]tokysnatcher -s "sherlock"[/cyan]
    [cyan]tokysnatcher --demo[/cyan]
"""

DOWNLOAD = "Download"
RETRY = "Retry & network"
LIBRARY = "Library"
OUTPUT = "Output"

app = typer.Typer(
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tokysnatcher {__version__}")
        raise typer.Exit()


@app.command(epilog=EPILOG, no_args_is_help=False)
def command(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Argument(
            help="Book page URL (https://tokybook.com/post/<slug>, with or without scheme), "
            "a URL on --base-url's host, or the bare slug.",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "-d",
            "--directory",
            help="Library root; a book goes to DIR/<Author>/<Title>/. "
            "[default: <music dir>/Audiobooks]",
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat | None,
        typer.Option(
            "--format",
            help="mp3: a file per chapter; m4a: a file per chapter, AAC as served; "
            "m4b: one audiobook file with chapter markers. [default: mp3]",
            rich_help_panel=DOWNLOAD,
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    chapters: Annotated[
        str | None,
        typer.Option(
            "--chapters",
            metavar="SPEC",
            help="Only these chapters, e.g. 1-3,7 or 5- (to the end).",
            rich_help_panel=DOWNLOAD,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Skip chapters the manifest proves complete (size + SHA-256); no prompt.",
            rich_help_panel=DOWNLOAD,
        ),
    ] = False,
    force_redownload: Annotated[
        bool,
        typer.Option(
            "--force-redownload",
            help="Ignore the manifest and fetch every chapter again.",
            rich_help_panel=DOWNLOAD,
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Resolve the book, check everything, print the plan; write nothing.",
            rich_help_panel=DOWNLOAD,
        ),
    ] = False,
    no_cover: Annotated[
        bool,
        typer.Option("--no-cover", help="m4b: do not embed the cover.", rich_help_panel=DOWNLOAD),
    ] = False,
    keep_parts: Annotated[
        bool,
        typer.Option(
            "--keep-parts",
            help="m4b: also keep the per-chapter files next to the m4b.",
            rich_help_panel=DOWNLOAD,
        ),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--jobs",
            help="Chapters in flight at once. [default: 2]",
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    connections: Annotated[
        int | None,
        typer.Option(
            "--connections",
            help="HTTP connections in flight at once, over all chapters. [default: 8]",
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries",
            help="Retries per chapter after its first try. [default: 3]",
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    retry_delay: Annotated[
        float | None,
        typer.Option(
            "--retry-delay",
            metavar="SECONDS",
            help="First backoff; doubles each retry (2 -> 4 -> 8 s). [default: 2]",
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    stall_timeout: Annotated[
        float | None,
        typer.Option(
            "--stall-timeout",
            metavar="SECONDS",
            help="No progress for this long (network or ffmpeg) = stalled: abort and retry. "
            "[default: 30]",
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    speed_limit: Annotated[
        str | None,
        typer.Option(
            "--speed-limit",
            metavar="RATE",
            help="Cap on the total download rate in bytes/s, e.g. 500K, 2M, 1.5MiB.",
            rich_help_panel=RETRY,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Site root. [env: TOKYSNATCHER_BASE_URL] [default: https://tokybook.com]",
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    ffmpeg: Annotated[
        str | None,
        typer.Option(
            "--ffmpeg",
            metavar="PATH",
            help="ffmpeg binary [env: TOKYSNATCHER_FFMPEG]; else ffmpeg on PATH; else the "
            "bundled one.",
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "-s", "--search", metavar="QUERY", help="Search the site.", rich_help_panel=LIBRARY
        ),
    ] = None,
    verify_folder: Annotated[
        Path | None,
        typer.Option(
            "--verify-folder",
            metavar="DIR",
            help="Verify a book folder against its manifest.",
            rich_help_panel=LIBRARY,
        ),
    ] = None,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep", help="With --verify-folder: also decode every file.", rich_help_panel=LIBRARY
        ),
    ] = False,
    list_downloads: Annotated[
        bool,
        typer.Option(
            "--list-downloads",
            help="Table of every book under the library root with its state.",
            rich_help_panel=LIBRARY,
        ),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Start the bundled stand-in site on 127.0.0.1 and download a sample book from "
            "it (into a temporary folder, or -d).",
            rich_help_panel=LIBRARY,
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", metavar="FILE", help="Write the run report as JSON.", rich_help_panel=OUTPUT
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "-q", "--quiet", help="Errors and one summary line only.", rich_help_panel=OUTPUT
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            help="More detail: -v events, -vv debug with tracebacks.",
            rich_help_panel=OUTPUT,
        ),
    ] = 0,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            metavar="NAME",
            help="Use the named profile of the config file.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Config file to read. [env: TOKYSNATCHER_CONFIG] "
            "[default: <user config dir>/tokysnatcher/config.toml]",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show the version and exit.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
) -> None:
    """Download audiobooks from tokybook.com: resumable, verified, and never stuck.

    Every chapter is retried with backoff, stalled transfers and conversions are restarted,
    and a manifest with SHA-256 hashes lets any download be resumed or verified.
    """
    verbosity = (
        Verbosity.QUIET
        if quiet
        else (Verbosity.DEBUG if verbose >= 2 else Verbosity.VERBOSE if verbose else None)
    )
    output = Output.for_terminal(verbosity or Verbosity.NORMAL)
    ctx.obj = output
    cli_values: dict[str, object] = {
        "directory": directory.expanduser() if directory else None,
        "output_format": output_format,
        "jobs": jobs,
        "connections": connections,
        "base_url": base_url,
        "ffmpeg": ffmpeg,
        "max_retries": max_retries,
        "retry_delay": retry_delay,
        "stall_timeout": stall_timeout,
        "speed_limit": speed_limit,
        "chapters": chapters,
        "resume": resume or None,
        "force_redownload": force_redownload or None,
        "dry_run": dry_run or None,
        "report": report,
        "verbosity": verbosity,
        "no_cover": no_cover or None,
        "keep_parts": keep_parts or None,
    }
    settings: Settings = load_settings(
        {k: v for k, v in cli_values.items() if v is not None},
        profile=profile,
        config_file=config,
    )
    output = Output.for_terminal(settings.verbosity)
    ctx.obj = output
    from tokysnatcher import actions  # imported late: keeps --help and --version fast

    exclusive = [
        name
        for name, on in (
            ("URL", url is not None),
            ("--search", search is not None),
            ("--verify-folder", verify_folder is not None),
            ("--list-downloads", list_downloads),
            ("--demo", demo),
        )
        if on
    ]
    if len(exclusive) > 1:
        raise UsageError(f"{' and '.join(exclusive)} cannot be used together")
    if deep and verify_folder is None:
        raise UsageError("--deep goes with --verify-folder")
    if demo:
        code = actions.demo(settings, output, directory_given=directory is not None)
    elif verify_folder is not None:
        code = actions.verify(verify_folder.expanduser(), settings, output, deep=deep)
    elif list_downloads:
        code = actions.list_library(settings, output)
    elif search is not None:
        code = actions.search(search, settings, output)
    elif url is not None:
        code = actions.download(url, settings, output)
    else:
        code = actions.interactive(settings, output)
    raise typer.Exit(int(code))


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the command and exit with its code."""
    signal.signal(signal.SIGTERM, _sigterm)
    output: Output | None = None
    try:
        command_obj = typer.main.get_command(app)
        args = list(sys.argv[1:] if argv is None else argv)
        with command_obj.make_context("tokysnatcher", args) as ctx:
            try:
                command_obj.invoke(ctx)
            finally:
                output = ctx.obj if isinstance(ctx.obj, Output) else None
        code: int = ExitCode.OK
    except typer.Exit as done:
        code = done.exit_code
    except TyperException as err:  # typer's click: bad option values, unknown options
        format_message = getattr(err, "format_message", None)
        message = format_message() if callable(format_message) else str(err)
        Output.error_line(message.splitlines()[0], "Run 'tokysnatcher --help'.")
        code = getattr(err, "exit_code", ExitCode.USAGE)
    except TokysnatcherError as err:
        if output is not None and output.debug:
            output.traceback()
        Output.error_line(err.message, err.hint)
        code = err.exit_code
    except (KeyboardInterrupt, typer.Abort):
        Output.error_line("interrupted", "")
        code = ExitCode.INTERRUPTED
    finally:
        from tokysnatcher.core.processes import terminate_all

        terminate_all(1.0)
    sys.exit(code)
