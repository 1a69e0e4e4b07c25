"""The manifest: its shape, every state change saved, untrusted content handled (SPEC §4)."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tokysnatcher.errors import ExitCode, FailureKind, ManifestError
from tokysnatcher.library.manifest import (
    BookInfo,
    ChapterCheck,
    ChapterStatus,
    ManifestManager,
)
from tokysnatcher.library.manifest_schema import (
    MAX_FIELD_DEPTH,
    MAX_MANIFEST_BYTES,
    ExpectedDuration,
)
from tokysnatcher.utils.atomic import atomic_write_json, hashing_writer, sha256_file

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class StepClock:
    """A clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make_book(fmt: str = "mp3", chapters: int = 3) -> BookInfo:
    return BookInfo(
        title="The Hobbit",
        author="J. R. R. Tolkien",
        source_url="https://tokybook.com/post/the-hobbit",
        slug="the-hobbit",
        format=fmt,
        chapter_count=chapters,
        narrator="Andy Serkis",
        year=2020,
    )


def write_chapter(path: Path, payload: bytes) -> tuple[int, str]:
    """Write a chapter file the way the downloader does and return (size, sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with hashing_writer(path) as out:
        out.write(payload)
    return out.size, out.sha256


def on_disk(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / ".tokysnatcher.json").read_text("utf-8"))
    return data


def open_manager(folder: Path, fmt: str = "mp3") -> ManifestManager:
    return ManifestManager.open(folder, make_book(fmt), tool_version="0.4.0", clock=StepClock())


def test_open_writes_nothing_until_the_first_state_change(tmp_path: Path) -> None:
    folder = tmp_path / "Author" / "Title"
    manager = open_manager(folder)
    assert not folder.exists(), "open must not create the folder"
    manager.ensure_chapter("01 - Prologue.mp3", index=1, title="Prologue")
    assert manager.path == folder / ".tokysnatcher.json"
    assert manager.path.is_file()


def test_full_lifecycle_has_the_spec_shape(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    name = "01 - Prologue.mp3"
    manager.ensure_chapter(name, index=1, title="Prologue", source_src="/ch1.m3u8")
    manager.mark_downloading(name)
    manager.mark_failed(name, FailureKind.NETWORK, "connection reset")
    failed = on_disk(tmp_path)["chapters"][name]
    assert failed["status"] == "failed"
    assert failed["last_error"] == {"kind": "network", "message": "connection reset"}
    manager.mark_downloading(name)
    size, digest = write_chapter(tmp_path / name, b"ID3 audio bytes" * 1000)
    manager.mark_complete(name, size=size, sha256=digest)

    data = on_disk(tmp_path)
    assert data["schema_version"] == 1
    assert data["tool_version"] == "0.4.0"
    assert data["book"] == {
        "title": "The Hobbit",
        "author": "J. R. R. Tolkien",
        "source_url": "https://tokybook.com/post/the-hobbit",
        "slug": "the-hobbit",
        "format": "mp3",
        "chapter_count": 3,
        "narrator": "Andy Serkis",
        "year": 2020,
        "cover_url": None,
        "source": "tokybook",
        "id": "the-hobbit",
        "output_template": None,
        "folder_depth": 2,
    }
    assert STAMP.fullmatch(data["created_at"])
    assert STAMP.fullmatch(data["updated_at"])
    assert data["updated_at"] > data["created_at"]
    entry = data["chapters"][name]
    assert entry["status"] == "complete"
    assert (entry["size"], entry["sha256"]) == sha256_file(tmp_path / name)
    assert entry["attempts"] == 2
    assert entry["last_error"] is None
    assert entry["source_src"] == "/ch1.m3u8"
    assert STAMP.fullmatch(entry["started_at"])
    assert STAMP.fullmatch(entry["completed_at"])
    assert data == manager.data
    assert manager.check_chapter(name) is ChapterCheck.OK


def test_manifest_file_is_sorted_and_readable(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("02 - B.mp3", index=2, title="B")
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    text = manager.path.read_text("utf-8")
    assert text.endswith("}\n")
    assert text.index('"01 - A.mp3"') < text.index('"02 - B.mp3"')
    assert '\n  "book": {\n' in text


def test_tampering_is_detected(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    names = ["01 - A.mp3", "02 - B.mp3", "03 - C.mp3", "04 - D.mp3"]
    for i, name in enumerate(names, 1):
        manager.ensure_chapter(name, index=i, title=name[5])
        size, digest = write_chapter(tmp_path / name, bytes([i]) * 5000)
        manager.mark_complete(name, size=size, sha256=digest)
    (tmp_path / names[0]).unlink()
    (tmp_path / names[1]).write_bytes(b"\x02" * 4000)  # truncated
    (tmp_path / names[2]).write_bytes(b"\x09" * 5000)  # same size, other bytes
    (tmp_path / names[3]).unlink()
    (tmp_path / names[3]).symlink_to(tmp_path / names[2])  # never followed
    assert [manager.check_chapter(n) for n in names] == [
        ChapterCheck.MISSING,
        ChapterCheck.SIZE_MISMATCH,
        ChapterCheck.HASH_MISMATCH,
        ChapterCheck.MISSING,
    ]
    assert manager.check_chapter("99 - Unknown.mp3") is ChapterCheck.INCOMPLETE


def test_chapter_not_complete_is_incomplete_even_if_a_file_exists(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    (tmp_path / "01 - A.mp3").write_bytes(b"partial")
    assert manager.check_chapter("01 - A.mp3") is ChapterCheck.INCOMPLETE


def test_reopen_keeps_state_and_resets_interrupted_downloads(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    manager.ensure_chapter("02 - B.mp3", index=2, title="B")
    size, digest = write_chapter(tmp_path / "01 - A.mp3", b"a" * 10)
    manager.mark_complete("01 - A.mp3", size=size, sha256=digest)
    manager.mark_downloading("02 - B.mp3")  # then the process is killed

    loaded = ManifestManager.load(tmp_path)
    assert loaded is not None
    assert loaded.chapter("02 - B.mp3").status is ChapterStatus.DOWNLOADING  # type: ignore[union-attr]
    reopened = open_manager(tmp_path)
    assert reopened.chapter("02 - B.mp3").status is ChapterStatus.PENDING  # type: ignore[union-attr]
    assert reopened.chapter("02 - B.mp3").attempts == 1  # type: ignore[union-attr]
    assert reopened.check_chapter("01 - A.mp3") is ChapterCheck.OK
    assert ManifestManager.load(tmp_path / "elsewhere") is None


def test_open_refreshes_book_details_but_keeps_the_stored_format(tmp_path: Path) -> None:
    manager = open_manager(tmp_path, "m4a")
    manager.ensure_chapter("01 - A.m4a", index=1, title="A")
    book = make_book("mp3", chapters=5)
    book.narrator = None
    reopened = ManifestManager.open(tmp_path, book, tool_version="0.5.0")
    assert reopened.format == "m4a"
    assert reopened.book.chapter_count == 5
    assert reopened.book.narrator == "Andy Serkis"  # not lost when the site omits it
    reopened.set_format("mp3")
    assert reopened.chapters == {}
    assert on_disk(tmp_path)["book"]["format"] == "mp3"
    assert on_disk(tmp_path)["tool_version"] == "0.5.0"


def test_unknown_fields_survive_a_save(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    data = on_disk(tmp_path)
    data["future_top"] = {"x": 1}
    data["book"]["future_book"] = "y"
    data["chapters"]["01 - A.mp3"]["future_chapter"] = [1, 2]
    manager.path.write_text(json.dumps(data))
    reopened = open_manager(tmp_path)
    reopened.mark_downloading("01 - A.mp3")
    saved = on_disk(tmp_path)
    assert saved["future_top"] == {"x": 1}
    assert saved["book"]["future_book"] == "y"
    assert saved["chapters"]["01 - A.mp3"]["future_chapter"] == [1, 2]


def test_concurrent_updates_from_16_threads_lose_nothing(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    per_thread = 3
    names = [f"{t:02d}{c} - T.mp3" for t in range(16) for c in range(per_thread)]
    for i, name in enumerate(names, 1):
        manager.ensure_chapter(name, index=i, title="T")
    shared = "0000 - Shared.mp3"
    manager.ensure_chapter(shared, index=999, title="Shared")
    digests = {name: (i, f"{i:064x}") for i, name in enumerate(names, 1)}
    start = threading.Barrier(17)
    errors: list[BaseException] = []
    stop_reading = threading.Event()

    def worker(t: int) -> None:
        try:
            start.wait()
            manager.mark_downloading(shared)  # a read-modify-write of "attempts" by everyone
            for name in names[t * per_thread : (t + 1) * per_thread]:
                manager.mark_downloading(name)
                manager.mark_failed(name, FailureKind.TIMEOUT, "stalled")
                manager.mark_downloading(name)
                size, digest = digests[name]
                manager.mark_complete(name, size=size, sha256=digest)
        except BaseException as err:  # reported below
            errors.append(err)

    def reader() -> None:
        start.wait()
        while not stop_reading.is_set():
            json.loads(manager.path.read_text("utf-8"))  # always whole, never half-written

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    read_thread = threading.Thread(target=reader)
    for thread in [*threads, read_thread]:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stop_reading.set()
    read_thread.join(timeout=10)
    assert not errors
    data = on_disk(tmp_path)
    assert len(data["chapters"]) == len(names) + 1
    assert data["chapters"][shared]["attempts"] == 16
    for name, (size, digest) in digests.items():
        entry = data["chapters"][name]
        assert (entry["status"], entry["size"], entry["sha256"]) == ("complete", size, digest)
        assert entry["attempts"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [".tokysnatcher.json"]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b"[]",
        b'{"schema_version": 1, "book": {}, "chapters": {}}',
        b'{"schema_version": "1"}',
        b'{"schema_version": 0, "book": null, "chapters": {}}',
    ],
)
def test_corrupt_manifest_is_moved_aside_and_rebuilt_from_files(
    tmp_path: Path, content: bytes
) -> None:
    size, digest = write_chapter(tmp_path / "01 - Prologue.mp3", b"ID3 prologue")
    (tmp_path / ".tokysnatcher.json").write_bytes(content)
    manager = open_manager(tmp_path)
    assert manager.corrupt_reason
    assert any("corrupt" in w for w in manager.warnings)
    assert (tmp_path / ".tokysnatcher.json").read_bytes() == content, "not touched at open"
    assert manager.check_chapter("01 - Prologue.mp3") is ChapterCheck.OK
    manager.ensure_chapter("02 - Next.mp3", index=2, title="Next")
    copies = sorted(tmp_path.glob(".tokysnatcher.json.corrupt-*"))
    assert [c.name for c in copies] == [".tokysnatcher.json.corrupt-20261123T100002Z"]
    assert copies[0].read_bytes() == content, "the corrupt file is kept, never deleted"
    entry = on_disk(tmp_path)["chapters"]["01 - Prologue.mp3"]
    assert (entry["status"], entry["size"], entry["sha256"]) == ("complete", size, digest)


@pytest.mark.parametrize(
    "chapter",
    [
        {"index": 1, "title": "A", "status": "done"},
        {"index": 0, "title": "A", "status": "pending"},
        {"index": True, "title": "A", "status": "pending"},
        {"index": 1, "title": "A", "status": "complete", "size": 3, "sha256": None},
        {"index": 1, "title": "A", "status": "complete", "size": -1, "sha256": "0" * 64},
        {"index": 1, "title": "A", "status": "complete", "size": 1, "sha256": "XYZ"},
        {"index": 1, "title": "A", "status": "failed", "last_error": "boom"},
        {"index": 1, "title": "A", "status": ["pending"]},
        {"index": 1, "title": "A", "status": "pending", "expected_duration": 40},
        {"index": 1, "title": "A", "status": "pending", "expected_duration": {"seconds": 4}},
        {
            "index": 1,
            "title": "A",
            "status": "pending",
            "expected_duration": {"seconds": "NaN", "tolerance": 0.5},
        },
        "not an object",
    ],
)
def test_wrong_shape_is_corrupt_not_trusted(tmp_path: Path, chapter: object) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    data = on_disk(tmp_path)
    data["chapters"]["01 - A.mp3"] = chapter
    manager.path.write_text(json.dumps(data))
    loaded = ManifestManager.load(tmp_path)
    assert loaded is not None
    assert loaded.corrupt_reason is not None
    assert loaded.chapters == {}  # no audio file to adopt


def test_entries_pointing_outside_are_dropped_never_followed(tmp_path: Path) -> None:
    book = tmp_path / "book"
    manager = open_manager(book)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    secret = tmp_path / "secret.mp3"
    secret.write_bytes(b"secret")
    size, digest = sha256_file(secret)
    data = on_disk(book)
    hostile = ["../secret.mp3", str(secret), "sub/01.mp3", "..", ".tokysnatcher.json", "a\x00b"]
    for name in hostile:
        data["chapters"][name] = {
            "index": 2,
            "title": "x",
            "status": "complete",
            "size": size,
            "sha256": digest,
        }
    data["book_file"] = {"name": "../secret.mp3", "size": size, "sha256": digest}
    manager.path.write_text(json.dumps(data))

    loaded = ManifestManager.load(book)
    assert loaded is not None
    assert loaded.corrupt_reason is None
    assert list(loaded.chapters) == ["01 - A.mp3"]
    assert loaded.book_file is None
    assert len(loaded.warnings) == len(hostile) + 1
    loaded.mark_downloading("01 - A.mp3")
    assert list(on_disk(book)["chapters"]) == ["01 - A.mp3"]
    assert "book_file" not in on_disk(book)
    assert secret.read_bytes() == b"secret"


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    content = json.dumps({"schema_version": 2, "whatever": True}).encode()
    (tmp_path / ".tokysnatcher.json").write_bytes(content)
    with pytest.raises(ManifestError, match="schema version 2") as caught:
        open_manager(tmp_path)
    assert caught.value.exit_code is ExitCode.USAGE
    assert "newer tokysnatcher" in caught.value.hint
    with pytest.raises(ManifestError):
        ManifestManager.load(tmp_path)
    assert (tmp_path / ".tokysnatcher.json").read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == [".tokysnatcher.json"]


def test_a_symlinked_manifest_is_not_followed(tmp_path: Path) -> None:
    book = tmp_path / "book"
    book.mkdir()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    (book / ".tokysnatcher.json").symlink_to(elsewhere)
    manager = open_manager(book)
    assert manager.corrupt_reason == "it is not a regular file"
    manager.save()
    assert elsewhere.read_text() == "{}"
    assert manager.corrupt_copy is not None
    assert manager.corrupt_copy.is_symlink()
    assert manager.path.is_file()
    assert not manager.path.is_symlink()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    with pytest.raises(ValueError, match="plain"):
        manager.ensure_chapter("../x.mp3", index=1, title="x")
    with pytest.raises(ValueError, match="plain"):
        manager.ensure_chapter(".hidden.mp3", index=1, title="x")
    with pytest.raises(ValueError, match="extra fields"):
        manager.ensure_chapter("01 - x.mp3", index=1, title="x", status="complete")
    with pytest.raises(KeyError, match="ensure_chapter"):
        manager.mark_downloading("02 - never added.mp3")
    manager.ensure_chapter("01 - x.mp3", index=1, title="x")
    with pytest.raises(ValueError, match="SHA-256"):
        manager.mark_complete("01 - x.mp3", size=1, sha256="abc")


def test_m4b_parts_live_in_the_work_folder_and_book_file_is_checked(tmp_path: Path) -> None:
    manager = open_manager(tmp_path, "m4b")
    part = "01 - A.m4a"
    manager.ensure_chapter(part, index=1, title="A")
    assert manager.chapter_path(part) == tmp_path / ".tokysnatcher" / "parts" / part
    size, digest = write_chapter(manager.chapter_path(part), b"part one")
    manager.mark_complete(part, size=size, sha256=digest)
    assert manager.check_chapter(part) is ChapterCheck.OK
    assert manager.check_book_file() is ChapterCheck.INCOMPLETE
    size, digest = write_chapter(tmp_path / "The Hobbit.m4b", b"whole book")
    manager.set_book_file("The Hobbit.m4b", size, digest)
    assert on_disk(tmp_path)["book_file"] == {
        "name": "The Hobbit.m4b",
        "size": size,
        "sha256": digest,
    }
    assert manager.check_book_file() is ChapterCheck.OK
    (tmp_path / "The Hobbit.m4b").write_bytes(b"whole bood")
    assert manager.check_book_file() is ChapterCheck.HASH_MISMATCH
    manager.clear_book_file()
    assert "book_file" not in on_disk(tmp_path)


def test_a_batch_is_one_save_and_other_writers_wait_for_it(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("00 - Start.mp3", index=99, title="Start")
    first_inode = manager.path.stat().st_ino
    other_done = threading.Event()

    def other_writer() -> None:
        manager.mark_downloading("00 - Start.mp3")
        other_done.set()

    with manager.batch():
        for i in range(1, 6):
            manager.ensure_chapter(f"0{i} - Part.mp3", index=i, title="Part")
            manager.mark_downloading(f"0{i} - Part.mp3")
        thread = threading.Thread(target=other_writer)
        thread.start()
        assert not other_done.wait(0.2), "a writer got in the middle of a batch"
        # Every atomic save is a new file: the old one is still in place, nothing was saved.
        assert manager.path.stat().st_ino == first_inode
        assert len(on_disk(tmp_path)["chapters"]) == 1
    thread.join(timeout=10)
    assert other_done.is_set()
    saved = on_disk(tmp_path)["chapters"]
    assert len(saved) == 6
    assert all(entry["status"] == "downloading" for entry in saved.values())


def test_an_unknown_format_makes_the_manifest_corrupt(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    data = on_disk(tmp_path)
    data["book"]["format"] = "../flac"
    manager.path.write_text(json.dumps(data))
    loaded = ManifestManager.load(tmp_path)
    assert loaded is not None
    assert loaded.corrupt_reason is not None
    assert "book.format" in loaded.corrupt_reason


def test_a_corrupt_manifest_is_rebuilt_in_the_format_asked_for(tmp_path: Path) -> None:
    write_chapter(tmp_path / "01 - A.mp3", b"mp3 one")
    write_chapter(tmp_path / "02 - B.mp3", b"mp3 two")
    size, digest = write_chapter(tmp_path / "01 - A.m4a", b"m4a one")
    (tmp_path / ".tokysnatcher.json").write_text("{")
    as_m4a = ManifestManager.load(tmp_path, book=make_book("m4a"))
    assert as_m4a is not None
    assert as_m4a.format == "m4a"
    assert dict(as_m4a.chapters).keys() == {"01 - A.m4a"}
    assert as_m4a.chapter("01 - A.m4a") is not None
    guessed = ManifestManager.load(tmp_path)  # no book: the format most files have
    assert guessed is not None
    assert guessed.format == "mp3"
    assert sorted(guessed.chapters) == ["01 - A.mp3", "02 - B.mp3"]
    assert (tmp_path / ".tokysnatcher.json").read_text() == "{", "loading never writes"
    assert as_m4a.check_chapter("01 - A.m4a") is ChapterCheck.OK
    entry = as_m4a.chapter("01 - A.m4a")
    assert entry is not None
    assert (entry.size, entry.sha256) == (size, digest)


def test_rejected_entries_are_named_apart_from_other_warnings(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    data = on_disk(tmp_path)
    data["chapters"]["../../x.mp3"] = data["chapters"]["01 - A.mp3"]
    manager.path.write_text(json.dumps(data))
    loaded = ManifestManager.load(tmp_path)
    assert loaded is not None
    assert len(loaded.rejected) == 1
    assert "../../x.mp3" in loaded.rejected[0]


def test_newer_schema_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".tokysnatcher.json").write_text('{"schema_version": 5}')
    with pytest.raises(ManifestError) as caught:
        ManifestManager.load(tmp_path)
    assert str(tmp_path / ".tokysnatcher.json") in caught.value.message


def test_the_expected_length_is_recorded_with_a_complete_chapter_only(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    name = "01 - A.mp3"
    manager.ensure_chapter(name, index=1, title="A")
    manager.mark_downloading(name)
    assert "expected_duration" not in on_disk(tmp_path)["chapters"][name]
    size, digest = write_chapter(tmp_path / name, b"ID3 audio" * 100)
    expected = ExpectedDuration(40.031, 0.5)
    manager.mark_complete(name, size=size, sha256=digest, expected_duration=expected)
    entry = on_disk(tmp_path)["chapters"][name]
    assert entry["expected_duration"] == {"seconds": 40.031, "tolerance": 0.5}
    reloaded = ManifestManager.load(tmp_path)
    assert reloaded is not None
    chapter = reloaded.chapter(name)
    assert chapter is not None
    assert chapter.expected_duration == expected
    manager.mark_pending(name)  # its file proves nothing any more, nor does the length
    assert "expected_duration" not in on_disk(tmp_path)["chapters"][name]


def test_a_manifest_from_before_lengths_were_recorded_loads_and_saves(tmp_path: Path) -> None:
    """0.5.0 entries have no ``expected_duration``: the same schema version, read as unknown."""
    manager = open_manager(tmp_path)
    name = "01 - A.mp3"
    manager.ensure_chapter(name, index=1, title="A")
    size, digest = write_chapter(tmp_path / name, b"ID3 audio" * 100)
    manager.mark_complete(name, size=size, sha256=digest)
    data = on_disk(tmp_path)
    assert data["schema_version"] == 1
    assert "expected_duration" not in data["chapters"][name]
    old = ManifestManager.open(tmp_path, make_book(), tool_version="0.5.0")
    chapter = old.chapter(name)
    assert chapter is not None
    assert chapter.expected_duration is None
    assert old.check_chapter(name) is ChapterCheck.OK
    old.save()
    assert on_disk(tmp_path)["chapters"][name] == data["chapters"][name]


@pytest.mark.parametrize(
    ("measured", "problem"),
    [(40.0, None), (40.5, None), (39.5, None), (39.4, "lasts 39.4 s, not the 40.0 s"), (None, "")],
)
def test_an_expected_length_allows_its_tolerance_either_way(
    measured: float | None, problem: str | None
) -> None:
    found = ExpectedDuration(40.0, 0.5).mismatch(measured)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def nested_list(depth: int) -> Any:
    """A JSON list ``depth`` deep, built without recursion."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("where", ["entry", "book", "top"])
