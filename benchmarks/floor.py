"""The CPU floor: what the cheapest clients pay per request and per remux on this machine.

A download's CPU cost has two parts that any client must pay: one HTTP request per segment
(send it, parse the answer, read the body) and, for ``--format m4a``, one remux of each chapter.
The floor measures both with clients that do nothing else, against the same stand-in site:

- Python ``http.client``: keep-alive connections on threads (as many as tokysnatcher uses),
  each body read and dropped; CPU counted around the fetch loop only (no interpreter start).
- curl (when installed): ``--parallel`` transfers over as many keep-alive connections, bodies to
  ``/dev/null``; a C client, the cheapest HTTP/1.1 requests this machine can make.
- ffmpeg: a stream-copy remux of each chapter's source from local disk to m4a, two at a time.

Requests times the cheapest cost per request, plus the remux, is the least CPU any client
could spend on the job; divided by a wall time it is the lowest "CPU % of wall" reachable there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from common import run_commands, table
from tokysnatcher.standin import StandinSite

# A minimal keep-alive client: each thread owns one connection and an equal share of the paths.
_HTTP_CLIENT = """
import http.client, json, resource, sys, threading, time
job = json.load(sys.stdin)
count, failed = job["connections"], []
def fetch(paths):
    connection = http.client.HTTPConnection(job["host"], job["port"], timeout=60)
    for path in paths:
        connection.request("GET", path, headers=job["headers"])
        response = connection.getresponse()
        if response.status != 200 or not response.read():
            failed.append(path)
    connection.close()
threads = [threading.Thread(target=fetch, args=(job["paths"][n::count],)) for n in range(count)]
before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
json.dump({"wall": wall, "cpu": cpu, "failed": len(failed)}, sys.stdout)
"""


@dataclass(frozen=True)
class Floor:
    """One floor measurement: a client (or a remux) that does only the unavoidable work."""

    client: str
    how: str
    wall: float
    cpu: float
    requests: int = 0
    connections: int = 0
    peak_connections: int = 0

    @property
    def name(self) -> str:
        """What was measured, in full."""
        return f"{self.client}: {self.how}"

    @property
    def ms_per_request(self) -> float:
        """CPU milliseconds per HTTP request (0 for a remux, which makes none)."""
        return 1000 * self.cpu / self.requests if self.requests else 0.0


def segment_urls(site: StandinSite, slug: str) -> list[str]:
    """Every segment URL of a book, chapter after chapter (what a client must fetch)."""
    urls = []
    for index in range(len(site.catalog[slug].tracks)):
        folder = site.playlist_url(slug, index).rsplit("/", 1)[0]
        urls += [f"{folder}/{path.name}" for path in site.segment_paths(slug, index)]
    return urls


def _counted(site: StandinSite, client: str, how: str, wall: float, cpu: float) -> Floor:
    stats = site.stats
    requests = sum(stats.requests.values())
    floor = Floor(client, how, wall, cpu, requests, stats.connections, stats.peak_connections)
    print(f"  {client}: {wall:.2f} s, {floor.ms_per_request:.2f} CPU ms per request", flush=True)
    return floor


def python_fetch(site: StandinSite, slug: str, connections: int, timeout: float) -> Floor:
    """Fetch every segment of ``slug`` with the minimal ``http.client`` client."""
    base = urlsplit(site.base_url)
    job = {
        "host": base.hostname,
        "port": base.port,
        "headers": site.headers_for(slug),
        "paths": [urlsplit(url).path for url in segment_urls(site, slug)],
        "connections": connections,
    }
    site.stats.reset()
    done = subprocess.run(
        [sys.executable, "-c", _HTTP_CLIENT],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the http.client floor failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout)
    if result["failed"]:
        raise SystemExit(f"the http.client floor got {result['failed']} failed requests")
    how = f"{connections} keep-alive connections on threads, bodies dropped, fetch loop only"
    return _counted(site, "Python http.client", how, result["wall"], result["cpu"])


def curl_fetch(
    site: StandinSite, slug: str, connections: int, work: Path, timeout: float
) -> Floor | None:
    """Fetch every segment of ``slug`` with ``curl --parallel``; None when curl is missing."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    config = work / "curl-floor.cfg"
    config.write_text(
        "".join(f'url = "{url}"\noutput = "/dev/null"\n' for url in segment_urls(site, slug)),
        "utf-8",
    )
    command = [curl, "--silent", "--show-error", "--fail", "--parallel", "--parallel-immediate"]
    command += ["--parallel-max", str(connections), "--config", str(config)]
    for name, value in site.headers_for(slug).items():
        command += ["--header", f"{name}: {value}"]
    site.stats.reset()
    usage = run_commands([command], parallel=1, timeout=timeout)
    if usage.returncode != 0:
        raise SystemExit(f"the curl floor failed ({usage.returncode}):\n{usage.log}")
    how = f"--parallel over {connections} keep-alive connections, bodies to /dev/null"
    return _counted(site, "curl", how, usage.wall, usage.cpu)


