"""Resilience: success rate and wall time as the stand-in site fails more and more requests.

A generated book (6 chapters of 40 s, 2 s segments: 120 segments and 6 playlists) is downloaded
by the real command (``--format m4a``, default retries) from a stand-in site that fails 0, 10,
25 and 40 % of audio requests in mixed ways: HTTP 5xx, 429 with ``Retry-After: 1``, connection
resets, truncated bodies and stalls (the server goes silent; ``--stall-timeout 2`` notices).
The faults are seeded, so a run is reproducible. Every completed chapter is checked against
the site's source audio (decoded samples, bit for bit). Run from the repository root::

    python benchmarks/resilience.py              # about a minute
    python benchmarks/resilience.py --quick      # smoke run: 3 short chapters
    python benchmarks/resilience.py --rates 0.5 0.6 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg

from tokysnatcher import __version__
from tokysnatcher.standin import Faults, StandinSite, make_book

SLUG = "bench-resilience"
RATES = (0.0, 0.10, 0.25, 0.40)
# What every run is given: quick stall detection and a short first backoff, so a run at 40 %
# stays around ten seconds; the retry budget is the default (--max-retries 3).
OPTIONS = ("--format", "m4a", "--stall-timeout", "2", "--retry-delay", "0.5", "-q")
RUN_TIMEOUT = 300.0
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class Row:
    """One download at one injected failure rate."""

    rate: float
    faults: int
    requests: int
    complete: int
    chapters: int
    retries: int
    seconds: float
    exact: bool
    exit_code: int

    @property
    def success(self) -> float:
        return self.complete / self.chapters if self.chapters else 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 chapters of 12 s")
    parser.add_argument("--seed", type=int, default=3, help="fault seed (default 3)")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=list(RATES), help="failure rates, 0..1"
    )
    return parser.parse_args(argv)


def decoded_md5(path: Path) -> str:
    """MD5 of the decoded samples: equal for the same audio in any container."""
    result = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a", "-f", "md5", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


def run_once(site: StandinSite, rate: float, seed: int, work: Path) -> Row:
    """Download the book once at ``rate`` and measure it."""
    site.set_faults(Faults(error_rate=rate, seed=seed, stall_seconds=4.0, retry_after=1.0))
    site.stats.reset()
    root = work / f"rate-{rate:.2f}"
    report = work / f"report-{rate:.2f}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKYSNATCHER_")}
    env["TOKYSNATCHER_CONFIG"] = os.devnull + ".absent.toml"  # the user's config stays out
    command = [sys.executable, "-m", "tokysnatcher", SLUG, "--base-url", site.base_url, *OPTIONS]
    started = time.monotonic()
    done = subprocess.run(
        [*command, "-d", str(root), "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    seconds = time.monotonic() - started
    if not report.exists():
        raise SystemExit(f"the run at {rate:.0%} wrote no report:\n{done.stdout}{done.stderr}")
    data: dict[str, Any] = json.loads(report.read_text("utf-8"))
    folder = Path(data["book"]["folder"])
    exact = True
    for chapter in data["chapters"]:
        if chapter["status"] == "complete":
            source = site.source_media(SLUG, chapter["index"] - 1)
            exact &= decoded_md5(folder / chapter["file"]) == decoded_md5(source)
    stats = site.stats
    return Row(
        rate=rate,
        faults=sum(stats.faults.values()),
        requests=stats.requests["m3u8"] + stats.requests["segment"],
        complete=int(data["summary"]["complete"]),
        chapters=len(data["chapters"]),
        retries=int(data["summary"]["retries"]),
        seconds=seconds,
        exact=exact,
        exit_code=done.returncode,
    )


def table(rows: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| failure rate | faults injected | audio requests | chapters complete | success rate "
        "| chapter retries | audio exact | wall time |",
        "|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.rate:.0%} | {row.faults} | {row.requests} | {row.complete}/{row.chapters} "
            f"| {row.success:.0%} | {row.retries} | {'yes' if row.exact else 'NO'} "
            f"| {row.seconds:.1f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if any(not 0.0 <= rate <= 1.0 for rate in args.rates):
        raise SystemExit("--rates must be between 0 and 1")
    chapters, seconds = (3, 12.0) if args.quick else (6, 40.0)
    book = make_book(SLUG, title="Resilience Bench", chapters=chapters, chapter_seconds=seconds)
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-bench-") as tmp:
        work = Path(tmp)
        print(f"generating {chapters} chapters of {seconds:g} s of audio ...", file=sys.stderr)
        with StandinSite(catalog={SLUG: book}, cache_dir=work / "cache") as site:
            rows = []
            for rate in args.rates:
                print(f"downloading at {rate:.0%} injected failures ...", file=sys.stderr)
                rows.append(run_once(site, rate, args.seed, work))
    segments = chapters * int(seconds // 2)
    print(
        f"tokysnatcher {__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {chapters} chapters, {segments} segments; seed {args.seed}; "
        f"options: {' '.join(OPTIONS)}"
    )
    print(table(rows))
    return 0 if all(row.exact for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