def test_a_field_nested_too_deep_makes_the_manifest_corrupt(tmp_path: Path, where: str) -> None:
    size, digest = write_chapter(tmp_path / "01 - A.mp3", b"ID3 a")
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    manager.mark_complete("01 - A.mp3", size=size, sha256=digest)
    data = on_disk(tmp_path)
    target = {"entry": data["chapters"]["01 - A.mp3"], "book": data["book"], "top": data}[where]
    target["notes"] = nested_list(MAX_FIELD_DEPTH)
    manager.path.write_text(json.dumps(data))
    kept = open_manager(tmp_path)
    assert kept.corrupt_reason is None, "as deep as allowed: kept and written back"
    kept.save()
    target["notes"] = nested_list(MAX_FIELD_DEPTH + 1)
    manager.path.write_text(json.dumps(data))
    rebuilt = open_manager(tmp_path)
    assert rebuilt.corrupt_reason is not None
    assert f"nested over {MAX_FIELD_DEPTH} deep" in rebuilt.corrupt_reason
    rebuilt.mark_downloading("01 - A.mp3")  # the first save moves it aside and never recurses
    assert len(list(tmp_path.glob(".tokysnatcher.json.corrupt-*"))) == 1
    assert "notes" not in json.dumps(on_disk(tmp_path))


