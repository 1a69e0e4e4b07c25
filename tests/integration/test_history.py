"""History and ``--stats`` after runs against a faulty stand-in site: the counts are the run's
own (its ``--report``) and every fault the site injected is counted once (issue 14 item 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import cli_env, fast_options, run_cli
from tokysnatcher.standin import Faults, StandinSite

pytestmark = pytest.mark.integration

FAILING = "cover-book"  # 2 chapters; the second one is missing on the site (404)
RETRIED = "mp3-stream-book"  # 3 chapters; about one request in eight answers 5xx


@pytest.fixture
def faulty_site(standin_cache: Path) -> Iterator[StandinSite]:
    faults = Faults(seed=3, error_rate=0.12, error_kinds=("5xx",), missing_tracks={(FAILING, 1)})
    with StandinSite(faults=faults, cache_dir=standin_cache) as running:
        yield running


def test_stats_after_runs_with_faults(faulty_site: StandinSite, tmp_path: Path) -> None:
    env = cli_env(TOKYSNATCHER_DATA_DIR=str(tmp_path / "data"))
    options = fast_options(faulty_site, tmp_path / "lib")
    reports = []
    for slug, code in ((FAILING, 1), (RETRIED, 0), ("no-such-book", 2)):
        report = tmp_path / f"{slug}.json"
        result = run_cli([slug, *options, "--report", str(report)], env=env)
        assert result.returncode == code, result.stderr
        if report.exists():
            reports.append(json.loads(report.read_text("utf-8"))["summary"])

    shown = run_cli(["--stats", "--json"], env=env)
    assert shown.returncode == 0, shown.stderr
    stats: dict[str, Any] = json.loads(shown.stdout)
    assert (stats["runs"], stats["books"]) == (3, 3)
    assert (stats["complete"], stats["failed"], stats["interrupted"]) == (1, 2, 0)
    assert stats["chapters_complete"] == sum(r["complete"] for r in reports) == 4
    assert stats["chapters_failed"] == sum(r["failed"] for r in reports) == 1
    assert stats["request_retries"] == sum(r["request_retries"] for r in reports) > 0
    assert stats["chapter_retries"] == sum(r["chapter_retries"] for r in reports)
    assert stats["bytes"] == sum(r["downloaded_bytes"] for r in reports)
    assert stats["sources"] == [
        {
            "source": "tokybook",
            "runs": 3,
            "complete": 1,
            "failed": 2,
            "interrupted": 0,
            "success_rate": 1 / 3,
        }
    ]
    # Every 5xx the site sent was retried once, as a request or as a chapter's new attempt.
    kinds = {item["kind"]: item["count"] for item in stats["failure_kinds"]}
    assert kinds == {"http_5xx": faulty_site.stats.faults["5xx"], "not_found": 1}
    last = stats["last_runs"]
    assert [(r["book_id"], r["outcome"], r["exit_code"]) for r in last] == [
        ("no-such-book", "error", 2),
        (RETRIED, "complete", 0),
        (FAILING, "failed", 1),
    ]
    assert last[0]["error"] == f"no book with the slug 'no-such-book' on {faulty_site.base_url}"
    assert last[1]["retries_by_kind"]["request"] == {"http_5xx": reports[1]["request_retries"]}
    assert last[2]["chapters_failed"] == 1
    assert last[2]["failure_kinds"]["not_found"] == 1
    assert stats["speed_median"] > 0
    assert stats["speed_p90"] >= stats["speed_median"]

    text = run_cli(["--stats"], env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "3 run(s) of 3 book(s): 1 complete, 2 failed, 0 interrupted"
    assert "source tokybook: success 33% (1 complete, 2 failed, 0 interrupted)" in lines
    assert f"most common failures: http_5xx {kinds['http_5xx']}, not_found 1" in lines
    assert "no-such-book" in text.stdout
    assert "Cover Story" in text.stdout
