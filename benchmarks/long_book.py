"""Long books: does a run's cost grow with the chapter count only linearly?

Two measurements, each of a real ``python -m tokysnatcher`` process:

- **download**: a book of 2,000 one-second tracks (``--format m4a``, defaults otherwise) from a
  fault-free stand-in site. Every track serves the same generated media
  (``make_book(..., shared_media=True)``), so the book is ready in a second. Reported: wall and
  CPU time, peak RSS, and how long after the start the first chapter file appeared (a long
  plan must start downloading within seconds).
- **verify**: ``--verify-folder`` on a generated manifest of 200,000 complete entries, a few
  pointing at small files (some matching, some not) and the rest at missing files. Reported:
  wall time, peak RSS, exit code and the lines printed.

Run from the repository root::

    python benchmarks/long_book.py                      # ~3-4 minutes on 2 CPUs
    python benchmarks/long_book.py --quick              # 300 tracks, 20,000 entries
    python benchmarks/long_book.py --python /other/checkout/.venv/bin/python --note "before"
    python benchmarks/long_book.py --save benchmarks/results/long_book.md

``--python`` runs another install's tokysnatcher (to compare with an older version); the stand-in
site always runs from this checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (
    MB,
    Usage,
    child_env,
    machine,
    output_files,
    run_tokysnatcher,
    save,
    settle,
    table,
)
from tokysnatcher.standin import StandinSite, make_book

SLUG = "bench-long-book"
# A few entries point at real files: half of them match the manifest, half do not.
PRESENT_FILES = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: 300 tracks, 20,000 manifest entries")
    add("--chapters", type=int, help="tracks of the downloaded book (default 2000)")
    add("--entries", type=int, help="entries of the verified manifest (default 200000)")
    add("--python", default=sys.executable, help="the interpreter that runs tokysnatcher")
    add("--cache-dir", type=Path, help="stand-in media cache (default: the stand-in's own)")
    add("--save", type=Path, help="also write the report (Markdown) to this file")
    add("--note", default="", help="a line to add to the report (which code was measured)")
    return parser.parse_args(argv)


class FirstFile:
    """Notes when the first ``*.m4a`` appears under ``root`` (polled every 50 ms)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started = time.monotonic()
        self.seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FirstFile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if output_files(self.root, ".m4a"):
                self.seconds = time.monotonic() - self.started
                return


def write_manifest(folder: Path, entries: int) -> None:
    """A manifest of ``entries`` complete chapters, as compact as a hostile one could be."""
    folder.mkdir(parents=True)
    width = len(str(entries))
    real = hashlib.sha256(b"abc").hexdigest()
    chapters = {}
    for index in range(1, entries + 1):
        name = f"{index:0{width}d} - C{index}.mp3"
        sha = real if index <= PRESENT_FILES // 2 else "0" * 64
        chapters[name] = {"index": index, "title": f"C{index}", "status": "complete"}
        chapters[name].update(size=3, sha256=sha)
        if index <= PRESENT_FILES:
            (folder / name).write_bytes(b"abc")
    book = {"title": "Big", "author": "Bench", "source_url": "", "slug": "big"}
    book.update(format="mp3", chapter_count=entries, narrator=None, year=None, cover_url=None)
    doc = {"schema_version": 1, "tool_version": "0", "book": book, "chapters": chapters}
    doc.update(created_at=None, updated_at=None)
    (folder / ".tokysnatcher.json").write_text(json.dumps(doc, separators=(",", ":")), "utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chapters = args.chapters or (300 if args.quick else 2000)
    entries = args.entries or (20_000 if args.quick else 200_000)
    book = make_book(
        SLUG,
        title="Bench Long Book",
        author="Bench Mark",
        chapters=chapters,
        chapter_seconds=1.0,
        segment_seconds=1.0,
        shared_media=True,
    )
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-bench-") as tmp:
        work = Path(tmp)
        env = child_env(work / "pycache")
        with StandinSite(catalog={SLUG: book}, cache_dir=args.cache_dir) as site:
            settle()
            root = work / "library"
            cmd = [SLUG, "--base-url", site.base_url, "-d", str(root), "--format", "m4a", "-q"]
            print(f"downloading {chapters} tracks ...", flush=True)
            with FirstFile(root) as first:
                download = run_tokysnatcher(cmd, env=env, timeout=3600, python=args.python)
            made = len(output_files(root, ".m4a"))
        if download.returncode != 0 or made != chapters:
            sys.exit(f"download failed ({download.returncode}):\n{download.log[-3000:]}")
        folder = work / "verify" / "Bench" / "Big"
        print(f"verifying a manifest of {entries} entries ...", flush=True)
        write_manifest(folder, entries)
        verify = run_tokysnatcher(
            ["--verify-folder", str(folder)], env=env, timeout=3600, python=args.python
        )
    save(args.save, report(chapters, download, first.seconds, entries, verify, args.note))
    return 0


def report(
    chapters: int,
    download: Usage,
    first: float | None,
    entries: int,
    verify: Usage,
    note: str,
) -> str:
    first_text = f"{first:.1f}" if first is not None else "-"
    rows = [
        [
            f"download {chapters} tracks",
            f"{download.wall:.1f}",
            first_text,
            f"{download.cpu_python:.1f}",
            f"{download.cpu_ffmpeg:.1f}",
            f"{download.rss_python / MB:.1f}",
            download.returncode,
        ],
        [
            f"--verify-folder {entries} entries",
            f"{verify.wall:.1f}",
            "",
            f"{verify.cpu_python:.1f}",
            "",
            f"{verify.rss_python / MB:.1f}",
            f"{verify.returncode} ({verify.log.count(chr(10))} lines)",
        ],
    ]
    headers = ["run", "wall s", "first chapter s", "CPU Python s", "CPU ffmpeg s"]
    headers += ["peak RSS Python MB", "exit"]
    lines = [
        "# Long books: a 2,000-track download and a 200,000-entry --verify-folder",
        "",
        "One-second tracks (AAC 64 kb/s, one segment each, the same media for every track) "
        "from a fault-free stand-in site on 127.0.0.1, --format m4a, -q; then --verify-folder "
        f"on a generated manifest ({PRESENT_FILES} files present, the rest missing).",
        f"Machine: {machine()}.",
        *([note] if note else []),
        "",
        table(headers, rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
