"""Windows: a closed console window ends the run as Ctrl-C does (SPEC §5).

Windows tells a console program that its window is closing (or that the user logs off, or that
the system shuts down) with a control event, and ends the process as soon as the handler
returns, or after 5 seconds. The C runtime reports these events to Python as SIGBREAK, but
Python's own handler only notes the signal and returns at once, so Windows would end the
process before any Python code ran. :func:`catch_console_close` installs a handler of its own:
it interrupts the main thread as Ctrl-C does and holds the process open until
:func:`cleanup_done` (children ended, manifest saved), at most :data:`GRACE` seconds. Ctrl-C and
Ctrl-Break are left to the C runtime (SIGINT, SIGBREAK).
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable

# wincon.h
CTRL_CLOSE_EVENT = 2
CTRL_LOGOFF_EVENT = 5
CTRL_SHUTDOWN_EVENT = 6
_ENDING = frozenset({CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT})

#: Seconds the handler holds a closing console's process open: Windows allows 5.
GRACE = 4.5

_done = threading.Event()
_installed: list[object] = []  # the ctypes callback must outlive the call that registered it


def on_control_event(
    event: int,
    *,
    interrupt: Callable[[], None] = _thread.interrupt_main,
    done: threading.Event = _done,
    grace: float = GRACE,
) -> bool:
    """The console control handler: True when ``event`` was handled here.

    For a closing console (or logoff, or shutdown) it raises KeyboardInterrupt in the main
    thread, as Ctrl-C does, and waits for the cleanup. Other events go on to the next handler.
    """
    if event not in _ENDING:
        return False
    interrupt()
    done.wait(grace)
    return True


def catch_console_close() -> None:
    """Install :func:`on_control_event` for this process's console (Windows only; idempotent)."""
    if sys.platform == "win32" and not _installed:
        import ctypes
        from ctypes import wintypes

        prototype = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)
        handler = prototype(lambda event: on_control_event(event))
        if ctypes.windll.kernel32.SetConsoleCtrlHandler(handler, True):
            _installed.append(handler)


def cleanup_done() -> None:
    """The run has ended its children and saved its manifest: a closing console may go."""
    _done.set()
