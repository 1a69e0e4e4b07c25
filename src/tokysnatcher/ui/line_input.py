"""The line a prompt reads: stdin, waited for in short slices so that Ctrl-C is never lost.

Python's ``input()`` (what Rich's prompts call) checks for a pending signal only before it
starts reading, and a read already started is interrupted only by a signal that arrives during
it. A Ctrl-C that lands in between (just as the prompt appears) is noted and then never acted
on: the read waits for a line that does not come, and the command hangs at its prompt. Here
the wait is a ``select`` of at most a tenth of a second at a time, between which Python runs
and raises the ``KeyboardInterrupt`` it noted. The line itself is read only once it is whole
(a terminal in line mode is readable only then), with the terminal's own echo and editing.
"""

from __future__ import annotations

import select
import sys
from typing import TextIO, cast

_SLICE = 0.1  # seconds: a Ctrl-C is acted on within this


class _PromptStdin:
    """``readline()`` of stdin as a prompt's stream (all Rich reads of it); end of input raises
    ``EOFError``."""

    def readline(self) -> str:
        stdin = sys.stdin
        fd = stdin.fileno()
        while not select.select([fd], [], [], _SLICE)[0]:
            pass  # back in Python each slice: a pending Ctrl-C is raised here
        line = stdin.readline()
        if not line:
            raise EOFError  # as input() does: the caller says "no answer (input ended)"
        return line


def prompt_stream() -> TextIO | None:
    """The stream a prompt should read (``Prompt.ask(stream=...)``); None: Rich's default.

    Only a POSIX terminal gets the sliced wait: ``select`` does not take a Windows console,
    and a pipe never races with a person's Ctrl-C.
    """
    if sys.platform == "win32":
        return None
    try:
        if not sys.stdin.isatty():
            return None
        sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return cast(TextIO, _PromptStdin())
