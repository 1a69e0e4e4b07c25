"""Adaptive connections: ``--connections auto`` (the default) against a fixed 8, side by side.

Each row downloads one generated book (AAC in 30 s segments, ``--format m4a``) twice from the
same stand-in site, first with the baseline (0.5.0's fixed 8 connections: ``--baseline-python``
points at an install of 0.5.0; without it, this build with ``--connections 8``), then with this
build's defaults. The rows are the acceptance of issue 15:

* **per-connection cap**: every response is capped at 1 MB/s, the site has no total cap;
  auto should be at least 1.5x faster (it grows to 16 connections);
* **total cap**: the site sends at most 8 MB/s over all responses; auto should be within 5 %
  of fixed 8 (more connections cannot help);
* **429 above 4**: an audio request arriving while 4 are being answered gets 429 with
  ``Retry-After: 1`` (1 MB/s per response, 50 ms latency, so requests overlap); auto should
  finish with no failed chapter and at least 50 % fewer 429s;
* **60 s outage**: the site resets every connection for 60 s, starting once it has sent half
  the book (1 MB/s per response); every chapter should complete with the defaults.

Run from the repository root::

    python benchmarks/adaptive.py --baseline-python /path/to/0.5.0/bin/python \\
        --save benchmarks/results/adaptive.md
    python benchmarks/adaptive.py --quick         # smaller books, shorter outage: a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    MB,
    BookSize,
    child_env,
    machine,
    run_tokysnatcher,
    save,
    segment_totals,
    table,
    warm_up,
)
from tokysnatcher.standin import Faults, StandinSite

RUN_TIMEOUT = 900.0
OPTIONS = ("--format", "m4a", "-q")


@dataclass(frozen=True)
class Case:
    """One row: a book and the site's faults; what auto must do against the baseline."""

    name: str
    slug: str
    faults: Faults
    target: str


@dataclass
class Outcome:
    """One download of one row."""

    seconds: float
    complete: int
    failed: int
    chapters: int
    too_many: int  # 429 answers the site sent
    exit_code: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small books, a 10 s outage")
    parser.add_argument(
        "--baseline-python",
        help="interpreter of a 0.5.0 install (its default: 8 fixed connections); "
        "default: this build with --connections 8",
    )
    parser.add_argument("--rows", nargs="+", help="only these rows (per-connection, total, ...)")
    parser.add_argument("--save", type=Path, help="also write the report (Markdown) to this file")
    parser.add_argument("--note", default="", help="a line to add to the report")
    return parser.parse_args(argv)


def books(quick: bool) -> dict[str, BookSize]:
    """The row books by slug: big enough that auto's ramp (a connection a second) is a small
    part of the per-connection row, cheap to generate (each chapter loops 60 s of audio)."""
    scale = 4 if quick else 1
    return {
        "adaptive-large": BookSize(24, 2100.0 / scale, 30.0, loop_seconds=60.0),
        "adaptive-medium": BookSize(12, 2100.0 / scale, 30.0, loop_seconds=60.0),
        "adaptive-small": BookSize(8, 600.0 / scale, 30.0, loop_seconds=60.0),
    }


def cases(quick: bool) -> list[Case]:
    outage = 10.0 if quick else 60.0
    return [
        Case(
            "per-connection",
            "adaptive-large",
            Faults(bandwidth=1 * MB),
            "auto at least 1.5x faster",
        ),
        Case(
            "total",
            "adaptive-medium",
            Faults(total_bandwidth=8 * MB),
            "auto within 5 % of fixed 8",
        ),
        Case(
            "429-above-4",
            "adaptive-small",
            Faults(max_concurrent=4, retry_after=1.0, bandwidth=1 * MB, latency=0.05),
            "auto: no failed chapter, at least 50 % fewer 429s",
        ),
        Case(
            "outage",
            "adaptive-small",
            Faults(bandwidth=1 * MB, outage_seconds=outage),
            "auto (defaults): every chapter complete",
        ),
    ]


