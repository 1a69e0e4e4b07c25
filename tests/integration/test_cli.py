"""The command line as scripts see it: bad values, verbosity, plain output, --report, config.

Bad values are checked in-process through ``cli.main`` (the same entry point the console script
runs; a subprocess each would cost seconds); everything else runs the real command in a child
process, piped, so it is not a terminal.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

from helpers import cli_env, fast_options, run_cli, run_main
from tokysnatcher import __version__
from tokysnatcher.standin import Faults, StandinSite

pytestmark = pytest.mark.integration

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens there: no test ever leaves loopback


@pytest.mark.parametrize(
    ("args", "option", "form"),
    [
        (["-j", "many"], "--jobs", "a whole number from 1 to 32"),
        (["--jobs", "0"], "--jobs", "a whole number from 1 to 32"),
        (["--jobs", "2.5"], "--jobs", "a whole number from 1 to 32"),
        (["--jobs"], "--jobs", "a whole number from 1 to 32"),
        (["--connections", "0"], "--connections", "auto or a whole number from 1 to 16"),
        (["--connections", "17"], "--connections", "auto or a whole number from 1 to 16"),
        (["--connections", "fast"], "--connections", "auto or a whole number from 1 to 16"),
        (["--max-wait", "-1"], "--max-wait", "seconds from 0 to 86400"),
        (["--max-wait", "forever"], "--max-wait", "seconds from 0 to 86400"),
        (["--max-retries", "-1"], "--max-retries", "a whole number from 0 to 100"),
        (["--max-retries", "three"], "--max-retries", "a whole number from 0 to 100"),
        (["--retry-delay", "soon"], "--retry-delay", "seconds from 0 to 3600"),
        (["--retry-delay", "nan"], "--retry-delay", "seconds from 0 to 3600"),
        (["--retry-delay", "3601"], "--retry-delay", "seconds from 0 to 3600"),
        (["--stall-timeout", "0"], "--stall-timeout", "seconds from 0.1 to 3600"),
        (["--stall-timeout", "inf"], "--stall-timeout", "seconds from 0.1 to 3600"),
        (["--transfer-timeout", "0.5"], "--transfer-timeout", "seconds from 1 to 86400"),
        (["--transfer-timeout", "never"], "--transfer-timeout", "seconds from 1 to 86400"),
        (["--speed-limit", "fast"], "--speed-limit", "500K, 2M, 1.5MiB"),
        (["--speed-limit", "100"], "--speed-limit", "500K, 2M, 1.5MiB"),
        (["--speed-limit", "-5K"], "--speed-limit", "500K, 2M, 1.5MiB"),
        (["--speed-limit", "2Q"], "--speed-limit", "500K, 2M, 1.5MiB"),
        (["--chapters", "x"], "--chapters", "e.g. 1-3,7 or 5-"),
        (["--chapters", "0"], "--chapters", "e.g. 1-3,7 or 5-"),
        (["--chapters", "3-1"], "--chapters", "e.g. 1-3,7 or 5-"),
        (["--chapters", "1,,2"], "--chapters", "e.g. 1-3,7 or 5-"),
        (["--format", "flac"], "--format", "one of mp3, m4a, m4b"),
        (["--format", ""], "--format", "one of mp3, m4a, m4b"),
        (["--base-url", "ftp://x"], "--base-url", "an http(s) URL"),
        (["--base-url", "http://"], "--base-url", "an http(s) URL"),
        (["--base-url", "http://[::1"], "--base-url", "an http(s) URL"),
        (["--chapters", "1" * 5000], "--chapters", "e.g. 1-3,7 or 5-"),
        (["--report", "{tmp}"], "--report", "a file in an existing, writable folder"),
        (["--report", "{tmp}/no/such/r.json"], "--report", "a file in an existing"),
        (["--directory", ""], "--directory", "a folder"),
        (["--ffmpeg", ""], "--ffmpeg", "the path of an ffmpeg binary"),
        (["-s", "  "], "--search", "a search query"),
        (["--verify-folder", ""], "--verify-folder", "a book folder"),
        (["--profile", ""], "--profile", "[profiles.NAME]"),
        (["--config", "{tmp}/missing.toml"], "--config", "Check the path"),
        (["-q", "-v"], "-q and -v", "Pick one"),
        (["--speed"], "--speed", "--help"),
    ],
)
def test_every_bad_value_is_one_line_naming_option_and_form(
    in_process: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    option: str,
    form: str,
) -> None:
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    # The book and site come first: a value-less option at the end stays value-less.
    code, out, err = run_main(["the-sample-book", "--base-url", CLOSED_PORT, *args], capsys)
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert option in lines[0]
    assert form in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_version(in_process: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["--version"], capsys)
    assert (code, out, err) == (0, f"tokysnatcher {__version__}\n", "")


def test_installed_version_is_the_package_version() -> None:
    # __version__ is written out (reading package metadata costs every run); pyproject.toml
    # takes it from there, so the installed metadata must agree.
    assert importlib.metadata.version("tokysnatcher") == __version__


def test_no_url_when_not_a_terminal_is_a_usage_error(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli(fast_options(site, tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no book given - Pass a book URL or slug, or use --search")
    assert list(tmp_path.iterdir()) == []


def test_quiet_success_is_exactly_one_summary_line(site: StandinSite, tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    root = tmp_path / "lib"
    result = run_cli(
        ["the-sample-book", "-q", "--report", report, *fast_options(site, root), "-j", "3"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert re.fullmatch(
        r"The Sample Book: 4 complete, 0 failed, 0 skipped; retries: 0 chapter, 0 request; "
        r"success 100%; files [\d.]+ KiB; downloaded [\d.]+ KiB in \d+:\d\d "
        r"\([\d.]+ (KiB|MiB)/s\)",
        line,
    ), line
    data = json.loads(report.read_text("utf-8"))
    check_report(data, root)
    zeroed = {"file_bytes": 0, "downloaded_bytes": 0, "seconds": 0, "average_speed": 0}
    assert data["summary"] | zeroed == {
        "complete": 4,
        "failed": 0,
        "skipped": 0,
        "not_finished": 0,
        "chapter_retries": 0,
        "request_retries": 0,
        "success_rate": 1.0,
        "file_bytes": 0,
        "downloaded_bytes": 0,
        "seconds": 0,
        "average_speed": 0,
        "interrupted": False,
        "stopped_by": None,
    }
    assert [c["status"] for c in data["chapters"]] == ["complete"] * 4
    assert all(c["attempts"] == 1 and c["failure_kinds"] == [] for c in data["chapters"])


def check_report(data: dict[str, object], root: Path) -> None:
    """The --report JSON of SPEC §6: a summary and, per chapter, how it went."""
    assert data["tool_version"] == __version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(data["generated_at"]))
    book = data["book"]
    assert isinstance(book, dict)
    assert book["title"] == "The Sample Book"
    assert book["author"] == "Ada Quill"
    assert book["folder"] == str(root / "Ada Quill" / "The Sample Book")
    summary = data["summary"]
    assert isinstance(summary, dict)
    keys = ("complete", "failed", "skipped", "not_finished", "chapter_retries", "request_retries")
    for key in (*keys, "file_bytes", "downloaded_bytes"):
        assert isinstance(summary[key], int), key
        assert summary[key] >= 0, key
    for key in ("success_rate", "seconds", "average_speed"):
        assert isinstance(summary[key], int | float), key
        assert summary[key] >= 0, key
    chapters = data["chapters"]
    assert isinstance(chapters, list)
    counted = dict.fromkeys(("complete", "failed", "skipped", "pending"), 0)
    for chapter in chapters:
        assert set(chapter) >= {
            "index",
            "title",
            "file",
            "status",
            "attempts",
            "failure_kinds",
            "error",
            "file_bytes",
            "downloaded_bytes",
            "chapter_retries",
            "request_retries",
            "seconds",
            "average_speed",
        }
        counted[chapter["status"]] += 1
        if chapter["status"] == "complete":
            assert (Path(str(book["folder"])) / chapter["file"]).is_file()
            file = Path(str(book["folder"])) / chapter["file"]
            assert chapter["file_bytes"] == file.stat().st_size
            assert chapter["downloaded_bytes"] > 0
            assert chapter["seconds"] > 0
            assert chapter["attempts"] >= 1
            assert chapter["average_speed"] == pytest.approx(
                chapter["downloaded_bytes"] / chapter["seconds"], rel=0.01
            )
        if chapter["status"] == "failed":
            assert chapter["error"]["kind"] == chapter["failure_kinds"][-1]
            assert chapter["error"]["message"]
        else:
            assert chapter["error"] is None
    assert (summary["complete"], summary["failed"], summary["skipped"]) == (
        counted["complete"],
        counted["failed"],
        counted["skipped"],
    )
    assert summary["not_finished"] == counted["pending"]
    assert summary["downloaded_bytes"] == sum(int(c["downloaded_bytes"]) for c in chapters)
    assert summary["file_bytes"] == sum(int(c["file_bytes"]) for c in chapters)


def test_report_and_quiet_output_of_a_failed_chapter(standin_cache: Path, tmp_path: Path) -> None:
    faults = Faults(missing_tracks=frozenset({("the-sample-book", 1)}))
    report = tmp_path / "run.json"
    root = tmp_path / "lib"
    with StandinSite(faults=faults, cache_dir=standin_cache) as broken:
        result = run_cli(
            [
                "the-sample-book",
                "-q",
                "--report",
                report,
                "--format",
                "m4a",
                *fast_options(broken, root),
            ]
        )
    assert result.returncode == 1
    (error,) = result.stderr.splitlines()
    assert error.startswith("error: chapter 2 failed [not_found]")
    summary, resume = result.stdout.splitlines()
    assert summary.startswith("The Sample Book: 3 complete, 1 failed, 0 skipped")
    assert resume.startswith("to resume: tokysnatcher ")
    assert resume.endswith(" --resume")
    data = json.loads(report.read_text("utf-8"))
    check_report(data, root)
    failed = data["chapters"][1]
    assert failed["status"] == "failed"
    assert failed["failure_kinds"] == ["not_found"]
    assert failed["attempts"] == 1  # permanent: never retried
    assert "404" in failed["error"]["message"]
    assert data["summary"]["success_rate"] == pytest.approx(0.75)


def test_piped_run_is_plain_lines_for_chosen_chapters(site: StandinSite, tmp_path: Path) -> None:
    result = run_cli(["the-sample-book", "--chapters", "2-3", *fast_options(site, tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    folder = tmp_path / "Ada Quill" / "The Sample Book"
    assert sorted(p.name for p in folder.glob("*.mp3")) == [
        "02 - The Long Road.mp3",
        "03 - A Quiet Harbour.mp3",
    ]
    events = result.stderr.splitlines()
    assert f"The Sample Book by Ada Quill: 2 chapters -> {folder}" in events
    for n, title in ((2, "The Long Road"), (3, "A Quiet Harbour")):
        assert f"chapter {n}/4 '{title}': downloading" in events
        assert sum(line.startswith(f"chapter {n}/4 '{title}': done (") for line in events) == 1
    assert result.stdout.splitlines()[0].startswith("The Sample Book - 2 complete, 0 failed")


def test_verbose_adds_events_and_debug_adds_tracebacks(site: StandinSite, tmp_path: Path) -> None:
    base = ["no-such-book", *fast_options(site, tmp_path)]
    normal = run_cli(base)
    debug = run_cli([*base, "-vv"])
    assert normal.returncode == debug.returncode == 2
    assert "Traceback" not in normal.stderr
    assert len(normal.stderr.splitlines()) == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == normal.stderr.splitlines()[0]

    verbose = run_cli(["the-sample-book", "--chapters", "1", "-v", *fast_options(site, tmp_path)])
    assert verbose.returncode == 0
    assert "chapter 1/4 'Prologue': converting" in verbose.stderr.splitlines()


def test_search_when_piped_is_a_numbered_list(site: StandinSite) -> None:
    result = run_cli(["-s", "book", "--base-url", site.base_url])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"  1\. .+ - .+  http://127\.0\.0\.1:\d+/post/\S+", lines[0]), lines[0]
    assert re.fullmatch(r"results 1-\d+ of \d+", lines[-1])
    assert any("The Sample Book - Ada Quill" in line for line in lines)
    assert result.stderr == ""


def test_config_file_profile_and_environment(site: StandinSite, tmp_path: Path) -> None:
    """Precedence, seen through a dry run: command line > env > profile > file > built-in."""
    config = tmp_path / "config.toml"
    config.write_text(
        'format = "mp3"\nchapters = "1-4"\nspeed-limit = "2M"\n'
        '[profiles.short]\nchapters = "3-4"\nformat = "m4a"\n',
        "utf-8",
    )
    root = tmp_path / "lib"

    def planned(*args: str, **env: str) -> list[str]:
        result = run_cli(
            ["the-sample-book", "--dry-run", "-d", root, "--base-url", site.base_url, *args],
            env=cli_env(TOKYSNATCHER_CONFIG=str(config), **env),
        )
        assert result.returncode == 0, result.stderr
        return re.findall(r"\b0\d - [\w ]+\.\w+", result.stdout)

    everything = ["01 - Prologue", "02 - The Long Road", "03 - A Quiet Harbour", "04 - Epilogue"]
    assert planned() == [f"{name}.mp3" for name in everything]  # the file
    short = ["03 - A Quiet Harbour", "04 - Epilogue"]
    assert planned("--profile", "short") == [f"{name}.m4a" for name in short]
    assert planned(TOKYSNATCHER_PROFILE="short") == [f"{name}.m4a" for name in short]
    assert planned("--profile", "short", TOKYSNATCHER_FORMAT="mp3") == [
        f"{name}.mp3" for name in short
    ]  # the environment beats the profile
    assert planned("--profile", "short", "--chapters", "4", TOKYSNATCHER_FORMAT="mp3") == [
        "04 - Epilogue.mp3"
    ]  # the command line beats everything
    assert not root.exists()


def test_bad_config_file_names_file_and_key(site: StandinSite, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('jobs = 3\n[profiles.fast]\nconnections = "lots"\n', "utf-8")
    result = run_cli(
        ["the-sample-book", "--profile", "fast", *fast_options(site, tmp_path / "lib")],
        env=cli_env(TOKYSNATCHER_CONFIG=str(config)),
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {config} [profiles.fast]: bad value for 'connections'")
    assert not (tmp_path / "lib").exists()
