"""Child processes: a registry that guarantees no child outlives tokysnatcher, plus pipe helpers.

Every child (today: ffmpeg) is started through :func:`spawn`, which puts it in a **new session**
(its own process group; on Windows a new process group, ``CREATE_NEW_PROCESS_GROUP``) and
records it in the registry until it has been reaped. Stopping a child reaches its whole group:
SIGTERM, then SIGKILL, on POSIX; Ctrl-Break, then ``TerminateProcess``, on Windows.

Why a new session: Ctrl-C in a terminal sends SIGINT to the whole foreground process group. If
ffmpeg shared our group it would receive the signal too and exit "failed" on its own, racing our
orderly shutdown (mark chapters pending, save the manifest) and turning a cancellation into a
bogus ``invalid_media`` failure. In its own session ffmpeg never sees the terminal's signals;
we decide when it stops. The price is that the kernel no longer stops it for us, so the
registry is what makes cleanup certain: :func:`terminate_all` is idempotent, is called by the
CLI on exit, SIGINT, SIGTERM and SIGHUP, and runs from an ``atexit`` hook as a last resort. (A
hard ``kill -9`` of tokysnatcher cannot be caught; ffmpeg then dies on its next write to the
closed progress pipe.)

After :func:`terminate_all` the registry is closed: a worker that has not yet seen the stop
request cannot start a new child that would escape the cleanup. :func:`reopen` ends that state
for a caller that goes on in the same process (``cli.main`` called in-process, after its run).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import IO

_DEFAULT_ATEXIT_GRACE = 2.0
# After SIGKILL the kernel reaps promptly; this bound only guards against a process stuck in
# uninterruptible I/O so that shutdown itself can never hang.
_KILL_WAIT = 5.0


class RegistryClosedError(RuntimeError):
    """A child was requested after :func:`terminate_all` (the program is shutting down)."""


class ProcessRegistry:
    """Thread-safe set of live child processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`terminate_all` ran; :meth:`spawn` then refuses."""
        return self._closed

    def spawn(
        self,
        args: Sequence[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` in its own session and register it (see the module docstring)."""
        # Holding the lock across Popen means terminate_all cannot run between the start and
        # the registration and miss the new child.
        with self._lock:
            if self._closed:
                raise RegistryClosedError("shutting down: no new child processes")
            proc = _popen_new_session(list(args), stdin=stdin, stdout=stdout, stderr=stderr)
            self._procs[proc.pid] = proc
            return proc

    def register(self, proc: subprocess.Popen[bytes]) -> None:
        """Track a child started elsewhere."""
        with self._lock:
            self._procs[proc.pid] = proc

    def unregister(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop tracking ``proc`` (call after it has been reaped). Unknown processes are fine."""
        with self._lock:
            if self._procs.get(proc.pid) is proc:
                del self._procs[proc.pid]

    def live(self) -> list[subprocess.Popen[bytes]]:
        """The registered children not yet reaped."""
        with self._lock:
            return [p for p in self._procs.values() if p.returncode is None]

    def reopen(self) -> None:
        """Accept children again after :meth:`terminate_all` (the run that closed it is over)."""
        with self._lock:
            self._closed = False

    def terminate_all(self, grace: float = 5.0) -> int:
        """Terminate every child, kill those still alive after ``grace`` s, reap all of them.

        Idempotent and safe from any thread; returns how many children were still running.
        """
        with self._lock:
            self._closed = True
            procs = list(self._procs.values())
            self._procs.clear()
        running = [p for p in procs if p.poll() is None]
        deadline = time.monotonic() + grace
        for proc in running:  # signal all first: the grace period runs for all at once
            _signal(proc, terminate=True)
            _close_stdin_soon(proc)
        for proc in running:
            stop_process(proc, max(deadline - time.monotonic(), 0.0))
        return len(running)


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate ``proc`` (and its process group), kill it after ``grace`` s, and reap it."""
    if proc.poll() is None:
        _signal(proc, terminate=True)
        _close_stdin_soon(proc)
        try:
            proc.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            _signal(proc, terminate=False)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_KILL_WAIT)


def run_bounded(
    args: Sequence[str], *, timeout: float, stdin_data: bytes | None = None
) -> tuple[int, bytes, bytes]:
    """Run a short registered child to completion: ``(returncode, stdout, stderr)``.

    On timeout (``subprocess.TimeoutExpired``) or any other exception the child is killed and
    reaped before the exception propagates.
    """
    proc = spawn(args, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL)
    try:
        stdout, stderr = proc.communicate(stdin_data, timeout=timeout)
    except BaseException:
        stop_process(proc, grace=0)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
            proc.communicate(timeout=_KILL_WAIT)  # collect and close the pipes
        raise
    finally:
        unregister(proc)
    return proc.returncode, stdout, stderr


def _close_stdin_soon(proc: subprocess.Popen[bytes]) -> None:
    """Give a child blocked on reading its stdin an end of file, so SIGTERM can take effect.

    ffmpeg only acts on SIGTERM between reads; one waiting for input that never comes would
    otherwise sit out the whole grace period. The close runs on a daemon thread because it
    flushes and may block behind a feeder thread's pending write until the child is gone.
    """
    stdin = proc.stdin
    if stdin is None or stdin.closed:
        return

    def close() -> None:
        with contextlib.suppress(OSError, ValueError):
            stdin.close()

    threading.Thread(target=close, name="close-child-stdin", daemon=True).start()


