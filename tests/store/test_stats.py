"""--stats figures from history rows: outcomes, success per source, median and p90 speed."""

from __future__ import annotations

from tokysnatcher.store.history import RunRecord
from tokysnatcher.store.stats import compute


def record(source: str, book: str, code: int, speed: float = 0.0, **counts: object) -> RunRecord:
    return RunRecord(
        source=source,
        book_id=book,
        title=book,
        format="mp3",
        folder=None,
        started_at="2026-11-30T10:00:00Z",
        ended_at="2026-11-30T10:01:00Z",
        bytes=int(speed * 10),
        seconds=10.0 if speed else 0.0,
        speed=speed,
        exit_code=code,
        **counts,  # type: ignore[arg-type]
    )


def test_outcomes_success_per_source_and_speeds() -> None:
    history = [
        record("tokybook", "a", 0, 100.0, chapters_complete=3),
        record("tokybook", "b", 1, 200.0, chapters_failed=1, failure_kinds={"not_found": 1}),
        record("tokybook", "a", 0, 300.0, failure_kinds={"http_5xx": 4}),
        record("librivox", "c", 130, 400.0),
        record("librivox", "d", 2, error="no book with the slug 'd'"),
        record("tokybook", "e", 0, 1000.0, failure_kinds={"http_5xx": 1, "timeout": 2}),
    ]
    stats = compute(history)
    assert (stats.runs, stats.books) == (6, 5)
    assert (stats.complete, stats.failed, stats.interrupted) == (3, 2, 1)
    by_source = {s.source: s for s in stats.sources}
    assert by_source["tokybook"].success_rate == 3 / 4
    assert by_source["librivox"].success_rate == 0.0  # the interrupted run does not count
    assert stats.speed_median == 300.0
    assert stats.speed_p90 == 760.0  # inclusive: 400 + 0.6 * (1000 - 400)
    assert stats.failure_kinds[:2] == [("http_5xx", 5), ("timeout", 2)]
    assert [r.book_id for r in stats.last_runs][:2] == ["e", "d"]
    assert stats.to_json()["last_runs"][1]["outcome"] == "error"


def test_no_history() -> None:
    stats = compute([])
    assert stats.runs == 0
    assert stats.speed_median is None
    assert stats.sources == []
