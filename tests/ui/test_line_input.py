"""The prompt's line: read from a real terminal, interrupted at once by Ctrl-C, EOF kept."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import pytest

from tokysnatcher.ui.line_input import prompt_stream

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX terminal")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """stdin is the far end of a pseudo-terminal; yields the near end to type into."""
    master, slave = os.openpty()
    stdin = os.fdopen(slave, "r", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    yield master
    stdin.close()
    os.close(master)


def stream() -> TextIO:
    found = prompt_stream()
    assert found is not None, "a terminal gets the sliced wait"
    return found


def test_a_typed_line_is_read(terminal: int) -> None:
    os.write(terminal, b"d\n")
    assert stream().readline() == "d\n"


def test_ctrl_c_during_the_wait_interrupts_it(terminal: int) -> None:
    # A signal that arrives while nothing is typed: the read gives way within its slice.
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        stream().readline()
    assert time.monotonic() - started < 2
    timer.join()


def test_end_of_input_is_eof_error(terminal: int) -> None:
    os.write(terminal, b"\x04")  # Ctrl-D on an empty line: end of input
    with pytest.raises(EOFError):
        stream().readline()


def test_no_terminal_no_sliced_wait(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    read, write = os.pipe()
    os.close(write)
    with os.fdopen(read, "r") as pipe:
        monkeypatch.setattr(sys, "stdin", pipe)
        assert prompt_stream() is None
