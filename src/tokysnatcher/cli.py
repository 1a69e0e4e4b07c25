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

  Download a book (mp3, into ~/Music/Audiobooks/<Author>/<Title>/):
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

  Check that ffmpeg, the site and the folders are ready (one row each, with the fix):
    [cyan]tokysnatcher --doctor[/cyan]

  Queue books (higher priority first), work through the queue, see the history:
    [cyan]tokysnatcher --queue-add book-one book-two --priority 5[/cyan]
    [cyan]tokysnatcher --queue-run[/cyan]
    [cyan]tokysnatcher --stats[/cyan]

  In a script: one summary line and a JSON report:
    [cyan]tokysnatcher some-book -q --report run.json[/cyan]

  A LibriVox book (public domain) as one m4b, the 128 kb/s originals; search LibriVox:
    [cyan]tokysnatcher librivox:47 --format m4b --quality high[/cyan]
    [cyan]tokysnatcher -s dumas --source librivox[/cyan]

  Several books in one run (a failed one does not stop the rest), or a list of them:
    [cyan]tokysnatcher first-book librivox:47 --format m4b[/cyan]
    [cyan]tokysnatcher --batch-file books.txt --status-file status.json[/cyan]

  Search, or try everything against the bundled stand-in site (tokybook or librivox):
    [cyan]tokysnatcher -s "sherlock"[/cyan]
    [cyan]tokysnatcher --demo[/cyan]
    [cyan]tokysnatcher --demo librivox[/cyan]

  Defaults can live in [bold]<user config dir>/tokysnatcher/config.toml[/bold]: keys are the
  long option names, [bold]\\[profiles.NAME][/bold] tables are picked with --profile NAME.
  Precedence: command line > TOKYSNATCHER_* environment > profile > config file > built-in.
