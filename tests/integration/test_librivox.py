"""End to end: LibriVox books with the real command, the LibriVox stand-in and real ffmpeg.

The session's stand-in serves files at ``/download/`` directly; the tests about archive.org's
redirect to another host turn it on (``librivox_redirecting``), as ``--demo librivox`` has it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import FFMPEG, chapters, cli_env, metadata, run_cli, tree
from tokysnatcher.standin import Faults
from tokysnatcher.standin.librivox.catalog import (
    HOSTILE_JSON_IDS,
    HOSTILE_NAMES_ID,
    LARGE_ID,
    MULTI_READER_ID,
    SAMPLE_ID,
    UNFINISHED_ID,
)
from tokysnatcher.standin.librivox.server import LibrivoxSite
from tokysnatcher.utils.atomic import sha256_file

pytestmark = pytest.mark.integration

# Headers that belong to a site (tokybook's stream headers, cookies, credentials).
SITE_HEADERS = {
    "referer",
    "cookie",
    "authorization",
    "x-audiobook-id",
    "x-stream-token",
    "x-track-src",
}


def run(
    site: LibrivoxSite, args: list[str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env=cli_env(**site.env()), timeout=timeout)


def quick(root: Path) -> list[str]:
    return ["-d", str(root), "--retry-delay", "0.2", "--stall-timeout", "3"]


def book_folder(root: Path) -> Path:
    manifests = list(root.rglob(".tokysnatcher.json"))
    assert len(manifests) == 1, tree(root)
    return manifests[0].parent


def packets_md5(path: Path) -> str:
    """The MD5 of the MP3 packets (tags left out), stream-copied by ffmpeg."""
    return subprocess.run(
        [FFMPEG, "-v", "error", "-i", path, "-map", "0:a", "-c", "copy", "-f", "md5", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def chapter_titles(path: Path) -> list[str]:
    return [title for _, _, title in chapters(path)]


def test_a_book_as_mp3_keeps_every_served_packet_in_section_order(
    librivox_site: LibrivoxSite, tmp_path: Path
) -> None:
    result = run(librivox_site, [f"librivox:{SAMPLE_ID}", *quick(tmp_path)])
    assert result.returncode == 0, result.stderr
    folder = book_folder(tmp_path)
    assert folder == tmp_path / "Ada Quill" / "The Sample Sections"
    files = sorted(folder.glob("*.mp3"))
    # Served in another order; numbered by section.
    assert [p.name for p in files] == [
        "01 - Prologue.mp3",
        "02 - The Long Road.mp3",
        "03 - A Quiet Harbour.mp3",
        "04 - Epilogue.mp3",
    ]
    book = librivox_site.catalog[SAMPLE_ID]
    for path, section in zip(files, book.sections, strict=True):
        served = librivox_site.file_path(SAMPLE_ID, book.low_name(section))
        assert packets_md5(path) == packets_md5(served), path.name
    manifest = json.loads((folder / ".tokysnatcher.json").read_text("utf-8"))
    for path in files:
        entry = manifest["chapters"][path.name]
        assert entry["status"] == "complete"
        assert (entry["size"], entry["sha256"]) == sha256_file(path)


def test_a_book_as_m4b_has_a_titled_chapter_per_section_in_order(
    librivox_site: LibrivoxSite, tmp_path: Path
) -> None:
    page = librivox_site.book_url(MULTI_READER_ID)  # the book page form of reference
    result = run(librivox_site, [page, "--format", "m4b", *quick(tmp_path)])
    assert result.returncode == 0, result.stderr
    folder = book_folder(tmp_path)
    assert folder == tmp_path / "Bea Chorus & Cal Echo" / "Many Voices"
    (book_file,) = folder.glob("*.m4b")
    assert chapter_titles(book_file) == ["First Voice", "Duet", "No Credit", "Last Voice"]
    probe = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", book_file], capture_output=True, text=True, timeout=60
    )
    assert "(attached pic)" in probe.stderr  # the item's own JPEG (the API names no cover)
    tags = metadata(book_file)
    assert tags.get("album") == "Many Voices"
    assert "Bea Chorus & Cal Echo" in tags.get("artist", "")


def test_an_unfinished_section_is_named_and_the_rest_completes(
    librivox_site: LibrivoxSite, tmp_path: Path
) -> None:
    result = run(librivox_site, [f"librivox:{UNFINISHED_ID}", *quick(tmp_path)])
    assert result.returncode == 1, result.stderr
    assert "section 2 (Still Being Read)" in result.stderr
    assert "2 complete, 0 failed" in result.stdout
    folder = book_folder(tmp_path)
    assert sorted(p.name for p in folder.glob("*.mp3")) == [
        "01 - Done One.mp3",
        "02 - Done Two.mp3",
    ]


def test_an_api_url_names_the_book(librivox_site: LibrivoxSite, tmp_path: Path) -> None:
    # librivox:<id> and the page are the other tests' references; the rest: tests/sources.
    ref = f"{librivox_site.base_url}/api/feed/audiobooks/?id={SAMPLE_ID}&format=json"
    result = run(librivox_site, [ref, "--dry-run", *quick(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "The Sample Sections by Ada Quill" in result.stdout
    assert "4 to download" in result.stdout


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    return lines[0]


def test_an_unknown_id_is_one_line_and_exit_2(librivox_site: LibrivoxSite, tmp_path: Path) -> None:
    result = run(librivox_site, ["librivox:9999", *quick(tmp_path)])
    assert result.returncode == 2
    assert "no LibriVox book with the id 9999" in one_error_line(result.stderr)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_hostile_json_is_one_line_and_nothing_written(
    librivox_site: LibrivoxSite, tmp_path: Path
) -> None:
    # Each hostile answer is checked in tests/sources; here: what the user sees of one.
    result = run(librivox_site, [f"librivox:{HOSTILE_JSON_IDS[1]}", *quick(tmp_path)])
    assert result.returncode == 1
    assert "is malformed" in one_error_line(result.stderr)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_hostile_names_stay_inside_the_library(librivox_site: LibrivoxSite, tmp_path: Path) -> None:
    root = tmp_path / "lib"
    result = run(librivox_site, [f"librivox:{HOSTILE_NAMES_ID}", *quick(root)])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]
    folder = book_folder(root)
    assert folder.parent.parent == root
    names = [p.name for p in folder.glob("*.mp3")]
    assert len(names) == 4
    for name in names:
        assert "/" not in name
        assert "\u202e" not in name
        assert len(name.encode()) <= 200


def test_search_librivox(librivox_site: LibrivoxSite) -> None:
    # By an author's last name here; by title, paging and "no results": tests/sources.
    result = run(librivox_site, ["-s", "chorus", "--source", "librivox"])
    assert result.returncode == 0, result.stderr
    assert "Many Voices - Bea Chorus, Cal Echo" in result.stdout


# -- archive.org's hosting: the redirect to another host, Range, the item's checksums ---------
def test_the_redirect_to_another_host_carries_no_site_header(
    librivox_redirecting: LibrivoxSite, tmp_path: Path
) -> None:
    site = librivox_redirecting
    before = len(site.file_stats.other_host_requests)
    result = run(site, [f"librivox:{SAMPLE_ID}", "--chapters", "1-2", *quick(tmp_path)])
    assert result.returncode == 0, result.stderr
    requests = site.file_stats.other_host_requests[before:]
    assert len(requests) >= 2
    for request in requests:
        assert request.headers["Host"].startswith("localhost:")
        assert not SITE_HEADERS & {name.lower() for name in request.headers}, request.headers


def test_a_corrupted_file_is_retried_then_reported(
    librivox_site: LibrivoxSite, tmp_path: Path
) -> None:
    site = librivox_site
    site.data.corrupt_first = 1_000
    try:
        args = [f"librivox:{SAMPLE_ID}", "--chapters", "1", "--max-retries", "1"]
        result = run(site, [*args, *quick(tmp_path)])
    finally:
        site.data.corrupt_first = 0
    assert result.returncode == 1, result.stderr
    assert "invalid_media" in result.stdout + result.stderr
    assert "01 - Prologue" in result.stdout
    book = site.catalog[SAMPLE_ID]
    name = book.low_name(book.sections[0])
    served = [path for path in site.stats.paths if path.endswith(name)]
    assert sum(site.stats.paths[path] for path in served) >= 2  # retried


def test_demo_librivox_makes_an_m4b(tmp_path: Path) -> None:
    result = run_cli(["--demo", "librivox", "-d", str(tmp_path)], timeout=180)
    assert result.returncode == 0, result.stderr + result.stdout
    (book_file,) = tmp_path.rglob("*.m4b")
    assert chapter_titles(book_file) == ["Prologue", "The Long Road", "A Quiet Harbour", "Epilogue"]


@pytest.mark.timeout(120)
def test_a_large_file_killed_midway_is_continued_with_range(
    librivox_redirecting: LibrivoxSite, tmp_path: Path
) -> None:
    site = librivox_redirecting
    book = site.catalog[LARGE_ID]
    name = book.low_name(book.sections[0])
    body = site.data.items[book.identifier][name].body
    size = body.stat().st_size
    site.set_faults(Faults(bandwidth=400_000))
    args = [f"librivox:{LARGE_ID}", "--chapters", "1", "--format", "mp3", *quick(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokysnatcher", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=cli_env(**site.env()),
    )
    try:
        deadline = time.monotonic() + 60
        while not [p for p in tmp_path.rglob("source.mp3.part") if p.stat().st_size > size // 2]:
            assert time.monotonic() < deadline, "the download never got half way"
            assert proc.poll() is None, "the download ended before it was killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait(10)
    [part] = tmp_path.rglob("source.mp3.part")
    kept = part.stat().st_size
    assert part.read_bytes() == body.read_bytes()[:kept]
    deadline = time.monotonic() + 5
    while site.file_stats.active_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    site.set_faults(Faults())
    since = len(site.file_stats.served)
    result = run(site, [*args, "--resume"])
    assert result.returncode == 0, result.stderr
    served = [
        (s.status, s.range, s.sent) for s in site.file_stats.served[since:] if s.path.endswith(name)
    ]
    assert served == [(206, f"bytes={kept}-", size - kept)]  # only the rest, once
    [output] = book_folder(tmp_path).glob("01 - *.mp3")
    assert packets_md5(output) == packets_md5(body)
