"""Shared helpers of the benchmarks: books, measured child processes, reporting.

Every measured program runs as a child process. tokysnatcher is started through a tiny
launcher that behaves exactly like ``python -m tokysnatcher`` and, at exit, writes the CPU time
of itself and of its reaped children (``getrusage``) and its own peak RSS (``VmHWM``) to a
file: that splits the Python process's cost from ffmpeg's without sampling. Plain ffmpeg runs
are reaped with ``os.wait4`` (each one's own CPU time). Peak RSS of ffmpeg processes is sampled
from ``/proc``. Linux only.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokysnatcher import __version__
from tokysnatcher.standin import BookSpec, StandinSite, make_book

MB = 1_000_000
_USAGE_ENV = "BENCH_USAGE_FILE"
# ``python -m tokysnatcher`` plus an exit hook that records what the process cost.
_LAUNCHER = f"""
import atexit, json, os, resource, runpy, sys
def _usage():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        with open("/proc/self/status") as status:
            hwm = [line for line in status if line.startswith("VmHWM:")][0]
        peak = int(hwm.split()[1]) * 1024
    except (OSError, IndexError):
        peak = None
    with open(os.environ[{_USAGE_ENV!r}], "w") as out:
        json.dump({{"self_cpu": me.ru_utime + me.ru_stime, "kids_cpu": kids.ru_utime
                   + kids.ru_stime, "self_peak": peak}}, out)
atexit.register(_usage)
_exit = os._exit
def _fast_exit(code):  # a CLI may end with os._exit, which skips atexit hooks
    _usage()
    _exit(code)
