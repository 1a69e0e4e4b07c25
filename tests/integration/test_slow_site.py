"""SPEC §5, end to end: a site that trickles or drips its answers never holds a run.

Every read (the API's book details, chapter list and search; playlists and segments) is bound
by the stall rule (under 1 KiB in ``--stall-timeout`` seconds) and by a deadline
(``--transfer-timeout`` seconds, then at least 4 KiB/s on average). A trickle of 1 byte a
second never trips a per-read socket timeout; a drip of 600 bytes every quarter second never
trips the stall rule: before, each held a run for as long as the site cared to keep it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import run_cli
from tokysnatcher.standin import Faults, StandinSite, make_book

pytestmark = pytest.mark.integration

SLUG = "slow-book"
# 1 byte a second: always something, never a kibibyte.
TRICKLE = {"trickle_bytes": 1, "trickle_every": 1.0}
# 2,400 bytes a second: every stall window (1 or 2 s) sees over 1 KiB, yet under 4 KiB/s.
DRIP = {"trickle_bytes": 600, "trickle_every": 0.25}
# Far below the 180 s a trickled answer held a run for before.
QUICK = 20.0


@pytest.fixture(scope="module")
def slow_site(standin_cache: Path) -> Iterator[StandinSite]:
    """A one-chapter book whose details answer is padded to 60 KB (25 s at the drip's rate)."""
    book = dataclasses.replace(
        make_book(SLUG, title="Slow Book", author="Tess Tardy", chapters=1, chapter_seconds=4.0),
        details_extra=(("padding", "x" * 60_000),),
    )
    with StandinSite(catalog={SLUG: book}, cache_dir=standin_cache) as running:
        yield running


def options(site: StandinSite, root: Path, seconds: str = "2") -> list[str]:
    """Quick retries; ``seconds`` for both the stall window and the transfer deadline."""
    return [
        "--base-url",
        site.base_url,
        "-d",
        str(root),
        "--retry-delay",
        "0.2",
        "--stall-timeout",
        seconds,
        "--transfer-timeout",
        seconds,
    ]


def timed_run(args: list[str]) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = run_cli(args, timeout=120)
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    ("kind", "command", "what"),
    [
        ("details", [SLUG], "the book details"),
        ("playlist", [SLUG], "the chapter list"),
        ("search", ["--search", "slow"], "the search"),
    ],
)
def test_a_trickled_api_answer_ends_the_run_with_one_line(
    slow_site: StandinSite, tmp_path: Path, kind: str, command: list[str], what: str
) -> None:
    slow_site.set_faults(Faults(trickle={kind}, **TRICKLE))  # type: ignore[arg-type]
    code, _, err, seconds = timed_run([*command, *options(slow_site, tmp_path)])
    assert code == 1, err
    (line,) = err.splitlines()
    assert line.startswith(f"error: the site stopped sending {what} (no progress in 2 s)"), line
    assert seconds < QUICK


def test_a_drip_that_beats_the_stall_rule_hits_the_deadline(
    slow_site: StandinSite, tmp_path: Path
) -> None:
    slow_site.set_faults(Faults(trickle={"details"}, **DRIP))  # type: ignore[arg-type]
    code, _, err, seconds = timed_run([SLUG, *options(slow_site, tmp_path)])
    assert code == 1, err
    (line,) = err.splitlines()
    assert line.startswith("error: the site sent the book details too slowly (over 2 s"), line
    assert "--transfer-timeout" in line
    assert seconds < QUICK


@pytest.mark.parametrize(
    ("kind", "shape", "words"),
    [
        ("m3u8", TRICKLE, "no progress (under 1 KiB) in 1 s; stalled"),
        ("segment", TRICKLE, "no progress (under 1 KiB) in 1 s; stalled"),
        ("segment", DRIP, "too slow (over 1 s at under 4 KiB/s on average)"),
    ],
)
def test_a_trickled_playlist_or_segment_fails_its_chapter_as_a_timeout(
    slow_site: StandinSite,
    tmp_path: Path,
    kind: str,
    shape: dict[str, float],
    words: str,
) -> None:
    # No Range: each quick retry starts the segment again, so the drip cannot be beaten by
    # continuing it in pieces (which a server that honours Range would allow).
    slow_site.set_faults(Faults(trickle={kind}, ignore_range=True, **shape))  # type: ignore[arg-type]
    report = tmp_path / "report.json"
    root = tmp_path / "lib"
    args = [SLUG, "--format", "m4a", "--max-retries", "0", "--report", str(report)]
    code, out, err, seconds = timed_run([*args, *options(slow_site, root, "1")])
    assert code == 1, err
    (chapter,) = json.loads(report.read_text("utf-8"))["chapters"]
    assert chapter["status"] == "failed", chapter
    assert chapter["error"]["kind"] == "timeout", chapter
    assert words in chapter["error"]["message"], chapter
    assert "0 complete, 1 failed" in out
    # Four tries of a segment (the quick in-attempt retries), each cut within seconds.
    assert seconds < 30
