"""Resume, --force-redownload and the resume prompt, end to end (SPEC §4, ISSUE 4)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from book_support import (
    MANIFEST,
    PtySession,
    assert_book_audio,
    assert_manifest_matches_files,
    book_folder,
    manifest_of,
    snapshot,
)
from helpers import NEEDS_PTY, fast_options, run_cli, tree
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils.atomic import LOCK_NAME

pytestmark = pytest.mark.integration

SLUG = "the-sample-book"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def template(site: StandinSite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library root of one complete m4a download, copied by each test that changes it."""
    root = tmp_path_factory.mktemp("resume-template")
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    return root


def download(template: Path, root: Path) -> Path:
    """A complete download of the sample book under ``root`` (a copy of the template)."""
    shutil.copytree(template, root, dirs_exist_ok=True)
    return book_folder(root)


def chapters_fetched(site: StandinSite, before: Counter[str]) -> list[int]:
    """Chapters (1-based) whose playlist was requested since ``before`` (``site.stats.paths``)."""
    now = site.stats.paths
    return [
        index + 1
        for index in range(len(site.catalog[SLUG].tracks))
        if now[(path := urlsplit(site.playlist_url(SLUG, index)).path)] > before[path]
    ]


def test_manifest_has_the_spec_shape_and_matches_every_file(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    data = manifest_of(folder)
    assert data["schema_version"] == 1
    assert data["tool_version"]
    book = data["book"]
    assert book["title"] == "The Sample Book"
    assert book["author"] == "Ada Quill"
    assert book["format"] == "m4a"
    assert book["slug"] == SLUG
    assert book["source_url"].endswith(f"/post/{SLUG}")
    assert book["chapter_count"] == 4
    assert STAMP.fullmatch(data["created_at"])
    assert STAMP.fullmatch(data["updated_at"])
    assert sorted(data["chapters"]) == sorted(p.name for p in folder.glob("*.m4a"))
    for entry in data["chapters"].values():
        assert entry["status"] == "complete"
        assert entry["attempts"] == 1
        assert entry["last_error"] is None
        assert STAMP.fullmatch(entry["started_at"])
        assert STAMP.fullmatch(entry["completed_at"])
    assert_manifest_matches_files(folder)
    # Nothing else is left behind: no work folder, no temporary files.
    assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME) == sorted(
        [MANIFEST, *data["chapters"], *data["sidecars"]]
    )
    assert sorted(data["sidecars"]) == ["cover.jpg", "metadata.opf", "reader.txt"]


def test_tampered_and_deleted_chapters_are_found_and_only_they_are_fetched(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    files = sorted(folder.glob("*.m4a"))
    tampered, deleted = files[1], files[2]
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    tampered.write_bytes(bytes(data))
    deleted.unlink()
    before = snapshot(folder)

    verified = run_cli(["--verify-folder", folder])
    assert verified.returncode == 1, verified.stdout + verified.stderr
    # One row per chapter: number, file, status, detail (columns two or more spaces apart).
    rows = {
        cells[1]: cells[2]
        for line in verified.stdout.splitlines()
        if len(cells := re.split(r"\s{2,}", line.strip())) >= 3 and cells[0].isdigit()
    }
    assert rows == {
        files[0].name: "ok",
        tampered.name: "hash mismatch",
        deleted.name: "missing",
        files[3].name: "ok",
    }
    assert "--resume" in verified.stdout  # the command that fetches them again
    statuses = {n: e["status"] for n, e in manifest_of(folder)["chapters"].items()}
    assert statuses == {
        files[0].name: "complete",
        tampered.name: "pending",
        deleted.name: "pending",
        files[3].name: "complete",
    }

    paths = site.stats.paths
    resumed = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "2 complete, 0 failed, 2 skipped" in resumed.stdout
    assert chapters_fetched(site, paths) == [2, 3]
    after = snapshot(folder)
    for untouched in (files[0].name, files[3].name):
        assert after[untouched] == before[untouched], f"{untouched} was rewritten"
    assert after[tampered.name][2] != before[tampered.name][2]
    assert_book_audio(folder, site, SLUG)
    assert_manifest_matches_files(folder)
    assert run_cli(["--verify-folder", folder]).returncode == 0


def test_without_a_terminal_a_manifest_means_resume(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    (folder / "04 - Epilogue.m4a").unlink()
    before = snapshot(folder)
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path)])  # no --resume
    assert result.returncode == 0, result.stderr
    assert "1 complete, 0 failed, 3 skipped" in result.stdout
    after = snapshot(folder)
    for name in ("01 - Prologue.m4a", "02 - The Long Road.m4a", "03 - A Quiet Harbour.m4a"):
        assert after[name] == before[name]
    assert_book_audio(folder, site, SLUG)


