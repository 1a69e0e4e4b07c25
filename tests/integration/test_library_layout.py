"""Where books land and where they came from: 0.5.0 manifests, ``-o`` layouts (ISSUE 13)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from book_support import MANIFEST, PtySession, book_folder, manifest_of
from helpers import fast_options, run_cli, tree
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils.atomic import sha256_file

pytestmark = pytest.mark.integration

SLUG = "the-sample-book"
DATA = Path(__file__).parent / "data"
LAYOUT = "{source}/{author} - {title} ({series})/{index}. {chapter_title} [{year}].{ext}"


@pytest.fixture(scope="module")
def made(site: StandinSite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library root of one complete mp3 download of the sample book."""
    root = tmp_path_factory.mktemp("layout-template")
    result = run_cli([SLUG, "--no-sidecars", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    return root


def fetched(site: StandinSite, before: Counter[str]) -> list[int]:
    """Chapters whose playlist was requested since ``before``."""
    now = site.stats.paths
    return [
        index + 1
        for index in range(len(site.catalog[SLUG].tracks))
        if now[(path := urlsplit(site.playlist_url(SLUG, index)).path)] > before[path]
    ]


def as_made_by_050(folder: Path, site: StandinSite) -> dict[str, object]:
    """Replace the folder's manifest by one in 0.5.0's exact shape (a real one, re-hashed).

    ``data/manifest-0.5.0.json`` was written by tokysnatcher 0.5.0 (commit dd3d607) for this book:
    no ``book.source``, ``book.id`` or layout, no ``expected_duration``. Only the sizes and hashes
    are those of the files here (today's tags differ) and the URLs those of this stand-in.
    """
    old = json.loads((DATA / "manifest-0.5.0.json").read_text("utf-8"))
    for name, entry in old["chapters"].items():
        entry["size"], entry["sha256"] = sha256_file(folder / name)
    old["book"]["source_url"] = f"{site.base_url}/post/{SLUG}"
    old["book"]["cover_url"] = f"{site.base_url}/covers/{SLUG}.jpg"
    (folder / MANIFEST).write_text(json.dumps(old, indent=2), encoding="utf-8")
    return old


def test_a_050_manifest_verifies_and_resumes(site: StandinSite, made: Path, tmp_path: Path) -> None:
    shutil.copytree(made, tmp_path, dirs_exist_ok=True)
    folder = book_folder(tmp_path)
    old = as_made_by_050(folder, site)
    assert set(old["book"]) == {  # type: ignore[arg-type]
        "author", "chapter_count", "cover_url", "format", "narrator", "slug", "source_url",
        "title", "year",
    }  # fmt: skip

    checked = run_cli(["--verify-folder", folder])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert manifest_of(folder)["tool_version"] == "0.5.0", "a clean verify rewrites nothing"

    (folder / "02 - The Long Road.mp3").unlink()
    before = Counter(site.stats.paths)
    resumed = run_cli([SLUG, "--resume", "--no-sidecars", *fast_options(site, tmp_path)])
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "3 of 4 chapters already complete" in resumed.stdout + resumed.stderr
    assert fetched(site, before) == [2]
    book = manifest_of(folder)["book"]
    assert (book["source"], book["id"], book["slug"]) == ("tokybook", SLUG, SLUG)
    assert book["folder_depth"] == 2
    assert run_cli(["--verify-folder", folder]).returncode == 0


def test_a_custom_layout_is_found_again_by_every_command(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli([SLUG, "-o", LAYOUT, "--no-sidecars", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr + result.stdout
    folder = tmp_path / "tokybook" / "Ada Quill - The Sample Book"
    assert sorted(p.name for p in folder.glob("*.mp3")) == [
        "01. Prologue [2021].mp3",
        "02. The Long Road [2021].mp3",
        "03. A Quiet Harbour [2021].mp3",
        "04. Epilogue [2021].mp3",
    ], tree(tmp_path)
    book = manifest_of(folder)["book"]
    assert (book["output_template"], book["folder_depth"]) == (LAYOUT, 2)

    listed = run_cli(["--list-downloads", "-d", tmp_path])
    assert "The Sample Book" in listed.stdout
    assert "complete" in listed.stdout

    (folder / "03. A Quiet Harbour [2021].mp3").write_bytes(b"damaged")
    checked = run_cli(["--verify-folder", folder])
    assert checked.returncode == 1
    assert "03. A Quiet Harbour [2021].mp3" in checked.stdout
    assert f"-d {tmp_path}" in checked.stdout
    assert "-o '{source}/{author} - {title} ({series})/" in checked.stdout

    with PtySession(["--list-downloads", *fast_options(site, tmp_path)]) as session:
        session.expect("0 to quit")
        session.send("1")
        session.expect("[c]ancel?")
        session.send("r")
        assert session.wait() == 0, session.output
    assert "1 complete, 0 failed, 3 skipped" in session.output
    assert run_cli(["--verify-folder", folder]).returncode == 0
    assert book_folder(tmp_path) == folder


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{author}/{nope}", "unknown field {nope}"),
        ("{author}/{title", "unbalanced"),
        ("/srv/{title}", "absolute path"),
        ("{author}/../{title}", "'..' may not be a folder name"),
    ],
)
def test_a_bad_layout_is_one_line_and_exit_2(
    site: StandinSite, tmp_path: Path, template: str, problem: str
) -> None:
    result = run_cli([SLUG, "-o", template, *fast_options(site, tmp_path)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: --output: "), result.stderr
    assert problem in lines[0]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_layout_comes_from_the_config_file(site: StandinSite, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("output = '{author}/{title} ({year})'\nno-sidecars = true\n")
    root = tmp_path / "lib"
    args = [SLUG, "--chapters", "1", "--config", config, *fast_options(site, root)]
    assert run_cli(args).returncode == 0
    assert (root / "Ada Quill" / "The Sample Book (2021)" / "01 - Prologue.mp3").is_file()
    config.write_text("output = '{author}/{titel}'\n")
    bad = run_cli(args)
    assert bad.returncode == 2
    assert "bad value for 'output'" in bad.stderr
