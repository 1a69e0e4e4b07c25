"""The archive of finished books: a finished book is skipped without a single request, wherever
its folder went; ``--download-archive FILE`` keeps the archive in a yt-dlp style text file
(issue 14 item 3)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from book_support import MANIFEST
from helpers import cli_env, fast_options, main_in_process, run_cli
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration

SLUG = "cover-book"  # two chapters of 6 s
FOLDER = Path("Cora Vere") / "Cover Story"


def total_requests(site: StandinSite) -> int:
    return sum(site.stats.requests.values())


def run(site: StandinSite, root: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(TOKYSNATCHER_DATA_DIR=str(data))
    return run_cli([SLUG, *fast_options(site, root), *extra], env=env)


def test_a_finished_book_is_skipped_without_requests_even_after_it_moved(
    site: StandinSite, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = run(site, tmp_path / "downloads", data)
    assert first.returncode == 0, first.stderr
    # Moved into a player's library: the download folder is gone.
    player = tmp_path / "player"
    shutil.move(tmp_path / "downloads", player)

    before = total_requests(site)
    again = run(site, tmp_path / "downloads", data)
    assert again.returncode == 0, again.stderr
    assert total_requests(site) == before  # not one request: no API, no media
    (line,) = again.stderr.splitlines()
    assert line.startswith(
        f"already downloaded (archive): tokybook {SLUG} (mp3) in {tmp_path / 'downloads' / FOLDER}"
    )
    assert line.endswith(" - skipped; --force-redownload downloads it again")
    assert not (tmp_path / "downloads").exists()

    # Another format is another book; --force-redownload downloads it anyway.
    m4a = run(site, tmp_path / "downloads", data, "--format", "m4a")
    assert m4a.returncode == 0, m4a.stderr
    assert "already downloaded" not in m4a.stderr
    forced = run(site, tmp_path / "downloads", data, "--force-redownload")
    assert forced.returncode == 0, forced.stderr
    assert len(list((tmp_path / "downloads" / FOLDER).glob("0? - *.mp3"))) == 2


def test_where_the_folder_still_is_its_manifest_has_the_last_word(
    site: StandinSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, root = tmp_path / "data", tmp_path / "lib"
    assert run(site, root, data).returncode == 0
    chapter = next((root / FOLDER).glob("02 - *.mp3"))
    chapter.unlink()
    mended = run(site, root, data)
    assert mended.returncode == 0, mended.stderr
    assert "already downloaded" not in mended.stderr
    assert "1 of 2 chapters already complete" in mended.stderr
    assert chapter.is_file()

    # --list-downloads --json: the library for scripts.
    monkeypatch.setenv("TOKYSNATCHER_CONFIG", str(tmp_path / "absent.toml"))
    listed = main_in_process(["--list-downloads", "--json", "-d", str(root)], capsys)
    assert listed.returncode == 0, listed.stderr
    (book,) = json.loads(listed.stdout)
    assert (book["title"], book["author"], book["format"]) == ("Cover Story", "Cora Vere", "mp3")
    assert (book["complete"], book["total"], book["state"]) == (2, 2, "complete")
    assert book["folder"] == str(root / FOLDER)


def test_download_archive_text_file(site: StandinSite, tmp_path: Path) -> None:
    data, root = tmp_path / "data", tmp_path / "lib"
    archive = tmp_path / "archive.txt"
    archive.write_text("# my books\ntokybook some-other-book\n\n", "utf-8")
    first = run(site, root, data, "--download-archive", str(archive))
    assert first.returncode == 0, first.stderr
    assert archive.read_text("utf-8") == (
        f"# my books\ntokybook some-other-book\n\ntokybook {SLUG}\n"
    )

    shutil.rmtree(root)
    before = total_requests(site)
    other_data = tmp_path / "other-data"  # not the database's archive: the file's
    again = run(site, root, other_data, "--download-archive", str(archive))
    assert again.returncode == 0, again.stderr
    assert total_requests(site) == before
    assert again.stderr.startswith(f"already downloaded ({archive}): tokybook {SLUG} (mp3)")

    # A line that is not '<source> <id>': exit 2 naming it, the file left as it is.
    archive.write_text("tokybook a\nthree words here\n", "utf-8")
    bad = run(site, root, data, "--download-archive", str(archive))
    assert bad.returncode == 2
    assert bad.stderr.startswith(
        f"error: --download-archive {archive} line 2: expected '<source> <id>'"
    )
    assert len(bad.stderr.splitlines()) == 1
    assert archive.read_text("utf-8") == "tokybook a\nthree words here\n"
    assert total_requests(site) == before
    assert not (root / FOLDER / MANIFEST).exists()
