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
    python benchmarks/resilience.py --save benchmarks/results/resilience.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    BookSize,
    child_env,
    ffmpeg_path,
    machine,
    run_tokysnatcher,
    save,
    segment_totals,
    table,
    warm_up,
)
from tokysnatcher.standin import Faults, StandinSite

SLUG = "bench-resilience"
RATES = (0.0, 0.10, 0.25, 0.40)
# What every run is given: quick stall detection and a short first backoff, so a run at 40 %
# stays around ten seconds; the retry budget is the default (--max-retries 3).
OPTIONS = ("--format", "m4a", "--stall-timeout", "2", "--retry-delay", "0.5", "-q")
RUN_TIMEOUT = 300.0
FFMPEG = ffmpeg_path()


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
    parser.add_argument("--save", type=Path, help="also write the report (Markdown) to this file")
    parser.add_argument("--note", default="", help="a line to add to the report")
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


def run_once(site: StandinSite, rate: float, seed: int, work: Path, env: dict[str, str]) -> Row:
    """Download the book once at ``rate`` and measure it."""
    site.set_faults(Faults(error_rate=rate, seed=seed, stall_seconds=4.0, retry_after=1.0))
    site.stats.reset()
    root = work / f"rate-{rate:.2f}"
    report = work / f"report-{rate:.2f}.json"
    command = [SLUG, "--base-url", site.base_url, *OPTIONS]
    done = run_tokysnatcher(
        [*command, "-d", str(root), "--report", str(report)], env=env, timeout=RUN_TIMEOUT
    )
    if not report.exists():
        raise SystemExit(f"the run at {rate:.0%} wrote no report:\n{done.log[-3000:]}")
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
        retries=int(data["summary"]["chapter_retries"]),
        seconds=done.wall,
        exact=exact,
        exit_code=done.returncode,
    )


HEADERS = [
    "failure rate",
    "faults injected",
    "audio requests",
    "chapters complete",
    "success rate",
    "chapter retries",
    "audio exact",
    "wall s",
]


def report(rows: list[Row], size: BookSize, segments: int, args: argparse.Namespace) -> str:
    """The Markdown report: setup, then one row per failure rate."""
    body = [
        [
            f"{row.rate:.0%}",
            row.faults,
            row.requests,
            f"{row.complete}/{row.chapters}",
            f"{row.success:.0%}",
            row.retries,
            "yes" if row.exact else "NO",
            f"{row.seconds:.1f}",
        ]
        for row in rows
    ]
    lines = [
        "# Resilience: success rate and time against injected failures",
        "",
        f"Book: {size.describe()}: {segments} segments. Fault seed {args.seed}; "
        f"options: `{' '.join(OPTIONS)}`.",
        f"Machine: {machine()}.",
        *([args.note] if args.note else []),
        "",
        table(HEADERS, body),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if any(not 0.0 <= rate <= 1.0 for rate in args.rates):
        raise SystemExit("--rates must be between 0 and 1")
    size = BookSize(3, 12.0) if args.quick else BookSize(6, 40.0)
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-bench-") as tmp:
        work = Path(tmp)
        print(f"book: {size.describe()}; generating or loading its audio ...", file=sys.stderr)
        with StandinSite(catalog={SLUG: size.book(SLUG)}) as site:
            segments, _ = segment_totals(site, SLUG)
            env = child_env(work / "pycache")
            # Untimed: the first row must not pay for compiling the bytecode.
            warm_up(site, SLUG, env, work / "warm")
            rows = []
            for rate in args.rates:
                print(f"downloading at {rate:.0%} injected failures ...", file=sys.stderr)
                rows.append(run_once(site, rate, args.seed, work, env))
    save(args.save, report(rows, size, segments, args))
    return 0 if all(row.exact for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
