"""Shell completion: ``--install-completion`` writes a script that calls back the command.

The script (what ``--show-completion`` prints) sets ``_TOKYSNATCHER_COMPLETE``; ``cli.main`` then
answers the shell instead of running. Checked in-process for the four shells Typer supports.
"""

from __future__ import annotations

import pytest

from tokysnatcher.cli import COMPLETE_VAR, main


def run_main(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main([])
    return int(done.value.code or 0), capsys.readouterr().out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "powershell"])
def test_the_completion_script_of_each_shell_calls_the_command_back(
    shell: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(COMPLETE_VAR, f"source_{shell}")
    code, script = run_main(capsys)
    assert code == 0
    assert "tokysnatcher" in script
    assert COMPLETE_VAR in script


def test_the_shell_is_answered_with_the_options_that_match(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(COMPLETE_VAR, "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "tokysnatcher --ver")
    monkeypatch.setenv("COMP_CWORD", "1")
    code, answer = run_main(capsys)
    assert code == 0
    assert answer.split() == ["--verify-folder", "--verbose", "--version"]
