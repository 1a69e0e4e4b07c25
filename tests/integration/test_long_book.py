"""Long chapter lists cost linear time (ISSUE 11 item 10).

0.5.0 saved the whole manifest at every chapter state change (quadratic in the chapter count:
2,000 tracks took two minutes) and laid out ``--verify-folder``'s table of 200,000 rows in memory.
These tests count what must stay bounded (manifest writes per chapter), never wall time.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from book_support import MANIFEST, assert_manifest_matches_files, book_folder, manifest_of
from helpers import cli_env, fast_options, run_cli
from tokysnatcher.library.manifest_schema import MAX_MANIFEST_BYTES
from tokysnatcher.standin import StandinSite, make_book

pytestmark = pytest.mark.integration

SLUG = "long-book"
TRACKS = 400

# The real command in-process, counting every manifest write: one line per write in a log file
# (appended as it happens, so the count survives however the command exits).
_COUNTING = """
import sys
from pathlib import Path

import tokysnatcher.library.manifest as manifest
from tokysnatcher.cli import main

log = Path(sys.argv[1])
write = manifest.atomic_write_json

def counted(path, obj):
    write(path, obj)
    with log.open("a") as out:
        out.write(path.name + "\\n")

manifest.atomic_write_json = counted
main(sys.argv[2:])
"""


@pytest.fixture(scope="module")
def long_site(standin_cache: Path) -> Iterator[StandinSite]:
    """A site selling one book of 400 one-second tracks (one shared media: ready at once)."""
    book = make_book(
        SLUG,
        title="Long Book",
        author="Lona Gue",
        chapters=TRACKS,
        chapter_seconds=1.0,
        segment_seconds=1.0,
        shared_media=True,
    )
    with StandinSite(catalog={SLUG: book}, cache_dir=standin_cache) as running:
        yield running


def counting_run(log: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _COUNTING, str(log), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_long_book_downloads_with_a_bounded_number_of_manifest_writes(
    long_site: StandinSite, tmp_path: Path
) -> None:
    log = tmp_path / "writes.log"
    args = [SLUG, "--format", "m4a", "-q", *fast_options(long_site, tmp_path / "lib")]
    result = counting_run(log, args)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = book_folder(tmp_path / "lib")
    files = sorted(folder.glob("*.m4a"))
    assert len(files) == TRACKS
    chapters = manifest_of(folder)["chapters"]
    assert len(chapters) == TRACKS
    assert {entry["status"] for entry in chapters.values()} == {"complete"}
    assert_manifest_matches_files(folder)
    writes = log.read_text().splitlines()
    assert set(writes) == {MANIFEST}
    # 0.5.0 wrote ~3 times per chapter (1,200 here); now at most a few times a second.
    assert len(writes) < TRACKS / 4, len(writes)


def write_manifest(folder: Path, entries: int) -> None:
    """``entries`` complete chapters: 1-5 present and intact, 6-10 altered, the rest missing."""
    folder.mkdir(parents=True)
    good = hashlib.sha256(b"abc").hexdigest()
    chapters = {}
    for index in range(1, entries + 1):
        name = f"{index:06d} - C{index}.mp3"
        chapters[name] = {
            "index": index,
            "title": f"C{index}",
            "status": "complete",
            "size": 3,
            "sha256": good if index <= 5 else "0" * 64,
        }
        if index <= 10:
            (folder / name).write_bytes(b"abc")
    book = {"title": "Big", "author": "Bench", "format": "mp3", "chapter_count": entries}
    book.update(source_url="", slug="big", narrator=None, cover_url=None)
    doc = {"schema_version": 1, "book": book, "chapters": chapters}
    doc.update(created_at=None, updated_at=None)
    (folder / MANIFEST).write_text(json.dumps(doc, separators=(",", ":")), "utf-8")


def test_verify_folder_of_200000_entries_finishes_with_the_right_result(tmp_path: Path) -> None:
    entries = 200_000
    folder = tmp_path / "Bench" / "Big"
    write_manifest(folder, entries)
    assert (folder / MANIFEST).stat().st_size <= MAX_MANIFEST_BYTES, "a valid manifest"
    result = run_cli(["--verify-folder", folder], timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    rows = [line.split() for line in lines if line.endswith(".mp3") or ".mp3 " in line]
    assert len(rows) == entries
    assert [row[0] for row in rows[:3]] == ["1", "2", "3"]
    assert all(row[-1] == "ok" for row in rows[:5])
    verdict = next(line for line in lines if line.startswith("problems found: "))
    assert verdict.startswith(
        f"problems found: 5 of {entries} ok, 5 hash mismatch, {entries - 10} missing, "
        f"{entries - 5} marked to be fetched again"
    ), verdict
    saved = manifest_of(folder)["chapters"]
    statuses = [saved[f"{i:06d} - C{i}.mp3"]["status"] for i in (1, 5, 6, 10, 11, entries)]
    assert statuses == ["complete"] * 2 + ["pending"] * 4
