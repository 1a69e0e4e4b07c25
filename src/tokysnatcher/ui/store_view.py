"""What ``--queue-list`` and ``--stats`` print, and the ``--json`` form of any result.

Results go to stdout. Text that came from a site or a user (references, titles) goes through
:func:`~tokysnatcher.ui.display.visible`; JSON is printed ASCII-only, so no byte of it can act
on a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from tokysnatcher.ui.display import visible
from tokysnatcher.utils.units import format_bytes, format_duration

if TYPE_CHECKING:
    from pathlib import Path

    from tokysnatcher.store.queue import QueueEntry
    from tokysnatcher.store.stats import Stats
    from tokysnatcher.ui.output import Output


def print_json(output: Output, data: object) -> None:
    """``data`` as indented JSON with sorted keys, ASCII only, on stdout."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True, default=str)
    output.out.print(text, markup=False, highlight=False, soft_wrap=True, emoji=False)


def _safe(text: str) -> str:
    return escape(visible(text))


def describe_entry(entry: QueueEntry) -> str:
    """``#3 some-book (m4b, chapters 1-3, priority 5) -> /lib``: one entry on one line."""
    parts = [entry.format]
    if entry.chapters:
        parts.append(f"chapters {entry.chapters}")
    parts.append(f"priority {entry.priority}")
    return f"#{entry.id} {entry.ref} ({', '.join(parts)}) -> {entry.directory}"


def queue_table(output: Output, entries: Sequence[QueueEntry], database: Path) -> None:
    """Every entry, in the order ``--queue-run`` takes them, then paused and failed ones."""
    if not entries:
        output.out.print(_safe(f"the queue is empty ({database})"), soft_wrap=True)
        return
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("id", "priority", "state", "format", "chapters", "book", "folder", "added"):
        table.add_column(column, justify="right" if column in ("id", "priority") else "left")
    for entry in entries:
        table.add_row(
            str(entry.id),
            str(entry.priority),
            entry.shown_state,
            entry.format,
            _safe(entry.chapters or "all"),
            _safe(entry.ref),
            _safe(entry.directory),
            entry.added_at.replace("T", " ").removesuffix("Z"),
            style={"running": "cyan", "paused": "yellow", "failed": "red"}.get(entry.shown_state),
        )
    output.out.print(table)
    for entry in entries:
        if entry.shown_state == "failed" and entry.message:
            output.out.print(_safe(f"  #{entry.id} failed: {entry.message}"), soft_wrap=True)
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.shown_state] = counts.get(entry.shown_state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    output.out.print(f"{len(entries)} in the queue: {summary}")


def _rate(bytes_per_second: float | None) -> str:
    return f"{format_bytes(bytes_per_second)}/s" if bytes_per_second is not None else "-"


def stats_report(output: Output, stats: Stats, database: Path) -> None:
    """Totals, success per source, speeds, the most common failures and the last runs."""
    out = output.out
    if not stats.runs:
        out.print(_safe(f"no runs recorded yet ({database})"), soft_wrap=True)
        return
    out.print(
        f"{stats.runs} run(s) of {stats.books} book(s): {stats.complete} complete, "
        f"{stats.failed} failed, {stats.interrupted} interrupted",
        style="bold",
    )
    out.print(
        f"chapters: {stats.chapters_complete} complete, {stats.chapters_failed} failed, "
        f"{stats.chapters_skipped} skipped; retries: {stats.chapter_retries} chapter, "
        f"{stats.request_retries} request"
    )
    out.print(
        f"downloaded {format_bytes(stats.bytes)} in {format_duration(stats.seconds)}; "
        f"speed per book: median {_rate(stats.speed_median)}, p90 {_rate(stats.speed_p90)}"
    )
    for source in stats.sources:
        rate = f"{100 * source.success_rate:.0f}%" if source.success_rate is not None else "-"
        out.print(
            _safe(
                f"source {source.source}: success {rate} ({source.complete} complete, "
                f"{source.failed} failed, {source.interrupted} interrupted)"
            ),
            soft_wrap=True,
        )
    if stats.failure_kinds:
        kinds = ", ".join(f"{kind} {count}" for kind, count in stats.failure_kinds)
        out.print(f"most common failures: {kinds}")
    else:
        out.print("most common failures: none")
    from tokysnatcher.store.stats import outcome

    table = Table(title="last runs", title_justify="left", show_edge=False, box=None)
    for column in ("ended", "source", "book", "format", "outcome", "chapters", "downloaded"):
        table.add_column(column, justify="right" if column == "downloaded" else "left")
    table.add_column("speed", justify="right")
    for record in stats.last_runs:
        done = record.chapters_complete + record.chapters_skipped
        total = done + record.chapters_failed + record.chapters_unfinished
        table.add_row(
            record.ended_at.replace("T", " ").removesuffix("Z"),
            _safe(record.source),
            _safe(record.title),
            record.format,
            outcome(record),
            f"{done}/{total}" if total else "-",
            format_bytes(record.bytes),
            _rate(record.speed) if record.bytes else "-",
        )
    out.print(table)