def _signal(proc: subprocess.Popen[bytes], *, terminate: bool) -> None:
    if proc.poll() is not None:
        return  # already reaped: its pid may belong to someone else now
    if sys.platform == "win32":
        _signal_windows(proc, terminate=terminate)
    else:
        _signal_posix(proc, terminate=terminate)


def _signal_posix(proc: subprocess.Popen[bytes], *, terminate: bool) -> None:
    """SIGTERM (or SIGKILL) to the child's process group: it reaches the child's helpers too."""
    if sys.platform != "win32":
        sig = signal.SIGTERM if terminate else signal.SIGKILL
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, sig)  # the child leads its own group
            else:
                proc.send_signal(sig)


def _signal_windows(proc: subprocess.Popen[bytes], *, terminate: bool) -> None:
    """Ctrl-Break to the child's process group (ffmpeg stops as on Ctrl-C), or end it outright.

    The child leads a group of its own (see :func:`_popen_new_session`), so the event reaches
    it and whatever it started, and nothing else. Without a console shared with the child
    (pythonw, a service) the event cannot be sent: the child is then ended at once, as it is
    when ``terminate`` is false (``TerminateProcess``, the SIGKILL of Windows).
    """
    if sys.platform == "win32":
        if terminate:
            try:
                os.kill(proc.pid, signal.CTRL_BREAK_EVENT)
                return
            except OSError:
                pass
        with contextlib.suppress(OSError):
            proc.kill()


def _popen_new_session(
    args: list[str], *, stdin: int | None, stdout: int | None, stderr: int | None
) -> subprocess.Popen[bytes]:
    # args are a list and never go through a shell.
    if sys.platform == "win32":
        return subprocess.Popen(
            args,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
        )
    return subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True)


_REGISTRY = ProcessRegistry()
atexit.register(_REGISTRY.terminate_all, _DEFAULT_ATEXIT_GRACE)


def registry() -> ProcessRegistry:
    """The process-wide registry used by :func:`spawn` and :func:`terminate_all`."""
    return _REGISTRY


def spawn(
    args: Sequence[str],
    *,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start a registered child in its own session (see :meth:`ProcessRegistry.spawn`)."""
    return _REGISTRY.spawn(args, stdin=stdin, stdout=stdout, stderr=stderr)


def register(proc: subprocess.Popen[bytes]) -> None:
    """Track a child started elsewhere in the process-wide registry."""
    _REGISTRY.register(proc)


def unregister(proc: subprocess.Popen[bytes]) -> None:
    """Stop tracking a reaped child."""
    _REGISTRY.unregister(proc)


def terminate_all(grace: float = 5.0) -> int:
    """End every registered child (idempotent); called by the CLI on exit and on signals."""
    return _REGISTRY.terminate_all(grace)


def reopen() -> None:
    """Accept children again once the run that called :func:`terminate_all` is over."""
    _REGISTRY.reopen()


# ---------------------------------------------------------------------------------------------
# Pipe helpers: each runs on a daemon thread so that no read or write can block the caller.
# ---------------------------------------------------------------------------------------------


class LinePump(threading.Thread):
    """Copies lines of a child's pipe into a queue; ``None`` marks the end of the stream."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stream = stream
        self.lines: queue.Queue[bytes | None] = queue.Queue()

    def run(self) -> None:
        try:
            for line in iter(self._stream.readline, b""):
                self.lines.put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us: the stream is over either way
        finally:
            self.lines.put(None)


class StderrTail(threading.Thread):
    """Drains a child's stderr, keeping the first and the last few lines (bounded memory)."""

    _MAX_LINE = 500
    _KEEP = 20

    def __init__(self, stream: IO[bytes], *, name: str = "stderr-tail") -> None:
        super().__init__(name=name, daemon=True)
        self._stream = stream
        self.first: str | None = None
        self.tail: deque[str] = deque(maxlen=self._KEEP)
        self.count = 0

    def run(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip()[: self._MAX_LINE]
                if not line.strip():
                    continue
                if self.first is None:
                    self.first = line
                self.tail.append(line)
                self.count += 1
        except (OSError, ValueError):
            pass


class StdinFeeder(threading.Thread):
    """Writes ``chunks`` to a child's stdin, then closes it.

    If the iterator raises, the exception is kept in :attr:`error` and stdin is deliberately
    left open: closing it would tell ffmpeg the input ended normally and it would finish a
    truncated file. The owner terminates the child instead. A child that exits early
    (broken pipe) simply ends the feeding.
    """

    def __init__(self, stdin: IO[bytes], chunks: Iterable[bytes], abort: threading.Event) -> None:
        super().__init__(name="ffmpeg-stdin", daemon=True)
        self._stdin = stdin
        self._chunks = chunks
        self._abort = abort
        self.error: BaseException | None = None

    def run(self) -> None:
        chunks = iter(self._chunks)
        while not self._abort.is_set():
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except BaseException as err:
                self.error = err  # handed to the owning thread, which re-raises it
                return
            try:
                self._stdin.write(chunk)
            except (OSError, ValueError):
                return  # the child closed its input, or the owner closed ours
        else:
            return  # aborted: leave stdin open, the owner ends the child
        with contextlib.suppress(OSError, ValueError):
            self._stdin.close()
