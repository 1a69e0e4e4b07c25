"""The persistent queue end to end: priorities, pause/resume/remove, one run at a time, and a
``kill -9`` that loses nothing (issue 14 item 2).

Each test has its own database (TOKYSNATCHER_DATA_DIR) and a stand-in site of five small books.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from book_support import MANIFEST, assert_manifest_matches_files
from helpers import cli_env, main_in_process, run_cli
from tokysnatcher.standin import BookSpec, Faults, StandinSite, make_book
from tokysnatcher.standin.librivox.catalog import SAMPLE_ID
from tokysnatcher.standin.librivox.server import LibrivoxSite

pytestmark = pytest.mark.integration

BOOKS = [f"queue-book-{n}" for n in range(1, 6)]
CHAPTERS = 2


def catalog() -> dict[str, BookSpec]:
    return {
        slug: make_book(
            slug,
            title=f"Queue Book {n}",
            author="Quinn Queue",
            chapters=CHAPTERS,
            chapter_seconds=3.0,
            segment_seconds=1.0,
        )
        for n, slug in enumerate(BOOKS, start=1)
    }


@pytest.fixture(scope="module")
def queue_site(standin_cache: Path) -> Iterator[StandinSite]:
    with StandinSite(catalog=catalog(), cache_dir=standin_cache) as running:
        yield running


@pytest.fixture
def slow_queue_site(standin_cache: Path) -> Iterator[StandinSite]:
    """Each response waits a little, so a queue run can be caught in the middle of a book."""
    with StandinSite(
        catalog=catalog(), faults=Faults(latency=0.12), cache_dir=standin_cache
    ) as running:
        yield running


class Cli:
    """The command with one database and one library, as a user in one account has.

    Quick commands run in this process through ``cli.main`` (a child process each would cost a
    second or more); ``--queue-run`` runs as the real command in a child process.
    """

    def __init__(
        self,
        site: StandinSite,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        data = str(tmp_path / "data")
        self.env = cli_env(TOKYSNATCHER_DATA_DIR=data)
        for name in list(os.environ):
            if name.startswith("TOKYSNATCHER_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("TOKYSNATCHER_DATA_DIR", data)
        monkeypatch.setenv("TOKYSNATCHER_CONFIG", str(tmp_path / "absent.toml"))
        monkeypatch.setenv("NO_COLOR", "1")
        self.capsys = capsys
        self.root = tmp_path / "library"
        self.site_options = ["--base-url", site.base_url, "--retry-delay", "0.2"]
        self.options = [*self.site_options, "-d", str(self.root)]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return main_in_process(args, self.capsys)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli([*args], env=self.env)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tokysnatcher", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def queue(self) -> list[dict[str, object]]:
        listed = self("--queue-list", "--json")
        assert listed.returncode == 0, listed.stderr
        entries: list[dict[str, object]] = json.loads(listed.stdout)
        return entries

    def folder(self, slug: str) -> Path:
        return self.root / "Quinn Queue" / f"Queue Book {slug.rsplit('-', 1)[1]}"


@pytest.fixture
def make_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[StandinSite], Cli]:
    return lambda site: Cli(site, tmp_path, monkeypatch, capsys)


def taken(stderr: str) -> list[str]:
    """The books a --queue-run started, in order (its "queue: #ID ref ..." lines)."""
    return re.findall(r"^queue: #\d+ (\S+) ", stderr, re.M)


def test_five_books_run_in_priority_order_with_pause_resume_remove(
    queue_site: StandinSite, make_cli: Callable[[StandinSite], Cli]
) -> None:
    cli = make_cli(queue_site)
    for slug, priority in zip(BOOKS, ("0", "5", "0", "10", "5"), strict=True):
        added = cli("--queue-add", slug, *cli.options, "--priority", priority)
        assert added.returncode == 0, added.stderr
        assert re.fullmatch(
            rf"queued #\d+ {slug} \(mp3, priority {priority}\) -> .+\n", added.stdout
        )
    extra = cli("--queue-add", BOOKS[0], *cli.options, "--format", "m4a", "--chapters", "1")
    assert extra.returncode == 0, extra.stderr
    ids = {entry["book_id"]: entry["id"] for entry in cli.queue() if entry["format"] == "mp3"}
    extra_id = next(entry["id"] for entry in cli.queue() if entry["format"] == "m4a")
    assert [e["chapters"] for e in cli.queue() if e["id"] == extra_id] == ["1"]

    # Book 3 waits (paused), book 1 jumps ahead, the extra entry goes.
    assert cli("--queue-pause", str(ids[BOOKS[2]])).returncode == 0
    assert cli("--queue-priority", str(ids[BOOKS[0]]), "20").returncode == 0
    assert cli("--queue-remove", str(extra_id)).returncode == 0
    listed = cli.queue()
    assert [(e["book_id"], e["state"]) for e in listed] == [
        (BOOKS[0], "waiting"),
        (BOOKS[3], "waiting"),
        (BOOKS[1], "waiting"),
        (BOOKS[4], "waiting"),
        (BOOKS[2], "paused"),
    ]
    table = cli("--queue-list")
    assert "5 in the queue: 4 waiting, 1 paused" in table.stdout

    run = cli.run("--queue-run", *cli.site_options)
    assert run.returncode == 0, run.stderr + run.stdout
    assert taken(run.stderr) == [BOOKS[0], BOOKS[3], BOOKS[1], BOOKS[4]]
    assert "queue run done: 4 complete, 0 failed, 1 paused left in the queue" in run.stdout
    assert [(e["book_id"], e["state"]) for e in cli.queue()] == [(BOOKS[2], "paused")]

    assert cli("--queue-resume", str(ids[BOOKS[2]])).returncode == 0
    run = cli.run("--queue-run", *cli.site_options)
    assert run.returncode == 0, run.stderr + run.stdout
    assert taken(run.stderr) == [BOOKS[2]]
    assert cli.queue() == []
    for slug in BOOKS:
        assert len(list(cli.folder(slug).glob("0? - *.mp3"))) == CHAPTERS, slug
        assert_manifest_matches_files(cli.folder(slug))


def test_bad_queue_commands_are_one_line_exit_2(
    queue_site: StandinSite, make_cli: Callable[[StandinSite], Cli]
) -> None:
    cli = make_cli(queue_site)
    for args, message in (
        (["--queue-remove", "7"], "no queue entry #7"),
        (["--queue-pause", "x"], "--queue-pause: 'x' is not a queue entry's id"),
        (["--queue-priority", "1", "high"], "--queue-priority: 'high' is not a whole number"),
        (["--queue-add"], "--queue-add needs the URL of at least one book"),
        (["--queue-add", "not a slug!", *cli.options], "not a tokybook book URL or slug"),
        (["--priority", "3", BOOKS[0]], "--priority goes with --queue-add"),
        (["--queue-list", "--queue-run"], "--queue-list and --queue-run cannot be used together"),
        (["--json", BOOKS[0]], "--json goes with --doctor, --stats, --queue-list or"),
        (["--queue-run", "--dry-run"], "--queue-run and --dry-run cannot be used together"),
        (["--queue-add", "--batch-file", "-"], "--queue-add takes the books' URLs as arguments"),
        ([BOOKS[0], "--source", "librivox"], "--source picks the site --search asks"),
    ):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert cli.queue() == []  # the bad --queue-add added nothing


def chapter_requests(site: StandinSite, slug: str) -> dict[int, int]:
    """Requests so far for each chapter's playlist and segments (1-based chapter -> count)."""
    paths = site.stats.paths
    counts = {}
    for index in range(CHAPTERS):
        prefix = urlsplit(site.playlist_url(slug, index)).path.rsplit("/", 1)[0] + "/"
        counts[index + 1] = sum(n for path, n in paths.items() if path.startswith(prefix))
    return counts