def test_a_different_format_is_refused_with_both_choices(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    before = snapshot(folder)
    refused = run_cli([SLUG, "--format", "mp3", *fast_options(site, tmp_path), "--resume"])
    assert refused.returncode == 2
    message = refused.stderr
    assert "holds this book as m4a" in message
    assert "--format m4a" in message
    assert "--force-redownload --format mp3" in message
    assert "Traceback" not in message
    assert snapshot(folder) == before, "a refused run must not change anything"

    options = ["--chapters", "2-3", "--force-redownload", *fast_options(site, tmp_path)]
    switched = run_cli([SLUG, "--format", "mp3", *options])
    assert switched.returncode == 0, switched.stderr
    assert "again as mp3" in switched.stderr
    assert "4 m4a file(s)" in switched.stderr
    data = manifest_of(folder)
    assert data["book"]["format"] == "mp3"
    assert sorted(data["chapters"]) == sorted(p.name for p in folder.glob("*.mp3"))
    assert sorted(data["chapters"]) == ["02 - The Long Road.mp3", "03 - A Quiet Harbour.mp3"]
    # The m4a files stay (never deleted behind the user's back) and verify names them.
    after = snapshot(folder)
    assert {name: after[name] for name in after if name.endswith(".m4a")} == {
        name: before[name] for name in before if name.endswith(".m4a")
    }
    verified = run_cli(["--verify-folder", folder])
    assert verified.returncode == 0, verified.stdout
    assert "01 - Prologue.m4a" in verified.stdout.split("does not know", 1)[1]


def test_force_redownload_fetches_everything_again(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    before = snapshot(folder)
    paths = site.stats.paths
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--force-redownload"])
    assert result.returncode == 0, result.stderr
    assert "4 complete, 0 failed, 0 skipped" in result.stdout
    assert chapters_fetched(site, paths) == [1, 2, 3, 4]
    after = snapshot(folder)
    for name in (p.name for p in folder.glob("*.m4a")):
        assert after[name][0] != before[name][0], f"{name} was not replaced by a new file"
    assert_book_audio(folder, site, SLUG)
    assert_manifest_matches_files(folder)
    assert all(e["attempts"] == 2 for e in manifest_of(folder)["chapters"].values())


@NEEDS_PTY
def test_prompt_in_a_terminal_cancel_ctrl_c_and_redownload(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    (folder / "04 - Epilogue.m4a").unlink()
    before = snapshot(folder)
    args = [SLUG, "--format", "m4a", *fast_options(site, tmp_path)]

    with PtySession(args) as session:
        session.expect("[c]ancel?")
        assert "already holds 3 of 4 chapters" in session.output
        assert "1 still to fetch" in session.output
        session.send("c")
        assert session.wait() == 0
    assert "nothing was changed" in session.output
    assert snapshot(folder) == before

    with PtySession(args) as session:
        session.expect("[c]ancel?")
        session.interrupt()
        assert session.wait() == 130
    assert "Traceback" not in session.output
    assert "nothing was changed" in session.output
    assert snapshot(folder) == before

    with PtySession(args) as session:
        session.expect("[c]ancel?")
        session.send("d")
        assert session.wait() == 0, session.output
    assert "4 complete, 0 failed, 0 skipped" in session.output
    after = snapshot(folder)
    assert all(after[name][0] != before[name][0] for name in before if name.endswith(".m4a"))
    assert_book_audio(folder, site, SLUG)


def test_dry_run_writes_nothing_even_with_a_corrupt_manifest(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    (folder / MANIFEST).write_text('{"schema_version": 1, "book": ')
    before = snapshot(folder)
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--dry-run"])
    assert result.returncode == 0, result.stderr
    assert "corrupt" in result.stderr
    assert "skip" in result.stdout
    assert snapshot(folder) == before
    assert tree(tmp_path) == sorted(
        ["Ada Quill", "Ada Quill/The Sample Book"]
        + [f"Ada Quill/The Sample Book/{name}" for name in before]
    )


def test_a_corrupt_manifest_is_moved_aside_and_the_files_are_kept(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    (folder / MANIFEST).write_bytes(b"\x00garbage")
    (folder / "02 - The Long Road.m4a").unlink()
    before = snapshot(folder)
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert result.returncode == 0, result.stderr
    assert "corrupt" in result.stderr
    assert "1 complete, 0 failed, 3 skipped" in result.stdout
    (aside,) = folder.glob(f"{MANIFEST}.corrupt-*")
    assert aside.read_bytes() == b"\x00garbage"
    after = snapshot(folder)
    for name in ("01 - Prologue.m4a", "03 - A Quiet Harbour.m4a", "04 - Epilogue.m4a"):
        assert after[name] == before[name]
    assert_manifest_matches_files(folder)
    assert_book_audio(folder, site, SLUG)


def test_a_manifest_from_a_newer_version_is_left_alone(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    data = manifest_of(folder)
    data["schema_version"] = 2
    (folder / MANIFEST).write_text(json.dumps(data))
    before = snapshot(folder)
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert result.returncode == 2
    assert "schema version 2" in result.stderr
    assert "newer tokysnatcher" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(folder) == before


def test_manifest_entries_pointing_outside_are_rejected(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    folder = download(template, root)
    victim = tmp_path / "victim.m4a"
    victim.write_bytes(b"not yours")
    data = manifest_of(folder)
    entry = dict(data["chapters"]["01 - Prologue.m4a"])
    data["chapters"]["../../../victim.m4a"] = {**entry, "status": "pending"}
    data["chapters"]["/etc/passwd"] = entry
    (folder / MANIFEST).write_text(json.dumps(data))
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, root), "--resume"])
    assert result.returncode == 0, result.stderr
    assert "manifest entry dropped" in result.stderr
    assert "0 complete, 0 failed, 4 skipped" in result.stdout
    assert victim.read_bytes() == b"not yours"
    assert sorted(manifest_of(folder)["chapters"]) == sorted(p.name for p in folder.glob("*.m4a"))


def test_an_older_versions_folder_is_adopted_by_verify_then_resumed(
    site: StandinSite, template: Path, tmp_path: Path
) -> None:
    folder = download(template, tmp_path)
    (folder / MANIFEST).unlink()  # what a download by an older version looks like
    (folder / "03 - A Quiet Harbour.m4a").unlink()
    before = snapshot(folder)

    # A download without a manifest says what it will replace and how to keep it instead.
    planned = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--dry-run"])
    assert planned.returncode == 0
    assert "not in its manifest" in planned.stderr
    assert "--verify-folder" in planned.stderr

    verified = run_cli(["--verify-folder", folder])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "adopted 3" in verified.stderr
    adopted = manifest_of(folder)
    assert len(adopted["chapters"]) == 3
    assert adopted["book"]["format"] == "m4a"

    paths = site.stats.paths
    resumed = run_cli([SLUG, "--format", "m4a", *fast_options(site, tmp_path), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "1 complete, 0 failed, 3 skipped" in resumed.stdout
    assert chapters_fetched(site, paths) == [3]
    after = snapshot(folder)
    for name in before:
        assert after[name] == before[name]
    assert_book_audio(folder, site, SLUG)
    assert manifest_of(folder)["book"]["source_url"].endswith(SLUG)
