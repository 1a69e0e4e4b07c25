"""Keys in the live view: a reader thread that turns keystrokes into :class:`Key` values.

blessed reads the terminal (Linux and macOS through termios, Windows through its console API):
cbreak mode gives a key at a time without echo, and keeps Ctrl-C a signal. The mode is set when
the reader starts and put back when it stops, which every end of a run goes through (finished,
Ctrl-C, ``q``, SIGTERM, SIGHUP); only ``kill -9`` leaves it changed (``stty sane`` mends that).
Nothing is read unless stdin and the view's stream are both terminals.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import blessed
    from blessed.keyboard import Keystroke

# How often the reader looks at its stop flag: the terminal is back in its mode this soon.
_POLL = 0.1
# What a terminal that went away (a hangup, a closed window) raises.
_GONE: tuple[type[Exception], ...] = (OSError, ValueError)
if sys.platform != "win32":  # Windows' console calls raise OSError
    import termios

    _GONE += (termios.error,)


class Key(StrEnum):
    """What a key asks for."""

    PAUSE_RUN = "p"
    UP = "up"
    DOWN = "down"
    PAUSE_CHAPTER = "space"
    MORE_CONNECTIONS = "+"
    FEWER_CONNECTIONS = "-"
    QUIT = "q"


_BY_TEXT = {
    "p": Key.PAUSE_RUN,
    "P": Key.PAUSE_RUN,
    " ": Key.PAUSE_CHAPTER,
    "+": Key.MORE_CONNECTIONS,
    "=": Key.MORE_CONNECTIONS,  # "+" without Shift on most layouts
    "-": Key.FEWER_CONNECTIONS,
    "q": Key.QUIT,
    "Q": Key.QUIT,
    "k": Key.UP,
    "j": Key.DOWN,
}
_BY_NAME = {"KEY_UP": Key.UP, "KEY_DOWN": Key.DOWN}


def key_of(keystroke: Keystroke) -> Key | None:
    """The :class:`Key` a keystroke stands for, or None for any other key."""
    if keystroke.is_sequence:
        return _BY_NAME.get(keystroke.name or "")
    return _BY_TEXT.get(str(keystroke))


def keys_available() -> bool:
    """Keys can be read: stdin and stderr are both terminals."""
    stdin, stderr = sys.__stdin__, sys.__stderr__
    try:
        return stdin is not None and stderr is not None and stdin.isatty() and stderr.isatty()
    except (OSError, ValueError):  # a closed stream
        return False


class KeyReader:
    """Reads keys on a daemon thread and hands each known one to ``on_key`` (on that thread)."""

    def __init__(self, on_key: Callable[[Key], None]) -> None:
        self.on_key = on_key
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mode = contextlib.ExitStack()

    def start(self) -> bool:
        """Put the terminal in cbreak mode and start reading; False when there is no terminal."""
        if self._thread is not None or not keys_available():
            return False
        import blessed  # imported here: only a live view in a terminal reads keys

        # No styling: blessed would otherwise query the terminal (XTGETTCAP, XTVERSION).
        terminal = blessed.Terminal(stream=sys.__stderr__, force_styling=None)
        try:
            self._mode.enter_context(terminal.cbreak())
        except _GONE:  # not a terminal after all (a closed or detached one)
            return False
        self._thread = threading.Thread(
            target=self._read, args=(terminal,), name="keys", daemon=True
        )
        self._thread.start()
        return True

    def _read(self, terminal: blessed.Terminal) -> None:
        while not self._stop.is_set():
            try:
                keystroke = terminal.inkey(timeout=_POLL)
            except _GONE:  # the terminal went away (a hangup)
                return
            key = key_of(keystroke) if keystroke else None
            if key is not None:
                self.on_key(key)

    def stop(self) -> None:
        """Stop reading and put the terminal back as it was (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2 * _POLL + 1.0)
        with contextlib.suppress(*_GONE):  # a terminal that hung up takes no mode
            self._mode.close()
