"""Old habits of TokySnatcher 0.5 keep working: ``-u/--url`` and ``~/Music/Audiobooks``."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import cli_env, run_cli
from tokysnatcher.cli import main
from tokysnatcher.config.settings import default_library_root
from tokysnatcher.standin import StandinSite

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("option", ["-u", "--url"])
def test_the_book_given_with_url_goes_where_the_old_tool_put_it(
    option: str, site: StandinSite, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Path.home(): HOME on POSIX, USERPROFILE on Windows.
    env = cli_env(HOME=str(home), USERPROFILE=str(home))
    result = run_cli([option, "the-sample-book", "--base-url", site.base_url, "--dry-run"], env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    folder = home / "Music" / "Audiobooks" / "Ada Quill" / "The Sample Book"
    assert str(folder) in result.stdout + result.stderr
    assert not (home / "Music").exists(), "a dry run writes nothing"


def test_the_default_library_root_is_music_audiobooks_in_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    assert default_library_root() == tmp_path / "Music" / "Audiobooks"


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("TOKYSNATCHER_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("NO_COLOR", "1")
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("in_process")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["some-book", "-u", "other-book"], "URL and --url cannot be used together"),
        (["-u", "some-book", "-s", "sherlock"], "URL and --search cannot be used together"),
        (["-u"], "--url"),
    ],
)
def test_a_book_given_twice_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*args, "-d", str(tmp_path / "lib")])
    captured = capsys.readouterr()
    assert done.value.code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert message in captured.err
    assert not (tmp_path / "lib").exists()
