"""Memory: tokysnatcher's peak RSS must not grow with the length of the book.

Downloads a 2-hour and a 20-hour book (``--format m4a``, defaults otherwise) from a fault-free
stand-in site and prints the peak RSS of the Python process and of its ffmpeg children. Both
books have chapters of the same length, so the 20-hour book has ten times the chapters and
ten times the segments. Each chapter loops 60 s of its own generated audio by stream copy (the
stand-in's ``loop_seconds``: encoding 20 hours would take ten minutes); segment sizes and counts
are real. Run from the repository root::

    python benchmarks/memory.py                     # ~3 minutes
    python benchmarks/memory.py --quick             # smoke run: 0.5 and 2 hours
    python benchmarks/memory.py --save benchmarks/results/memory.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import (
    MB,
    BookSize,
    Usage,
    child_env,
    machine,
    output_files,
    run_tokysnatcher,
    save,
    segment_totals,
    settle,
    table,
    warm_up,
)
from tokysnatcher.standin import StandinSite

WARM_SLUG = "bench-memory-warm-up"
# Each chapter encodes this much audio and repeats it (stream copy) to its full length.
LOOP_SECONDS = 60.0
RSS_LIMIT = 120 * MB
# "Flat": the long book may cost at most this much more than the short one.
FLAT_SLACK = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: books of 0.5 and 2 hours")
    add("--hours", type=float, nargs="+", help="book lengths in hours (default: 2 20)")
    add("--chapter-seconds", type=float, help="chapter length (default 900; quick 450)")
    add("--segment-seconds", type=float, default=2.0, help="HLS segment length (2)")
    add("--cache-dir", type=Path, help="stand-in media cache (default: the stand-in's own)")
    add("--save", type=Path, help="also write the report (Markdown) to this file")
    add("--note", default="", help="a line to add to the report (which code was measured)")
    add("--python", default=sys.executable, help="the interpreter that runs tokysnatcher")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hours = args.hours or ([0.5, 2.0] if args.quick else [2.0, 20.0])
    chapter_seconds = args.chapter_seconds or (450.0 if args.quick else 900.0)
    sizes = {
        f"bench-memory-{h:g}h".replace(".", "-"): BookSize(
            chapters=max(1, round(h * 3600 / chapter_seconds)),
            chapter_seconds=chapter_seconds,
            segment_seconds=args.segment_seconds,
            loop_seconds=min(LOOP_SECONDS, chapter_seconds),
        )
        for h in hours
    }
    catalog = {slug: size.book(slug) for slug, size in sizes.items()}
    catalog[WARM_SLUG] = BookSize(1, 6.0).book(WARM_SLUG)
    print("books: " + "; ".join(s.describe() for s in sizes.values()), flush=True)
    print("generating (about a minute the first time) or loading their audio ...", flush=True)
    results: list[tuple[str, BookSize, int, int, Usage]] = []
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-bench-") as tmp:
        work = Path(tmp)
        env = child_env(work / "pycache")
        site = StandinSite(catalog=catalog, cache_dir=args.cache_dir).start()
        try:
            warm_up(site, WARM_SLUG, env, work / "warm", python=args.python)
            settle()
            for slug, size in sizes.items():
                segments, segment_bytes = segment_totals(site, slug)
                root = work / slug
                cmd = [slug, "--base-url", site.base_url, "-d", str(root), "--format", "m4a"]
                usage = run_tokysnatcher([*cmd, "-q"], env=env, timeout=1800, python=args.python)
                made = output_files(root, ".m4a")
                shutil.rmtree(root, ignore_errors=True)
                if usage.returncode != 0 or len(made) != size.chapters:
                    sys.exit(f"tokysnatcher failed ({usage.returncode}):\n{usage.log[-3000:]}")
                print(
                    f"  {size.audio_seconds / 3600:g} h: {usage.wall:.1f} s, "
                    f"peak RSS {usage.rss_python / MB:.1f} MB",
                    flush=True,
                )
                results.append((slug, size, segments, segment_bytes, usage))
        finally:
            site.stop()
    save(args.save, report(results, machine(), args.note))
    return 0


def report(results: list[tuple[str, BookSize, int, int, Usage]], where: str, note: str) -> str:
    rows = [
        [
            f"{size.audio_seconds / 3600:g} h",
            size.chapters,
            segments,
            f"{segment_bytes / MB:.0f}",
            f"{usage.wall:.1f}",
            f"{usage.rss_python / MB:.1f}",
            f"{usage.rss_ffmpeg / MB:.1f}",
            f"{usage.cpu_python:.1f}",
            f"{usage.cpu_ffmpeg:.1f}",
        ]
        for _, size, segments, segment_bytes, usage in results
    ]
    headers = [
        "book",
        "chapters",
        "segments",
        "MB",
        "wall s",
        "peak RSS Python MB",
        "peak RSS ffmpeg MB",
        "CPU Python s",
        "CPU ffmpeg s",
    ]
    short, long = results[0][4], results[-1][4]
    growth = long.rss_python - short.rss_python
    peak = max(usage.rss_python for *_, usage in results)
    flat = long.rss_python <= short.rss_python * (1 + FLAT_SLACK)
    size = results[0][1]
    lines = [
        "# Memory: peak RSS against book length",
        "",
        f"Chapters of {size.chapter_seconds:g} s in {size.segment_seconds:g} s segments "
        "(AAC 64 kb/s); tokysnatcher with its defaults and --format m4a; a fault-free stand-in "
        f"site on 127.0.0.1. Each chapter loops {size.loop_seconds:g} s of its own audio by "
        "stream copy.",
        f"Machine: {where}.",
        *([note] if note else []),
        "",
        table(headers, rows),
        "",
        "Peak RSS: VmHWM of the process (Python: read at its exit; ffmpeg: the largest child, "
        "sampled every 100 ms).",
        "",
        "Targets:",
        f"- [{'x' if peak < RSS_LIMIT else ' '}] peak RSS (Python) under 120 MB: "
        f"{peak / MB:.1f} MB",
        f"- [{'x' if flat else ' '}] flat from the shortest to the longest book "
        f"(at most +{FLAT_SLACK:.0%}): {growth / MB:+.1f} MB "
        f"({100 * growth / short.rss_python:+.1f}%)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
