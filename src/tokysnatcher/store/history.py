"""The history: one row per book per run (single, batch or queue), for ``--stats``.

A row is read off the run's one state (:class:`~tokysnatcher.download.state.RunState` and the
:class:`~tokysnatcher.download.results.RunResult` made from it) when the book's run ends; nothing
here counts on its own.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tokysnatcher.download.results import RunResult
from tokysnatcher.download.state import Phase, RunState
from tokysnatcher.store.database import Database, utc_stamp


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One book's run: what ``history`` stores and ``--stats`` reads."""

    source: str
    book_id: str
    title: str
    format: str
    folder: str | None
    started_at: str
    ended_at: str
    bytes: int = 0  # downloaded over the network this run
    file_bytes: int = 0  # the book's chapter files on disk
    seconds: float = 0.0
    speed: float = 0.0  # bytes / seconds
    chapters_complete: int = 0
    chapters_failed: int = 0
    chapters_skipped: int = 0
    chapters_unfinished: int = 0
    chapter_retries: int = 0
    request_retries: int = 0
    # {"chapter": {kind: n}, "request": {kind: n}}: why attempts and requests were retried.
    retries_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    # Every failed chapter attempt and every retried request, by kind.
    failure_kinds: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0
    error: str | None = None  # the one-line error of a book that ended before its run

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_record(
    *,
    source: str,
    book_id: str,
    fmt: str,
    state: RunState,
    result: RunResult,
    exit_code: int,
) -> RunRecord:
    """The row of a book whose chapters ran: counts, bytes and retries from ``state``."""
    tally = state.tally()
    ended = datetime.now(UTC)
    started = ended - timedelta(seconds=max(0.0, time.monotonic() - state.started))
    retried: Counter[str] = Counter()
    request: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    with state.lock:
        for chapter in state.chapters.values():
            # retry_at() records the kind of each retried attempt before failed() or
            # attempt_lost() records the last one: the first chapter_retries kinds were retried.
            retried.update(str(kind) for kind in chapter.kinds[: chapter.chapter_retries])
            failures.update(str(kind) for kind in chapter.kinds)
            request.update({str(kind): n for kind, n in chapter.request_kinds.items()})
    failures.update(request)
    failures.pop("cancelled", None)  # the run stopping is not a failure of the site
    done = tally.counts[Phase.DONE]
    failed = tally.counts[Phase.FAILED]
    skipped = tally.counts[Phase.SKIPPED]
    return RunRecord(
        source=source,
        book_id=book_id,
        title=state.book_title,
        format=fmt,
        folder=str(state.destination),
        started_at=utc_stamp(started),
        ended_at=utc_stamp(ended),
        bytes=state.bytes_received,
        file_bytes=result.file_bytes,
        seconds=round(result.seconds, 3),
        speed=state.bytes_received / result.seconds if result.seconds > 0 else 0.0,
        chapters_complete=done,
        chapters_failed=failed,
        chapters_skipped=skipped,
        chapters_unfinished=state.total_chapters - done - failed - skipped,
        chapter_retries=tally.chapter_retries,
        request_retries=tally.request_retries,
        retries_by_kind={"chapter": dict(retried), "request": dict(request)},
        failure_kinds=dict(failures),
        exit_code=exit_code,
    )


def error_record(
    *, source: str, book_id: str, fmt: str, started: datetime, exit_code: int, error: str
) -> RunRecord:
    """The row of a book that ended before its chapters ran (not found, folder in use ...)."""
    return RunRecord(
        source=source,
        book_id=book_id,
        title=book_id,
        format=fmt,
        folder=None,
        started_at=utc_stamp(started),
        ended_at=utc_stamp(),
        exit_code=exit_code,
        error=error,
    )


_COLUMNS = tuple(RunRecord.__dataclass_fields__)
_JSON_COLUMNS = ("retries_by_kind", "failure_kinds")


def append(database: Database, record: RunRecord) -> None:
    """Add ``record`` to the history."""
    values = [
        json.dumps(value, sort_keys=True) if name in _JSON_COLUMNS else value
        for name, value in record.to_json().items()
    ]
    placeholders = ", ".join("?" * len(_COLUMNS))
    with database.write() as connection:
        connection.execute(
            f"INSERT INTO history ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values
        )


def records(database: Database) -> list[RunRecord]:
    """Every row, oldest first."""
    found = []
    for row in database.rows(f"SELECT {', '.join(_COLUMNS)} FROM history ORDER BY id"):
        values = dict(zip(_COLUMNS, tuple(row), strict=True))
        for name in _JSON_COLUMNS:
            try:
                values[name] = json.loads(values[name])
            except (TypeError, ValueError):
                values[name] = {}
        found.append(RunRecord(**values))
    return found
