"""Link-safe work-folder helpers: a link is removed or refused, never followed (ISSUE 11 item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokysnatcher.utils.atomic import sha256_file
from tokysnatcher.utils.links import (
    fresh_dir,
    fsync_file,
    is_real_dir,
    open_nofollow,
    points_inside,
    read_text_nofollow,
    remove_links_in,
    remove_tree,
)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder that is not ours, with one file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("not ours")
    return folder


def test_remove_tree_unlinks_a_link_and_leaves_its_target(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "work"
    link.symlink_to(outside, target_is_directory=True)
    remove_tree(link)
    assert not link.is_symlink()
    assert (outside / "keep.txt").read_text() == "not ours"


def test_remove_tree_of_a_folder_holding_links_deletes_nothing_they_lead_to(
    tmp_path: Path, outside: Path
) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "out").symlink_to(outside, target_is_directory=True)
    (work / "file").symlink_to(outside / "keep.txt")
    remove_tree(work)
    assert not work.exists()
    assert (outside / "keep.txt").read_text() == "not ours"
    remove_tree(work)  # already gone: nothing to do


def test_fresh_dir_replaces_a_link_with_an_empty_folder(tmp_path: Path, outside: Path) -> None:
    work = tmp_path / "work"
    work.symlink_to(outside, target_is_directory=True)
    fresh_dir(work)
    assert is_real_dir(work)
    assert list(work.iterdir()) == []
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]


def test_fresh_dir_empties_a_real_folder(tmp_path: Path) -> None:
    work = tmp_path / "a" / "work"
    fresh_dir(work)  # parents are made
    (work / "old").write_text("x")
    fresh_dir(work)
    assert list(work.iterdir()) == []


def test_remove_links_in_removes_only_links(tmp_path: Path, outside: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "0001").symlink_to(outside, target_is_directory=True)
    (work / "mine").write_text("ours")
    assert remove_links_in(work) == ["0001"]
    assert sorted(p.name for p in work.iterdir()) == ["mine"]
    assert remove_links_in(tmp_path / "absent") == []


def test_files_are_not_read_or_hashed_through_a_link(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "segments.txt"
    link.symlink_to(outside / "keep.txt")
    assert read_text_nofollow(link, 100) is None
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP; which errno is the platform's choice
        sha256_file(link)
    with pytest.raises(OSError):  # noqa: PT011
        fsync_file(link)
    with pytest.raises(OSError):  # noqa: PT011
        open_nofollow(link)


def test_read_text_nofollow_reads_at_most_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "segments.txt"
    path.write_text("abcdef")
    assert read_text_nofollow(path, 3) == "abc"
    assert read_text_nofollow(tmp_path / "absent", 3) is None
    assert read_text_nofollow(tmp_path, 3) is None  # a folder is no file


def test_points_inside_follows_the_link_chain(tmp_path: Path, outside: Path) -> None:
    book = tmp_path / "book"
    (book / "mine").mkdir(parents=True)
    inside, away, hop = book / "in", book / "away", book / "hop"
    inside.symlink_to("mine")
    away.symlink_to(outside)
    hop.symlink_to("in")
    assert points_inside(inside, book)
    assert points_inside(hop, book)
    assert not points_inside(away, book)
    dangling = book / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert not points_inside(dangling, book)
