"""Every bad input: one clear line, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import NEEDS_POSIX_KERNEL, NEEDS_SCRIPTS, cli_env, run_cli, tree
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration


def assert_usage_error(result: object, needle: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error:")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["https://example.com/post/x"], "not a tokybook book URL"),
        (["https://tokybook.com/about"], "not a book page URL"),
        (["not a slug at all"], "not a tokybook book URL"),
        (["no-such-book"], "no book with the slug 'no-such-book'"),
        (["the-sample-book", "--format", "flac"], "--format"),
        (["the-sample-book", "--jobs", "0"], "--jobs"),
        (["the-sample-book", "--jobs", "many"], "--jobs"),
        (["the-sample-book", "--connections", "1000"], "--connections"),
        (["the-sample-book", "--max-retries", "-1"], "--max-retries"),
        (["the-sample-book", "--retry-delay", "-2"], "--retry-delay"),
        (["the-sample-book", "--stall-timeout", "0"], "--stall-timeout"),
        (["the-sample-book", "--speed-limit", "fast"], "--speed-limit"),
        (["the-sample-book", "--chapters", "9"], "--chapters"),
        (["the-sample-book", "--chapters", "2-x"], "--chapters"),
        (["the-sample-book", "--resume", "--force-redownload"], "cannot be used together"),
        (["the-sample-book", "--ffmpeg", "/nonexistent/ffmpeg"], "/nonexistent/ffmpeg"),
        (["the-sample-book", "--base-url", "ftp://x"], "--base-url"),
        (["--bogus-option"], "--bogus-option"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    site: StandinSite, tmp_path: Path, args: list[str], needle: str
) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    base = ["--base-url", site.base_url] if "--base-url" not in args else []
    result = run_cli([*args, "-d", str(root), *base])
    assert_usage_error(result, needle)
    assert tree(root) == []


@pytest.mark.parametrize("value", ["http://[::1", "http://host:99999", "http://host:0", "x"])
def test_bad_base_url_from_the_environment(tmp_path: Path, value: str) -> None:
    # The environment takes the same checks as the option (urlsplit raises on some of these).
    root = tmp_path / "lib"
    root.mkdir()
    env = {**cli_env(), "TOKYSNATCHER_BASE_URL": value}
    result = run_cli(["some-book", "-d", str(root)], env=env)
    assert_usage_error(result, "--base-url must be an http(s) URL")
    assert tree(root) == []


def test_directory_that_is_a_file(site: StandinSite, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli(["the-sample-book", "-d", str(blocker / "sub"), "--base-url", site.base_url])
    assert_usage_error(result, "not a folder")
    assert blocker.read_text() == "x"


@NEEDS_POSIX_KERNEL
def test_unwritable_directory(site: StandinSite) -> None:
    # Root ignores permission bits, so use a folder no one can write: procfs.
    result = run_cli(
        ["the-sample-book", "-d", "/proc/tokysnatcher-test", "--base-url", site.base_url]
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


@NEEDS_SCRIPTS
def test_ffmpeg_that_is_not_ffmpeg(site: StandinSite, tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    root = tmp_path / "lib"
    root.mkdir()
    result = run_cli(
        ["the-sample-book", "-d", str(root), "--base-url", site.base_url, "--ffmpeg", str(fake)]
    )
    assert_usage_error(result, str(fake))
    assert tree(root) == []


def test_no_site_to_talk_to(tmp_path: Path) -> None:
    # A closed port on loopback: a clear error, not a traceback.
    result = run_cli(["the-sample-book", "-d", str(tmp_path), "--base-url", "http://127.0.0.1:9"])
    assert result.returncode in (1, 2)
    assert "could not reach" in result.stderr
    assert "Traceback" not in result.stderr
