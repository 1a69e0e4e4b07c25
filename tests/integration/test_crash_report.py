"""An unexpected error (a bug) writes a crash report and names it in its one line (issue 15).

The bug is injected: the scheduler's playlist step raises an error whose text carries the
request headers, stream token included. The command runs in-process through ``cli.main``.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import fast_options
from tokysnatcher.cli import main
from tokysnatcher.download.scheduler import Scheduler
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A clean environment whose data folder is ``tmp_path / "data"``."""
    for name in list(os.environ):
        if name.startswith("TOKYSNATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TOKYSNATCHER_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("TOKYSNATCHER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NO_COLOR", "1")
    previous = signal.getsignal(signal.SIGTERM)
    yield tmp_path / "data"
    signal.signal(signal.SIGTERM, previous)


def test_a_bug_writes_a_crash_report_without_the_stream_token(
    site: StandinSite,
    in_process: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    leaked: list[str] = []

    def broken(self: Scheduler, job: object, event: object) -> None:
        headers = self.work.source.headers(self.jobs[1].track.url).headers
        leaked.append(headers["X-Stream-Token"])
        raise RuntimeError(f"injected bug with headers {headers}")

    monkeypatch.setattr(Scheduler, "_on_playlist", broken)
    library = tmp_path / "library"
    with pytest.raises(SystemExit) as done:
        main(["the-sample-book", *fast_options(site, library), "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert done.value.code == 1
    (token,) = set(leaked)
    assert token.startswith("st-")

    lines = err.strip().splitlines()
    line = next(line for line in lines if line.startswith("error: unexpected RuntimeError"))
    (report,) = (in_process / "crash-reports").glob("crash-*.txt")
    assert str(report) in line, line
    assert token not in err
    assert "Traceback" not in err

    text = report.read_text("utf-8")
    assert token not in text
    assert "X-Stream-Token': '<removed>'" in text
    for section in ("versions", "platform", "command", "settings", "traceback"):
        assert re.search(rf"^{section}$", text, re.MULTILINE), section
    assert "RuntimeError: injected bug" in text
    assert f"tokysnatcher {__import__('tokysnatcher').__version__}" in text
    assert f"base_url = {site.base_url}" in text
    assert f"tokysnatcher the-sample-book --base-url {site.base_url}" in text
    home = str(Path.home())
    assert home == "/" or home not in text, "the home folder names the user"
    for name in ("PATH", "HOSTNAME", "USER"):
        assert f"{name}=" not in text  # no environment dump


def test_without_a_writable_data_folder_the_line_says_why(
    in_process: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    in_process.write_text("a file where the data folder should be")

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("injected bug")

    monkeypatch.setattr("tokysnatcher.actions.library.list_library", broken)
    with pytest.raises(SystemExit) as done:
        main(["--list-downloads", "-d", str(tmp_path)])
    err = capsys.readouterr().err
    assert done.value.code == 1
    assert "unexpected RuntimeError: injected bug" in err
    assert "no crash report could be written" in err
    assert str(in_process) in err