def complete_chapters(folder: Path) -> list[int]:
    if not (folder / MANIFEST).is_file():
        return []
    chapters = json.loads((folder / MANIFEST).read_text("utf-8"))["chapters"]
    return [entry["index"] for entry in chapters.values() if entry["status"] == "complete"]


def test_kill_9_during_a_queue_run_loses_nothing(
    slow_queue_site: StandinSite, make_cli: Callable[[StandinSite], Cli]
) -> None:
    site = slow_queue_site
    cli = make_cli(site)
    slugs = BOOKS[:3]
    added = cli("--queue-add", *slugs, *cli.options, "--connections", "1")
    assert added.returncode == 0, added.stderr
    options = [*cli.site_options, "--connections", "1", "-j", "1"]

    first = cli.start("--queue-run", *options)

    def wait_for(slug: str, chapters: list[int]) -> None:
        deadline = time.monotonic() + 60
        while complete_chapters(cli.folder(slug)) != chapters:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, complete_chapters(cli.folder(slug))
            time.sleep(0.005)

    try:
        wait_for(slugs[0], [1])
        # Meanwhile a second --queue-run refuses in one line.
        second = cli("--queue-run", *options)
        assert second.returncode == 2, second.stderr + second.stdout
        assert second.stderr.splitlines() == [
            "error: another tokysnatcher --queue-run is working through the queue - Let it "
            "finish, or stop it (Ctrl-C) and run --queue-run again."
        ]
        # The second book under way, its first chapter done: that is when the power goes.
        wait_for(slugs[1], [1])
    finally:
        first.kill()
        first.communicate(timeout=30)
    assert first.returncode == -9
    done_before = {slug: complete_chapters(cli.folder(slug)) for slug in slugs}
    assert done_before == {slugs[0]: [1, 2], slugs[1]: [1], slugs[2]: []}
    requests_before = {slug: chapter_requests(site, slug) for slug in slugs}
    states = {e["book_id"]: e["run_state"] for e in cli.queue()}
    assert states == {slugs[1]: "running", slugs[2]: "waiting"}  # the killed run's word

    late = cli("--queue-add", BOOKS[3], *cli.options)  # queued between the two runs
    assert late.returncode == 0, late.stderr
    again = cli.run("--queue-run", *options)
    assert again.returncode == 0, again.stderr + again.stdout
    # The book in progress first, from its manifest: its complete chapter is skipped.
    assert taken(again.stderr) == [slugs[1], slugs[2], BOOKS[3]]
    assert "1 of 2 chapters already complete" in again.stderr
    assert cli.queue() == []
    requests_after = {slug: chapter_requests(site, slug) for slug in slugs}
    for slug in slugs:
        for chapter in done_before[slug]:
            # No chapter complete before the kill was downloaded again.
            assert requests_after[slug][chapter] == requests_before[slug][chapter], (slug, chapter)
        assert complete_chapters(cli.folder(slug)) == [1, 2]
        assert_manifest_matches_files(cli.folder(slug))


