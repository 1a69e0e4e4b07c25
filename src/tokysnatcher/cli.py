"""The ``tokysnatcher`` command: options -> Settings -> actions, errors -> exit codes.

Nothing here decides how a book is downloaded; this module parses, dispatches to ``actions``,
prints what they return and maps errors to exit codes (SPEC §2). Every bad value ends in one
line on stderr, ``error: <option>: <what is wrong> - <the accepted form>``, and exit code 2.

Unlike the rest of the package, this module does not use ``from __future__ import annotations``:
Typer reads the command's signature at every run, and string annotations would be compiled and
evaluated six times each (~12 ms of CPU per run). Names imported only for type checking are
quoted instead.
"""

import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tokysnatcher import __version__
from tokysnatcher.config.settings import KEYS, Settings, Verbosity, parse_path, parse_text
from tokysnatcher.errors import BadValue, ExitCode, TokysnatcherError, UsageError
from tokysnatcher.sources.tokybook import DEFAULT_BASE_URL, normalize_base_url

if TYPE_CHECKING:
    from tokysnatcher.ui.output import Output

EPILOG = """\
[bold]Examples[/bold]

  Download a book (mp3, into <music dir>/Audiobooks/<Author>/<Title>/):
    [cyan]tokysnatcher https://tokybook.com/post/some-book[/cyan]

  One m4b with chapter markers and the cover, into another folder:
    [cyan]tokysnatcher some-book --format m4b -d ~/Audiobooks[/cyan]

  Resume an interrupted download without a prompt:
    [cyan]tokysnatcher some-book --resume[/cyan]

  See the plan (download / skip / redo, sizes) and write nothing:
    [cyan]tokysnatcher some-book --dry-run[/cyan]

  Only chapters 1 to 3 and 7, at most 500 KiB/s:
    [cyan]tokysnatcher some-book --chapters 1-3,7 --speed-limit 500K[/cyan]

  Check a book folder against its manifest, or list every download:
    [cyan]tokysnatcher --verify-folder ~/Music/Audiobooks/Author/Title[/cyan]
    [cyan]tokysnatcher --list-downloads[/cyan]

  In a script: one summary line and a JSON report:
    [cyan]tokysnatcher some-book -q --report run.json[/cyan]

  Search, or try everything against the bundled stand-in site:
    [cyan]tokysnatcher -s "sherlock"[/cyan]
    [cyan]tokysnatcher --demo[/cyan]

  Defaults can live in [bold]<user config dir>/tokysnatcher/config.toml[/bold]: keys are the
  long option names, [bold]\\[profiles.NAME][/bold] tables are picked with --profile NAME.
  Precedence: command line > TOKYSNATCHER_* environment > profile > config file > built-in.
"""

DOWNLOAD = "Download"
RETRY = "Retry & network"
LIBRARY = "Library"
OUTPUT = "Output"

#: The accepted form of each option's value, for the one-line error of a bad value.
FORMS = {
    **{f"--{key.name}": key.accepted for key in KEYS.values()},
    "--search": "a search query, e.g. -s sherlock",
    "--verify-folder": "a book folder, e.g. --verify-folder ~/Music/Audiobooks/Author/Title",
    "--report": "a file in an existing, writable folder, e.g. --report run.json",
    "--profile": "the name of a [profiles.NAME] table of the config file",
    "--config": "a TOML config file",
}
_SHORT = {"-d": "--directory", "-j": "--jobs", "-s": "--search"}
_T = TypeVar("_T")


def _default(text: str) -> str:
    # Escaped: Rich markup would otherwise swallow the brackets.
    return f" \\[default: {text}]"


def _setting(name: str) -> str:
    """The built-in default of a Settings field, as help shows it (Settings owns the value)."""
    value = next(f.default for f in dataclasses.fields(Settings) if f.name == name)
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- parsers of the command-line-only values; the settings' values are parsed by config.sources
def _option(parse: Callable[[object], _T]) -> Callable[[str], _T]:
    """A value parser of ``config.settings`` as a Typer parser (its error names no option)."""

    def parser(text: str) -> _T:
        try:
            return parse(text)
        except BadValue as err:
            raise typer.BadParameter(err.message) from None

    return parser


def _base_url(text: str) -> str:
    try:
        return normalize_base_url(text)
    except (UsageError, ValueError):  # ValueError: urlsplit refuses e.g. "http://[::1"
        raise typer.BadParameter(f"{text!r} is not an http(s) URL") from None


