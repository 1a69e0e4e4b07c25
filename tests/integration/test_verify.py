"""--verify-folder through the real command: exit codes, tables, hostile and odd folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from book_support import MANIFEST, book_folder, manifest_of, snapshot
from helpers import fast_options, run_cli
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils.atomic import folder_lock, sha256_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def downloaded(site: StandinSite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean two-chapter m4a download, copied by each test that changes it."""
    root = tmp_path_factory.mktemp("verify-lib")
    result = run_cli(["cover-book", "--format", "m4a", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr
    return book_folder(root)


def copy_book(source: Path, root: Path) -> Path:
    target = root / source.parent.name / source.name
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def verify(folder: Path, *extra: str) -> tuple[int, str, str]:
    result = run_cli(["--verify-folder", folder, *extra])
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


def test_a_clean_folder_exits_0_with_a_row_per_chapter(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    code, out, _ = verify(folder)
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if ".m4a" in line]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(row[-1] == "ok" for row in rows)
    assert "verified: 2 of 2 ok" in out


def test_deep_decodes_every_file(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    assert verify(folder, "--deep")[0] == 0
    # A file cut short whose manifest entry agrees: only decoding can tell.
    path = folder / "02 - Back.m4a"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    data = manifest_of(folder)
    size, digest = sha256_file(path)
    data["chapters"][path.name].update(size=size, sha256=digest)
    (folder / MANIFEST).write_text(json.dumps(data))
    assert verify(folder)[0] == 0, "size and hash agree: the quick check cannot see it"
    code, out, _ = verify(folder, "--deep")
    assert code == 1
    assert any(path.name in line and "decode error" in line for line in out.splitlines())
    assert manifest_of(folder)["chapters"][path.name]["status"] == "pending"


def test_size_mismatch_and_unknown_files(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    with (folder / "01 - Front.m4a").open("ab") as handle:
        handle.write(b"appended")
    (folder / "Bonus Interview.mp3").write_bytes(b"ID3 not ours")
    code, out, _ = verify(folder)
    assert code == 1
    assert any("01 - Front.m4a" in line and "size mismatch" in line for line in out.splitlines())
    assert "Bonus Interview.mp3" in out.split("does not know", 1)[1]


def test_a_failed_chapter_is_incomplete(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    data = manifest_of(folder)
    data["chapters"]["02 - Back.m4a"].update(
        status="failed", size=None, sha256=None, last_error={"kind": "not_found", "message": "404"}
    )
    (folder / MANIFEST).write_text(json.dumps(data))
    code, out, _ = verify(folder)
    assert code == 1
    line = next(line for line in out.splitlines() if "02 - Back.m4a" in line)
    assert "incomplete" in line
    assert "not_found" in line


def test_a_corrupt_manifest_is_moved_aside_and_rebuilt(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    (folder / MANIFEST).write_text("[1, 2,")
    code, out, err = verify(folder)
    assert code == 1, "a corrupt manifest is a problem found"
    assert "corrupt" in err
    assert "rebuilt" in out
    (aside,) = folder.glob(f"{MANIFEST}.corrupt-*")
    assert aside.read_text() == "[1, 2,"
    assert len(manifest_of(folder)["chapters"]) == 2
    assert verify(folder)[0] == 0, "the rebuilt manifest verifies clean"


def test_entries_pointing_outside_are_rejected_and_never_touched(
    downloaded: Path, tmp_path: Path
) -> None:
    folder = copy_book(downloaded, tmp_path / "lib")
    outside = tmp_path / "outside.m4a"
    outside.write_bytes(b"someone else's")
    data = manifest_of(folder)
    good = data["chapters"]["01 - Front.m4a"]
    data["chapters"]["../../../outside.m4a"] = {**good, "index": 3}
    data["chapters"]["..\\..\\outside.m4a"] = {**good, "index": 4}
    (folder / MANIFEST).write_text(json.dumps(data))
    code, out, err = verify(folder)
    assert code == 1
    assert err.count("manifest entry dropped") == 2
    assert "outside.m4a" not in out.split("2 of 2 ok")[0].split("detail", 1)[1]
    assert "2 unsafe manifest entries rejected" in out
    assert outside.read_bytes() == b"someone else's"
    assert sorted(manifest_of(folder)["chapters"]) == ["01 - Front.m4a", "02 - Back.m4a"]
    assert verify(folder)[0] == 0


def test_a_newer_schema_exits_2_and_is_left_alone(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    data = manifest_of(folder)
    data["schema_version"] = 3
    (folder / MANIFEST).write_text(json.dumps(data))
    before = snapshot(folder)
    code, _, err = verify(folder)
    assert code == 2
    assert "schema version 3" in err
    assert snapshot(folder) == before


def test_an_older_versions_folder_is_adopted(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    (folder / MANIFEST).unlink()
    code, out, err = verify(folder)
    assert code == 0, out + err
    assert "adopted 2" in err
    data = manifest_of(folder)
    assert data["book"]["title"] == folder.name
    assert data["book"]["author"] == folder.parent.name
    assert data["book"]["format"] == "m4a"
    for name, entry in data["chapters"].items():
        assert (entry["size"], entry["sha256"]) == sha256_file(folder / name)


def test_empty_folder_and_library_root(downloaded: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = verify(empty)
    assert code == 1, "nothing verified is not clean"
    assert "nothing to verify" in out
    assert list(empty.iterdir()) == [], "verify writes nothing where it found nothing"

    copy_book(downloaded, tmp_path / "lib")
    code, out, _ = verify(tmp_path / "lib")
    assert code == 1
    assert "1 book folder(s) further down" in out
    assert "--list-downloads" in out


def test_not_a_folder_exits_2(tmp_path: Path) -> None:
    assert verify(tmp_path / "missing")[0] == 2
    file = tmp_path / "file.mp3"
    file.write_bytes(b"x")
    code, _, err = verify(file)
    assert code == 2
    assert "not a folder" in err


def test_a_folder_in_use_is_refused(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    before = snapshot(folder)
    with folder_lock(folder):  # what a running download holds
        code, _, err = verify(folder)
    assert code == 2
    assert "in use by another tokysnatcher" in err
    assert snapshot(folder) == before


def test_temporary_files_of_a_killed_run_are_removed(downloaded: Path, tmp_path: Path) -> None:
    folder = copy_book(downloaded, tmp_path)
    stale = folder / f".{MANIFEST}.0a1b2c3d.tmp"
    stale.write_text('{"half": ')
    code, _, err = verify(folder)
    assert code == 0
    assert not stale.exists()
    assert "interrupted run" in err