def test_ctrl_c_stops_the_queue_run_with_130_and_the_book_waits_again(
    slow_queue_site: StandinSite, make_cli: Callable[[StandinSite], Cli]
) -> None:
    cli = make_cli(slow_queue_site)
    assert cli("--queue-add", *BOOKS[:2], *cli.options).returncode == 0
    run = cli.start("--queue-run", *cli.site_options, "--connections", "1", "-j", "1")
    deadline = time.monotonic() + 60
    while complete_chapters(cli.folder(BOOKS[0])) != [1]:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=30)
    assert "interrupted" in out
    assert run.returncode == 130, err
    assert err.splitlines()[-1] == (
        "error: the queue run was interrupted at #1 - Run tokysnatcher --queue-run again to "
        "continue; the book under way resumes from its manifest."
    )
    assert [(e["book_id"], e["state"]) for e in cli.queue()] == [
        (BOOKS[0], "waiting"),
        (BOOKS[1], "waiting"),
    ]


def test_queue_add_takes_books_of_every_source(
    queue_site: StandinSite,
    librivox_site: LibrivoxSite,
    make_cli: Callable[[StandinSite], Cli],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli = make_cli(queue_site)
    for name, value in librivox_site.env().items():
        monkeypatch.setenv(name, value)
    added = cli("--queue-add", BOOKS[0], f"librivox:{SAMPLE_ID}", *cli.options)
    assert added.returncode == 0, added.stderr
    assert [(e["source"], e["book_id"]) for e in cli.queue()] == [
        ("tokybook", BOOKS[0]),
        ("librivox", str(SAMPLE_ID)),
    ]
