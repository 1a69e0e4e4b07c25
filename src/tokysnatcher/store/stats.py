"""``--stats``: totals, success per source, speeds and failure kinds, read off the history."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from tokysnatcher.errors import ExitCode
from tokysnatcher.store.history import RunRecord

LAST_RUNS = 10
TOP_FAILURES = 5


def outcome(record: RunRecord) -> str:
    """complete / failed / interrupted / error (ended before its chapters ran)."""
    if record.exit_code == ExitCode.OK:
        return "complete"
    if record.exit_code == ExitCode.INTERRUPTED:
        return "interrupted"
    return "error" if record.error else "failed"


@dataclass(frozen=True, kw_only=True)
class SourceStats:
    """How the books of one source ended; ``success_rate`` among those that ended."""

    source: str
    runs: int
    complete: int
    failed: int  # failed chapters, or an error before them
    interrupted: int
    success_rate: float | None


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Everything ``--stats`` shows; :meth:`to_json` is what ``--stats --json`` prints."""

    runs: int
    books: int  # distinct (source, book)
    complete: int
    failed: int
    interrupted: int
    bytes: int
    seconds: float
    chapters_complete: int
    chapters_failed: int
    chapters_skipped: int
    chapter_retries: int
    request_retries: int
    speed_median: float | None  # bytes/s of the runs that downloaded something
    speed_p90: float | None
    sources: list[SourceStats]
    failure_kinds: list[tuple[str, int]]  # most common first
    last_runs: list[RunRecord]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failure_kinds"] = [{"kind": k, "count": n} for k, n in self.failure_kinds]
        data["last_runs"] = [
            {**record.to_json(), "outcome": outcome(record)} for record in self.last_runs
        ]
        return data


def _p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def compute(history: list[RunRecord]) -> Stats:
    """The statistics of ``history`` (oldest first)."""
    outcomes = Counter(outcome(record) for record in history)
    by_source: dict[str, Counter[str]] = {}
    for record in history:
        by_source.setdefault(record.source, Counter())[outcome(record)] += 1
    sources = []
    for name, counts in sorted(by_source.items()):
        failed = counts["failed"] + counts["error"]
        ended = counts["complete"] + failed
        sources.append(
            SourceStats(
                source=name,
                runs=sum(counts.values()),
                complete=counts["complete"],
                failed=failed,
                interrupted=counts["interrupted"],
                success_rate=counts["complete"] / ended if ended else None,
            )
        )
    speeds = sorted(r.speed for r in history if r.bytes > 0 and r.seconds > 0)
    failures: Counter[str] = Counter()
    for record in history:
        failures.update(record.failure_kinds)
    return Stats(
        runs=len(history),
        books=len({(r.source, r.book_id) for r in history}),
        complete=outcomes["complete"],
        failed=outcomes["failed"] + outcomes["error"],
        interrupted=outcomes["interrupted"],
        bytes=sum(r.bytes for r in history),
        seconds=round(sum(r.seconds for r in history), 3),
        chapters_complete=sum(r.chapters_complete for r in history),
        chapters_failed=sum(r.chapters_failed for r in history),
        chapters_skipped=sum(r.chapters_skipped for r in history),
        chapter_retries=sum(r.chapter_retries for r in history),
        request_retries=sum(r.request_retries for r in history),
        speed_median=statistics.median(speeds) if speeds else None,
        speed_p90=_p90(speeds) if speeds else None,
        sources=sources,
        failure_kinds=failures.most_common(TOP_FAILURES),
        last_runs=history[-LAST_RUNS:][::-1],
    )
