"""Continue inside a file, end to end: a killed run's part is continued, redirects cross hosts.

The stand-in serves files and segments with an ETag and Last-Modified and honours Range
(``standin/ranges.py``); it counts the bytes of every body it sends (``stats.served``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import cli_env, decoded_md5, fast_options, run_cli
from tokysnatcher.standin import Faults, StandinSite, make_book
from tokysnatcher.standin.catalog import TrackKind, default_catalog
from tokysnatcher.standin.ranges import validators_for
from tokysnatcher.utils.atomic import sha256_file

pytestmark = pytest.mark.integration

SLUG = "long-direct"
SITE_HEADERS = ("X-Stream-Token", "X-Audiobook-Id", "X-Track-Src", "Referer", "Cookie")


@pytest.fixture(scope="module")
def long_site(standin_cache: Path) -> Iterator[StandinSite]:
    """One direct MP3 of 60 s (about 480 KB), served at 120 KB/s: half of it takes 2 s."""
    book = make_book(
        SLUG,
        title="Long Direct",
        author="Lena Long",
        chapters=1,
        chapter_seconds=60.0,
        loop_seconds=6.0,
        codec="mp3",
        kind=TrackKind.DIRECT,
    )
    with StandinSite({SLUG: book}, cache_dir=standin_cache) as running:
        yield running


def _served(site: StandinSite, since: int) -> list[tuple[int, str | None, int]]:
    return [(s.status, s.range, s.sent) for s in site.stats.served[since:] if "/files/" in s.path]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_file_killed_at_half_is_continued_not_fetched_again(
    long_site: StandinSite, tmp_path: Path, signum: signal.Signals
) -> None:
    root = tmp_path / "lib"
    source = long_site.source_media(SLUG, 0)
    size = source.stat().st_size
    long_site.set_faults(Faults(bandwidth=120_000))
    options = fast_options(long_site, root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokysnatcher", SLUG, "--format", "mp3", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
    )
    part = root / "Lena Long" / "Long Direct" / ".tokysnatcher" / "0001" / "source.mp3.part"
    try:
        deadline = time.monotonic() + 60
        while not (part.is_file() and part.stat().st_size >= size // 2):
            assert time.monotonic() < deadline, "the download never got half way"
            assert proc.poll() is None, "the download ended before it was killed"
            time.sleep(0.02)
        proc.send_signal(signum)
        assert proc.wait(10) == (-signal.SIGKILL if signum == signal.SIGKILL else 130)
    finally:
        proc.kill()
        proc.wait(10)
    kept = part.stat().st_size
    assert size // 2 <= kept < size
    assert part.read_bytes() == source.read_bytes()[:kept]

    # The stand-in goes on writing to the dead socket for a moment: let it notice.
    deadline = time.monotonic() + 5
    while long_site.stats.active_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    long_site.set_faults(Faults())
    since = len(long_site.stats.served)
    result = run_cli([SLUG, "--format", "mp3", "--resume", *options])
    assert result.returncode == 0, result.stdout + result.stderr
    served = _served(long_site, since)
    assert served == [(206, f"bytes={kept}-", size - kept)], served
    assert sum(sent for *_, sent in served) <= 0.55 * size
    [output] = (root / "Lena Long" / "Long Direct").glob("*.mp3")
    assert decoded_md5(output) == decoded_md5(source)
    manifest = (root / "Lena Long" / "Long Direct" / ".tokysnatcher.json").read_text("utf-8")
    assert sha256_file(output)[1] in manifest
    assert not (root / "Lena Long" / "Long Direct" / ".tokysnatcher").exists()


@pytest.mark.parametrize(
    ("faults", "whole", "statuses"),
    [
        (Faults(ignore_range=True), False, [200]),  # Range ignored: the 200 is the file
        (Faults(validator_epoch=1), False, [200]),  # the file changed: If-Range sends it whole
        (Faults(), True, [416, 200]),  # killed before the rename: nothing left to ask for
    ],
    ids=["range-ignored", "file-changed", "416"],
)
def test_a_part_the_server_will_not_continue_is_fetched_again_whole(
    long_site: StandinSite, tmp_path: Path, faults: Faults, whole: bool, statuses: list[int]
) -> None:
    # What a killed run leaves: the start of the file and the note of the version it is from.
    root = tmp_path / "lib"
    source = long_site.source_media(SLUG, 0)
    data = source.read_bytes()
    kept = len(data) if whole else len(data) // 2
    work = root / "Lena Long" / "Long Direct" / ".tokysnatcher" / "0001"
    work.mkdir(parents=True)
    (work / "source.mp3.part").write_bytes(data[:kept])
    etag = validators_for(str(source), len(data)).etag
    note = {"validator": etag, "size": len(data)}
    (work / "source.mp3.part.json").write_text(json.dumps(note))
    long_site.set_faults(faults)
    since = len(long_site.stats.served)
    result = run_cli([SLUG, "--format", "mp3", *fast_options(long_site, root)])
    assert result.returncode == 0, result.stdout + result.stderr
    served = _served(long_site, since)
    assert [status for status, *_ in served] == statuses, served
    assert served[0][1] == f"bytes={kept}-"
    assert served[-1][2] == len(data)
    [output] = (root / "Lena Long" / "Long Direct").glob("*.mp3")
    assert decoded_md5(output) == decoded_md5(source)


def test_media_redirected_to_another_host_arrives_without_the_sites_headers(
    tmp_path: Path, standin_cache: Path
) -> None:
    books = {slug: default_catalog()[slug] for slug in ("direct-file-book", "cover-book")}
    faults = Faults(redirect_media=True)
    with StandinSite(books, cache_dir=standin_cache, faults=faults) as site:
        for slug, audio in (("direct-file-book", "mp3"), ("cover-book", "m4a")):
            options = fast_options(site, tmp_path / "lib")
            result = run_cli([slug, "--format", audio, "--chapters", "1", *options])
            assert result.returncode == 0, result.stdout + result.stderr
        requests = site.stats.other_host_requests
        statuses = site.stats.statuses
    assert len(requests) == 1 + 3  # a file, and a chapter of three segments
    assert statuses[302] == len(requests)
    for request in requests:
        assert request.headers["Host"].startswith("localhost:")
        assert not [name for name in SITE_HEADERS if name in request.headers], request


def test_a_segment_reset_mid_body_is_continued_in_the_same_run(
    tmp_path: Path, standin_cache: Path
) -> None:
    book = default_catalog()["cover-book"]
    faults = Faults(fail_first=1, error_kinds=("reset",), seed=3)
    with StandinSite({book.slug: book}, cache_dir=standin_cache, faults=faults) as site:
        result = run_cli([book.slug, "--format", "m4a", *fast_options(site, tmp_path / "lib")])
        assert result.returncode == 0, result.stdout + result.stderr
        served = [s for s in site.stats.served if s.path.endswith(".ts")]
        sizes = {
            f"Chapter%20{index + 1:02d}/{path.name}": path.stat().st_size
            for index in range(len(book.tracks))
            for path in site.segment_paths(book.slug, index)
        }
        sources = [site.source_media(book.slug, index) for index in range(len(book.tracks))]
    continued = [s for s in served if s.status == 206]
    assert continued, served  # some resets came mid-body (the others before any of it)
    for answer in continued:
        start = int((answer.range or "").removeprefix("bytes=").rstrip("-"))
        assert start > 0
        assert start + answer.sent == sizes[answer.path.split("/", 6)[-1]], answer
    outputs = sorted((tmp_path / "lib").glob("*/*/*.m4a"))
    assert [decoded_md5(path) for path in outputs] == [decoded_md5(path) for path in sources]