def _report(text: str) -> Path:
    path = Path(text).expanduser()
    folder = path.parent
    if not text.strip() or path.is_dir():
        raise typer.BadParameter(f"{text!r} is a folder, not a file name")
    if not folder.is_dir():
        raise typer.BadParameter(f"{text!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"{text!r}: the folder {str(folder)!r} is not writable")
    return path


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
            metavar="URL",
            help="Book page URL (https://tokybook.com/post/<slug>, with or without scheme), "
            "a URL on --base-url's host, or the bare slug. Without it, in a terminal: a menu.",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[
        str | None,
        typer.Option(
            "-d",
            "--directory",
            metavar="DIR",
            help="Library root; a book goes to DIR/<Author>/<Title>/."
            + _default("<music dir>/Audiobooks"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="mp3|m4a|m4b",
            help="mp3: a file per chapter; m4a: a file per chapter, AAC as served; "
            "m4b: one audiobook file with chapter markers." + _default(_setting("output_format")),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
    chapters: Annotated[
        str | None,
        typer.Option(
            "--chapters",
            metavar="SPEC",
            help="Only these chapters, e.g. 1-3,7 or 5- (to the end)." + _default("all"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            metavar="",
            help="Skip chapters the manifest proves complete (size + SHA-256); no prompt."
            + _default("ask in a terminal, else resume"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = False,
    force_redownload: Annotated[
        bool,
        typer.Option(
            "--force-redownload",
            metavar="",
            help="Ignore the manifest and fetch every chapter again." + _default("off"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            metavar="",
            help="Resolve the book, check options, ffmpeg, folder and free space, print the "
            "plan; write nothing." + _default("off"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = False,
    no_cover: Annotated[
        bool,
        typer.Option(
            "--no-cover",
            metavar="",
            help="m4b: do not embed the cover." + _default("embed it"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = False,
    keep_parts: Annotated[
        bool,
        typer.Option(
            "--keep-parts",
            metavar="",
            help="m4b: also keep the per-chapter files next to the m4b." + _default("off"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = False,
    jobs: Annotated[
        str | None,
        typer.Option(
            "-j",
            "--jobs",
            metavar="N",
            help="Chapters in flight at once (1-32)." + _default(_setting("jobs")),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    connections: Annotated[
        str | None,
        typer.Option(
            "--connections",
            metavar="auto|N",
            help="HTTP connections in flight at once, over all chapters: auto adapts them "
            "(2-16) to the server's speed and throttling; N (1-16) keeps N."
            + _default(_setting("connections")),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    max_retries: Annotated[
        str | None,
        typer.Option(
            "--max-retries",
            metavar="N",
            help="Retries per chapter after its first try (0-100)."
            + _default(_setting("max_retries")),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    retry_delay: Annotated[
        str | None,
        typer.Option(
            "--retry-delay",
            metavar="SECONDS",
            help="First backoff; doubles each retry (2 -> 4 -> 8 s)."
            + _default(_setting("retry_delay")),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    stall_timeout: Annotated[
        str | None,
        typer.Option(
            "--stall-timeout",
            metavar="SECONDS",
            help="No progress for this long (network or ffmpeg) = stalled: abort and retry."
            + _default(_setting("stall_timeout")),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    transfer_timeout: Annotated[
        str | None,
        typer.Option(
            "--transfer-timeout",
            metavar="SECONDS",
            help="A request still running after this long must have averaged 4 KiB/s, or it is "
            "aborted and retried." + _default(_setting("transfer_timeout")),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    max_wait: Annotated[
        str | None,
        typer.Option(
            "--max-wait",
            metavar="SECONDS",
            help="When every request fails with a network error (the link or the site is down), "
            "wait this long for it, probing with backoff, before chapters fail."
            + _default(_setting("max_wait")),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    speed_limit: Annotated[
        str | None,
        typer.Option(
            "--speed-limit",
            metavar="RATE",
            help="Cap on the total download rate in bytes/s over all connections, e.g. 500K, "
            "2M, 1.5MiB; none lifts a configured cap." + _default("none"),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            metavar="URL",
            parser=_base_url,
            help="Site root. \\[env: TOKYSNATCHER_BASE_URL]" + _default(DEFAULT_BASE_URL),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    ffmpeg: Annotated[
        str | None,
        typer.Option(
            "--ffmpeg",
            metavar="PATH",
            help="ffmpeg binary. \\[env: TOKYSNATCHER_FFMPEG]"
            + _default("ffmpeg on PATH, else the bundled one"),
            rich_help_panel=RETRY,
            show_default=False,
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "-s",
            "--search",
            metavar="QUERY",
            parser=_option(parse_text),
            help="Search the site: pick a result in a terminal, a numbered list otherwise.",
            rich_help_panel=LIBRARY,
            show_default=False,
        ),
    ] = None,
    verify_folder: Annotated[
        Path | None,
        typer.Option(
            "--verify-folder",
            metavar="DIR",
            parser=_option(parse_path),
            help="Verify a book folder against its manifest (sizes and SHA-256).",
            rich_help_panel=LIBRARY,
            show_default=False,
        ),
    ] = None,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            metavar="",
            help="With --verify-folder: also decode every file." + _default("off"),
            rich_help_panel=LIBRARY,
            show_default=False,
        ),
    ] = False,
    list_downloads: Annotated[
        bool,
        typer.Option(
            "--list-downloads",
            metavar="",
            help="Table of every book under the library root with its state.",
            rich_help_panel=LIBRARY,
            show_default=False,
        ),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            metavar="",
            help="Start the bundled stand-in site on 127.0.0.1 and download a sample book from "
            "it (into a temporary folder, or -d).",
            rich_help_panel=LIBRARY,
            show_default=False,
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            parser=_report,
            help="Write the run report as JSON (summary and per chapter)." + _default("none"),
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "-q",
            "--quiet",
            metavar="",
            help="Errors and one summary line only.",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            metavar="",
            count=True,
            help="More detail: -v every event, -vv debug with tracebacks."
            + _default("normal: live view or one line per chapter"),
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = 0,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            metavar="NAME",
            parser=_option(parse_text),
            help="Use the \\[profiles.NAME] table of the config file. "
            "\\[env: TOKYSNATCHER_PROFILE]",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            parser=_option(parse_path),
            help="Config file to read. \\[env: TOKYSNATCHER_CONFIG]"
            + _default("<user config dir>/tokysnatcher/config.toml"),
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar="",
            callback=_version,
            is_eager=True,
            help="Show the version and exit.",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = False,
) -> None:
    """Download audiobooks from tokybook.com: resumable, verified, and never stuck.

    Every chapter is retried with backoff, stalled transfers and conversions are restarted,
    and a manifest with SHA-256 hashes lets any download be resumed or verified.
    """
    if quiet and verbose:
        raise UsageError("-q and -v cannot be used together", hint="Pick one.")
    verbosity = (
        Verbosity.QUIET
        if quiet
        else (Verbosity.DEBUG if verbose >= 2 else Verbosity.VERBOSE if verbose else None)
    )
    # Imported here, not at the top: --version and --help need neither rich's console nor the
    # config file reader.
    from tokysnatcher.config.sources import load_settings
    from tokysnatcher.ui.output import Output

    ctx.obj = Output.for_terminal(verbosity or Verbosity.NORMAL)
    # The settings' values go as typed: config.sources parses them like the environment's and
    # the config file's.
    cli_values: dict[str, object] = {
        "directory": directory,
        "output_format": output_format,
        "jobs": jobs,
        "connections": connections,
        "base_url": base_url,
        "ffmpeg": ffmpeg,
        "max_retries": max_retries,
        "retry_delay": retry_delay,
        "stall_timeout": stall_timeout,
        "transfer_timeout": transfer_timeout,
        "max_wait": max_wait,
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
    _route_logging(output)
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
        raise UsageError(f"{' and '.join(exclusive)} cannot be used together", hint="Pick one.")
    if deep and verify_folder is None:
        raise UsageError("--deep goes with --verify-folder")
    # Only the chosen action's module is imported: each brings its own heavy dependencies
    # (requests, ffmpeg-python, ...) that the others do not need.
    if demo:
        from tokysnatcher.actions.download import demo as run_demo

        code = run_demo(settings, output, directory_given=directory is not None)
    elif verify_folder is not None:
        from tokysnatcher.actions.library import verify

        code = verify(verify_folder, settings, output, deep=deep)
    elif list_downloads:
        from tokysnatcher.actions.library import list_library

        code = list_library(settings, output)
    elif search is not None:
        from tokysnatcher.actions.interactive import search as run_search

        code = run_search(search, settings, output)
    elif url is not None:
        from tokysnatcher.actions.download import download

        code = download(url, settings, output)
    else:
        from tokysnatcher.actions.interactive import interactive

        code = interactive(settings, output)
    raise typer.Exit(int(code))


class _OutputHandler(logging.Handler):
    """Routes ``logging`` records (ours, urllib3's, warnings) through the Output, so they print
    above a live view instead of through it."""

    def __init__(self, output: "Output") -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        level = {logging.DEBUG: "debug", logging.INFO: "info"}.get(record.levelno, "warning")
        if record.levelno >= logging.ERROR:
            level = "error"
        try:
            self.output.log(f"{record.name}: {record.getMessage()}", level)
        except Exception:  # a log line must never end the run
            self.handleError(record)


def _route_logging(output: "Output") -> None:
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers[:] = [_OutputHandler(output)]
    root.setLevel(logging.WARNING)
    logging.getLogger("tokysnatcher").setLevel(logging.DEBUG if output.debug else logging.INFO)


def usage_message(err: typer.TyperException) -> tuple[str, str]:
    """(message, hint) of a command-line parsing error, naming the option and its form."""
    option: str | None = None
    if isinstance(err, typer.BadParameter) and err.param is not None:
        names = list(getattr(err.param, "opts", []))
        option = max(names, key=len) if names else None
    else:
        # An option without its value, or an unknown one: the error names it as typed.
        typed = getattr(err, "option_name", None)
        option = _SHORT.get(typed, typed) if isinstance(typed, str) else None
    if isinstance(err, typer.BadParameter) and option is not None:
        message = f"{option}: {err.message}"
    else:
        message = err.format_message().splitlines()[0]
    form = FORMS.get(option or "")
    hint = f"Expected {form}." if form else "Run 'tokysnatcher --help' for the accepted forms."
    return message, hint


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _hangup(signum: int, frame: FrameType | None) -> None:
    """The terminal closed or the SSH session dropped: stop as on Ctrl-C, printing nothing.

    The exit code is 130, "interrupted", as for Ctrl-C and SIGTERM: the run ends the same way
    (children ended, unfinished chapters back to pending, the manifest saved) and resumes the
    same way, so a script needs one code to check, not one per signal.
    """
    if sys.platform != "win32":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a second hangup must not cut the cleanup
    from tokysnatcher.ui.output import mute_terminal

    mute_terminal()
    raise KeyboardInterrupt


def _error_line(message: str, hint: str, *, new_line: bool = False) -> None:
    from tokysnatcher.ui.output import Output  # imported here: rich's console is slow to import

    Output.error_line(message, hint, new_line=new_line)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the command and exit with its code."""
    signal.signal(signal.SIGTERM, _sigterm)
    # Under nohup a hangup is ignored on purpose: it stays ignored.
    if sys.platform != "win32" and signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _hangup)
    output: Output | None = None
    try:
        command_obj = typer.main.get_command(app)
        args = list(sys.argv[1:] if argv is None else argv)
        with command_obj.make_context("tokysnatcher", args) as ctx:
            try:
                command_obj.invoke(ctx)
            finally:
                output = ctx.obj  # the command's Output, or None if it failed before
        code: int = ExitCode.OK
    except typer.Exit as done:
        code = done.exit_code
    except typer.TyperException as err:  # bad option values, unknown options
        _error_line(*usage_message(err))
        code = ExitCode.USAGE
    except TokysnatcherError as err:
        if output is not None and output.debug:
            output.traceback()
        _error_line(err.message, err.hint)
        code = err.exit_code
    except (KeyboardInterrupt, typer.Abort, EOFError) as err:
        what = "no answer (input ended)" if isinstance(err, EOFError) else "interrupted"
        # new_line: leave the prompt line (and the echoed ^C) alone.
        _error_line(
            what, "Nothing more was done; run the command again to continue.", new_line=True
        )
        code = ExitCode.INTERRUPTED
    except Exception as err:  # a bug: still one clear line, the traceback only with -vv
        if output is not None and output.debug:
            output.traceback()
        _error_line(
            f"unexpected {type(err).__name__}: {err}",
            "This is a bug; run again with -vv for the traceback and please report it.",
        )
        code = ExitCode.FAILED
    finally:
        # Children are registered through ffmpeg.processes: if no one imported it (--version,
        # --help, a bad option), there is nothing to end and no need to import it now.
        if "tokysnatcher.ffmpeg.processes" in sys.modules:
            from tokysnatcher.ffmpeg.processes import reopen, terminate_all

            terminate_all(1.0)
            # main() called in-process (a test, a library) must not leave the process unable
            # to start ffmpeg; the command line exits next, so nothing of this run is left.
            reopen()
    sys.exit(code)
