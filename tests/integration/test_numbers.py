"""The numbers a user reads are true (issue 12, item 6), end to end against the stand-in site.

An interrupted run claims no success it did not have; retries are counted at both levels; file
sizes and downloaded bytes are two labelled figures that agree wherever they are shown; an m4b's
chapters are called parts; the free-space refusal and ``--dry-run`` print real sizes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import NEEDS_POSIX_KERNEL, NEEDS_SIGNALS, cli_env, fast_options, run_cli
from tokysnatcher.standin import Faults, StandinSite
from tokysnatcher.utils.units import format_bytes

pytestmark = pytest.mark.integration

SLUG = "the-sample-book"


def book_folder(root: Path) -> Path:
    return root / "Ada Quill" / "The Sample Book"


@NEEDS_SIGNALS
def test_an_interrupted_run_says_so_and_claims_no_success_rate(
    standin_cache: Path, tmp_path: Path
) -> None:
    root, report, log = tmp_path / "lib", tmp_path / "run.json", tmp_path / "err.txt"
    # About a second a segment: nothing is near its end when Ctrl-C comes.
    slow = Faults(bandwidth=8_000, latency=0.05)
    with StandinSite(faults=slow, cache_dir=standin_cache) as site, log.open("w") as err:
        args = [SLUG, *fast_options(site, root), "--report", str(report)]
        run = subprocess.Popen(
            [sys.executable, "-m", "tokysnatcher", *args],
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        deadline = time.monotonic() + 60
        while ": downloading" not in log.read_text("utf-8"):
            assert run.poll() is None, log.read_text("utf-8")
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=30)
    assert run.returncode == 130, out + log.read_text("utf-8")
    summary = out.splitlines()[0]
    assert summary.startswith(
        "The Sample Book - interrupted: 0 complete, 0 failed, 0 skipped, 4 not finished"
    ), summary
    assert "success" not in summary
    assert "waiting" not in out + log.read_text("utf-8")
    data = json.loads(report.read_text("utf-8"))
    assert data["summary"]["interrupted"] is True
    assert data["summary"]["success_rate"] is None
    assert data["summary"]["not_finished"] == 4


def test_retries_are_counted_at_both_levels_and_v_shows_each(
    standin_cache: Path, tmp_path: Path
) -> None:
    # The first request of every playlist and segment answers 503 once: quick request retries.
    faults = Faults(fail_first=1, error_kinds=("5xx",))
    root, report = tmp_path / "lib", tmp_path / "run.json"
    with StandinSite(faults=faults, cache_dir=standin_cache) as site:
        args = [SLUG, "--chapters", "1-2", *fast_options(site, root), "--report", report, "-v"]
        result = run_cli(args)
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text("utf-8"))
    requests = data["summary"]["request_retries"]
    assert requests == sum(c["request_retries"] for c in data["chapters"])
    assert requests >= 4  # two playlists and at least one segment each
    assert data["summary"]["chapter_retries"] == 0
    assert f"retries: 0 chapter, {requests} request" in result.stdout
    shown = [line for line in result.stderr.splitlines() if re.search(r": retry \d+/3 in ", line)]
    assert len(shown) == requests, result.stderr
    assert all(line.endswith("[http_5xx]") for line in shown), shown
    assert any(re.fullmatch(r"chapter 1 playlist: retry 1/3 in [\d.]+ s \[http_5xx\]", line)
               for line in shown), shown  # fmt: skip
    # -vv adds the HTTP detail, and names the request once.
    with StandinSite(faults=faults, cache_dir=standin_cache) as site:
        debug = run_cli([SLUG, "--chapters", "1", *fast_options(site, tmp_path / "b"), "-vv"])
    detail = [line for line in debug.stderr.splitlines() if ": retry 1/3 in " in line]
    assert detail, debug.stderr
    for line in detail:
        assert re.search(r" - HTTP 50\d ", line), line
        what = line.split(":", 1)[0]
        assert line.count(what) == 1, line


def test_file_sizes_and_downloaded_bytes_agree_everywhere(
    site: StandinSite, tmp_path: Path
) -> None:
    root, report = tmp_path / "lib", tmp_path / "run.json"
    result = run_cli([SLUG, *fast_options(site, root), "--report", report])
    assert result.returncode == 0, result.stderr
    folder = book_folder(root)
    data = json.loads(report.read_text("utf-8"))
    on_disk = {path.name: path.stat().st_size for path in folder.glob("*.mp3")}
    for chapter in data["chapters"]:
        size, downloaded = on_disk[chapter["file"]], chapter["downloaded_bytes"]
        assert chapter["file_bytes"] == size
        line = next(line for line in result.stderr.splitlines() if chapter["file"] in line)
        assert f"done (file {format_bytes(size)}, downloaded {format_bytes(downloaded)})" in line
    total = sum(on_disk.values())
    assert data["summary"]["file_bytes"] == total
    downloaded = data["summary"]["downloaded_bytes"]
    assert downloaded == sum(c["downloaded_bytes"] for c in data["chapters"])
    assert f"files {format_bytes(total)}; downloaded {format_bytes(downloaded)} in" in (
        result.stdout
    )
    listed = run_cli(["--list-downloads", "-d", root])
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "The Sample Book" in line)
    assert format_bytes(total) in row, listed.stdout


def test_an_m4b_run_calls_its_chapters_parts(site: StandinSite, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    result = run_cli([SLUG, "--format", "m4b", "--chapters", "1-2", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr
    done = [line for line in result.stderr.splitlines() if ": done (" in line]
    assert len(done) == 2, result.stderr
    assert all(re.search(r"done \(part .*\) -> part \d\d - ", line) for line in done), done
    assert "; parts " in result.stdout.splitlines()[0]


@NEEDS_POSIX_KERNEL
def test_the_free_space_refusal_prints_real_sizes(site: StandinSite, tmp_path: Path) -> None:
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], check=False).returncode:
        pytest.skip("needs root and a private mount namespace for a small file system")
    small = tmp_path / "small"
    small.mkdir()
    # A 256 KiB file system in a private mount namespace: the book (~420 KiB) does not fit.
    script = 'mount -t tmpfs -o size=256k tokysnatcher-test "$1" && shift && exec "$@"'
    command = ["unshare", "-m", "--", "sh", "-c", script, "sh", str(small)]
    command += [sys.executable, "-m", "tokysnatcher", SLUG, *fast_options(site, small)]
    result = subprocess.run(
        command, capture_output=True, text=True, env=cli_env(), timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    match = re.search(r"([\d.]+) KiB free, about ([\d.]+) KiB needed", result.stderr)
    assert match, result.stderr
    free, needed = float(match.group(1)), float(match.group(2))
    assert 200 < free <= 256
    assert needed > free


@pytest.mark.parametrize("slug", [SLUG, "direct-file-book", "mp3-stream-book"])
def test_dry_run_estimates_mp3_within_15_percent_and_knows_skips_exactly(
    site: StandinSite, tmp_path: Path, slug: str
) -> None:
    root = tmp_path / "lib"
    plan = run_cli([slug, "--dry-run", *fast_options(site, root)])
    assert plan.returncode == 0, plan.stderr
    estimates = {
        name: _kib(size)
        for name, size in re.findall(r"(\d\d - .+?\.mp3)\s+~([\d.]+ KiB)", plan.stdout)
    }
    assert estimates, plan.stdout
    assert run_cli([slug, *fast_options(site, root)]).returncode == 0
    folder = next(path.parent for path in root.rglob("*.mp3"))
    for name, estimate in estimates.items():
        actual = (folder / name).stat().st_size
        assert abs(estimate - actual) / actual <= 0.15, (name, estimate, actual)
    again = run_cli([slug, "--dry-run", *fast_options(site, root)])
    for name in estimates:
        size = format_bytes((folder / name).stat().st_size)
        row = next(line for line in again.stdout.splitlines() if name in line)
        assert re.search(rf"skip\s+{re.escape(name)}\s+{re.escape(size)}\s", row), row


def _kib(text: str) -> float:
    return float(text.removesuffix(" KiB")) * 1024
