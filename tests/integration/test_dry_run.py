"""--dry-run: the whole plan is checked and shown, and not one byte is written anywhere."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from helpers import fast_options, run_cli
from tokysnatcher.ffmpeg.binary import MP3_TO_AAC_NOTICE
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under ``root`` with its size, modification time and content hash."""
    state: dict[str, tuple[int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns, digest)
    return state


def plan_rows(stdout: str) -> list[tuple[str, str, str]]:
    """(number, action, file) of each row of the printed plan."""
    return re.findall(r"^(\d+)\s+(download|skip|redo)\s+(\d\d - .+?\.\w+)\s", stdout, re.M)


def test_dry_run_creates_no_file_or_folder(site: StandinSite, tmp_path: Path) -> None:
    root = tmp_path / "lib" / "nested"
    report = tmp_path / "run.json"
    before = sorted(tmp_path.iterdir())
    result = run_cli(
        ["the-sample-book", "--dry-run", "--report", report, *fast_options(site, root)]
    )
    assert result.returncode == 0, result.stderr
    assert sorted(tmp_path.iterdir()) == before  # not the root, not the report, nothing
    assert plan_rows(result.stdout) == [
        ("1", "download", "01 - Prologue.mp3"),
        ("2", "download", "02 - The Long Road.mp3"),
        ("3", "download", "03 - A Quiet Harbour.mp3"),
        ("4", "download", "04 - Epilogue.mp3"),
    ]
    assert f"destination: {root / 'Ada Quill' / 'The Sample Book'}" in result.stdout
    assert re.search(r"01 - Prologue\.mp3\s+~[\d.]+ KiB", result.stdout)  # estimated size
    assert "plan: 4 to download, 0 to skip" in result.stdout
    assert "nothing was written" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr


def test_dry_run_of_a_partial_download_changes_nothing(site: StandinSite, tmp_path: Path) -> None:
    options = [*fast_options(site, tmp_path), "--format", "m4a"]
    assert run_cli(["the-sample-book", "--chapters", "1-2", *options]).returncode == 0
    folder = tmp_path / "Ada Quill" / "The Sample Book"
    with (folder / "02 - The Long Road.m4a").open("ab") as altered:
        altered.write(b"not audio")
    before = snapshot(tmp_path)

    result = run_cli(["the-sample-book", "--dry-run", *options])
    assert result.returncode == 0, result.stderr
    assert plan_rows(result.stdout) == [
        ("1", "skip", "01 - Prologue.m4a"),
        ("2", "redo", "02 - The Long Road.m4a"),
        ("3", "download", "03 - A Quiet Harbour.m4a"),
        ("4", "download", "04 - Epilogue.m4a"),
    ]
    assert "plan: 3 to download, 1 to skip" in result.stdout
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--chapters", "3-9"], "--chapters: '3-9' is outside 1-4"),
        (["--ffmpeg", "/nonexistent/ffmpeg"], "/nonexistent/ffmpeg"),
        (["--base-url", "http://127.0.0.1:9"], "could not reach"),
    ],
)
def test_dry_run_still_checks_everything(
    site: StandinSite, tmp_path: Path, extra: list[str], needle: str
) -> None:
    base = ["--base-url", site.base_url] if "--base-url" not in extra else []
    result = run_cli(["the-sample-book", "--dry-run", "-d", tmp_path / "lib", *base, *extra])
    assert result.returncode != 0
    (line,) = result.stderr.splitlines()
    assert line.startswith("error:")
    assert needle in line
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_dry_run_refuses_a_folder_it_could_not_write(site: StandinSite, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli(["the-sample-book", "--dry-run", *fast_options(site, blocker / "lib")])
    assert result.returncode == 2
    assert "not a folder" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    ("slug", "line"),
    [
        # Direct files are MP3: the plan knows the audio will be encoded.
        ("direct-file-book", f"warning: {MP3_TO_AAC_NOTICE}"),
        # An HLS stream shows its codec only once fetched: the plan says the rule.
        ("mp3-stream-book", "m4a: AAC audio is kept as served; MP3 audio would be encoded to AAC"),
    ],
)
def test_dry_run_of_m4a_says_what_becomes_of_the_audio(
    site: StandinSite, tmp_path: Path, slug: str, line: str
) -> None:
    result = run_cli([slug, "--format", "m4a", "--dry-run", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    assert line in result.stderr.splitlines()
    assert list(tmp_path.iterdir()) == []
