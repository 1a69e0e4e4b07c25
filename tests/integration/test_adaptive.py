"""Connections that adapt, throttling named, outages waited out: the real command, a real site.

One small book (3 chapters of 20 s in 4 s segments, 32 KB each) on a site whose faults each test
sets: a per-response bandwidth cap makes requests overlap, so the connection limit matters.
Outages begin once the download is under way (the test watches the site's segment count), so
a slow start on a busy machine cannot move them onto the book's API calls.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import cli_env, fast_options, run_cli
from tokysnatcher.standin import Faults, StandinSite, make_book

pytestmark = pytest.mark.integration

SLUG = "adaptive-book"
PER_CONNECTION = 48_000  # bytes/s per response: a segment takes two thirds of a second
CHAPTERS = 3


@pytest.fixture(scope="module")
def adaptive_site(standin_cache: Path) -> Iterator[StandinSite]:
    book = make_book(
        SLUG, title="Adaptive", chapters=CHAPTERS, chapter_seconds=20, segment_seconds=4
    )
    with StandinSite(catalog={SLUG: book}, cache_dir=standin_cache) as running:
        yield running


@pytest.fixture
def faults(adaptive_site: StandinSite) -> Iterator[StandinSite]:
    """The site, its counters reset; fault-free again afterwards."""
    adaptive_site.stats.reset()
    yield adaptive_site
    adaptive_site.set_faults(Faults())


def download(site: StandinSite, root: Path, *options: str) -> tuple[int, str, dict[str, Any]]:
    report = root / "report.json"
    args = [SLUG, *fast_options(site, root / "books"), "--report", report, "-v", *options]
    result = run_cli(args, timeout=120)
    output = result.stdout + result.stderr
    assert report.exists(), output
    return result.returncode, output, json.loads(report.read_text("utf-8"))


def test_auto_adds_connections_while_throughput_rises(faults: StandinSite, tmp_path: Path) -> None:
    faults.set_faults(Faults(bandwidth=PER_CONNECTION))
    code, output, report = download(faults, tmp_path)
    assert code == 0, output
    assert "connections 4 -> 5 (auto: throughput rising)" in output
    assert faults.stats.peak_connections > 4
    assert report["summary"]["complete"] == CHAPTERS


def test_a_burst_of_429s_halves_the_limit_and_every_chapter_completes(
    faults: StandinSite, tmp_path: Path
) -> None:
    # The site answers 429 (Retry-After: 1) to a third request at once; auto starts with 4.
    faults.set_faults(Faults(bandwidth=4 * PER_CONNECTION, max_concurrent=2, retry_after=1.0))
    code, output, report = download(faults, tmp_path)
    assert code == 0, output
    assert "connections 4 -> 2 (auto: server throttling)" in output
    assert report["summary"]["failed"] == 0
    assert report["summary"]["complete"] == CHAPTERS
    assert faults.stats.statuses[429] > 0


def test_a_fixed_count_stays_fixed_and_throttling_is_named_in_one_line(
    faults: StandinSite, tmp_path: Path
) -> None:
    faults.set_faults(Faults(bandwidth=4 * PER_CONNECTION, max_concurrent=2, retry_after=1.0))
    code, output, _ = download(faults, tmp_path, "--connections", "3")
    assert code == 0, output
    assert not re.search(r"^connections \d+ -> ", output, re.MULTILINE), output
    throttled = [line for line in output.splitlines() if "limiting requests" in line]
    assert len(throttled) == 1, output
    assert re.fullmatch(
        r"warning: the site is limiting requests: \d+ answers 429 \(too many requests\) in "
        r"\d+ s; waiting [12] s before trying again",
        throttled[0],
    ), throttled


def _start_outage_once_under_way(site: StandinSite, faults: Faults) -> None:
    deadline = time.monotonic() + 60
    while site.stats.requests["segment"] < 4:
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)
    site.set_faults(faults)


def _run_with_outage(
    site: StandinSite, root: Path, outage: float, *options: str
) -> tuple[int, str, dict[str, Any]]:
    site.set_faults(Faults(bandwidth=PER_CONNECTION))
    report = root / "report.json"
    args = [SLUG, *fast_options(site, root / "books"), "--report", str(report), "-v", *options]
    with subprocess.Popen(
        [sys.executable, "-m", "tokysnatcher", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
        text=True,
    ) as proc:
        _start_outage_once_under_way(
            site, Faults(bandwidth=PER_CONNECTION, outage_at=0.0, outage_seconds=outage)
        )
        output, _ = proc.communicate(timeout=120)
    assert report.exists(), output
    return proc.returncode, output, json.loads(report.read_text("utf-8"))


def test_a_short_outage_is_waited_out_without_spending_chapter_retries(
    faults: StandinSite, tmp_path: Path
) -> None:
    code, output, report = _run_with_outage(faults, tmp_path, 4.0)
    assert code == 0, output
    assert "the network or the site is down; waiting up to 10 min for it" in output
    assert "the site answers again after" in output
    assert faults.stats.faults["outage"] > 0
    summary = report["summary"]
    assert (summary["complete"], summary["failed"], summary["chapter_retries"]) == (CHAPTERS, 0, 0)
    assert all(chapter["chapter_retries"] == 0 for chapter in report["chapters"])


def test_an_outage_longer_than_max_wait_fails_the_chapters_naming_it(
    faults: StandinSite, tmp_path: Path
) -> None:
    started = time.monotonic()
    code, output, report = _run_with_outage(faults, tmp_path, 60.0, "--max-wait", "2")
    assert time.monotonic() - started < 40, output
    assert code == 1, output
    assert report["summary"]["complete"] < CHAPTERS
    failed = [chapter for chapter in report["chapters"] if chapter["status"] == "failed"]
    assert failed, output
    for chapter in failed:
        assert chapter["error"]["kind"] == "network"
        assert chapter["error"]["message"].startswith("the network or the site was down for ")
        assert "(--max-wait 2); last error: " in chapter["error"]["message"]
