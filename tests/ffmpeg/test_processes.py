"""Child processes on each platform: their own group, ended with it (``ffmpeg/processes.py``).

POSIX runs for real; Windows' calls are injected (``sys.platform``, ``os.kill``,
``subprocess.Popen`` and the constants only Windows has).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tokysnatcher.ffmpeg import processes

CREATE_NEW_PROCESS_GROUP = 0x200
CTRL_BREAK_EVENT = 1


class FakeChild:
    """A Popen's face: ``wait`` times out ``stubborn`` times, then the child is gone."""

    def __init__(self, log: list[str], *, stubborn: int = 0) -> None:
        self.pid = 4242
        self.stdin = None
        self.returncode: int | None = None
        self.log = log
        self.stubborn = stubborn

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.log.append("TerminateProcess")
        self.returncode = 1

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and self.stubborn:
            self.stubborn -= 1
            raise subprocess.TimeoutExpired("ffmpeg", timeout or 0)
        self.returncode = 0 if self.returncode is None else self.returncode
        return self.returncode


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Windows as far as processes.py can tell; the calls it makes, in order."""
    log: list[str] = []
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(signal, "CTRL_BREAK_EVENT", CTRL_BREAK_EVENT, raising=False)
    monkeypatch.setattr(
        subprocess, "CREATE_NEW_PROCESS_GROUP", CREATE_NEW_PROCESS_GROUP, raising=False
    )

    def kill(pid: int, sig: int) -> None:
        assert sig == CTRL_BREAK_EVENT, "only Ctrl-Break is sent on Windows"
        log.append(f"ctrl-break to group {pid}")

    monkeypatch.setattr(os, "kill", kill)
    return log


def test_on_windows_a_child_leads_a_new_process_group(
    windows: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def popen(args: list[str], **kwargs: object) -> FakeChild:
        seen.update(kwargs)
        return FakeChild(windows)

    monkeypatch.setattr(subprocess, "Popen", popen)
    registry = processes.ProcessRegistry()
    registry.spawn(["ffmpeg", "-version"])
    assert seen["creationflags"] == CREATE_NEW_PROCESS_GROUP
    assert "start_new_session" not in seen


def test_on_windows_a_child_is_stopped_with_ctrl_break_to_its_group(windows: list[str]) -> None:
    processes.stop_process(FakeChild(windows), grace=1)  # type: ignore[arg-type]
    assert windows == ["ctrl-break to group 4242"]


def test_on_windows_a_child_that_ignores_ctrl_break_is_terminated(windows: list[str]) -> None:
    processes.stop_process(FakeChild(windows, stubborn=1), grace=0.01)  # type: ignore[arg-type]
    assert windows == ["ctrl-break to group 4242", "TerminateProcess"]


def test_on_windows_without_a_shared_console_a_child_is_terminated_at_once(
    windows: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_console(pid: int, sig: int) -> None:
        raise OSError(6, "The handle is invalid")

    monkeypatch.setattr(os, "kill", no_console)
    processes.stop_process(FakeChild(windows), grace=1)  # type: ignore[arg-type]
    assert windows == ["TerminateProcess"]


@pytest.mark.skipif(sys.platform == "win32", reason="Windows: no SIGTERM to a process group")
def test_on_posix_stopping_a_child_ends_its_whole_group() -> None:
    # The child starts a grandchild in its group, then both wait forever.
    script = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(p.pid, flush=True); time.sleep(60)"
    )
    registry = processes.ProcessRegistry()
    child = registry.spawn([sys.executable, "-c", script])
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    began = time.monotonic()
    processes.stop_process(child, grace=5)
    assert child.returncode is not None
    assert time.monotonic() - began < 5
    deadline = time.monotonic() + 5
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived the stop"
        time.sleep(0.05)
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie left for whoever adopted it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