def test_json_nested_past_the_recursion_limit_is_corrupt(tmp_path: Path) -> None:
    depth = 100_000
    (tmp_path / ".tokysnatcher.json").write_text("[" * depth + "]" * depth)
    manager = open_manager(tmp_path)
    assert manager.corrupt_reason == "it is not valid JSON (RecursionError)"


def test_a_manifest_over_the_size_limit_is_corrupt_unread(tmp_path: Path) -> None:
    with (tmp_path / ".tokysnatcher.json").open("wb") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: reading it would be the mistake
    manager = open_manager(tmp_path)
    assert manager.corrupt_reason == f"it is {MAX_MANIFEST_BYTES + 1} bytes, far too large"


class TickClock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_coalesced_saves_write_a_few_times_however_many_changes(tmp_path: Path) -> None:
    manager = open_manager(tmp_path)
    names = [f"{i:04d} - Part.mp3" for i in range(1, 1001)]
    with manager.batch():
        for i, name in enumerate(names, 1):
            manager.ensure_chapter(name, index=i, title="Part")
    assert manager.saves == 1
    clock = TickClock()
    manager.coalesce_saves(0.5, clock=clock)
    for name in names:  # 3,000 changes within one window
        manager.mark_downloading(name)
        manager.mark_pending(name)
        manager.mark_failed(name, FailureKind.NETWORK, "reset")
    assert manager.saves == 2, "the first change is saved at once, the rest wait"
    assert on_disk(tmp_path)["chapters"][names[0]]["status"] == "downloading"
    manager.flush(due_only=True)
    assert manager.saves == 2, "not due yet"
    clock.now += 0.5
    manager.flush(due_only=True)
    assert manager.saves == 3
    assert {e["status"] for e in on_disk(tmp_path)["chapters"].values()} == {"failed"}
    manager.flush(due_only=True)
    manager.flush()
    assert manager.saves == 3, "nothing left to save"
    manager.mark_pending(names[0])
    manager.flush()  # the end of a run: whatever is left, now
    assert manager.saves == 4
    assert on_disk(tmp_path)["chapters"][names[0]]["status"] == "pending"
    manager.coalesce_saves(None)
    manager.mark_downloading(names[0])
    assert manager.saves == 5, "back to one save per change"