os._exit = _fast_exit
sys.argv[0] = "tokysnatcher"
runpy.run_module("tokysnatcher", run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class BookSize:
    """A generated book: ``chapters`` chapters of ``chapter_seconds``, cut in segments.

    ``loop_seconds``: each chapter repeats that much of its own audio (the stand-in's cheap
    long media, see ``TrackSpec.loop_seconds``); None encodes every second.
    """

    chapters: int
    chapter_seconds: float
    segment_seconds: float = 2.0
    loop_seconds: float | None = None

    @property
    def audio_seconds(self) -> float:
        return self.chapters * self.chapter_seconds

    def book(self, slug: str) -> BookSpec:
        """The stand-in's spec of this book (AAC, like the site serves)."""
        return make_book(
            slug,
            title=slug.replace("-", " ").title(),
            author="Bench Mark",
            chapters=self.chapters,
            chapter_seconds=self.chapter_seconds,
            segment_seconds=self.segment_seconds,
            loop_seconds=self.loop_seconds,
        )

    def describe(self) -> str:
        looped = f", each looping {self.loop_seconds:g} s" if self.loop_seconds else ""
        return (
            f"{self.chapters} chapters x {self.chapter_seconds:g} s "
            f"({self.audio_seconds / 3600:.2f} h), {self.segment_seconds:g} s segments{looped}"
        )


@dataclass
class Usage:
    """What one measured run cost. CPU is user+sys seconds, RSS is peak bytes."""

    wall: float
    returncode: int
    cpu_python: float = 0.0
    cpu_ffmpeg: float = 0.0
    rss_python: int = 0
    rss_ffmpeg: int = 0
    log: str = ""

    @property
    def cpu(self) -> float:
        return self.cpu_python + self.cpu_ffmpeg


def child_env(pycache: Path) -> dict[str, str]:
    """The environment of a measured tokysnatcher: no user config, bytecode cached.

    An installed tool runs from compiled bytecode; with ``PYTHONDONTWRITEBYTECODE`` set (as on
    some CI machines) every run would compile the package again and count that as its CPU
    time. Bytecode goes to a private ``PYTHONPYCACHEPREFIX`` instead of the source tree.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKYSNATCHER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["TOKYSNATCHER_CONFIG"] = os.devnull + ".absent.toml"
    env["NO_COLOR"] = "1"
    return env


def _peak_rss(pid: int) -> int:
    """The peak RSS (``VmHWM``) of a live process in bytes, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _children_named(parent: int, name: bytes) -> list[int]:
    """Pids of the live children of ``parent`` whose command name contains ``name``."""
    found = []
    with os.scandir("/proc") as entries:
        pids = [entry.name for entry in entries if entry.name.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": the name may hold spaces and parentheses.
        close = stat.rindex(b")")
        if name in stat[stat.index(b"(") : close] and int(stat[close + 2 :].split()[1]) == parent:
            found.append(int(pid))
    return found


class RssWatch:
    """Samples the peak RSS of the children of ``root`` called ``name`` while the block runs.

    ``ru_maxrss`` cannot be used for children: Linux carries the parent's high-water mark
    over fork and exec, so a child of a 50 MB Python process "peaks" at 50 MB at least.
    ``VmHWM`` in ``/proc/<pid>/status`` belongs to the process's own memory map. A child that
    lives shorter than the sampling interval can be missed (a 20 ms codec probe).
    """

    def __init__(self, root: int, name: str = "ffmpeg", interval: float = 0.1) -> None:
        self.root = root
        self.name = name.encode()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)

    def __enter__(self) -> RssWatch:
        if Path("/proc/self/status").is_file():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # Only ffmpeg's own image counts: between fork and exec a child is still a copy
            # of its Python parent, under the parent's name.
            for pid in _children_named(self.root, self.name):
                self.peak = max(self.peak, _peak_rss(pid))


def _wait4(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
    """Reap ``proc`` with its own resource usage; kill it after ``timeout`` seconds."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def run_tokysnatcher(
    args: Sequence[str], *, env: dict[str, str], timeout: float, python: str = sys.executable
) -> Usage:
    """Run ``python -m tokysnatcher ARGS`` and measure it (Python and ffmpeg apart).

    ``python`` may be another install's interpreter, to measure its tokysnatcher.
    """
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        usage_file = Path(tmp) / "usage.json"
        log_file = Path(tmp) / "log.txt"
        with log_file.open("wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen(
                [python, "-c", _LAUNCHER, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A fresh database per run: the archive of an earlier run would skip the book.
                env={**env, _USAGE_ENV: str(usage_file), "TOKYSNATCHER_DATA_DIR": tmp},
            )
            with RssWatch(proc.pid) as children:
                code, total = _wait4(proc, timeout)
            wall = time.monotonic() - started
        text = log_file.read_text("utf-8", errors="replace")
        result = Usage(wall=wall, returncode=code, log=text, rss_ffmpeg=children.peak)
        if usage_file.is_file():
            data = json.loads(usage_file.read_text("utf-8"))
            result.cpu_python = data["self_cpu"]
            result.cpu_ffmpeg = data["kids_cpu"]
            result.rss_python = data["self_peak"] or 0
        else:  # killed before its exit hook: only the total is known
            result.cpu_python = total.ru_utime + total.ru_stime
        return result


def run_command(command: Sequence[str], *, env: dict[str, str], timeout: float) -> Usage:
    """Run one program, output discarded; its wall time and CPU (its reaped children included)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    code, usage = _wait4(proc, timeout)
    wall = time.monotonic() - started
    return Usage(wall=wall, returncode=code, cpu_python=usage.ru_utime + usage.ru_stime)


def run_commands(commands: Sequence[Sequence[str]], *, parallel: int, timeout: float) -> Usage:
    """Run ``commands`` ``parallel`` at a time; wall of the batch, summed CPU, max RSS."""
    lock = threading.Lock()
    total = Usage(wall=0.0, returncode=0)

    def one(command: Sequence[str]) -> None:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        stream = proc.stderr
        stderr: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr.append(stream.read()))
        reader.start()
        code, usage = _wait4(proc, timeout)
        reader.join()
        stream.close()
        with lock:
            total.cpu_ffmpeg += usage.ru_utime + usage.ru_stime
            if code != 0:
                total.returncode = code
                total.log += b"".join(stderr).decode("utf-8", "replace")[-2000:]

    started = time.monotonic()
    with RssWatch(os.getpid()) as children, ThreadPoolExecutor(parallel) as pool:
        for future in [pool.submit(one, command) for command in commands]:
            future.result()
    total.wall = time.monotonic() - started
    total.rss_ffmpeg = children.peak
    return total


def ffmpeg_path() -> str:
    """The ffmpeg tokysnatcher would use here: the one bundled by imageio-ffmpeg."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def ffmpeg_header_arg(headers: dict[str, str]) -> str:
    """Request headers in the form of ffmpeg's ``-headers`` option."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items())


def segment_totals(site: StandinSite, slug: str) -> tuple[int, int]:
    """Segments and segment bytes of a generated book (what an ideal client must fetch)."""
    count = size = 0
    for index in range(len(site.catalog[slug].tracks)):
        for path in site.segment_paths(slug, index):
            count += 1
            size += path.stat().st_size
    return count, size


def warm_up(
    site: StandinSite, slug: str, env: dict[str, str], root: Path, python: str = sys.executable
) -> None:
    """One untimed run: compiles the bytecode and pages the ffmpeg binary in."""
    args = [slug, "--base-url", site.base_url, "-d", str(root), "--format", "m4a", "-q"]
    result = run_tokysnatcher(args, env=env, timeout=300, python=python)
    shutil.rmtree(root, ignore_errors=True)
    if result.returncode != 0:
        raise SystemExit(f"warm-up run failed ({result.returncode}):\n{result.log[-2000:]}")


def settle() -> None:
    """Keep this process's garbage collector out of the measurements.

    The stand-in site runs in this process; a full collection over its cached media and
    catalog would pause every response it is serving at that moment.
    """
    gc.collect()
    gc.freeze()


def output_files(root: Path, suffix: str) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{suffix}") if ".tokysnatcher" not in p.parts)


# -- reporting ----------------------------------------------------------------------------------
def machine() -> str:
    """One line about where the numbers come from."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text("utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ffmpeg_version = subprocess.run(
        [ffmpeg_path(), "-version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.split("\n", 1)[0]
    return (
        f"tokysnatcher {__version__}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs ({cpu}); {platform.system()} {platform.release()}; "
        f"{' '.join(ffmpeg_version.split()[:3])}; {time.strftime('%Y-%m-%d')}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def save(path: Path | None, text: str) -> None:
    """Print ``text``; also write it to ``path`` when given."""
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", "utf-8")
        print(f"\nsaved to {path}")
