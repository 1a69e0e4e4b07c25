"""Search (numbered list when piped; pick one in a terminal) and the no-argument menu."""

from __future__ import annotations

from tokysnatcher.actions.download import download
from tokysnatcher.config import Settings
from tokysnatcher.core.run import open_runtime
from tokysnatcher.errors import ExitCode, UsageError
from tokysnatcher.render import Output


def search(query: str, settings: Settings, output: Output) -> ExitCode:
    """Numbered results when piped; in a terminal, pick one to download."""
    if not query.strip():
        raise UsageError("--search needs a non-empty query")
    runtime = open_runtime(settings)
    try:
        page = runtime.client.search(query, offset=0, limit=12)
    finally:
        runtime.close()
    output.search_results(page)
    if not output.interactive or not page.results:
        return ExitCode.OK
    from rich.prompt import IntPrompt

    number = IntPrompt.ask("download which number (0 to quit)", default=0, console=output.err)
    if 1 <= number <= len(page.results):
        return download(page.results[number - 1].slug, settings, output)
    return ExitCode.OK


def interactive(settings: Settings, output: Output) -> ExitCode:
    raise UsageError(
        "no book given",
        hint="Pass a book URL or slug, or use --search, --list-downloads or --demo.",
    )
