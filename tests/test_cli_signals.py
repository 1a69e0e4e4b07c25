"""Which signals end a run as Ctrl-C does, on each platform (``cli._catch_stop_signals``).

The end-to-end runs (SIGINT, SIGTERM, a hangup) are in tests/integration/test_interrupt.py;
Windows' SIGBREAK cannot be raised here, so its handler is installed and called directly.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

import pytest

from tokysnatcher import cli
from tokysnatcher.ui import console

SIGBREAK = 21  # Windows' number

Handler = Callable[[int, FrameType | None], object]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> dict[int, Handler]:
    """The handlers _catch_stop_signals installs, kept here instead of in the process."""
    handlers: dict[int, Handler] = {}

    def install(signum: int, handler: Handler) -> None:
        handlers[signum] = handler

    monkeypatch.setattr(signal, "signal", install)
    return handlers


def test_on_windows_ctrl_break_and_a_closed_console_end_the_run_as_ctrl_c(
    installed: dict[int, Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(signal, "SIGBREAK", SIGBREAK, raising=False)
    caught: list[str] = []
    monkeypatch.setattr(console, "catch_console_close", lambda: caught.append("console close"))
    cli._catch_stop_signals()
    assert set(installed) == {signal.SIGTERM, SIGBREAK}
    assert caught == ["console close"]
    for signum in installed:
        with pytest.raises(KeyboardInterrupt):
            installed[signum](signum, None)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows: there is no SIGHUP")
def test_on_posix_a_hangup_and_sigterm_end_the_run_as_ctrl_c(
    installed: dict[int, Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signal, "getsignal", lambda signum: signal.SIG_DFL)
    monkeypatch.setattr(console, "catch_console_close", lambda: pytest.fail("not on POSIX"))
    cli._catch_stop_signals()
    assert set(installed) == {signal.SIGTERM, signal.SIGHUP}


@pytest.mark.skipif(sys.platform == "win32", reason="Windows: there is no SIGHUP")
def test_under_nohup_a_hangup_stays_ignored(
    installed: dict[int, Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signal, "getsignal", lambda signum: signal.SIG_IGN)
    cli._catch_stop_signals()
    assert set(installed) == {signal.SIGTERM}
