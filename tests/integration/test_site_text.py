"""Site text never acts on the terminal: titles and authors with escape sequences, a
right-to-left override and a forged line, through every command that prints them (piped; the
live view in a terminal is in test_live_view.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from book_support import MANIFEST, book_folder
from helpers import (
    HOSTILE_AUTHOR,
    HOSTILE_CHAPTER,
    HOSTILE_SLUG,
    HOSTILE_TITLE,
    assert_inert,
    fast_options,
    hostile_text_book,
    run_cli,
)
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hostile_site(standin_cache: Path) -> Iterator[StandinSite]:
    book = hostile_text_book()
    with StandinSite(catalog={book.slug: book}, cache_dir=standin_cache) as running:
        yield running


def test_download_plan_list_and_verify_print_site_text_escaped(
    hostile_site: StandinSite, tmp_path: Path
) -> None:
    options = [*fast_options(hostile_site, tmp_path), "--format", "m4a"]
    plan = run_cli([HOSTILE_SLUG, *options, "--dry-run"])
    assert plan.returncode == 0, plan.stderr
    assert_inert(plan.stdout + plan.stderr)
    # Shown, escaped, so the reader sees what the site sent.
    assert "Evil\\x1b]0;pwned\\x07 Book\\x1b[2J\\x1b[5m\\u202ekoob\\nfake: done" in plan.stdout

    run = run_cli([HOSTILE_SLUG, *options, "-v"])
    assert run.returncode == 0, run.stderr
    assert_inert(run.stdout + run.stderr)
    assert "Mal\\x1b]0;pwned\\x07lory\\u202eroht\\nfake: done" in run.stderr
    assert "\\u2067 one\\r\\nfake: done" in run.stderr

    # The manifest keeps what the site said; read back from disk, it is untrusted too.
    folder = book_folder(tmp_path)
    assert json.loads((folder / MANIFEST).read_text("utf-8"))["book"]["title"] == HOSTILE_TITLE
    listed = run_cli(["--list-downloads", "-d", tmp_path])
    assert listed.returncode == 0, listed.stderr
    assert_inert(listed.stdout + listed.stderr)
    assert "\\u202ekoob" in listed.stdout

    verified = run_cli(["--verify-folder", folder])
    assert verified.returncode == 0, verified.stderr
    assert_inert(verified.stdout + verified.stderr)


def test_search_results_print_site_text_escaped(hostile_site: StandinSite) -> None:
    found = run_cli(["-s", "evil", "--base-url", hostile_site.base_url])
    assert found.returncode == 0, found.stderr
    assert_inert(found.stdout + found.stderr)
    (line,) = [line for line in found.stdout.splitlines() if line.lstrip().startswith("1.")]
    assert "Mal\\x1b]0;pwned\\x07lory" in line


def test_manifests_and_folders_on_disk_cannot_act_on_the_terminal(tmp_path: Path) -> None:
    folder = tmp_path / "Some Author" / "Some Book"
    folder.mkdir(parents=True)
    manifest = {
        "schema_version": 1,
        "tool_version": "0.5.0",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01\x1b[2J",
        "book": {
            "title": HOSTILE_TITLE,
            "author": HOSTILE_AUTHOR,
            "format": "m4a",
            "chapter_count": 1,
        },
        "chapters": {
            "01 - One.m4a": {
                "index": 1,
                "title": HOSTILE_CHAPTER,
                "status": "pending",
                "attempts": 0,
            }
        },
    }
    (folder / MANIFEST).write_text(json.dumps(manifest), "utf-8")
    # A corrupt manifest in a folder whose name holds an escape sequence: the row names it.
    odd = tmp_path / "Odd\x1b]0;pwned\x07 Author" / "Book\u202e"
    odd.mkdir(parents=True)
    (odd / MANIFEST).write_text("{not json", "utf-8")
    listed = run_cli(["--list-downloads", "-d", tmp_path])
    assert listed.returncode == 0, listed.stderr
    assert_inert(listed.stdout + listed.stderr)
    assert "Evil\\x1b]0;pwned" in listed.stdout
    assert "Odd\\x1b]0;pwned\\x07 Author" in listed.stdout
    verified = run_cli(["--verify-folder", folder])
    assert_inert(verified.stdout + verified.stderr)
    assert "Evil\\x1b]0;pwned" in verified.stdout
