"""--list-downloads through the real command: the table, and picking a book in a terminal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from book_support import MANIFEST, PtySession, assert_book_audio, manifest_of
from helpers import NEEDS_PTY, fast_options, run_cli
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils.atomic import folder_lock

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def template(site: StandinSite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library with a complete book, an incomplete one and a corrupt manifest."""
    root = tmp_path_factory.mktemp("list-template")
    for args in (["cover-book"], ["the-sample-book", "--chapters", "1-2"]):
        result = run_cli([*args, "--format", "m4a", *fast_options(site, root)])
        assert result.returncode == 0, result.stderr
    broken = root / "Nobody" / "Broken Book"
    broken.mkdir(parents=True)
    (broken / MANIFEST).write_text("{not json")
    return root


def library(template: Path, root: Path) -> dict[str, Path]:
    """A copy of the template library under ``root``: its book folders by state."""
    shutil.copytree(template, root, dirs_exist_ok=True)
    broken = root / "Nobody" / "Broken Book"
    return {
        "complete": root / "Cora Vere" / "Cover Story",
        "incomplete": root / "Ada Quill" / "The Sample Book",
        "corrupt": broken,
    }


def rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by book title (columns split on runs of 2+ spaces)."""
    table: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().split("  ") if cell.strip()]
        if cells and cells[0].isdigit():
            table[cells[1]] = cells
    return table


def test_the_table_shows_every_book_and_its_state(template: Path, tmp_path: Path) -> None:
    books = library(template, tmp_path)
    result = run_cli(["--list-downloads", "-d", tmp_path])
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert set(table) == {"Cover Story", "The Sample Book", "Broken Book"}
    complete = table["Cover Story"]
    assert complete[2:5] == ["Cora Vere", "m4a", "2/2"]
    assert complete[-1] == "complete"
    assert complete[5].endswith("KiB")
    incomplete = table["The Sample Book"]
    assert incomplete[2:5] == ["Ada Quill", "m4a", "2/4"]
    assert incomplete[-1] == "incomplete"
    assert table["Broken Book"][-1] == "corrupt"
    assert "corrupt manifest" in result.stdout
    assert "3 book(s) under" in result.stdout
    assert (books["corrupt"] / MANIFEST).read_text() == "{not json", "listing never writes"

    with folder_lock(books["incomplete"]):  # what a running download holds
        busy = run_cli(["--list-downloads", "-d", tmp_path])
    assert rows(busy.stdout)["The Sample Book"][-1] == "in use"


def test_an_empty_library(tmp_path: Path) -> None:
    result = run_cli(["--list-downloads", "-d", tmp_path / "nothing here"])
    assert result.returncode == 0
    assert "no downloads found under" in result.stdout


@NEEDS_PTY
def test_pick_a_book_in_a_terminal_and_resume_it(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    books = library(template, tmp_path)
    args = ["--list-downloads", *fast_options(site, tmp_path)]
    with PtySession(args) as session:
        session.expect("0 to quit")
        number = next(
            cells[0] for title, cells in rows(session.output).items() if title == "The Sample Book"
        )
        session.send(number)
        session.expect("[c]ancel?")
        session.send("r")
        assert session.wait() == 0, session.output
    assert "2 complete, 0 failed, 2 skipped" in session.output
    folder = books["incomplete"]
    assert manifest_of(folder)["book"]["format"] == "m4a"
    assert_book_audio(folder, site, "the-sample-book")

    with PtySession(args) as session:
        session.expect("0 to quit")
        assert rows(session.output)["The Sample Book"][-1] == "complete"
        number = rows(session.output)["Broken Book"][0]
        session.send(number)
        session.expect("[c]ancel?")
        session.send("v")
        assert session.wait() == 1  # a corrupt manifest is a problem found (and now rebuilt)
    assert "rebuilt" in session.output
    assert list(books["corrupt"].glob(f"{MANIFEST}.corrupt-*"))
