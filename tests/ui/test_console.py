"""Windows: a closed console window ends the run as Ctrl-C does (``ui/console.py``).

Windows' console events cannot be raised here; the handler is called directly, and the
registration with a stand-in for ``ctypes`` (the platform's behaviour, injected).
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable

import pytest

from tokysnatcher.ui import console


@pytest.mark.parametrize(
    "event",
    [console.CTRL_CLOSE_EVENT, console.CTRL_LOGOFF_EVENT, console.CTRL_SHUTDOWN_EVENT],
)
def test_a_closing_console_interrupts_the_run_and_waits_for_its_cleanup(event: int) -> None:
    interrupted: list[float] = []
    done = threading.Event()
    began = time.monotonic()
    threading.Timer(0.3, done.set).start()  # the run has saved its manifest
    handled = console.on_control_event(
        event, interrupt=lambda: interrupted.append(time.monotonic()), done=done, grace=10
    )
    assert handled
    assert len(interrupted) == 1
    assert interrupted[0] - began < 0.2, "interrupted at once"
    assert 0.25 < time.monotonic() - began < 5, "held open until the cleanup, not longer"


def test_the_wait_for_the_cleanup_is_bounded() -> None:
    began = time.monotonic()
    assert console.on_control_event(
        console.CTRL_CLOSE_EVENT, interrupt=lambda: None, done=threading.Event(), grace=0.2
    )
    assert time.monotonic() - began < 2


@pytest.mark.parametrize("event", [0, 1], ids=["ctrl-c", "ctrl-break"])
def test_ctrl_c_and_ctrl_break_are_left_to_the_c_runtime(event: int) -> None:
    interrupted: list[int] = []
    assert not console.on_control_event(event, interrupt=lambda: interrupted.append(1))
    assert interrupted == []


class FakeKernel32:
    def __init__(self) -> None:
        self.calls: list[tuple[object, bool]] = []

    def SetConsoleCtrlHandler(self, handler: object, add: bool) -> int:
        self.calls.append((handler, add))
        return 1


def test_the_handler_is_registered_once_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel32 = FakeKernel32()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", type("WinDLL", (), {"kernel32": kernel32}), raising=False)

    def prototype(*types: object) -> Callable[[Callable[[int], bool]], Callable[[int], bool]]:
        return lambda function: function

    monkeypatch.setattr(ctypes, "WINFUNCTYPE", prototype, raising=False)
    monkeypatch.setattr(console, "_installed", [])
    console.catch_console_close()
    console.catch_console_close()
    assert len(kernel32.calls) == 1
    handler, add = kernel32.calls[0]
    assert add is True
    assert callable(handler)


def test_nothing_is_registered_off_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(console, "_installed", [])
    console.catch_console_close()
    assert console._installed == []
