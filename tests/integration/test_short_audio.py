"""A chapter is complete only when its audio is as long as the site declared (issue 11 item 5).

A segment (or a direct MP3 file) cut short by a server that closes the connection (no
``Content-Length``, so nothing at the HTTP level tells), or a master playlist whose variant on
another host serves junk segments, used to give a short chapter recorded complete. Now such a
chapter is ``invalid_media``, retried, then failed; the other chapters complete.
``--verify-folder --deep`` checks the same length.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from book_support import book_folder, manifest_of
from helpers import FFMPEG, audio_info, fast_options, run_cli
from tokysnatcher.standin import StandinSite
from tokysnatcher.standin.catalog import BookSpec, TrackKind, TrackSpec
from tokysnatcher.utils.atomic import sha256_file

pytestmark = pytest.mark.integration

RETRIES = 1


def hostile_book(slug: str, kind: TrackKind, normal: TrackKind = TrackKind.HLS) -> BookSpec:
    """Three chapters of 6 s (2 s segments); the second one delivered the ``kind`` way."""
    tracks = [
        TrackSpec(title=title, seconds=6.0, segment_seconds=2.0, kind=kind_)
        for title, kind_ in (("One", normal), ("Two", kind), ("Three", normal))
    ]
    return BookSpec(slug=slug, title=f"Short {slug}", authors=("Cut Short",), tracks=tracks)


SHORT = hostile_book("short-segment", TrackKind.HOSTILE_SHORT_SEGMENT)
JUNK = hostile_book("junk-variant", TrackKind.HOSTILE_JUNK_VARIANT)
SHORT_FILE = hostile_book("short-file", TrackKind.HOSTILE_SHORT_FILE, TrackKind.DIRECT)


@pytest.fixture(scope="module")
def short_site(standin_cache: Path) -> Iterator[StandinSite]:
    books = {book.slug: book for book in (SHORT, JUNK, SHORT_FILE)}
    with StandinSite(books, cache_dir=standin_cache) as running:
        yield running


def download(site: StandinSite, slug: str, root: Path, fmt: str) -> tuple[Any, dict[int, Any]]:
    report = root.parent / f"{root.name}-report.json"
    result = run_cli(
        [
            slug,
            "--format",
            fmt,
            "--max-retries",
            str(RETRIES),
            "--report",
            report,
            *fast_options(site, root),
        ]
    )
    chapters = {c["index"]: c for c in json.loads(report.read_text("utf-8"))["chapters"]}
    return result, chapters


@pytest.mark.parametrize(
    ("slug", "fmt"),
    [
        (SHORT.slug, "mp3"),
        (SHORT.slug, "m4a"),
        (JUNK.slug, "mp3"),
        (JUNK.slug, "m4a"),
        (SHORT_FILE.slug, "mp3"),
        (SHORT_FILE.slug, "m4b"),
    ],
)
def test_a_chapter_shorter_than_declared_fails_after_its_retries(
    short_site: StandinSite, tmp_path: Path, slug: str, fmt: str
) -> None:
    root = tmp_path / "lib"
    result, chapters = download(short_site, slug, root, fmt)
    assert result.returncode == 1, result.stderr + result.stdout
    bad = chapters[2]
    assert bad["status"] == "failed", bad
    assert bad["error"]["kind"] == "invalid_media", bad
    assert "declared" in bad["error"]["message"], bad
    assert bad["attempts"] == RETRIES + 1, bad  # retried: a new fetch might have mended it
    assert [chapters[i]["status"] for i in (1, 3)] == ["complete", "complete"]
    assert "2 complete, 1 failed" in result.stdout
    folder = book_folder(root)
    entries = manifest_of(folder)["chapters"]
    name = bad["file"]
    assert entries[name]["status"] == "failed"
    assert entries[name]["last_error"]["kind"] == "invalid_media"
    # Nothing short was put in place, and the good chapters record the length they were held to.
    assert not (folder / name).exists()
    for entry in entries.values():
        if entry["status"] == "complete":
            assert entry["expected_duration"]["seconds"] == pytest.approx(6.0, abs=0.1)
    if slug == JUNK.slug:
        junk = [r for r in short_site.stats.other_host_requests if "/junk/" in r.path]
        assert len([r for r in junk if r.path.endswith(".ts")]) >= 3 * (RETRIES + 1)
        assert not [h for h in short_site.stats.other_host_headers if "X-Stream-Token" in h]


def test_the_good_chapters_of_a_book_are_held_to_their_playlist_and_pass(
    short_site: StandinSite, tmp_path: Path
) -> None:
    """The check does not refuse good audio: every complete chapter lasts what was declared."""
    root = tmp_path / "lib"
    result, chapters = download(short_site, SHORT.slug, root, "mp3")
    assert result.returncode == 1
    folder = book_folder(root)
    for index in (1, 3):
        _, seconds = audio_info(folder / chapters[index]["file"])
        assert seconds == pytest.approx(6.0, abs=0.5)


def test_deep_verify_flags_a_chapter_file_of_the_wrong_length(
    site: StandinSite, tmp_path: Path
) -> None:
    """A chapter swapped for a shorter file (manifest hashes fixed to match) fails --deep."""
    root = tmp_path / "lib"
    slug = "the-sample-book"
    result = run_cli([slug, "--format", "mp3", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    folder = book_folder(root)
    data = manifest_of(folder)
    name = "02 - The Long Road.mp3"
    assert data["chapters"][name]["expected_duration"]["seconds"] == pytest.approx(12.0, abs=0.1)
    target = folder / name
    shorter = tmp_path / "shorter.mp3"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-i", target, "-t", "5", "-c", "copy", shorter], check=True
    )
    shutil.copyfile(shorter, target)
    size, digest = sha256_file(target)
    data["chapters"][name].update(size=size, sha256=digest)
    (folder / ".tokysnatcher.json").write_text(json.dumps(data), "utf-8")

    shallow = run_cli(["--verify-folder", folder])
    assert shallow.returncode == 0, shallow.stdout  # size and SHA-256 agree: nothing to see
    deep = run_cli(["--verify-folder", folder, "--deep"])
    assert deep.returncode == 1, deep.stdout + deep.stderr
    lines = [line for line in deep.stdout.splitlines() if name in line]
    assert lines, deep.stdout
    assert "wrong length" in lines[0], deep.stdout
    assert "not the 12.0 s declared" in deep.stdout, deep.stdout
    entries = manifest_of(folder)["chapters"]
    assert entries[name]["status"] == "pending"
    assert [e["status"] for n, e in entries.items() if n != name] == ["complete"] * 3


def test_deep_verify_of_a_manifest_from_before_lengths_were_recorded(
    site: StandinSite, tmp_path: Path
) -> None:
    """An entry without ``expected_duration`` (0.5.0) still loads and verifies by decoding."""
    root = tmp_path / "lib"
    result = run_cli(["mp3-stream-book", "--format", "mp3", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    folder = book_folder(root)
    data = manifest_of(folder)
    for entry in data["chapters"].values():
        del entry["expected_duration"]
    (folder / ".tokysnatcher.json").write_text(json.dumps(data), "utf-8")
    deep = run_cli(["--verify-folder", folder, "--deep"])
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert all("expected_duration" not in e for e in manifest_of(folder)["chapters"].values())


def test_a_direct_file_is_held_to_the_duration_the_api_gives(
    site: StandinSite, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    result = run_cli(["direct-file-book", "--format", "mp3", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    entries = manifest_of(book_folder(root))["chapters"]
    assert len(entries) == 3
    for entry in entries.values():
        # The API says 6 (whole seconds); the file decodes to about that.
        assert entry["expected_duration"] == {"seconds": 6.0, "tolerance": 1.5}
