"""Several books in one run: references and ``--batch-file``, failures that do not stop the
rest, Ctrl-C with the command that resumes the rest, and ``--status-file`` read while it runs."""

from __future__ import annotations

import json
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    MP3_EDGE_SAMPLES,
    assert_same_audio,
    cli_env,
    fast_options,
    run_cli,
    start_cli,
)
from tokysnatcher.standin import Faults, StandinSite
from tokysnatcher.standin.librivox.catalog import SAMPLE_ID
from tokysnatcher.standin.librivox.server import LibrivoxSite

pytestmark = pytest.mark.integration


def chapter_files(root: Path, author: str, title: str, ext: str = "mp3") -> list[Path]:
    return sorted((root / author / title).glob(f"*.{ext}"))


def test_a_missing_book_fails_alone_and_the_batch_summary_names_it(
    site: StandinSite, tmp_path: Path
) -> None:
    refs = ["mp3-stream-book", "no-such-book", "direct-file-book"]
    result = run_cli([*refs, "--chapters", "1", *fast_options(site, tmp_path)])
    assert result.returncode == 1, result.stderr + result.stdout
    for author, title, slug in (
        ("Mona Tone", "The MP3 Stream Book", "mp3-stream-book"),
        ("Dee Rect", "Direct File Book", "direct-file-book"),
    ):
        (path,) = chapter_files(tmp_path, author, title)
        assert_same_audio(path, site.source_media(slug, 0), edge_samples=MP3_EDGE_SAMPLES)
    out = result.stdout.splitlines()
    # Each book keeps its own summary, prefixed with the book; the batch summary ends the run.
    assert any(
        line.startswith("[1/3 mp3-stream-book] The MP3 Stream Book - 1 complete") for line in out
    )
    assert any(
        line.startswith("[3/3 direct-file-book] Direct File Book - 1 complete") for line in out
    )
    assert "batch of 3: 2 complete, 1 failed" in result.stdout
    (failed,) = [line for line in out if line.startswith("  failed ")]
    assert "[2/3] 'no-such-book'" in failed
    assert "no book with the slug 'no-such-book'" in failed
    assert "[2/3 no-such-book] error: no book with the slug" in result.stderr
    # Plain progress lines say which book they belong to.
    events = [line for line in result.stderr.splitlines() if "chapter 1/" in line]
    assert events
    assert all(
        line.startswith(("[1/3 mp3-stream-book] ", "[3/3 direct-file-book] ")) for line in events
    )


def test_a_batch_from_standard_input(site: StandinSite, tmp_path: Path) -> None:
    listing = "# books for the trip\n\nmp3-stream-book\n   \n  direct-file-book  \n"
    args = ["--batch-file", "-", "--chapters", "2", "-q", *fast_options(site, tmp_path)]
    result = run_cli(args, stdin=listing)
    assert result.returncode == 0, result.stderr + result.stdout
    assert len(chapter_files(tmp_path, "Mona Tone", "The MP3 Stream Book")) == 1
    assert len(chapter_files(tmp_path, "Dee Rect", "Direct File Book")) == 1
    assert "batch of 2: 2 complete, 0 failed" in result.stdout
    assert result.stderr == ""


def test_a_bad_line_is_named_and_skipped_and_the_rest_runs(
    site: StandinSite, tmp_path: Path
) -> None:
    listing = tmp_path / "books.txt"
    listing.write_text(
        "direct-file-book\n# a comment\nhttps://elsewhere.example/post/x\nmp3-stream-book\n",
        "utf-8",
    )
    status = tmp_path / "status.json"
    root = tmp_path / "lib"
    options = ["--chapters", "3", "--status-file", str(status), *fast_options(site, root)]
    result = run_cli(["--batch-file", str(listing), *options])
    assert result.returncode == 1, result.stderr + result.stdout
    (said,) = [line for line in result.stderr.splitlines() if "line 3" in line]
    assert said.startswith("error: batch file line 3: not a tokybook book URL or slug")
    assert "skipped" in said
    assert len(chapter_files(root, "Dee Rect", "Direct File Book")) == 1
    assert len(chapter_files(root, "Mona Tone", "The MP3 Stream Book")) == 1
    assert "batch of 3: 2 complete, 1 failed" in result.stdout
    assert "(batch file line 3)" in result.stdout
    # The status file's last version holds the outcome of every book.
    final = json.loads(status.read_text("utf-8"))
    assert (final["state"], final["exit_code"]) == ("failed", 1)
    assert [book["state"] for book in final["books"]] == ["complete", "failed", "complete"]
    assert [book["batch_file_line"] for book in final["books"]] == [1, 3, 4]
    assert "not a tokybook book URL" in final["books"][1]["error"]


