"""A deep library folder on Windows: names are shortened to fit 259 characters per path.

Windows itself cannot run here, so its path limit is injected; the download, the files and the
resume are real.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from helpers import fast_options, run_main
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils import filenames
from tokysnatcher.utils.filenames import TEMP_SUFFIX_UNITS, book_file_name

pytestmark = pytest.mark.integration

WINDOWS_LIMIT = filenames.max_path_units("win32")


@pytest.fixture
def windows_limit(monkeypatch: pytest.MonkeyPatch, in_process: None) -> None:
    """This platform's path limit made Windows'."""
    monkeypatch.setitem(filenames._MAX_PATHS, sys.platform, WINDOWS_LIMIT)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run_main(args, capsys)
    return code, out + err


def test_a_deep_folder_gets_short_names_that_resume(
    site: StandinSite, tmp_path: Path, windows_limit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / ("deep" * 60)[: 192 - len(str(tmp_path)) - 1]
    assert len(str(root)) == 192
    code, out = run(["the-sample-book", "-q", *fast_options(site, root)], capsys)
    assert code == 0, out
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".mp3"]) == 4
    for path in files:
        assert len(str(path)) + TEMP_SUFFIX_UNITS <= WINDOWS_LIMIT, path
    names = sorted(p.name for p in files if p.suffix == ".mp3")
    assert [n[:2] for n in names] == ["01", "02", "03", "04"]
    assert "02 - The Long Road.mp3" not in names  # shortened: the full name does not fit

    # A lost chapter: the next run finds the other three under the same short names.
    next(p for p in files if p.name.startswith("02")).unlink()
    code, out = run(["the-sample-book", *fast_options(site, root)], capsys)
    assert code == 0, out
    assert "names shortened to fit this system's limit of 259 characters" in out
    assert out.count("names shortened") == 1
    assert "3 of 4 chapters already complete (size and SHA-256 checked); fetching 1" in out


def test_a_root_too_deep_for_any_name_is_one_line_and_exit_2(
    site: StandinSite, tmp_path: Path, windows_limit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / ("r" * (240 - len(str(tmp_path)) - 1))
    code, out = run(["the-sample-book", *fast_options(site, root)], capsys)
    assert code == 2
    assert f"the library folder {root} is too deep" in out
    assert "Choose a shorter library folder with -d" in out
    assert not root.exists()


def test_a_selection_of_chapters_keeps_the_book_folder_of_the_whole_book(
    site: StandinSite, tmp_path: Path, windows_limit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / ("deep" * 60)[: 150 - len(str(tmp_path)) - 1]
    args = ["the-sample-book", "--format", "m4b", "--dry-run", *fast_options(site, root)]
    folders = []
    for extra in ([], ["--chapters", "1,3"]):
        code, out = run([*args, *extra], capsys)
        assert code == 0, out
        folders.append(re.search(r"^destination: (.+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert "names shortened" in out
    assert folders[0] == folders[1]


def test_a_long_title_names_its_m4b_once(tmp_path: Path) -> None:
    title = "Ж" * 150  # 300 bytes of UTF-8: cut to fit, never doubled
    name = book_file_name(title, [1, 2], 2)
    assert name.endswith(".m4b")
    assert len(name.encode()) <= 200
    assert name.count("Ж") < 100
