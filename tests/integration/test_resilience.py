"""SPEC §5 resilience, end to end: the real command against a misbehaving stand-in site.

Each test starts its own :class:`StandinSite` with faults (sharing the session's audio cache)
and runs ``python -m tokysnatcher`` in a child process with real ffmpeg.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from helpers import FFMPEG, NEEDS_POSIX_KERNEL, cli_env, decoded_md5, fast_options, run_cli, tree
from tokysnatcher.standin import Faults, StandinSite
from tokysnatcher.utils.atomic import sha256_file

pytestmark = pytest.mark.integration

SLUG = "the-sample-book"
CHAPTERS = 4


@pytest.fixture
def faulty_site(request: pytest.FixtureRequest, standin_cache: Path) -> Iterator[StandinSite]:
    """A stand-in site with the faults given by ``@pytest.mark.parametrize(indirect=...)``."""
    faults: Faults = request.param
    with StandinSite(faults=faults, cache_dir=standin_cache) as running:
        yield running


def book_folder(root: Path) -> Path:
    return root / "Ada Quill" / "The Sample Book"


def manifest_of(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / ".tokysnatcher.json").read_text("utf-8"))
    return data


def report_of(path: Path) -> dict[int, dict[str, Any]]:
    data = json.loads(path.read_text("utf-8"))
    return {chapter["index"]: chapter for chapter in data["chapters"]}


def assert_book_is_the_source(site: StandinSite, folder: Path) -> None:
    files = sorted(folder.glob("*.m4a"))
    assert len(files) == CHAPTERS, tree(folder)
    entries = manifest_of(folder)["chapters"]
    for index, path in enumerate(files):
        # AAC -> m4a is a stream copy: the decoded samples equal the site's source exactly.
        assert decoded_md5(path) == decoded_md5(site.source_media(SLUG, index)), path.name
        entry = entries[path.name]
        size, digest = sha256_file(path)
        assert (entry["status"], entry["size"], entry["sha256"]) == ("complete", size, digest)


MIXED = Faults(error_rate=0.25, seed=11, stall_seconds=2.0, retry_after=1.0)


@pytest.mark.parametrize("faulty_site", [MIXED], indirect=True)
def test_a_quarter_of_requests_failing_in_mixed_ways_still_gives_the_exact_book(
    faulty_site: StandinSite, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    root = tmp_path / "lib"
    options = [*fast_options(faulty_site, root), "--stall-timeout", "1"]
    result = run_cli([SLUG, "--format", "m4a", "--report", report, *options])
    assert result.returncode == 0, result.stderr + result.stdout
    fired = faulty_site.stats.faults
    # The faults really happened, in several shapes: errors, throttling, broken bodies, stalls.
    assert sum(fired.values()) >= 5, fired
    assert {"5xx", "429", "reset", "truncate", "stall"} <= set(fired), fired
    assert_book_is_the_source(faulty_site, book_folder(root))
    assert all(chapter["status"] == "complete" for chapter in report_of(report).values())
    assert f"{CHAPTERS} complete, 0 failed" in result.stdout


MISSING = Faults(missing_tracks=frozenset({(SLUG, 1)}))


@pytest.mark.parametrize("faulty_site", [MISSING], indirect=True)
def test_a_chapter_gone_for_good_fails_as_not_found_at_once_and_the_rest_completes(
    faulty_site: StandinSite, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    root = tmp_path / "lib"
    result = run_cli(
        [SLUG, "--format", "m4a", "--report", report, *fast_options(faulty_site, root)]
    )
    assert result.returncode == 1, result.stderr
    chapters = report_of(report)
    missing = chapters[2]
    assert missing["status"] == "failed"
    assert missing["error"]["kind"] == "not_found"
    assert missing["attempts"] == 1
    assert [c["status"] for i, c in sorted(chapters.items()) if i != 2] == ["complete"] * 3
    # Asked once: a 404 is permanent, so neither a quick retry nor a chapter retry happened.
    playlist_path = urlsplit(faulty_site.playlist_url(SLUG, 1)).path
    assert faulty_site.stats.paths[playlist_path] == 1
    assert "3 complete, 1 failed" in result.stdout
    assert [
        line
        for line in result.stdout.splitlines()
        if "02 - The Long Road.m4a" in line and "[not_found]" in line
    ], result.stdout
    entry = manifest_of(book_folder(root))["chapters"]["02 - The Long Road.m4a"]
    assert entry["status"] == "failed"
    assert entry["last_error"]["kind"] == "not_found"
    assert not (book_folder(root) / "02 - The Long Road.m4a").exists()


EXPIRING = Faults(token_max_uses=12)


@pytest.mark.parametrize("faulty_site", [EXPIRING], indirect=True)
def test_a_stream_token_that_expires_mid_download_is_renewed(
    faulty_site: StandinSite, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    result = run_cli([SLUG, "--format", "m4a", "-v", *fast_options(faulty_site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    stats = faulty_site.stats
    assert stats.faults["token_expired"] >= 1
    renewals = stats.requests["playlist"] - 1  # the first playlist call is the plan's
    assert renewals >= 1
    # Many requests see one expiry; each renewal is one playlist call, announced at most once.
    announced = result.stderr.count("stream token expired; renewed it")
    assert 1 <= announced <= renewals, result.stderr
    assert_book_is_the_source(faulty_site, book_folder(root))


@NEEDS_POSIX_KERNEL
@pytest.mark.parametrize("faulty_site", [Faults()], indirect=True)
def test_a_disk_that_refuses_writes_stops_the_whole_run_cleanly(
    faulty_site: StandinSite, tmp_path: Path
) -> None:
    """Files may not grow past 6 KB (RLIMIT_FSIZE): the first segment hits EFBIG, a disk error."""

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    root = tmp_path / "lib"
    site = faulty_site
    result = subprocess.run(
        [sys.executable, "-m", "tokysnatcher", SLUG, "--format", "m4a", *fast_options(site, root)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        preexec_fn=small_files,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    stopped = [line for line in result.stdout.splitlines() if line.startswith("stopped: ")]
    assert stopped, result.stdout
    assert "too large" in stopped[0]
    assert "--resume" in result.stdout
    chapters = manifest_of(book_folder(root))["chapters"]
    kinds = [(entry["last_error"] or {}).get("kind") for entry in chapters.values()]
    # One chapter met the disk error; the run stopped, so no other chapter failed for it.
    assert kinds.count("disk") == 1, chapters
    assert {entry["status"] for entry in chapters.values()} <= {"failed", "pending"}
    assert not list(book_folder(root).glob("*.m4a"))


@NEEDS_POSIX_KERNEL
@pytest.mark.parametrize("faulty_site", [Faults()], indirect=True)
def test_an_ffmpeg_output_on_a_read_only_file_system_stops_the_run(
    faulty_site: StandinSite, tmp_path: Path
) -> None:
    """Chapter 2's work folder turns read-only just before its conversion: a ``disk`` stop.

    The run happens in a private mount namespace (tests run as root, whom permission bits do
    not stop). The ffmpeg given to the run is a wrapper that, for chapter 2's conversion only,
    bind-mounts the chapter's work folder read-only onto itself (its segments stay readable) and
    then runs the real ffmpeg, which fails to open its output with the real EROFS error.
    """
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], check=False).returncode:
        pytest.skip("needs root and mount namespaces")
    root = tmp_path / "lib"
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for arg; do last="$arg"; done\n'
        'case "$last" in\n'
        '  file:*/0002/output.*) work="$(dirname "${last#file:}")"\n'
        '    mount --bind "$work" "$work" && mount -o remount,ro,bind "$work";;\n'
        "esac\n"
        f'exec {FFMPEG} "$@"\n'
    )
    wrapper.chmod(0o755)
    command = [sys.executable, "-m", "tokysnatcher", SLUG, *fast_options(faulty_site, root)]
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "--", *command, "--ffmpeg", str(wrapper)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 1, result.stderr + result.stdout
    stopped = [line for line in result.stdout.splitlines() if line.startswith("stopped: ")]
    assert len(stopped) == 1, result.stdout
    assert "ffmpeg could not write its output" in stopped[0], stopped
    assert "Read-only file system" in stopped[0], stopped
    assert "0002" in stopped[0], stopped
    assert "--resume" in result.stdout
    chapters = manifest_of(book_folder(root))["chapters"]
    second = chapters["02 - The Long Road.mp3"]
    assert (second["status"], second["last_error"]["kind"]) == ("failed", "disk"), second
    others = [entry for name, entry in chapters.items() if not name.startswith("02 ")]
    # The run stopped for the disk: no other chapter failed, each is done or waits for --resume.
    assert {entry["status"] for entry in others} <= {"complete", "pending"}, chapters
    for name, entry in chapters.items():
        if entry["status"] == "complete":
            assert (entry["size"], entry["sha256"]) == sha256_file(book_folder(root) / name)
    assert "invalid_media" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-retries", "-1"),
        ("--max-retries", "many"),
        ("--retry-delay", "soon"),
        ("--stall-timeout", "forever"),
    ],
)
def test_bad_retry_options_are_refused_before_anything_happens(
    option: str, value: str, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    result = run_cli([SLUG, "--base-url", "http://127.0.0.1:9", "-d", root, option, value])
    assert result.returncode == 2, result.stderr
    assert option in result.stderr
    assert not root.exists()
