"""``--help``: grouped panels, a default for every option, examples; checked against a snapshot.

The snapshot is the help at 100 columns without colour. After a deliberate change to the help,
refresh it with ``UPDATE_SNAPSHOTS=1 python -m pytest tests/test_help.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli_env

SNAPSHOT = Path(__file__).parent / "snapshots" / "help.txt"
PANELS = ("Download", "Retry & network", "Library", "Queue and history", "Output")


@pytest.fixture(scope="module")
def help_text() -> str:
    env = cli_env(COLUMNS="100", NO_COLOR="1", TERM="dumb")
    result = subprocess.run(
        [sys.executable, "-m", "tokysnatcher", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Trailing padding is Rich's, not content: keep the snapshot editor-proof.
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()).strip("\n") + "\n"


def test_help_matches_the_snapshot(help_text: str) -> None:
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(help_text, "utf-8")
    assert SNAPSHOT.is_file(), "no snapshot yet: run with UPDATE_SNAPSHOTS=1"
    assert help_text == SNAPSHOT.read_text("utf-8"), (
        "the help changed; if that was meant, run UPDATE_SNAPSHOTS=1 python -m pytest "
        "tests/test_help.py and review the snapshot diff"
    )


def panel(help_text: str, title: str) -> str:
    match = re.search(rf"╭─ {re.escape(title)} ─+╮\n(.*?)╰─+╯", help_text, re.S)
    assert match, f"no {title!r} panel"
    return match.group(1)


def test_options_are_grouped_in_panels(help_text: str) -> None:
    expected = {
        "Download": ["--directory", "--format", "--chapters", "--resume", "--dry-run"],
        "Retry & network": ["--jobs", "--connections", "--max-retries", "--speed-limit"],
        "Library": ["--search", "--verify-folder", "--list-downloads", "--demo"],
        "Queue and history": [
            "--queue-add",
            "--priority",
            "--queue-list",
            "--queue-run",
            "--queue-remove",
            "--queue-priority",
            "--queue-pause",
            "--queue-resume",
            "--download-archive",
            "--stats",
            "--rebuild-database",
        ],
        "Output": ["--report", "--json", "--quiet", "--verbose", "--profile", "--config"],
    }
    for title, options in expected.items():
        body = panel(help_text, title)
        for option in options:
            assert re.search(rf"│ {option}\b", body), (title, option)


@pytest.mark.parametrize(
    ("option", "default"),
    [
        ("--directory", "~/Music/Audiobooks"),
        ("--format", "mp3"),
        ("--chapters", "all"),
        ("--jobs", "2"),
        ("--connections", "auto"),
        ("--max-wait", "600"),
        ("--max-retries", "3"),
        ("--retry-delay", "2"),
        ("--stall-timeout", "30"),
        ("--speed-limit", "none"),
        ("--base-url", "https://tokybook.com"),
        ("--report", "none"),
        ("--priority", "0"),
        ("--download-archive", "the database"),
    ],
)
def test_every_setting_shows_its_default(help_text: str, option: str, default: str) -> None:
    # A row runs until the next option; Rich may wrap "[default: ...]" over two lines.
    body = "".join(panel(help_text, title) for title in PANELS)
    row = re.search(rf"│ {option}\b(.*?)(?=│ --|\Z)", body, re.S)
    assert row, option
    flat = re.sub(r"\s*│\s*", " ", row.group(1))
    assert f"[default: {default}]" in re.sub(r"\s+", " ", flat), flat


def test_epilog_shows_the_common_jobs(help_text: str) -> None:
    examples = help_text.split("Examples", 1)[1]
    for command in (
        "tokysnatcher https://tokybook.com/post/some-book",
        "--format m4b",
        "--resume",
        "--dry-run",
        "--verify-folder",
        "--list-downloads",
        "--chapters 1-3,7 --speed-limit 500K",
        "-q --report run.json",
        "--demo",
        "--queue-add book-one book-two --priority 5",
        "--queue-run",
        "--stats",
    ):
        assert command in examples, command
    assert "config.toml" in examples
