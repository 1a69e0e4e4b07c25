"""Manifests built to break the reader: nested too deep, or too large (ISSUE 11 item 7).

A field nested ~980 deep used to pass validation and then crash every save with RecursionError,
so the book could never be resumed. Each such manifest is corrupt: a download moves it aside and
completes, ``--list-downloads`` and ``--verify-folder`` say so in one line, and nothing crashes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from book_support import MANIFEST, assert_book_audio, assert_manifest_matches_files, manifest_of
from helpers import fast_options, run_cli
from tokysnatcher.library.manifest_schema import MAX_MANIFEST_BYTES
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration

SLUG = "cover-book"
FIRST = "01 - Front.m4a"


@pytest.fixture(scope="module")
def template(site: StandinSite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library root of one complete two-chapter m4a download."""
    root = tmp_path_factory.mktemp("hostile-manifest")
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    return root


def nested(depth: int) -> Callable[[Path], None]:
    """Give the first chapter's entry an unknown field of lists ``depth`` deep."""

    def plant(folder: Path) -> None:
        data = manifest_of(folder)
        data["chapters"][FIRST]["notes"] = "PLACEHOLDER"
        text = json.dumps(data).replace('"PLACEHOLDER"', "[" * depth + "]" * depth)
        (folder / MANIFEST).write_text(text, "utf-8")

    return plant


def oversized(folder: Path) -> None:
    """A manifest one byte over the limit (sparse: nothing is really written)."""
    with (folder / MANIFEST).open("r+b") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)


# 976: 0.5.0 read it (json.loads recursed just short of the limit), then every save, deeper in
# the stack, raised RecursionError. 100,000 breaks json.loads itself.
HOSTILE = pytest.mark.parametrize(
    "plant",
    [nested(976), nested(100_000), oversized],
    ids=["nested-976", "nested-100000", "oversized"],
)


def book_copy(template: Path, root: Path, plant: Callable[[Path], None]) -> Path:
    shutil.copytree(template, root, dirs_exist_ok=True)
    folder = root / "Cora Vere" / "Cover Story"
    plant(folder)
    return folder


def problem_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "corrupt" in line]


@HOSTILE
def test_a_resumed_download_moves_it_aside_and_completes(
    site: StandinSite, template: Path, tmp_path: Path, plant: Callable[[Path], None]
) -> None:
    folder = book_copy(template, tmp_path, plant)
    planted = (folder / MANIFEST).stat().st_size
    (folder / FIRST).unlink()
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "corrupt" in result.stderr
    assert "1 complete, 0 failed, 1 skipped" in result.stdout
    (aside,) = folder.glob(f"{MANIFEST}.corrupt-*")
    assert aside.stat().st_size == planted
    assert_manifest_matches_files(folder)
    assert_book_audio(folder, site, SLUG)
    # The rebuilt manifest is an ordinary one: the next run resumes from it.
    again = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert again.returncode == 0, again.stderr
    assert "0 complete, 0 failed, 2 skipped" in again.stdout


@HOSTILE
def test_list_downloads_says_corrupt_in_one_line(
    template: Path, tmp_path: Path, plant: Callable[[Path], None]
) -> None:
    folder = book_copy(template, tmp_path, plant)
    before = (folder / MANIFEST).stat()
    result = run_cli(["--list-downloads", "-d", tmp_path])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if "Cover Story" in line)
    assert row.rstrip().endswith("corrupt")
    (problem,) = [line for line in problem_lines(result.stdout) if "corrupt manifest" in line]
    assert "nested" in problem or "too large" in problem or "not valid JSON" in problem
    after = (folder / MANIFEST).stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size), "listing never writes"


@HOSTILE
def test_verify_folder_rebuilds_it_and_exits_1(
    template: Path, tmp_path: Path, plant: Callable[[Path], None]
) -> None:
    folder = book_copy(template, tmp_path, plant)
    result = run_cli(["--verify-folder", folder])
    assert result.returncode == 1, "a corrupt manifest is a problem found"
    assert "Traceback" not in result.stdout + result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "is corrupt" in line]
    assert "moved aside" in warning
    assert "the manifest was corrupt and has been rebuilt" in result.stdout
    assert list(folder.glob(f"{MANIFEST}.corrupt-*"))
    assert_manifest_matches_files(folder)
    # Rebuilt from the two files found: a second verification is clean.
    assert run_cli(["--verify-folder", folder]).returncode == 0


def test_unknown_fields_of_ordinary_depth_are_kept(template: Path, tmp_path: Path) -> None:
    folder = book_copy(template, tmp_path, nested(20))
    assert run_cli(["--verify-folder", folder]).returncode == 0
    assert not list(folder.glob(f"{MANIFEST}.corrupt-*"))
    notes = manifest_of(folder)["chapters"][FIRST]["notes"]
    depth = 0
    while isinstance(notes, list) and notes:
        notes, depth = notes[0], depth + 1
    assert depth == 19  # the innermost list is empty