def test_a_slow_save_spaces_the_next_ones_further(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = TickClock()
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    manager.coalesce_saves(0.25, clock=clock)

    def slow_write(path: Path, obj: object) -> None:
        clock.now += 1.0  # a huge manifest: each save takes a second
        atomic_write_json(path, obj)

    monkeypatch.setattr("tokysnatcher.library.manifest.atomic_write_json", slow_write)
    manager.mark_downloading("01 - A.mp3")
    assert manager.saves == 2
    manager.mark_pending("01 - A.mp3")
    clock.now += 3.9
    manager.flush(due_only=True)
    assert manager.saves == 2, "four times the last save's second must pass first"
    clock.now += 0.1
    manager.flush(due_only=True)
    assert manager.saves == 3


def test_a_complete_record_is_dropped_on_disk_before_its_file_is_replaced(tmp_path: Path) -> None:
    size, digest = write_chapter(tmp_path / "01 - A.mp3", b"ID3 old")
    manager = open_manager(tmp_path)
    manager.ensure_chapter("01 - A.mp3", index=1, title="A")
    manager.ensure_chapter("02 - B.mp3", index=2, title="B")
    manager.mark_complete("01 - A.mp3", size=size, sha256=digest)
    clock = TickClock()
    manager.coalesce_saves(10.0, clock=clock)
    manager.mark_downloading("02 - B.mp3")  # saved at once: the first change of the window
    manager.mark_downloading("01 - A.mp3")  # --force-redownload: a new attempt, not saved yet
    assert on_disk(tmp_path)["chapters"]["01 - A.mp3"]["status"] == "complete"
    saves = manager.saves
    manager.settle("02 - B.mp3")
    assert manager.saves == saves, "nothing on disk claims B complete: no write"
    manager.settle("01 - A.mp3")  # what the scheduler does before converting
    assert manager.saves == saves + 1
    assert on_disk(tmp_path)["chapters"]["01 - A.mp3"]["status"] == "downloading"
    manager.settle("01 - A.mp3")
    assert manager.saves == saves + 1