def remux(
    site: StandinSite, slug: str, ffmpeg: str, work: Path, parallel: int, timeout: float
) -> Floor:
    """Remux each chapter's source (all its segments, on local disk) to m4a by stream copy."""
    root = work / "remux-floor"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    head = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i"]
    copy = ["-map", "0:a", "-c", "copy"]
    chapters = range(len(site.catalog[slug].tracks))
    commands = [
        [*head, str(site.source_media(slug, i)), *copy, str(root / f"{i}.m4a")] for i in chapters
    ]
    usage = run_commands(commands, parallel=parallel, timeout=timeout)
    shutil.rmtree(root, ignore_errors=True)
    if usage.returncode != 0:
        raise SystemExit(f"the remux floor failed ({usage.returncode}):\n{usage.log}")
    how = f"-c copy of each chapter from local disk to m4a, {parallel} at a time"
    print(f"  ffmpeg remux: {usage.cpu:.2f} CPU s", flush=True)
    return Floor("ffmpeg remux", how, usage.wall, usage.cpu)


def least_cpu(floors: list[Floor], requests: int) -> tuple[float, float]:
    """CPU seconds of ``requests`` requests at the cheapest fetch floor, and of the remux."""
    fetch = min((f.ms_per_request for f in floors if f.requests), default=0.0) * requests / 1000
    return fetch, sum(floor.cpu for floor in floors if not floor.requests)


def floor_report(floors: list[Floor], *, wall: float, requests: int) -> list[str]:
    """The floor table, and the least CPU % of ``wall`` for a run of ``requests`` requests."""
    fetches = [floor for floor in floors if floor.requests]
    remuxes = [floor for floor in floors if not floor.requests]
    rows = [
        [
            floor.name,
            f"{floor.wall:.2f}",
            f"{floor.cpu:.2f}",
            floor.requests or "-",
            f"{floor.ms_per_request:.2f}" if floor.requests else "-",
            f"{floor.connections} ({floor.peak_connections})" if floor.requests else "-",
        ]
        for floor in floors
    ]
    headers = ["floor", "wall s", "CPU s", "requests", "CPU ms per request", "TCP connections"]
    remux_cpu = sum(floor.cpu for floor in remuxes)
    lines = [
        "## CPU floor: the least CPU any client could spend here",
        "",
        "Measured in the same run, against the same site: clients that only fetch the book's "
        "segments (no API calls, no playlists, nothing written; http.client's CPU is counted "
        "around its fetch loop, curl's is the whole process), and a bare remux of each chapter "
        "from local disk.",
        "",
        table(headers, rows),
        "",
        f"At tokysnatcher's m4a wall ({wall:.2f} s; 5% of it is {0.05 * wall:.2f} s of CPU):",
    ]
    for floor in fetches:
        fetch = requests * floor.ms_per_request / 1000
        total = fetch + remux_cpu
        line = (
            f"- {floor.client}: {requests} requests x {floor.ms_per_request:.2f} ms "
            f"= {fetch:.2f} s = **{100 * fetch / wall:.1f}% of wall**"
        )
        if remuxes:
            line += (
                f"; with the remux ({remux_cpu:.2f} s): {total:.2f} s = {100 * total / wall:.1f}%"
            )
        lines.append(line + ".")
    return lines
