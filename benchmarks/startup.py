"""Start-up: what a short tokysnatcher command costs next to Python and Typer themselves.

Times the installed ``tokysnatcher`` console script for ``--version``, ``--help`` and a
``--dry-run`` of a small book on a stand-in site (the book is resolved, ffmpeg is checked, the
plan is printed), next to ``python -c pass``, ``python -c "import typer"`` and Typer plus the
pydantic ``TypeAdapter`` that Typer's value coercion builds, by the same interpreter in the same
run. Every command runs ``--repeat`` times, the commands taking turns so that a busy machine
slows them alike; the report gives the median wall and CPU time (user + system, the process and
the children it reaped: the dry-run's ``ffmpeg -version``) and their ratios to the first two
Python rows. Run from the repository root::

    python benchmarks/startup.py                    # ~1 minute
    python benchmarks/startup.py --quick            # smoke run: 5 of each
    python benchmarks/startup.py --python /other/checkout/.venv/bin/python .venv/bin/python \\
        --label before after                        # two installs side by side
    python benchmarks/startup.py --save benchmarks/results/startup.md

``--python`` names the interpreters of the installs to measure (each runs the ``tokysnatcher``
script next to it); the Python rows use the first one. The stand-in site runs in this process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common import BookSize, child_env, machine, run_command, save, settle, table
from tokysnatcher.standin import StandinSite

SLUG = "bench-startup"
TIMEOUT = 120.0
_WITH_PYDANTIC = "import typer; from pydantic import TypeAdapter; TypeAdapter(int)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: 5 runs of each command")
    add("--repeat", type=int, help="runs of each command; the median is kept (default 21)")
    add("--python", nargs="+", default=[sys.executable], help="interpreters of the installs")
    add("--label", nargs="+", help="a name for each --python (default: its path)")
    add("--save", type=Path, help="also write the report (Markdown) to this file")
    add("--note", default="", help="a line to add to the report (which code was measured)")
    return parser.parse_args(argv)


@dataclass
class Row:
    """One command and what each of its runs cost."""

    name: str
    command: list[str]
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def commands(pythons: list[str], labels: list[str], base_url: str, root: Path) -> list[Row]:
    rows = [
        Row("python -c pass", [pythons[0], "-c", "pass"]),
        Row('python -c "import typer"', [pythons[0], "-c", "import typer"]),
        # What Typer's value coercion adds once an option is given a value.
        Row("import typer + pydantic TypeAdapter", [pythons[0], "-c", _WITH_PYDANTIC]),
    ]
    for python, label in zip(pythons, labels, strict=True):
        script = str(Path(python).parent / "tokysnatcher")
        suffix = f" ({label})" if len(pythons) > 1 else ""
        dry_run = [SLUG, "--base-url", base_url, "-d", str(root), "--format", "mp3", "--dry-run"]
        rows += [
            Row(f"tokysnatcher --version{suffix}", [script, "--version"]),
            Row(f"tokysnatcher --help{suffix}", [script, "--help"]),
            Row(f"tokysnatcher --dry-run{suffix}", [script, *dry_run]),
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 21)
    labels = args.label or args.python
    if len(labels) != len(args.python):
        sys.exit("give one --label per --python")
    book = BookSize(chapters=3, chapter_seconds=6.0).book(SLUG)
    with tempfile.TemporaryDirectory(prefix="tokysnatcher-bench-") as tmp:
        work = Path(tmp)
        env = {**child_env(work / "pycache"), "COLUMNS": "100"}
        with StandinSite(catalog={SLUG: book}) as site:
            settle()
            rows = commands(args.python, labels, site.base_url, work / "library")
            # Untimed: compiles the bytecode into the private cache and pages the files in.
            for row in rows:
                first = run_command(row.command, env=env, timeout=TIMEOUT)
                if first.returncode != 0:
                    sys.exit(f"{row.name} failed ({first.returncode}): {row.command}")
            print(f"{len(rows)} commands x {repeat} runs ...", flush=True)
            for _ in range(repeat):
                for row in rows:
                    usage = run_command(row.command, env=env, timeout=TIMEOUT)
                    if usage.returncode != 0:
                        sys.exit(f"{row.name} failed ({usage.returncode}): {row.command}")
                    row.walls.append(usage.wall)
                    row.cpus.append(usage.cpu)
    save(args.save, report(rows, repeat, args.note))
    return 0


def report(rows: list[Row], repeat: int, note: str) -> str:
    python, typer = rows[0], rows[1]

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f}"

    def times(value: float, base: float) -> str:
        return f"{value / base:.1f}x"

    table_rows = [
        [
            row.name,
            ms(row.wall),
            ms(row.cpu),
            f"{ms(min(row.walls))}-{ms(max(row.walls))}",
            times(row.wall, python.wall),
            times(row.cpu, python.cpu),
            times(row.wall, typer.wall),
            times(row.cpu, typer.cpu),
        ]
        for row in rows
    ]
    headers = [
        "command",
        "wall ms",
        "CPU ms",
        "wall range ms",
        "wall / python",
        "CPU / python",
        "wall / import typer",
        "CPU / import typer",
    ]
    lines = [
        "# Start-up: short commands next to Python and Typer",
        "",
        f"Median of {repeat} runs of each command, the commands taking turns; CPU is user + "
        "system time of the process and the children it reaped. The dry-run resolves a 3-chapter "
        "book on a stand-in site on 127.0.0.1, checks ffmpeg (`ffmpeg -version`) and the folder, "
        "and prints the plan. Bytecode is compiled beforehand, as for an installed tool.",
        f"Machine: {machine()}.",
        *([note] if note else []),
        "",
        table(headers, table_rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
