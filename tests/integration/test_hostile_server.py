"""SPEC §5 security, end to end: a hostile server's playlists fail cleanly and leak nothing.

The stand-in's ``hostile-server`` book has one normal chapter and five hostile ones: a segment
at ``file:///etc/passwd``, a segment on another host (which records the headers it receives),
a segment whose body never ends, a playlist over 1 MiB and a segment over 64 MiB.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers import decoded_md5, fast_options, run_cli, tree
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration

SLUG = "hostile-server"
AUTH_HEADERS = ("X-Stream-Token", "X-Audiobook-Id", "X-Track-Src", "Referer", "Cookie")
# (the command's result, its --report JSON, the library root, other-host requests before it)
HostileRun = tuple[subprocess.CompletedProcess[str], dict[str, Any], Path, int]


@pytest.fixture(scope="module")
def hostile_run(site: StandinSite, tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    """One download of the hostile book: (result, report, library root, other-host requests)."""
    root = tmp_path_factory.mktemp("hostile")
    report = root.parent / f"{root.name}-report.json"
    seen_before = len(site.stats.other_host_requests)
    result = run_cli(
        [
            SLUG,
            "--format",
            "m4a",
            "--max-retries",
            "1",
            "--report",
            report,
            *fast_options(site, root),
        ]
    )
    data = json.loads(report.read_text("utf-8"))
    return result, data, root, seen_before


def _chapters(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {chapter["index"]: chapter for chapter in report["chapters"]}


def test_every_hostile_chapter_fails_with_a_clear_kind_and_the_normal_one_completes(
    hostile_run: HostileRun, site: StandinSite
) -> None:
    result, report, root, _ = hostile_run
    assert result.returncode == 1, result.stderr
    chapters = _chapters(report)
    assert chapters[1]["status"] == "complete"
    expected = {
        2: ("invalid_media", "file:///etc/passwd"),  # a local file: refused before any read
        3: ("auth", "HTTP 403"),  # the other host refuses us: we sent it no token
        4: ("invalid_media", "limit"),  # the endless body is cut at the segment size limit
        5: ("invalid_media", "1 MiB"),  # the playlist is too large
        6: ("invalid_media", "83886080 bytes"),  # refused on its Content-Length alone
    }
    for index, (kind, words) in expected.items():
        chapter = chapters[index]
        assert chapter["status"] == "failed", chapter
        error = chapter["error"]
        assert error["kind"] == kind, chapter
        assert words in error["message"], chapter
        # Permanent kinds are never retried; auth is retried (--max-retries 1) and gives up.
        assert chapter["attempts"] == (2 if kind == "auth" else 1), chapter
    assert "1 complete, 5 failed" in result.stdout
    lines = result.stdout.splitlines()
    for index, (kind, _) in expected.items():
        name = chapters[index]["file"]
        assert [line for line in lines if name in line and f"[{kind}]" in line], result.stdout
    folder = root / "Mal Ware" / "Hostile Server"
    normal = folder / "01 - Normal Chapter.m4a"
    assert decoded_md5(normal) == decoded_md5(site.source_media(SLUG, 0))


def test_the_endless_body_is_cut_short_and_nothing_huge_is_kept(
    hostile_run: HostileRun,
) -> None:
    _, report, root, _ = hostile_run
    summary = report["summary"]
    # The endless segment (2 s of audio) may not exceed 4 MiB; the 80 MiB one is refused on its
    # Content-Length before a byte of its body is read.
    assert summary["downloaded_bytes"] < 5 * 1024 * 1024
    files = [p for p in root.rglob("*") if p.is_file()]
    assert all(p.stat().st_size < 1024 * 1024 for p in files), tree(root)
    assert not [p for p in files if p.name.endswith(".part")], tree(root)


def test_nothing_is_read_from_or_written_outside_the_book_folder(
    hostile_run: HostileRun,
) -> None:
    _, _, root, _ = hostile_run
    folder = root / "Mal Ware" / "Hostile Server"
    assert {p.parts[0] for p in (x.relative_to(root) for x in root.iterdir())} == {"Mal Ware"}
    assert all(path.is_relative_to(folder) for path in root.rglob("*") if path.is_file())
    passwd = Path("/etc/passwd")
    if passwd.is_file():
        first_line = passwd.read_bytes().split(b"\n", 1)[0]
        for path in root.rglob("*"):
            if path.is_file():
                assert first_line not in path.read_bytes(), path


def test_the_other_host_never_sees_the_stream_token(
    hostile_run: HostileRun, site: StandinSite
) -> None:
    _, _, _, seen_before = hostile_run
    requests = site.stats.other_host_requests[seen_before:]
    assert requests, "the other-host segment was never requested"
    for request in requests:
        leaked = [name for name in AUTH_HEADERS if name in request.headers]
        assert not leaked, (leaked, request.path)
