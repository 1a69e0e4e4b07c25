"""Starting, stopping, caching and the command line of the stand-in site."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from helpers import NEEDS_SIGNALS
from tokysnatcher.standin import BookSpec, Faults, StandinSite, TrackSpec, make_book
from tokysnatcher.standin.media import CACHE_ENV, MediaCache, default_cache_dir

from .support import BookClient, SiteFactory

OpenBook = Callable[[StandinSite, str], BookClient]


def in_background(action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        try:
            action()
        except requests.RequestException:
            pass  # the site went away under the request: expected here

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_stop_is_quick_while_a_stall_and_a_throttled_body_are_in_flight(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site(Faults(fail_first=1, error_kinds=("stall",), stall_seconds=60))
    book = open_book(site, "tiny")
    stalled = in_background(lambda: book.get(book.segment_path(0, 0), timeout=30).content)
    wait_for(lambda: site.stats.faults["stall"] == 1)
    site.set_faults(Faults(bandwidth=1000))
    slow = in_background(
        lambda: requests.get(site.base_url + "/files/tiny-direct/01.mp3", timeout=30).content
    )
    wait_for(lambda: site.stats.requests["file"] == 1)
    time.sleep(0.1)

    started = time.monotonic()
    site.stop()

    assert time.monotonic() - started < 1.2
    stalled.join(2)
    slow.join(2)
    assert not stalled.is_alive()
    assert not slow.is_alive()


def test_stop_is_idempotent_and_closes_the_port(make_site: SiteFactory) -> None:
    site = make_site()
    url = site.base_url

    site.stop()
    site.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


def test_chosen_port_and_base_url(make_site: SiteFactory) -> None:
    probe = make_site()
    port = probe.port
    probe.stop()

    site = make_site(port=port)

    assert site.base_url == f"http://127.0.0.1:{port}"


def test_cache_is_reused_and_generation_leaves_no_debris(tmp_path: Path) -> None:
    catalog = {"c": make_book("c", title="Cached", chapters=1, chapter_seconds=2.0)}
    first = MediaCache(tmp_path).prepare(catalog)
    stamp = first[("c", 0)].source.stat().st_mtime_ns

    again = MediaCache(tmp_path).prepare(catalog)

    assert again == first
    assert again[("c", 0)].source.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob(".tmp-*"))


def test_parallel_generation_of_the_same_media_agrees(tmp_path: Path) -> None:
    catalog = {
        "p": BookSpec(slug="p", title="P", tracks=(TrackSpec(title="t", seconds=2.0, codec="mp3"),))
    }
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(MediaCache(tmp_path).prepare(catalog)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(results) == 3
    assert results[0] == results[1] == results[2]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_cache_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    assert default_cache_dir() == tmp_path


@NEEDS_SIGNALS
def test_command_line_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tokysnatcher.standin", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        first_book = process.stdout.readline()
        answer = requests.post(
            base_url + "/api/v1/search/post-details",
            data=json.dumps({"dynamicSlugId": "the-sample-book"}),
            timeout=5,
        )
        process.send_signal(signal.SIGINT)
        code = process.wait(10)
    finally:
        process.kill()
        process.wait()

    assert base_url.startswith("http://127.0.0.1:")
    assert "/post/" in first_book
    assert answer.json()["title"] == "The Sample Book"
    assert code == 0
