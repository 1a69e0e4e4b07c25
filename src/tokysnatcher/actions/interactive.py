"""Search (a numbered list when piped, a paged picker in a terminal) and the no-argument menu.

Prompts are shown only when :attr:`Output.interactive` says so; piped or in CI the command
never waits for an answer. Ctrl-C or end of input at any prompt reaches ``cli.main``, which
prints one line and exits 130.
"""

from __future__ import annotations

from rich.markup import escape
from rich.prompt import Prompt

from tokysnatcher.actions.download import download
from tokysnatcher.config.settings import SOURCE_NAMES, Settings
from tokysnatcher.download.run import open_runtime
from tokysnatcher.errors import ExitCode, UsageError
from tokysnatcher.sources.registry import check_ref
from tokysnatcher.sources.source import SearchResult, Source
from tokysnatcher.ui.display import visible
from tokysnatcher.ui.line_input import prompt_stream
from tokysnatcher.ui.output import Output

#: Results a page in the terminal picker, and results listed when piped.
PAGE_SIZE = 10
PIPED_RESULTS = 25

_MENU = (
    ("1", "s", "search the site"),
    ("2", "u", "paste a book URL or slug"),
    ("3", "l", "list downloads"),
    ("4", "x", "exit"),
)


def _ask(output: Output, question: str, default: str = "") -> str:
    return Prompt.ask(
        question,
        default=default,
        show_default=bool(default),
        console=output.err,
        stream=prompt_stream(),
    )


def search(query: str, settings: Settings, output: Output) -> ExitCode:
    """Numbered results when piped; in a terminal, page through them and pick one."""
    if not query.strip():
        raise UsageError("--search needs a non-empty query")
    if not output.interactive:
        runtime = open_runtime(settings)
        try:
            page = runtime.source.search(query, offset=0, limit=PIPED_RESULTS)
        finally:
            runtime.close()
        output.search_results(page)
        return ExitCode.OK
    picked = pick_result(query, settings, output)
    if picked is None:
        return ExitCode.OK
    return download(picked.slug, settings, output)


def pick_result(query: str, settings: Settings, output: Output) -> SearchResult | None:
    """Page through the results of ``query``; the chosen one, or None when the user quits."""
    runtime = open_runtime(settings)
    try:
        return _pick(query, runtime.source, output)
    finally:
        runtime.close()


def _pick(query: str, source: Source, output: Output) -> SearchResult | None:
    offset = 0
    while True:
        page = source.search(query, offset=offset, limit=PAGE_SIZE)
        output.search_results(page, numbered_from=offset + 1)
        if not page.results:
            return None
        last = offset + len(page.results)
        keys = ["number to download"]
        if last < page.total:
            keys.append("n next page")
        if offset > 0:
            keys.append("p previous page")
        keys.append("q quit")
        while True:
            answer = _ask(output, ", ".join(keys), default="q").strip().lower()
            if answer in ("q", "quit", "0"):
                return None
            if answer == "n" and last < page.total:
                offset = last
                break
            if answer == "p" and offset > 0:
                offset = max(0, offset - PAGE_SIZE)
                break
            if answer.isdigit() and offset < int(answer) <= last:
                return page.results[int(answer) - offset - 1]
            output.err.print(f"please answer {', '.join(keys)} (numbers {offset + 1}-{last})")


def interactive(settings: Settings, output: Output) -> ExitCode:
    """No URL and no action: a menu in a terminal, a usage error anywhere else."""
    if not output.interactive:
        raise UsageError(
            "no book given",
            hint="Pass a book URL or slug, or use --search QUERY, --list-downloads, "
            "--verify-folder DIR or --demo (see tokysnatcher --help).",
        )
    from tokysnatcher.actions.library import list_library

    while True:
        output.err.print("[bold]tokysnatcher[/bold] - what would you like to do?")
        for number, letter, label in _MENU:
            output.err.print(f"  {number}  {escape(label)} [dim]({letter})[/dim]")
        answer = _ask(output, "choose 1-4", default="4").strip().lower()
        choice = next((n for n, letter, _ in _MENU if answer in (n, letter)), None)
        if choice == "1":
            site = Prompt.ask(
                "search which site",
                choices=list(SOURCE_NAMES),
                default=settings.source,
                console=output.err,
                stream=prompt_stream(),
            )
            query = _ask(output, "search for (title or author)").strip()
            picked = pick_result(query, settings.replace(source=site), output) if query else None
            if picked is not None:
                return download(picked.slug, settings, output)
        elif choice == "2":
            ref = _ask(output, "book URL or slug").strip()
            if not ref:
                continue
            try:
                check_ref(ref, settings)
            except UsageError as err:
                output.err.print(escape(visible(f"{err.message} - {err.hint}")), style="red")
                continue
            return download(ref, settings, output)
        elif choice == "3":
            return list_library(settings, output)
        elif choice == "4":
            return ExitCode.OK
        else:
            output.err.print("please answer 1-4 (or s, u, l, x)")
