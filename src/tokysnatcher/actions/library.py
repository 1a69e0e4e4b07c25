"""``--verify-folder`` and ``--list-downloads``: the library on disk (SPEC §4).

Verify exits 0 when every chapter checks out, 1 when it found anything wrong (including a folder
with nothing to verify, a corrupt manifest it rebuilt, or unsafe entries it rejected) and 2 when
the argument is not a folder or the manifest is from a newer tokysnatcher. Listing never writes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.markup import escape

from tokysnatcher.config.settings import OutputFormat, Settings
from tokysnatcher.errors import BadValue, ExitCode, Interrupted, UsageError
from tokysnatcher.library.layout import MAX_FOLDERS, OutputTemplate
from tokysnatcher.library.scan import BookInfo, BookState, BookSummary, list_downloads
from tokysnatcher.library.verify import DeepCheck, VerifyReport, verify_folder
from tokysnatcher.sources.registry import again_command, again_ref, foreign_host
from tokysnatcher.ui.output import Output


def verify(folder: Path, settings: Settings, output: Output, *, deep: bool) -> ExitCode:
    """Check a book folder against its manifest and print a row per chapter."""
    deep_check: DeepCheck | None = None
    if deep:
        from tokysnatcher.ffmpeg.binary import resolve_ffmpeg
        from tokysnatcher.ffmpeg.probe import decode_check

        ffmpeg = resolve_ffmpeg(settings.ffmpeg)

        def deep_check(path: Path) -> tuple[str | None, float | None]:
            return decode_check(ffmpeg, path)

    folder = folder.absolute()
    if not deep:
        output.info(f"verifying {folder} (size and SHA-256 of every chapter)...")
    else:
        output.info(
            f"verifying {folder} (size, SHA-256, a full decode and the length of every chapter)..."
        )
    report = verify_folder(folder, deep_check=deep_check)
    for warning in report.warnings:
        output.warn(warning)
    for rejected in report.rejected:
        output.warn(rejected)
    output.verify_report(report, _resume_command(report, settings))
    return ExitCode.OK if report.clean else ExitCode.FAILED


def _resume_command(report: VerifyReport, settings: Settings) -> str | None:
    """The command that fetches what verification marked, or None without a known source."""
    book = report.book
    if book is None or not (book.source_url or book.slug):
        return None
    return resume_command_for(book, report.book_dir, settings)


def resume_command_for(book: BookInfo, folder: Path, settings: Settings) -> str:
    """``tokysnatcher <url> -d <root> --format <fmt> --resume`` for a book folder on disk.

    The library root is as many levels up as the manifest records (two for
    ``<root>/<Author>/<Title>``), and a custom layout gets its ``-o``. A source on another host
    than its real site (a stand-in site, a mirror) gets the matching ``--base-url`` (tokybook)
    or ``TOKYSNATCHER_LIBRIVOX_URL`` (LibriVox).
    """
    again = again_command(
        book.source_url, book.slug, settings, site_from_page=True, recorded=book.source
    )
    parts = [*again.head, "-d", str(library_root(book, folder))]
    parts += ["--format", book.format]
    if book.output_template is not None:
        parts += ["-o", book.output_template]
    parts += again.site
    parts.append("--resume")
    return shlex.join(parts)


def library_root(book: BookInfo, folder: Path) -> Path:
    """The library root a book folder was made under (``folder_depth`` levels up)."""
    parents = folder.absolute().parents
    return parents[min(book.folder_depth, len(parents)) - 1]


def list_library(settings: Settings, output: Output, *, as_json: bool = False) -> ExitCode:
    """Table of every book under the library root; in a terminal, pick one to resume/verify.

    ``as_json``: the same books as JSON for scripts, and no prompt.
    """
    root = settings.directory
    books = list_downloads(root, max_depth=MAX_FOLDERS)
    if as_json:
        from dataclasses import asdict

        from tokysnatcher.ui.store_view import print_json

        print_json(output, [{**asdict(book), "state": str(book.state)} for book in books])
        return ExitCode.OK
    output.library_table(books, root)
    if not books or not output.interactive:
        return ExitCode.OK
    try:
        picked = _pick(books, output)
    except KeyboardInterrupt:
        output.err.print()
        raise Interrupted("cancelled at the prompt; nothing was changed") from None
    if picked is None:
        return ExitCode.OK
    chosen, answer = picked
    if answer == "v":
        return verify(chosen.folder, settings, output, deep=False)
    return _resume(chosen, settings, output)


def _pick(books: list[BookSummary], output: Output) -> tuple[BookSummary, str] | None:
    """Ask for a book and what to do with it: ``r`` resume or ``v`` verify (None: nothing)."""
    from rich.prompt import IntPrompt, Prompt

    from tokysnatcher.ui.line_input import prompt_stream

    number = IntPrompt.ask(
        "resume or verify which book? (number, 0 to quit)",
        default=0,
        console=output.err,
        stream=prompt_stream(),
    )
    if not 1 <= number <= len(books):
        return None
    chosen = books[number - 1]
    if chosen.state is BookState.UNSUPPORTED:
        output.info(chosen.problem or "written by a newer tokysnatcher")
        return None
    if chosen.state is BookState.CORRUPT:
        choices, default, question = ["v", "c"], "v", "[v]erify (rebuilds it) or [c]ancel?"
    else:
        choices, default = ["r", "v", "c"], "v" if chosen.state is BookState.COMPLETE else "r"
        question = "[r]esume, [v]erify, or [c]ancel?"
    answer = Prompt.ask(
        escape(question),
        choices=choices,
        default=default,
        console=output.err,
        stream=prompt_stream(),
    )
    return None if answer == "c" else (chosen, answer)


def _resume(chosen: BookSummary, settings: Settings, output: Output) -> ExitCode:
    """Download the chosen book again with ``--resume``, in the format its manifest records."""
    from tokysnatcher.actions.download import download
    from tokysnatcher.library.manifest import ManifestManager

    manager = ManifestManager.load(chosen.folder)
    book = manager.book if manager is not None else None
    if book is None or not (book.slug or book.source_url):
        raise UsageError(
            f"{chosen.folder} does not record where the book came from",
            hint="Run tokysnatcher with the book's URL and --resume, with -d set to the "
            "library root.",
        )
    root = library_root(book, chosen.folder)
    try:
        layout = OutputTemplate.parse(book.output_template) if book.output_template else None
    except BadValue as err:
        raise UsageError(
            f"{chosen.folder}: the manifest's layout cannot be used ({err.message})",
            hint="Run tokysnatcher with the book's URL, -o and --resume.",
        ) from err
    hosts = foreign_host(book.source_url, settings, book.source)
    if hosts is not None:
        # Never send a request to a host the manifest names unless the user says so.
        source, configured = hosts
        command = resume_command_for(book, chosen.folder, settings)
        raise UsageError(
            f"{book.title} was downloaded from {source}, not from {configured}",
            hint=f"To resume it from there, run: {command}",
        )
    resumed = settings.replace(
        directory=root,
        output=layout,
        output_format=OutputFormat(book.format),
        resume=True,
        force_redownload=False,
        dry_run=False,
        chapters=None,
    )
    output.info(f"resuming {book.title} ({book.format}) into {root}")
    return download(again_ref(book.source_url, book.slug, settings), resumed, output)
