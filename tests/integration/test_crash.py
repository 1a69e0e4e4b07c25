"""kill -9 at any moment: only complete files under final names, a valid manifest, and the next
--resume finishes the book reusing what was already fetched (SPEC §3, §4; ISSUE 4 item 5)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from book_support import (
    MANIFEST,
    assert_book_audio,
    assert_manifest_matches_files,
    book_folder,
    snapshot,
    source_md5,
)
from helpers import cli_env, decoded_md5, fast_options, run_cli
from tokysnatcher.library.scan import ChapterStatus, read_manifest
from tokysnatcher.standin import Faults, StandinSite
from tokysnatcher.utils.atomic import LOCK_NAME, sha256_file

pytestmark = pytest.mark.integration

SLUG = "the-sample-book"
CHAPTERS = 4
SEGMENTS = 6  # 12 s chapters in 2 s segments
FOLDER = Path("Ada Quill") / "The Sample Book"
WORK = ".tokysnatcher"
HIDDEN_TEMP = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")
SIDECARS = ("cover.jpg", "metadata.opf", "reader.txt")

Trigger = Callable[[Path], bool]


@pytest.fixture
def slow_site(standin_cache: Path) -> Iterator[StandinSite]:
    """Every response waits a little, so a run can be caught in each of its phases."""
    with StandinSite(faults=Faults(latency=0.1), cache_dir=standin_cache) as running:
        yield running


def start(site: StandinSite, root: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = [SLUG, "--format", "m4a", *fast_options(site, root), "--connections", "1", "-j", "1"]
    return subprocess.Popen(
        [sys.executable, "-m", "tokysnatcher", *args, *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
    )


def kill_when(proc: subprocess.Popen[bytes], folder: Path, trigger: Trigger, limit: float) -> bool:
    """SIGKILL ``proc`` the moment ``trigger(folder)`` holds (or after ``limit`` s); was it?"""
    deadline = time.monotonic() + limit
    fired = False
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            fired = trigger(folder)
        except OSError:  # a file vanished while we looked: look again
            fired = False
        if fired:
            break
        time.sleep(0.002)
    proc.kill()
    proc.wait(timeout=10)
    return fired


def segments_on_disk(folder: Path) -> list[Path]:
    return sorted((folder / WORK).glob("[0-9][0-9][0-9][0-9]/[0-9]*.ts"))


def chapter_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9] - *.m4a"))


def assert_crash_safe(folder: Path, site: StandinSite) -> None:
    """What a kill may leave: a valid manifest, whole files under final names, hidden temps."""
    doc = read_manifest(folder / MANIFEST)  # valid JSON of the right shape, or it raises
    assert doc is not None
    for path in folder.iterdir():
        if path.name in (MANIFEST, WORK, LOCK_NAME, *SIDECARS) or HIDDEN_TEMP.fullmatch(path.name):
            continue
        match = re.fullmatch(r"(\d\d) - .+\.m4a", path.name)
        assert match, f"unexpected file {path.name}"
        # A truncated MP4 has no moov atom and does not decode at all.
        index = int(match.group(1)) - 1
        assert decoded_md5(path) == source_md5(site.source_media(SLUG, index)), path.name
    # And whatever the manifest calls complete is exactly the file on disk.
    for name, entry in doc.chapters.items():
        if entry.status is ChapterStatus.COMPLETE:
            assert (entry.size, entry.sha256) == sha256_file(folder / name), name
    for name, recorded in doc.sidecars.items():  # and so is every sidecar it lists
        assert (recorded.size, recorded.sha256) == sha256_file(folder / name), name


def test_kill_9_at_many_moments_then_resume_finishes_the_book(
    slow_site: StandinSite, tmp_path: Path
) -> None:
    folder = tmp_path / FOLDER
    moments: list[tuple[str, Trigger]] = [
        ("first segment fetched", lambda f: len(segments_on_disk(f)) >= 2),
        ("first chapter file in place", lambda f: len(chapter_files(f)) >= 1),
        ("converting", lambda f: any((f / WORK).glob("*/output.*"))),
        ("writing the manifest", lambda f: any(HIDDEN_TEMP.fullmatch(p.name) for p in f.iterdir())),
        ("third chapter file in place", lambda f: len(chapter_files(f)) >= 3),
    ]
    fired = []
    reused = 0
    for moment, trigger in moments:
        kept = (
            {p.relative_to(folder) for p in segments_on_disk(folder)} if folder.exists() else set()
        )
        paths = slow_site.stats.paths
        proc = start(slow_site, tmp_path, "--resume")
        if kill_when(proc, folder, trigger, limit=3.0):
            fired.append(moment)
        assert_crash_safe(folder, slow_site)
        # Segments a killed run left on disk were not fetched again by this one.
        now = slow_site.stats.paths
        for segment in kept:
            chapter, index = int(segment.parent.name), int(segment.stem)
            url_tail = f"Chapter%20{chapter:02d}/seg-{index:05d}.ts"
            again = [p for p in now if p.endswith(url_tail) and now[p] > paths[p]]
            assert not again, f"{segment} was fetched again"
        reused += len(kept)
    assert len(fired) >= 3, f"too few moments were caught: {fired}"
    assert reused, "no run was killed with segments on disk: reuse went untested"

    before = slow_site.stats.requests["segment"]
    result = run_cli([SLUG, "--format", "m4a", *fast_options(slow_site, tmp_path), "--resume"])
    assert result.returncode == 0, result.stderr + result.stdout
    assert slow_site.stats.requests["segment"] - before < CHAPTERS * SEGMENTS
    assert_book_audio(folder, slow_site, SLUG)
    assert_manifest_matches_files(folder)
    # Nothing stray: no work folder, no temporary files, no partial anything.
    expected = {MANIFEST, LOCK_NAME, *SIDECARS, *(p.name for p in chapter_files(folder))}
    assert {p.name for p in folder.iterdir()} == expected


def test_kill_9_during_force_redownload_keeps_the_old_files(
    site: StandinSite, slow_site: StandinSite, tmp_path: Path
) -> None:
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    folder = book_folder(tmp_path)
    before = snapshot(folder)

    proc = start(slow_site, tmp_path, "--force-redownload")
    assert kill_when(proc, folder, lambda f: len(segments_on_disk(f)) >= 3, limit=10.0)
    after = snapshot(folder)
    for name in (p.name for p in chapter_files(folder)):
        assert after[name] == before[name], f"{name} changed before its new file was complete"
    assert_crash_safe(folder, slow_site)

    # The chapters the killed run never started are still proven complete: --resume skips them.
    resumed = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "1 complete, 0 failed, 3 skipped" in resumed.stdout
    assert_book_audio(folder, site, SLUG)
    assert_manifest_matches_files(folder)


def test_a_second_run_on_the_same_book_is_refused(slow_site: StandinSite, tmp_path: Path) -> None:
    folder = tmp_path / FOLDER
    first = start(slow_site, tmp_path, "--speed-limit", "40K")  # about 10 s for the book
    try:
        deadline = time.monotonic() + 20
        while not segments_on_disk(folder) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.poll() is None
        second = run_cli([SLUG, "--format", "m4a", *fast_options(slow_site, tmp_path)])
        assert second.returncode == 2, second.stdout + second.stderr
        assert "in use by another tokysnatcher" in second.stderr
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert_book_audio(folder, slow_site, SLUG)


def test_temporary_files_left_by_a_kill_are_removed_by_the_next_run(
    site: StandinSite, tmp_path: Path
) -> None:
    result = run_cli([SLUG, "--format", "m4a", "--chapters", "1", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    folder = book_folder(tmp_path)
    stale = [folder / f".{MANIFEST}.0123abcd.tmp", folder / ".02 - The Long Road.m4a.89abcdef.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    mine = folder / ".my notes.txt"
    mine.write_text("not ours")
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale)
    assert mine.read_text() == "not ours"
    assert Counter(p.suffix for p in folder.iterdir() if p.name != LOCK_NAME) == Counter(
        {".m4a": CHAPTERS, ".json": 1, ".txt": 2, ".jpg": 1, ".opf": 1}  # and the sidecars
    )
