"""Throughput: tokysnatcher against plain ffmpeg on a stand-in site with a distant server's costs.

The stand-in site adds a per-request latency, a per-connection setup cost (what a TLS
handshake to a distant server costs) and a per-connection bandwidth cap. A long generated book
is downloaded by tokysnatcher (defaults, ``--format m4a``) and, in the same run, by plain
ffmpeg reading each chapter's HLS URL, two chapters at a time; then the same for mp3 (an
encode, since the source is AAC). Then the CPU floor (``floor.py``): what the cheapest clients
pay per request and per remux here, hence the lowest CPU % of wall any client could reach at
tokysnatcher's wall time. Last, a batch row: five short books downloaded one per run, then
all five in one run (``tokysnatcher REF1 ... REF5``), whose wall time should be at most 1.1x the
sum of the single runs minus their start-ups. Run from the repository root::

    python benchmarks/throughput.py                 # ~3.5 minutes: a 1-hour book, 1800 segments
    python benchmarks/throughput.py --quick         # smoke run, under a minute
    python benchmarks/throughput.py --save benchmarks/results/throughput.md
    python benchmarks/throughput.py --python /other/install/bin/python --note "0.5.0"
    python benchmarks/throughput.py --batch-only     # only the batch row (~1 minute)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from common import (
    MB,
    BookSize,
    Usage,
    child_env,
    ffmpeg_header_arg,
    ffmpeg_path,
    machine,
    output_files,
    run_commands,
    run_tokysnatcher,
    save,
    segment_totals,
    settle,
    table,
    warm_up,
)
from floor import Floor, curl_fetch, floor_report, least_cpu, python_fetch, remux
from tokysnatcher.config.settings import Settings
from tokysnatcher.ffmpeg.binary import MP3_VBR_QUALITY
from tokysnatcher.net.limits import MAX_CONNECTIONS
from tokysnatcher.standin import Faults, StandinSite

SLUG = "bench-throughput"
WARM_SLUG = "bench-warm-up"
FULL = BookSize(chapters=12, chapter_seconds=300.0)
QUICK = BookSize(chapters=4, chapter_seconds=40.0)
BATCH_SLUG = "bench-batch-{}"
BATCH = BookSize(chapters=3, chapter_seconds=120.0)
BATCH_QUICK = BookSize(chapters=2, chapter_seconds=20.0)
BATCH_TARGET = 1.1


@dataclass
class Row:
    name: str
    usage: Usage
    connections: int
    peak_connections: int
    requests: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help=f"smoke run: {QUICK.describe()}")
    add("--chapters", type=int, help=f"chapters of the book (default {FULL.chapters})")
    add("--chapter-seconds", type=float, help=f"seconds per chapter ({FULL.chapter_seconds:g})")
    add("--segment-seconds", type=float, default=2.0, help="HLS segment length (2)")
    add("--latency", type=float, default=0.05, help="seconds before every response (0.05)")
    add("--setup", type=float, default=0.1, help="seconds of setup per new connection (0.1)")
    add("--bandwidth", type=float, default=2e6, help="bytes/s per connection (2e6)")
    add("--connections", type=int, help="pass --connections to tokysnatcher (default: its own)")
    add("--ffmpeg-parallel", type=int, default=2, help="plain ffmpeg chapters at a time (2)")
    add("--repeat", type=int, default=1, help="tokysnatcher runs per row; the median is kept")
    add("--no-mp3", action="store_true", help="skip the mp3 rows")
    add("--no-ffmpeg", action="store_true", help="skip the plain ffmpeg rows")
    add("--no-floor", action="store_true", help="skip the CPU floor (minimal clients, remux)")
    add("--batch-books", type=int, default=5, help="books of the batch row (5; 0 skips it)")
    add("--batch-only", action="store_true", help="only the batch row")
    add("--cache-dir", type=Path, help="stand-in media cache (default: the stand-in's own)")
    add("--save", type=Path, help="also write the report (Markdown) to this file")
    add("--note", default="", help="a line to add to the report (which code was measured)")
    add("--python", default=sys.executable, help="the interpreter that runs tokysnatcher")
    return parser.parse_args(argv)


def measure(repeat: int, run: Callable[[], Row]) -> Row:
    """``repeat`` runs; the one with the median wall time."""
    rows = sorted((run() for _ in range(repeat)), key=lambda row: row.usage.wall)
    return rows[(len(rows) - 1) // 2]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    size = BookSize(
        chapters=args.chapters or base.chapters,
        chapter_seconds=args.chapter_seconds or base.chapter_seconds,
        segment_seconds=args.segment_seconds,
    )
    connections = args.connections or Settings().connections
    if not isinstance(connections, int):  # auto: the ideal and the floors use its ceiling
        connections = MAX_CONNECTIONS
    faults = Faults(latency=args.latency, connection_setup=args.setup, bandwidth=args.bandwidth)
    book = size.book(SLUG)
    catalog = {SLUG: book, WARM_SLUG: BookSize(1, 4.0).book(WARM_SLUG)}
    batch_size = BATCH_QUICK if args.quick else BATCH
    batch_slugs = [BATCH_SLUG.format(n) for n in range(1, args.batch_books + 1)]
    catalog.update({slug: batch_size.book(slug) for slug in batch_slugs})
    ffmpeg = ffmpeg_path()
    described = f"{len(batch_slugs)} books of {batch_size.describe()}"
    if not args.batch_only:
        described = size.describe() + (f"; {described}" if batch_slugs else "")
    print(f"book: {described}; generating or loading its audio ...", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="tokysnatcher-bench-") as tmp,
        StandinSite(catalog=catalog, faults=faults, cache_dir=args.cache_dir) as site,
    ):
        work = Path(tmp)
        env = child_env(work / "pycache")
        warm_up(site, WARM_SLUG, env, work / "warm", python=args.python)
        settle()
        # Generating the long book's audio takes a while: not for the batch row alone.
        segments, segment_bytes = (0, 0) if args.batch_only else segment_totals(site, SLUG)
        headers = ffmpeg_header_arg(site.headers_for(SLUG))
        timeout = 600.0

        def counted(name: str, usage: Usage) -> Row:
            stats = site.stats
            total = sum(stats.requests.values())
            row = Row(name, usage, stats.connections, stats.peak_connections, total)
            print(f"  {name}: {usage.wall:.2f} s", flush=True)
            return row

        def tokysnatcher(fmt: str) -> Row:
            root = work / f"tokysnatcher-{fmt}"
            shutil.rmtree(root, ignore_errors=True)
            cmd = [SLUG, "--base-url", site.base_url, "-d", str(root), "--format", fmt, "-q"]
            if args.connections:
                cmd += ["--connections", str(args.connections)]
            site.stats.reset()
            usage = run_tokysnatcher(cmd, env=env, timeout=timeout, python=args.python)
            made = output_files(root, f".{fmt}")
            if usage.returncode != 0 or len(made) != size.chapters:
                sys.exit(f"tokysnatcher {fmt} failed ({usage.returncode}):\n{usage.log[-3000:]}")
            return counted(f"tokysnatcher --format {fmt}", usage)

        def plain_ffmpeg(fmt: str) -> Row:
            root = work / f"ffmpeg-{fmt}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            codec = (
                ["-c", "copy"] if fmt == "m4a" else ["-c:a", "libmp3lame", "-q:a", MP3_VBR_QUALITY]
            )
            head = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-headers", headers]
            commands = [
                [
                    *head,
                    "-i",
                    site.playlist_url(SLUG, i),
                    "-vn",
                    *codec,
                    "-y",
                    str(root / f"{i:02d}.{fmt}"),
                ]
                for i in range(size.chapters)
            ]
            site.stats.reset()
            usage = run_commands(commands, parallel=args.ffmpeg_parallel, timeout=timeout)
            if usage.returncode != 0:
                sys.exit(f"plain ffmpeg {fmt} failed ({usage.returncode}):\n{usage.log}")
            return counted(f"ffmpeg, {args.ffmpeg_parallel} chapters at a time, {fmt}", usage)

        formats = [] if args.batch_only else ["m4a"] if args.no_mp3 else ["m4a", "mp3"]
        pairs: list[tuple[Row, Row | None]] = []
        for fmt in formats:
            ours = measure(args.repeat, partial(tokysnatcher, fmt))
            # Plain ffmpeg runs once: it is three times slower and far from the 2x line.
            theirs = None if args.no_ffmpeg else plain_ffmpeg(fmt)
            pairs.append((ours, theirs))
        floors: list[Floor] = []
        if not args.no_floor and not args.batch_only:
            floors.append(python_fetch(site, SLUG, connections, timeout))
            fetched = curl_fetch(site, SLUG, connections, work, timeout)
            floors += [fetched] if fetched else []
            floors.append(remux(site, SLUG, ffmpeg, work, args.ffmpeg_parallel, timeout))
        batch = None
        if batch_slugs:
            batch = batch_row(site, batch_slugs, batch_size, work, env, args, timeout)

    facts = Facts(
        size=size,
        connections=connections,
        segments=segments,
        segment_bytes=segment_bytes,
        ideal=args.setup + (segments * args.latency + segment_bytes / args.bandwidth) / connections,
        where=machine(),
    )
    text = report(args, facts, pairs, floors) if pairs else "# Throughput: the batch row"
    save(args.save, text + (batch.report() if batch is not None else ""))
    return 0


@dataclass(frozen=True)
class Timed:
    """One measured run: its wall time and its start-up (process start to the first request)."""

    name: str
    wall: float
    startup: float


@dataclass(frozen=True)
class BatchRow:
    """The batch row: each book one per run, then all of them in one run."""

    size: BookSize
    singles: list[Timed]
    batch: Timed

    @property
    def work(self) -> float:
        """What the single runs spent past their start-ups."""
        return sum(run.wall - run.startup for run in self.singles)

    @property
    def ratio(self) -> float:
        """The batch's work (past its one start-up) over the single runs' work."""
        return (self.batch.wall - self.batch.startup) / self.work

    def report(self) -> str:
        rows: list[list[object]] = [
            [run.name, f"{run.wall:.2f}", f"{run.startup:.2f}", f"{run.wall - run.startup:.2f}"]
            for run in [*self.singles, self.batch]
        ]
        walls = sum(run.wall for run in self.singles)
        startups = sum(run.startup for run in self.singles)
        rows.insert(
            len(self.singles),
            ["sum of the single runs", f"{walls:.2f}", f"{startups:.2f}", f"{self.work:.2f}"],
        )
        ok = self.ratio <= BATCH_TARGET
        batch_work = self.batch.wall - self.batch.startup
        return "\n".join(
            [
                "",
                "",
                f"## A batch of {len(self.singles)} books",
                "",
                f"Each book: {self.size.describe()}, --format m4a, same site costs. Start-up: "
                "from the process start to the site's first request (imports, ffmpeg check, "
                "the library folder); the batch pays it once.",
                "",
                table(["run", "wall s", "start-up s", "wall - start-up s"], rows),
                "",
                f"- [{'x' if ok else ' '}] the batch past its start-up within {BATCH_TARGET:g}x "
                f"of the single runs past theirs: {batch_work:.2f} s / {self.work:.2f} s = "
                f"{self.ratio:.2f}x (its whole wall, one start-up included: "
                f"{self.batch.wall / self.work:.2f}x)",
            ]
        )


def timed_run(
    site: StandinSite,
    name: str,
    cmd: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    timeout: float,
) -> Timed:
    """Run tokysnatcher with ``cmd``; its wall time, and when the site saw its first request."""
    site.stats.reset()
    first: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if sum(site.stats.requests.values()):
                first.append(time.monotonic())
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.monotonic()
    watcher.start()
    usage = run_tokysnatcher(cmd, env=env, timeout=timeout, python=args.python)
    done.set()
    watcher.join()
    if usage.returncode != 0:
        sys.exit(f"{name} failed ({usage.returncode}):\n{usage.log[-3000:]}")
    print(f"  {name}: {usage.wall:.2f} s", flush=True)
    return Timed(name, usage.wall, (first[0] - started) if first else 0.0)


def batch_row(
    site: StandinSite,
    slugs: list[str],
    size: BookSize,
    work: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    timeout: float,
) -> BatchRow:
    """Each book one per run, then all of them in one run, into fresh folders."""

    def command(refs: list[str], root: Path) -> list[str]:
        shutil.rmtree(root, ignore_errors=True)
        cmd = [*refs, "--base-url", site.base_url, "-d", str(root), "--format", "m4a", "-q"]
        return cmd + (["--connections", str(args.connections)] if args.connections else [])

    singles = [
        timed_run(site, f"{slug}, one run", command([slug], work / "single"), env, args, timeout)
        for slug in slugs
    ]
    root = work / "batch"
    batch = timed_run(
        site, f"all {len(slugs)} in one run", command(slugs, root), env, args, timeout
    )
    made = output_files(root, ".m4a")
    if len(made) != len(slugs) * size.chapters:
        sys.exit(f"the batch made {len(made)} files, not {len(slugs) * size.chapters}")
    return BatchRow(size, singles, batch)


@dataclass(frozen=True)
class Facts:
    """What the report says about the run besides the rows."""

    size: BookSize
    connections: int
    segments: int
    segment_bytes: int
    ideal: float
    where: str


def _cells(row: Row, theirs: Row | None, facts: Facts) -> list[object]:
    usage = row.usage
    return [
        row.name,
        f"{usage.wall:.2f}",
        f"{usage.wall / facts.ideal:.2f}",
        f"{theirs.usage.wall / usage.wall:.2f}" if theirs else "-",
        f"{usage.cpu_python:.2f}",
        f"{usage.cpu_ffmpeg:.2f}",
        f"{100 * usage.cpu / usage.wall:.1f}",
        f"{usage.cpu / (facts.size.audio_seconds / 3600):.1f}",
        f"{usage.rss_python / MB:.0f}" if usage.rss_python else "-",
        f"{usage.rss_ffmpeg / MB:.0f}",
        f"{row.connections} ({row.peak_connections})",
        row.requests,
        f"{1000 * usage.cpu / row.requests:.2f}" if row.requests else "-",
    ]


HEADERS = [
    "run",
    "wall s",
    "x ideal",
    "ffmpeg wall / wall",
    "CPU Python s",
    "CPU ffmpeg s",
    "CPU % of wall",
    "CPU s per audio h",
    "peak RSS Python MB",
    "peak RSS ffmpeg MB",
    "TCP connections (peak)",
    "requests",
    "CPU ms per request",
]


def report(
    args: argparse.Namespace,
    facts: Facts,
    pairs: list[tuple[Row, Row | None]],
    floors: list[Floor],
) -> str:
    """The Markdown report: setup, table, definitions and the targets of issue 7."""
    body = []
    for ours, theirs in pairs:
        body.append(_cells(ours, theirs, facts))
        if theirs is not None:
            body.append(_cells(theirs, theirs, facts))
    m4a, m4a_ffmpeg = pairs[0][0].usage, pairs[0][1]
    checks = [
        (
            f"m4a wall within 1.25x of ideal: {m4a.wall / facts.ideal:.2f}x",
            m4a.wall <= 1.25 * facts.ideal,
        ),
        (
            f"peak RSS (Python) under 120 MB: {m4a.rss_python / MB:.0f} MB",
            0 < m4a.rss_python < 120 * MB,
        ),
        (
            f"m4a CPU (Python + ffmpeg) under 5% of wall: {100 * m4a.cpu / m4a.wall:.1f}%",
            m4a.cpu < 0.05 * m4a.wall,
        ),
    ]
    if m4a_ffmpeg is not None:
        faster = m4a_ffmpeg.usage.wall / m4a.wall
        checks.insert(1, (f"m4a at least 2x faster than plain ffmpeg: {faster:.2f}x", faster >= 2))
    size, hours = facts.size, facts.size.audio_seconds / 3600
    lines = [
        "# Throughput: tokysnatcher vs plain ffmpeg",
        "",
        f"Book: {size.describe()}: {facts.segments} segments, "
        f"{facts.segment_bytes / MB:.1f} MB of segments.",
        f"Site: {args.latency * 1000:g} ms latency per request, {args.setup * 1000:g} ms setup per "
        f"new connection, {args.bandwidth / MB:g} MB/s per connection.",
        f"tokysnatcher: defaults ({facts.connections} connections), --format as in the row; plain "
        f"ffmpeg: `ffmpeg -headers ... -i <chapter m3u8> -c copy` (m4a) or "
        f"`-c:a libmp3lame -q:a {MP3_VBR_QUALITY}` (mp3), {args.ffmpeg_parallel} chapters at "
        "a time.",
        f"Machine: {facts.where}. tokysnatcher rows: the median of {args.repeat} run(s); "
        "plain ffmpeg: one run.",
        *([args.note] if args.note else []),
        "",
        table(HEADERS, body),
        "",
        "Ideal = setup + (segments x latency + bytes / bandwidth) / connections = "
        f"{args.setup:g} + ({facts.segments} x {args.latency:g} + "
        f"{facts.segment_bytes / MB:.2f} MB / {args.bandwidth / MB:g} MB/s) / "
        f"{facts.connections} = **{facts.ideal:.2f} s**. One connection setup is included (all "
        "connections are opened in parallel); the API calls, the chapter playlists, process "
        "start and the conversions are not.",
        "CPU is user + system seconds: the Python process itself and its ffmpeg children apart. "
        "Peak RSS: the Python process, and the largest ffmpeg process. 'ffmpeg wall / wall': "
        "how many times faster than plain ffmpeg in the same format. TCP connections: accepted "
        "by the site (peak: open at once). CPU ms per request: all CPU of the row (Python and "
        "ffmpeg, conversions included) over its requests.",
        "",
        "Targets (m4a row):",
        *[f"- [{'x' if ok else ' '}] {text}" for text, ok in checks],
    ]
    if len(pairs) > 1:
        mp3, mp3_ffmpeg = pairs[1]
        line = (
            f"- mp3 encode cost: {mp3.usage.cpu_ffmpeg / hours:.0f} CPU s of ffmpeg per audio hour"
        )
        if mp3_ffmpeg is not None:
            line += f" (plain ffmpeg: {mp3_ffmpeg.usage.cpu_ffmpeg / hours:.0f})"
        lines.append(line + ".")
    if floors:
        fetch, conversion = least_cpu(floors, pairs[0][0].requests)
        lines.append(
            f"- the least CPU any client could spend at this m4a wall: "
            f"{100 * (fetch + conversion) / m4a.wall:.1f}% ({100 * fetch / m4a.wall:.1f}% to "
            f"fetch, {100 * conversion / m4a.wall:.1f}% to remux; see the CPU floor below)."
        )
        lines += ["", *floor_report(floors, wall=m4a.wall, requests=pairs[0][0].requests)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