"""

DOWNLOAD = "Download"
RETRY = "Retry & network"
LIBRARY = "Library"
QUEUE = "Queue and history"
OUTPUT = "Output"

#: The accepted form of each option's value, for the one-line error of a bad value.
FORMS = {
    **{f"--{key.name}": key.accepted for key in KEYS.values()},
    "--search": "a search query, e.g. -s sherlock",
    "--url": "a book page URL or slug, e.g. -u https://tokybook.com/post/some-book",
    "--verify-folder": "a book folder, e.g. --verify-folder ~/Music/Audiobooks/Author/Title",
    "--report": "a file in an existing, writable folder, e.g. --report run.json",
    "--status-file": "a file in an existing, writable folder, e.g. --status-file status.json",
    "--batch-file": "a text file with one book URL or slug a line, or - for standard input",
    "--profile": "the name of a [profiles.NAME] table of the config file",
    "--config": "a TOML config file",
    "--priority": "a whole number from -1000 to 1000, e.g. --priority 5 (higher runs first)",
    "--queue-remove": "a queue entry's id, e.g. --queue-remove 3 (see --queue-list)",
    "--queue-priority": "an entry's id and a priority, e.g. --queue-priority 3 10",
    "--queue-pause": "a queue entry's id, e.g. --queue-pause 3 (see --queue-list)",
    "--queue-resume": "a queue entry's id, e.g. --queue-resume 3 (see --queue-list)",
}
_SHORT = {"-d": "--directory", "-j": "--jobs", "-s": "--search", "-o": "--output", "-u": "--url"}
_T = TypeVar("_T")
#: Set by the completion script that --install-completion installs, when the shell asks.
COMPLETE_VAR = "_TOKYSNATCHER_COMPLETE"


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


def _writable_file(text: str) -> Path:
    path = Path(text).expanduser()
    folder = path.parent
    if not text.strip() or path.is_dir():
        raise typer.BadParameter(f"{text!r} is a folder, not a file name")
    if not folder.is_dir():
        raise typer.BadParameter(f"{text!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"{text!r}: the folder {str(folder)!r} is not writable")
    return path


def _whole(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not {what}") from None
    if not low <= value <= high:
        raise typer.BadParameter(f"{text!r} is out of range")
    return value


def _entry_id(text: str) -> int:
    return _whole(text, 1, 2**62, "a queue entry's id")


def _priority(text: str) -> int:
    return _whole(text, -1000, 1000, "a whole number")


app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion: bash, zsh, fish, PowerShell
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
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="URL",
            help="Book page URL (https://tokybook.com/post/<slug>, with or without scheme), "
            "a URL on --base-url's host, or the bare slug; for LibriVox librivox:<id>, the "
            "book's page (https://librivox.org/<book>/) or an API URL with id=. Several run one "
            "after another. Without one, in a terminal: a menu.",
            show_default=False,
        ),
    ] = None,
    url_option: Annotated[
        str | None,
        typer.Option(
            "-u",
            "--url",
            metavar="URL",
            help="The book, as the URL argument takes it (TokySnatcher 0.5's option).",
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
    directory: Annotated[
        str | None,
        typer.Option(
            "-d",
            "--directory",
            metavar="DIR",
            help="Library root; a book goes to DIR/<Author>/[<Series>/]<Title>/ (see -o)."
            + _default("~/Music/Audiobooks"),
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
    batch_file: Annotated[
        Path | None,
        typer.Option(
            "--batch-file",
            metavar="FILE",
            parser=_option(parse_path),
            help="Download every book listed in FILE, one URL or slug a line (blank lines and "
            "# comments ignored; - reads standard input), after any given as arguments. A bad "
            "line is named and skipped; a failed book does not stop the rest." + _default("none"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
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
            help="No cover: none embedded, no cover.jpg." + _default("embed it, and cover.jpg"),
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
    quality: Annotated[
        str | None,
        typer.Option(
            "--quality",
            metavar="LEVEL",
            help="LibriVox: standard (the 64 kb/s MP3s) or high (the 128 kb/s originals, "
            "where the item lists them)." + _default(_setting("quality")),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
    output_template: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="TEMPLATE",
            help="Library layout: folders and chapter file name from {author} {title} {series} "
            "{series_index} {narrator} {year} {source} {id}, plus {index} {chapter_title} {ext} "
            "in the file name."
            + _default("{author}/{series}/{title}/{index} - {chapter_title}.{ext}"),
            rich_help_panel=DOWNLOAD,
            show_default=False,
        ),
    ] = None,
    no_sidecars: Annotated[
        bool,
        typer.Option(
            "--no-sidecars",
            metavar="",
            help="Write no cover.jpg, desc.txt, reader.txt or metadata.opf beside the audio."
            + _default("write them"),
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
            help="tokybook's site root (LibriVox's: TOKYSNATCHER_LIBRIVOX_URL and "
            "TOKYSNATCHER_ARCHIVE_URL). \\[env: TOKYSNATCHER_BASE_URL]"
            + _default(DEFAULT_BASE_URL),
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
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            metavar="SITE",
            help="The site --search asks: tokybook or librivox (a URL or librivox:<id> names "
            "its own)." + _default(_setting("source")),
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
    doctor: Annotated[
        bool,
        typer.Option(
            "--doctor",
            metavar="",
            help="Check Python, ffmpeg, the site, the library folder, the config file, proxies "
            "and the data folder; one row each with the fix for a problem.",
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
            "it (into a temporary folder, or -d); --demo librivox: the LibriVox stand-in, "
            "as m4b.",
            rich_help_panel=LIBRARY,
            show_default=False,
        ),
    ] = False,
    queue_add: Annotated[
        bool,
        typer.Option(
            "--queue-add",
            metavar="",
            help="Add the URLs to the download queue, with this run's --format, --chapters and -d.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = False,
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority",
            metavar="N",
            parser=_priority,
            help="With --queue-add: higher runs first, first added first within a priority "
            "(-1000 to 1000)." + _default("0"),
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = None,
    queue_list: Annotated[
        bool,
        typer.Option(
            "--queue-list",
            metavar="",
            help="The queue in the order it runs: id, priority, state, format, book.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = False,
    queue_run: Annotated[
        bool,
        typer.Option(
            "--queue-run",
            metavar="",
            help="Download the queue until it is empty (books added meanwhile too); Ctrl-C "
            "and run it again to continue.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = False,
    queue_remove: Annotated[
        int | None,
        typer.Option(
            "--queue-remove",
            metavar="ID",
            parser=_entry_id,
            help="Take an entry out of the queue.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = None,
    queue_priority: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--queue-priority",
            metavar="ID N",
            help="Give an entry another priority.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = None,
    queue_pause: Annotated[
        int | None,
        typer.Option(
            "--queue-pause",
            metavar="ID",
            parser=_entry_id,
            help="Keep an entry in the queue but do not run it.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = None,
    queue_resume: Annotated[
        int | None,
        typer.Option(
            "--queue-resume",
            metavar="ID",
            parser=_entry_id,
            help="Let a paused entry run again.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = None,
    download_archive: Annotated[
        str | None,
        typer.Option(
            "--download-archive",
            metavar="FILE",
            help="Keep the archive of finished books in this text file ('<source> <id>' lines, "
            "as yt-dlp) instead of the database." + _default("the database"),
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            metavar="",
            help="Totals, success rate per source, speeds, common failures and the last runs.",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = False,
    rebuild_database: Annotated[
        bool,
        typer.Option(
            "--rebuild-database",
            metavar="",
            help="Move a corrupt database aside and rebuild its archive from the manifests "
            "under -d. The database lives in <user data dir>/tokysnatcher. "
            "\\[env: TOKYSNATCHER_DATA_DIR]",
            rich_help_panel=QUEUE,
            show_default=False,
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            parser=_writable_file,
            help="Write the run report as JSON (summary and per chapter)." + _default("none"),
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    status_file: Annotated[
        Path | None,
        typer.Option(
            "--status-file",
            metavar="FILE",
            parser=_writable_file,
            help="Keep FILE rewritten (atomically, at most once a second) with the run's state "
            "as JSON: books, chapters, bytes, speed, ETA, retries; the last version holds the "
            "outcome." + _default("none"),
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            metavar="",
            help="Print the result as JSON, for scripts (with --doctor, --stats, --queue-list or "
            "--list-downloads).",
            rich_help_panel=OUTPUT,
            show_default=False,
        ),
    ] = False,
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
    if url_option is not None:
        if refs:
            raise UsageError(
                "URL and --url cannot be used together", hint="Give the book once, either way."
            )
        refs = [url_option]
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
        # One typed on the command line wins over the other set in the config file.
        "resume": True if resume else (False if force_redownload else None),
        "force_redownload": True if force_redownload else (False if resume else None),
        "dry_run": dry_run or None,
        "report": report,
        "status_file": status_file,
        "verbosity": verbosity,
        "no_cover": no_cover or None,
        "keep_parts": keep_parts or None,
        "quality": quality,
        "source": source,
        "output": output_template,
        "no_sidecars": no_sidecars or None,
        "download_archive": download_archive,
    }
    given = {k: v for k, v in cli_values.items() if v is not None}
    config_error: UsageError | None = None
    try:
        settings: Settings = load_settings(given, profile=profile, config_file=config)
    except UsageError as err:
        if not doctor:
            raise
        # The doctor reports a broken config file (or environment value) as one of its rows
        # and checks the rest without it: the environment and command line if they are good
        # (they may point a source elsewhere), else the command line and built-in defaults.
        from tokysnatcher.config.sources import read_command_line, read_env

        config_error = err
        try:
            settings = Settings(**{**read_env(os.environ), **read_command_line(given)})
        except UsageError:
            settings = Settings(**read_command_line(given))
    ctx.meta["settings"] = settings  # for a crash report, should anything go wrong
    output = Output.for_terminal(settings.verbosity)
    ctx.obj = output
    _route_logging(output)
    queue_actions = (
        ("--queue-list", queue_list),
        ("--queue-run", queue_run),
        ("--queue-remove", queue_remove is not None),
        ("--queue-priority", queue_priority is not None),
        ("--queue-pause", queue_pause is not None),
        ("--queue-resume", queue_resume is not None),
        ("--stats", stats),
        ("--rebuild-database", rebuild_database),
    )
    exclusive = [
        name
        for name, on in (
            # --demo's URL argument names which stand-in site: "--demo librivox".
            ("URL", ((bool(refs) and not demo) or batch_file is not None) and not queue_add),
            ("--queue-add", queue_add),
            ("--search", search is not None),
            ("--verify-folder", verify_folder is not None),
            ("--list-downloads", list_downloads),
            ("--demo", demo),
            ("--doctor", doctor),
            *queue_actions,
        )
        if on
    ]
    if len(exclusive) > 1:
        raise UsageError(f"{' and '.join(exclusive)} cannot be used together", hint="Pick one.")
    if deep and verify_folder is None:
        raise UsageError("--deep goes with --verify-folder")
    refs = refs or []
    batch = batch_file is not None or len(refs) > 1
    if batch and report is not None:
        raise UsageError(
            "--report writes one book's report; a batch has several books",
            hint="Use --status-file: its last version holds every book's outcome.",
        )
    if queue_add and batch_file is not None:
        raise UsageError(
            "--queue-add takes the books' URLs as arguments, not --batch-file",
            hint="Give them after --queue-add, e.g. --queue-add $(grep -v '^#' books.txt).",
        )
    if queue_add and not refs:
        raise UsageError("--queue-add needs the URL of at least one book")
    if queue_run and (dry_run or report is not None):
        raise UsageError(
            f"--queue-run and {'--dry-run' if dry_run else '--report'} cannot be used together",
            hint="--queue-list shows what the queue holds; --status-file follows a queue run.",
        )
    if source is not None and refs and not queue_add and not demo:
        raise UsageError(
            "--source picks the site --search asks; a book's reference names its own site",
            hint="Give a LibriVox book as librivox:<id> or its librivox.org page.",
        )
    if priority is not None and not queue_add:
        raise UsageError("--priority goes with --queue-add")
    if json_output and not (doctor or stats or queue_list or list_downloads):
        raise UsageError("--json goes with --doctor, --stats, --queue-list or --list-downloads")
    # Only the chosen action's module is imported: each brings its own heavy dependencies
    # (requests, ffmpeg-python, ...) that the others do not need.
    if doctor:
        from tokysnatcher.actions.doctor import doctor as run_doctor
        from tokysnatcher.config.sources import config_path

        code = run_doctor(
            settings,
            output,
            config_path=config_path(config, os.environ),
            config_error=config_error,
            as_json=json_output,
        )
    elif any(on for _, on in queue_actions) or queue_add:
        code = _queue_and_history(
            settings,
            output,
            refs=refs if queue_add else None,
            priority=priority or 0,
            queue_list=queue_list,
            queue_run=queue_run,
            queue_remove=queue_remove,
            queue_priority=queue_priority,
            queue_pause=queue_pause,
            queue_resume=queue_resume,
            stats=stats,
            as_json=json_output,
            rebuild_database=rebuild_database,
        )
    elif demo:
        from tokysnatcher.actions.download import demo as run_demo

        if len(refs) > 1:
            raise UsageError("--demo takes at most one site name", hint="Try --demo librivox.")
        site = refs[0] if refs else None
        code = run_demo(settings, output, directory_given=directory is not None, site=site)
    elif verify_folder is not None:
        from tokysnatcher.actions.library import verify

        code = verify(verify_folder, settings, output, deep=deep)
    elif list_downloads:
        from tokysnatcher.actions.library import list_library

        code = list_library(settings, output, as_json=json_output)
    elif search is not None:
        from tokysnatcher.actions.interactive import search as run_search

        code = run_search(search, settings, output)
    elif batch:
        from tokysnatcher.actions.batch import batch_refs, run_batch

        code = run_batch(batch_refs(refs, batch_file), settings, output)
    elif refs:
        from tokysnatcher.actions.download import download

        code = download(refs[0], settings, output)
    else:
        from tokysnatcher.actions.interactive import interactive

        code = interactive(settings, output)
    raise typer.Exit(int(code))


def _queue_and_history(
    settings: Settings,
    output: "Output",
    *,
    refs: list[str] | None,
    priority: int,
    queue_list: bool,
    queue_run: bool,
    queue_remove: int | None,
    queue_priority: tuple[str, str] | None,
    queue_pause: int | None,
    queue_resume: int | None,
    stats: bool,
    as_json: bool,
    rebuild_database: bool,
) -> ExitCode:
    """The one queue, archive or history action asked for (they exclude each other)."""
    if stats:
        from tokysnatcher.actions.stats import stats as show_stats

        return show_stats(settings, output, as_json=as_json)
    if rebuild_database:
        from tokysnatcher.actions.database import rebuild_database as rebuild

        return rebuild(settings, output)
    from tokysnatcher.actions import queue

    if refs is not None:
        return queue.queue_add(refs, priority, settings, output)
    if queue_list:
        return queue.queue_list(settings, output, as_json=as_json)
    if queue_run:
        return queue.queue_run(settings, output)
    if queue_remove is not None:
        return queue.queue_remove(queue_remove, settings, output)
    if queue_priority is not None:
        entry_id, value = queue_priority
        try:
            parsed = _entry_id(entry_id), _priority(value)
        except typer.BadParameter as err:
            raise UsageError(
                f"--queue-priority: {err.message}", hint=f"Expected {FORMS['--queue-priority']}."
            ) from None
        return queue.queue_priority(*parsed, settings, output)
    if queue_pause is not None:
        return queue.queue_pause(queue_pause, True, settings, output)
    assert queue_resume is not None
    return queue.queue_pause(queue_resume, False, settings, output)


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


def _catch_stop_signals() -> None:
    """SIGTERM, a hangup, Ctrl-Break and a closed console end the run as Ctrl-C (SIGINT) does."""
    signal.signal(signal.SIGTERM, _sigterm)
    if sys.platform == "win32":
        from tokysnatcher.ui.console import catch_console_close

        signal.signal(signal.SIGBREAK, _sigterm)  # Ctrl-Break
        catch_console_close()
    # Under nohup a hangup is ignored on purpose: it stays ignored.
    elif signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _hangup)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the command and exit with its code."""
    if os.environ.get(COMPLETE_VAR):  # the shell asks for completions (--install-completion)
        app(prog_name="tokysnatcher")  # Typer answers and exits
    _catch_stop_signals()
    output: Output | None = None
    settings: Settings | None = None
    args: list[str] = []
    try:
        command_obj = typer.main.get_command(app)
        args = list(sys.argv[1:] if argv is None else argv)
        # A copy: click consumes the list it parses, and a crash report shows the command.
        with command_obj.make_context("tokysnatcher", list(args)) as ctx:
            try:
                command_obj.invoke(ctx)
            finally:
                output = ctx.obj  # the command's Output, or None if it failed before
                settings = ctx.meta.get("settings")
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
    except Exception as err:  # a bug: still one clear line, and a report to send
        if output is not None and output.debug:
            output.traceback()
        from tokysnatcher.diagnostics.crash import report_crash
        from tokysnatcher.diagnostics.redact import redact

        path, problem = report_crash(err, settings=settings, argv=args)
        if path is not None:
            hint = f"This is a bug; please report it with the crash report {path}"
        else:
            hint = (
                f"This is a bug; no crash report could be written ({problem}); run again "
                "with -vv for the traceback and please report it."
            )
        # The line may carry what the error did (a header, a URL): secrets never reach it.
        _error_line(redact(f"unexpected {type(err).__name__}: {err}", home=False), hint)
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
        if sys.platform == "win32":
            from tokysnatcher.ui.console import cleanup_done

            cleanup_done()  # a closing console's handler may let Windows end the process now
    sys.exit(code)
