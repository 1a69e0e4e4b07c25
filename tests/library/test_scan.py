"""Scan, verify and list book folders on disk (SPEC §4 --verify-folder, --list-downloads)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tokysnatcher.errors import ManifestError, UsageError
from tokysnatcher.library.manifest import (
    BookInfo,
    ChapterCheck,
    ChapterStatus,
    ManifestManager,
    build_manifest_from_scan,
)
from tokysnatcher.library.scan import BookState, list_downloads, scan_folder
from tokysnatcher.library.verify import verify_folder
from tokysnatcher.utils.atomic import hashing_writer, sha256_file


def fixed_clock() -> datetime:
    return datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def write(path: Path, payload: bytes) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with hashing_writer(path) as out:
        out.write(payload)
    return out.size, out.sha256


def manifest_of(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / ".tokysnatcher.json").read_text("utf-8"))
    return data


def make_book_folder(
    folder: Path, count: int = 3, fmt: str = "mp3", complete: int | None = None
) -> ManifestManager:
    """A book downloaded by this version: files on disk plus a manifest."""
    book = BookInfo(
        title=folder.name,
        author=folder.parent.name,
        source_url=f"https://tokybook.com/post/{folder.name.lower()}",
        slug=folder.name.lower(),
        format=fmt,
        chapter_count=count,
    )
    manager = ManifestManager.open(folder, book, tool_version="0.4.0")
    for i in range(1, count + 1):
        name = f"{i:02d} - Part {i}.{'m4a' if fmt == 'm4b' else fmt}"
        manager.ensure_chapter(name, index=i, title=f"Part {i}")
        if complete is None or i <= complete:
            size, digest = write(manager.chapter_path(name), b"ID3" + bytes([i]) * (1000 * i))
            manager.mark_complete(name, size=size, sha256=digest)
    return manager


def test_scan_folder_finds_numbered_audio_files_only(tmp_path: Path) -> None:
    write(tmp_path / "01 - Prologue.mp3", b"one")
    write(tmp_path / "02 - The Road.m4a", b"two")
    write(tmp_path / "010 - Late.MP3", b"ten")
    write(tmp_path / "notes.txt", b"x")
    write(tmp_path / "cover.jpg", b"x")
    write(tmp_path / "03 - Chapter.ogg", b"x")
    write(tmp_path / ".04 - Hidden.mp3", b"x")
    (tmp_path / "05 - Link.mp3").symlink_to(tmp_path / "01 - Prologue.mp3")
    (tmp_path / "06 - Folder.mp3").mkdir()
    found = scan_folder(tmp_path)
    assert [(f.index, f.title, f.ext) for f in found] == [
        (1, "Prologue", "mp3"),
        (2, "The Road", "m4a"),
        (10, "Late", "MP3"),
    ]
    assert (found[0].size, found[0].sha256) == sha256_file(tmp_path / "01 - Prologue.mp3")


def test_build_from_scan_takes_author_and_title_from_folders(tmp_path: Path) -> None:
    book = tmp_path / "Ursula K. Le Guin" / "A Wizard of Earthsea"
    write(book / "01 - Warriors in the Mist.mp3", b"a" * 10)
    write(book / "03 - The Loosing of the Shadow.mp3", b"c" * 30)
    manager = build_manifest_from_scan(book, None, "0.4.0")
    data = manifest_of(book)
    assert data["book"]["author"] == "Ursula K. Le Guin"
    assert data["book"]["title"] == "A Wizard of Earthsea"
    assert data["book"]["format"] == "mp3"
    assert data["book"]["chapter_count"] == 3
    assert data["chapters"]["03 - The Loosing of the Shadow.mp3"]["title"] == (
        "The Loosing of the Shadow"
    )
    assert all(manager.check_chapter(name) is ChapterCheck.OK for name in data["chapters"])


def test_verify_empty_folder_finds_nothing_and_writes_nothing(tmp_path: Path) -> None:
    report = verify_folder(tmp_path)
    assert report.nothing_found
    assert not report.clean
    assert report.rows == []
    assert list(tmp_path.iterdir()) == []


def test_verify_not_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        verify_folder(tmp_path / "missing")


def test_verify_adopts_an_older_versions_download(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Old Book"
    for i in range(1, 4):
        write(book / f"{i:02d} - Chapter {i}.mp3", bytes([i]) * 100)
    write(book / "bonus.mp3", b"unnumbered")
    report = verify_folder(book, clock=fixed_clock)
    assert report.adopted == 3
    assert report.clean
    assert [row.check for row in report.rows] == [ChapterCheck.OK] * 3
    assert report.unknown_files == ["bonus.mp3"]
    assert any("adopted 3" in w for w in report.warnings)
    assert len(manifest_of(book)["chapters"]) == 3
    again = verify_folder(book)
    assert again.adopted is None
    assert again.clean


def test_verify_finds_tampering_and_marks_it_pending(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Book"
    make_book_folder(book, count=5, complete=4)
    (book / "01 - Part 1.mp3").unlink()
    (book / "02 - Part 2.mp3").write_bytes(b"short")
    original = (book / "03 - Part 3.mp3").read_bytes()
    (book / "03 - Part 3.mp3").write_bytes(original[:-1] + b"!")
    write(book / "99 - Stray.m4a", b"?")
    write(book / ".tokysnatcher" / "0005" / "seg1.ts", b"partial work is not an unknown file")

    report = verify_folder(book)
    checks = {row.name: row.check for row in report.rows}
    assert checks == {
        "01 - Part 1.mp3": ChapterCheck.MISSING,
        "02 - Part 2.mp3": ChapterCheck.SIZE_MISMATCH,
        "03 - Part 3.mp3": ChapterCheck.HASH_MISMATCH,
        "04 - Part 4.mp3": ChapterCheck.OK,
        "05 - Part 5.mp3": ChapterCheck.INCOMPLETE,
    }
    assert not report.clean
    assert [row.name for row in report.problems] == [
        "01 - Part 1.mp3",
        "02 - Part 2.mp3",
        "03 - Part 3.mp3",
        "05 - Part 5.mp3",
    ]
    assert report.unknown_files == ["99 - Stray.m4a"]
    saved = manifest_of(book)["chapters"]
    assert {n: e["status"] for n, e in saved.items()} == {
        "01 - Part 1.mp3": "pending",
        "02 - Part 2.mp3": "pending",
        "03 - Part 3.mp3": "pending",
        "04 - Part 4.mp3": "complete",
        "05 - Part 5.mp3": "pending",
    }
    assert [row.marked_pending for row in report.rows] == [True, True, True, False, False]


def test_verify_deep_check_reports_files_that_do_not_decode(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Book"
    make_book_folder(book, count=2)
    (book / "02 - Part 2.mp3").write_bytes(b"XXX" + (book / "02 - Part 2.mp3").read_bytes()[3:])
    manager = ManifestManager.load(book)
    assert manager is not None
    size, digest = sha256_file(book / "02 - Part 2.mp3")
    manager.mark_complete("02 - Part 2.mp3", size=size, sha256=digest)  # hash agrees, audio bad

    def starts_like_mp3(path: Path) -> tuple[str | None, float | None]:
        return (None if path.read_bytes().startswith(b"ID3") else "no MP3 header"), None

    report = verify_folder(book, deep_check=starts_like_mp3)
    assert [row.check for row in report.rows] == [ChapterCheck.OK, ChapterCheck.DECODE_ERROR]
    assert "no MP3 header" in report.rows[1].detail
    assert manifest_of(book)["chapters"]["02 - Part 2.mp3"]["status"] == "pending"


def test_verify_rebuilds_a_corrupt_manifest(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Book"
    make_book_folder(book, count=2)
    (book / ".tokysnatcher.json").write_text('{"schema_version": 1, "chapters": ')
    report = verify_folder(book, clock=fixed_clock)
    assert report.corrupt_copy == book / ".tokysnatcher.json.corrupt-20261123T100000Z"
    assert report.corrupt_copy.read_text() == '{"schema_version": 1, "chapters": '
    assert report.rebuilt is not None
    assert not report.clean, "a corrupt manifest is a problem found, even if the files are fine"
    assert [row.check for row in report.rows] == [ChapterCheck.OK] * 2
    assert any("corrupt" in w for w in report.warnings)
    assert len(manifest_of(book)["chapters"]) == 2


def test_verify_refuses_a_newer_schema(tmp_path: Path) -> None:
    (tmp_path / ".tokysnatcher.json").write_text('{"schema_version": 7}')
    with pytest.raises(ManifestError, match="schema version 7"):
        verify_folder(tmp_path)


def test_verify_m4b_checks_parts_and_book_file(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Book"
    manager = make_book_folder(book, count=2, fmt="m4b")
    size, digest = write(book / "Book.m4b", b"merged book")
    manager.set_book_file("Book.m4b", size, digest)
    report = verify_folder(book)
    assert report.clean
    assert [row.is_book_file for row in report.rows] == [False, False, True]
    assert report.unknown_files == []

    (book / "Book.m4b").write_bytes(b"merged boo")
    report = verify_folder(book)
    assert report.rows[-1].check is ChapterCheck.SIZE_MISMATCH
    assert "book_file" not in manifest_of(book), "the next --resume merges again"
    assert verify_folder(book).rows[-1].check is ChapterCheck.INCOMPLETE


def test_list_downloads_reports_every_state(tmp_path: Path) -> None:
    make_book_folder(tmp_path / "Bravo" / "Complete Book", count=2)
    make_book_folder(tmp_path / "Alpha" / "Half Book", count=4, complete=2)
    failed = make_book_folder(tmp_path / "Charlie" / "Failed Book", count=2, complete=1)
    failed.mark_failed("02 - Part 2.mp3", "not_found", "404")
    m4b = make_book_folder(tmp_path / "Delta" / "Unmerged", count=2, fmt="m4b")
    corrupt = tmp_path / "Echo" / "Broken"
    corrupt.mkdir(parents=True)
    (corrupt / ".tokysnatcher.json").write_text("{oops")
    newer = tmp_path / "Foxtrot" / "Future"
    newer.mkdir(parents=True)
    (newer / ".tokysnatcher.json").write_text('{"schema_version": 9}')
    make_book_folder(tmp_path / ".hidden" / "Ignored", count=1)
    make_book_folder(tmp_path / "A" / "B" / "C" / "Too Deep", count=1)
    (tmp_path / "Loop").symlink_to(tmp_path)  # never followed

    rows = list_downloads(tmp_path)
    summary = {(r.author, r.title): (r.state, r.complete, r.total) for r in rows}
    assert summary == {
        ("Alpha", "Half Book"): (BookState.INCOMPLETE, 2, 4),
        ("Bravo", "Complete Book"): (BookState.COMPLETE, 2, 2),
        ("Charlie", "Failed Book"): (BookState.FAILED, 1, 2),
        ("Delta", "Unmerged"): (BookState.INCOMPLETE, 2, 2),
        ("Echo", "Broken"): (BookState.CORRUPT, 0, 0),
        ("Foxtrot", "Future"): (BookState.UNSUPPORTED, 0, 0),
    }
    assert [r.author for r in rows] == ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"]
    complete = rows[1]
    assert complete.size == 3 + 1000 + 3 + 2000
    assert complete.format == "mp3"
    assert complete.updated_at is not None
    assert complete.folder == tmp_path / "Bravo" / "Complete Book"
    assert rows[4].problem is not None
    assert "corrupt" in rows[4].problem
    assert (corrupt / ".tokysnatcher.json").read_text() == "{oops", "listing never writes"

    size, digest = write(tmp_path / "Delta" / "Unmerged" / "Unmerged.m4b", b"m4b")
    m4b.set_book_file("Unmerged.m4b", size, digest)
    delta = next(r for r in list_downloads(tmp_path) if r.author == "Delta")
    assert (delta.state, delta.size) == (BookState.COMPLETE, size)
    assert len(list_downloads(tmp_path, max_depth=4)) == 7
    assert list_downloads(tmp_path / "nowhere") == []


def test_chapter_status_values_match_the_spec() -> None:
    assert [s.value for s in ChapterStatus] == ["pending", "downloading", "complete", "failed"]


def test_verify_rejects_unsafe_entries_and_drops_them_from_disk(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Book"
    make_book_folder(book, count=2)
    data = manifest_of(book)
    data["chapters"]["../../escape.mp3"] = data["chapters"]["01 - Part 1.mp3"]
    (book / ".tokysnatcher.json").write_text(json.dumps(data))
    report = verify_folder(book)
    assert [row.check for row in report.rows] == [ChapterCheck.OK] * 2
    assert len(report.rejected) == 1
    assert not report.clean, "a manifest naming paths outside is a problem found"
    assert sorted(manifest_of(book)["chapters"]) == ["01 - Part 1.mp3", "02 - Part 2.mp3"]
    assert verify_folder(book).clean


def test_verify_removes_temporary_files_of_a_killed_run(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Book"
    make_book_folder(book, count=1)
    (book / "..tokysnatcher.json.0badf00d.tmp").write_text("{")
    report = verify_folder(book)
    assert report.clean
    assert not (book / "..tokysnatcher.json.0badf00d.tmp").exists()
    assert any("interrupted run" in w for w in report.warnings)


def test_scan_adopts_only_files_of_the_books_format(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Mixed"
    for i in range(1, 4):
        write(book / f"{i:02d} - Chapter {i}.mp3", bytes([i]) * 10)
    write(book / "01 - Chapter 1.m4a", b"m4a")
    report = verify_folder(book)
    assert report.book is not None
    assert report.book.format == "mp3"
    assert [row.name for row in report.rows] == [f"{i:02d} - Chapter {i}.mp3" for i in (1, 2, 3)]
    assert report.unknown_files == ["01 - Chapter 1.m4a"]


def test_list_shows_a_book_being_written_as_in_use(tmp_path: Path) -> None:
    book = tmp_path / "Author" / "Busy"
    make_book_folder(book, count=3, complete=1)
    hold = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from tokysnatcher.utils.atomic import folder_lock
        with folder_lock(Path(sys.argv[1])):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(book)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        (row,) = list_downloads(tmp_path)
        assert row.state is BookState.ACTIVE
    finally:
        holder.kill()
        holder.wait()
    (row,) = list_downloads(tmp_path)
    assert row.state is BookState.INCOMPLETE