def test_ctrl_c_in_a_batch_exits_130_naming_the_command_for_the_rest(
    slow_site: StandinSite, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    status = tmp_path / "status.json"
    refs = ["mp3-stream-book", "the-sample-book", "direct-file-book"]
    options = ["--format", "m4a", "--chapters", "1", "--status-file", str(status)]
    args = [*refs, *options, *fast_options(slow_site, root)]
    proc = start_cli(args)
    try:
        # Wait until the second book is under way: the first is done, two are left.
        book = root / "Ada Quill" / "The Sample Book"
        deadline = time.monotonic() + 60
        while not list(book.glob(".tokysnatcher/*/*.ts")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the second book never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "interrupted: batch of 3: 1 complete, 0 failed, 2 not finished" in out
    (line,) = [line for line in out.splitlines() if line.startswith("to resume the rest: ")]
    command = shlex.split(line.removeprefix("to resume the rest: "))
    assert command[1].endswith("/post/the-sample-book")
    assert command[2] == "direct-file-book"
    assert "mp3-stream-book" not in line
    assert "--resume" in command
    assert command[command.index("--chapters") + 1] == "1"
    final = json.loads(status.read_text("utf-8"))
    assert (final["state"], final["exit_code"]) == ("interrupted", 130)
    assert [b["state"] for b in final["books"]] == ["complete", "interrupted", "waiting"]
    # The command it names finishes the rest.
    slow_site.set_faults(Faults())
    again = run_cli(command[1:], env=cli_env())
    assert again.returncode == 0, again.stderr + again.stdout
    assert len(chapter_files(root, "Ada Quill", "The Sample Book", "m4a")) == 1
    assert len(chapter_files(root, "Dee Rect", "Direct File Book", "m4a")) == 1


def _byte_counts(document: dict[str, Any]) -> dict[str, int]:
    """Every ``*_bytes`` figure of a status document, by where it is."""
    counts = {"run": document["downloaded_bytes"]}
    for book in document["books"]:
        counts[f"book {book['number']}"] = book["downloaded_bytes"]
        counts[f"book {book['number']} files"] = book["file_bytes"]
        for chapter in book.get("chapters", []):
            where = f"book {book['number']} chapter {chapter['index']}"
            counts[where] = chapter["downloaded_bytes"]
            counts[where + " file"] = chapter["file_bytes"]
    return counts


def test_the_status_file_is_valid_json_at_every_read_and_its_bytes_never_go_back(
    standin_cache: Path, tmp_path: Path
) -> None:
    faults = Faults(bandwidth=40_000, latency=0.05)
    with StandinSite(faults=faults, cache_dir=standin_cache) as site:
        status = tmp_path / "status.json"
        args = ["mp3-stream-book", "direct-file-book", "--status-file", str(status), "-q"]
        proc = start_cli([*args, *fast_options(site, tmp_path / "lib")])
        documents: list[dict[str, Any]] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                if status.exists():
                    documents.append(json.loads(status.read_text("utf-8")))  # never partial
                time.sleep(0.02)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            out, err = proc.communicate(timeout=90)
        finally:
            done.set()
            reader.join()
    assert proc.returncode == 0, out + err
    documents.append(json.loads(status.read_text("utf-8")))
    assert len({d["updated_at"] + str(d["downloaded_bytes"]) for d in documents}) >= 3
    running = [d for d in documents if d["state"] == "running"]
    assert running
    assert running[0]["books_total"] == 2
    assert any(d["current_book"] == 2 for d in running)
    seen: dict[str, int] = {}
    for document in documents:
        for where, count in _byte_counts(document).items():
            assert count >= seen.get(where, 0), (where, count, seen.get(where))
            seen[where] = count
    final = documents[-1]
    assert (final["state"], final["exit_code"], final["eta_seconds"]) == ("complete", 0, None)
    assert final["books_complete"] == 2
    assert final["downloaded_bytes"] > 0
    assert all(c["state"] == "done" for b in final["books"] for c in b["chapters"])


def test_a_status_file_that_cannot_be_written_stops_before_anything_downloads(
    site: StandinSite, tmp_path: Path
) -> None:
    before = sum(site.stats.requests.values())
    where = tmp_path / "no-such-folder" / "status.json"
    result = run_cli(
        ["mp3-stream-book", "--status-file", str(where), *fast_options(site, tmp_path)]
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: --status-file: ")
    assert "does not exist" in line
    assert sum(site.stats.requests.values()) == before
    assert not (tmp_path / "Mona Tone").exists()


def test_report_is_refused_for_a_batch(site: StandinSite, tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    args = ["mp3-stream-book", "direct-file-book", "--report", str(report)]
    result = run_cli([*args, *fast_options(site, tmp_path)])
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "--report writes one book's report" in line
    assert not report.exists()


def test_a_batch_mixes_sources(
    site: StandinSite, librivox_site: LibrivoxSite, tmp_path: Path
) -> None:
    env = cli_env(**librivox_site.env())
    refs = ["the-sample-book", f"librivox:{SAMPLE_ID}"]
    result = run_cli([*refs, "--chapters", "1", *fast_options(site, tmp_path)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.parent.name for p in tmp_path.rglob(".tokysnatcher.json")) == [
        "The Sample Book",
        "The Sample Sections",
    ]