def run_once(
    site: StandinSite,
    case: Case,
    work: Path,
    env: dict[str, str],
    *,
    label: str,
    python: str,
    extra: tuple[str, ...],
) -> Outcome:
    """Download the row's book once, the site's faults set just before (an outage's once half
    the book has been sent)."""
    root = work / f"{case.name}-{label}"
    report = work / f"{case.name}-{label}.json"
    site.stats.reset()
    done_event = threading.Event()
    watcher = None
    if case.faults.outage_seconds:
        site.set_faults(dataclasses.replace(case.faults, outage_seconds=0.0))
        half = segment_totals(site, case.slug)[1] / 2
        watcher = threading.Thread(
            target=_outage_at, args=(site, case.faults, half, done_event), daemon=True
        )
        watcher.start()
    else:
        site.set_faults(case.faults)
    args = [case.slug, "--base-url", site.base_url, *OPTIONS, *extra]
    done = run_tokysnatcher(
        [*args, "-d", str(root), "--report", str(report)],
        env=env,
        timeout=RUN_TIMEOUT,
        python=python,
    )
    done_event.set()
    if watcher is not None:
        watcher.join()
    if not report.exists():
        raise SystemExit(f"{case.name} ({label}) wrote no report:\n{done.log[-3000:]}")
    data: dict[str, Any] = json.loads(report.read_text("utf-8"))
    summary = data["summary"]
    outcome = Outcome(
        seconds=done.wall,
        complete=int(summary["complete"]),
        failed=int(summary["failed"]),
        chapters=len(data["chapters"]),
        too_many=site.stats.statuses[429],
        exit_code=done.returncode,
    )
    site.set_faults(Faults())
    _remove(root)
    return outcome


def _outage_at(site: StandinSite, faults: Faults, sent: float, done: threading.Event) -> None:
    """Take the site down once it has sent ``sent`` bytes (unless the run ended first)."""
    while site.stats.bytes_sent < sent:
        if done.wait(0.05):
            return
    site.set_faults(dataclasses.replace(faults, outage_at=0.0))
    print(f"  site down at {time.strftime('%H:%M:%S')}", file=sys.stderr)


def _remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def verdict(case: Case, base: Outcome, auto: Outcome) -> str:
    """Whether the row's target is met."""
    if case.name == "per-connection":
        ok = base.seconds >= 1.5 * auto.seconds
    elif case.name == "total":
        ok = auto.seconds <= 1.05 * base.seconds
    elif case.name == "429-above-4":
        ok = auto.failed == 0 and auto.complete == auto.chapters
        ok &= auto.too_many <= 0.5 * base.too_many
    else:
        ok = auto.complete == auto.chapters
    return "met" if ok else "NOT met"


HEADERS = [
    "row",
    "book",
    "baseline s",
    "auto s",
    "speed-up",
    "complete (baseline / auto)",
    "429s (baseline / auto)",
    "target",
    "result",
]


def report(
    rows: list[tuple[Case, Outcome, Outcome]],
    books: dict[str, str],
    baseline: str,
    args: argparse.Namespace,
) -> str:
    body = []
    for case, base, auto in rows:
        body.append(
            [
                case.name,
                books[case.slug],
                f"{base.seconds:.1f}",
                f"{auto.seconds:.1f}",
                f"{base.seconds / auto.seconds:.2f}x",
                f"{base.complete}/{base.chapters} / {auto.complete}/{auto.chapters}",
                f"{base.too_many} / {auto.too_many}",
                case.target,
                verdict(case, base, auto),
            ]
        )
    lines = [
        "# Adaptive connections: auto against a fixed 8, side by side",
        "",
        f"Baseline: {baseline}. auto: this build's defaults (`--connections auto`, "
        f"`--max-wait 600`). Options of both: `{' '.join(OPTIONS)}`. Books: AAC 64 kb/s in 30 s "
        "segments (240 KB each). Each row runs the baseline, then auto, against the same site.",
        f"Machine: {machine()}.",
        *([args.note] if args.note else []),
        "",
        table(HEADERS, body),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = books(args.quick)
    chosen = [case for case in cases(args.quick) if not args.rows or case.name in args.rows]
    if args.baseline_python:
        baseline_python, extra, baseline = args.baseline_python, (), "0.5.0 (fixed 8 connections)"
    else:
        baseline_python, extra = sys.executable, ("--connections", "8")
        baseline = "this build with `--connections 8`"
    catalog = {slug: size.book(slug) for slug, size in sizes.items()}
    described: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-bench-") as tmp:
        work = Path(tmp)
        print("generating or loading the books' audio ...", file=sys.stderr)
        with StandinSite(catalog=catalog) as site:
            env = child_env(work / "pycache")
            warm_up(site, "adaptive-small", env, work / "warm")
            warm_up(site, "adaptive-small", env, work / "warm", python=baseline_python)
            rows = []
            for case in chosen:
                segments, size = segment_totals(site, case.slug)
                described[case.slug] = f"{sizes[case.slug].chapters} ch, {size / MB:.0f} MB"
                print(
                    f"{case.name}: {segments} segments, {size / MB:.0f} MB; baseline ...",
                    file=sys.stderr,
                )
                base = run_once(
                    site, case, work, env, label="base", python=baseline_python, extra=extra
                )
                print(f"{case.name}: auto ...", file=sys.stderr)
                auto = run_once(
                    site, case, work, env, label="auto", python=sys.executable, extra=()
                )
                rows.append((case, base, auto))
    save(args.save, report(rows, described, baseline, args))
    return 0 if all(verdict(case, base, auto) == "met" for case, base, auto in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
