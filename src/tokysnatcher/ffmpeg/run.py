"""Long ffmpeg runs under the stall watchdog (SPEC §5), with explicit pipes, always reaped.

:func:`run_ffmpeg` follows the ``-progress`` stream: no advance for ``stall_timeout`` seconds, or a
stop request, ends the process (terminate, then kill), reaps it and removes its partial output.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from tokysnatcher.errors import DiskError, FailureKind, FfmpegError, FfmpegNotFoundError
from tokysnatcher.ffmpeg import processes
from tokysnatcher.ffmpeg.binary import remove_output, summarize_stderr
from tokysnatcher.ffmpeg.progress import FfmpegProgressTracker, ProgressSample

_POLL = 0.1  # how often the watchdog looks at the stop event and the clock
_EOF_GRACE = 2.0  # after exit, how long to wait for the rest of the progress stream
_JOIN = 2.0  # bound on joining pipe threads once the process is gone
# ffmpeg reads only our pipe and our own work files, so these error texts are the file system
# refusing the output (no space, no permission, a read-only mount): a disk failure that stops the
# run. Spelled as glibc, musl and the BSDs print them. EPERM is left out: ffmpeg uses it for its
# own refusals (the concat demuxer's "Unsafe file name"), which are about the media.
_DISK_ERRORS = (
    "No space left on device",
    "Disk quota exceeded",
    "Disc quota exceeded",
    "Quota exceeded",
    "Read-only file system",
    "Permission denied",
    "File too large",
)


def run_ffmpeg(
    args: list[str],
    *,
    stall_timeout: float,
    kill_grace: float = 5.0,
    stop: threading.Event | None = None,
    stdin_chunks: Iterable[bytes] | None = None,
    partial_output: Path | None = None,
    on_progress: Callable[[ProgressSample], None] | None = None,
    duration_hint: float | None = None,
) -> None:
    """Run ``args`` (which must include ``-progress pipe:1``) to completion under the watchdog.

    ``stdin_chunks`` feeds an input of ``pipe:0``; an exception raised by that iterator ends
    ffmpeg and is re-raised here. ``on_progress`` is called from this thread for every
    progress block. On any failure ``partial_output`` is removed and the process is reaped.

    Raises ``FfmpegError`` with kind ``FFMPEG_STALLED`` (no advance for ``stall_timeout`` s),
    ``CANCELLED`` (``stop`` was set) or ``INVALID_MEDIA`` (non-zero exit), and ``DiskError``
    when the file system refused ffmpeg's output (see :func:`disk_refusal`).
    """
    tracker = FfmpegProgressTracker(stall_timeout=stall_timeout)
    try:
        proc = processes.spawn(
            args, stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL
        )
    except processes.RegistryClosedError as err:
        remove_output(partial_output)
        raise FfmpegError("ffmpeg not started: shutting down", kind=FailureKind.CANCELLED) from err
    except OSError as err:
        remove_output(partial_output)
        raise FfmpegNotFoundError(f"cannot run {args[0]}: {err.strerror or err}") from err

    assert proc.stdout is not None
    assert proc.stderr is not None
    abort = threading.Event()
    pump = processes.LinePump(proc.stdout, name="ffmpeg-progress")
    tail = processes.StderrTail(proc.stderr, name="ffmpeg-stderr")
    feeder = None
    if stdin_chunks is not None:
        assert proc.stdin is not None
        feeder = processes.StdinFeeder(proc.stdin, stdin_chunks, abort)
    for thread in (pump, tail, feeder):
        if thread is not None:
            thread.start()

    try:
        verdict = _watch(proc, pump, tracker, feeder, stop, on_progress, duration_hint)
    except BaseException:  # a failing on_progress callback, KeyboardInterrupt, ...
        processes.stop_process(proc, kill_grace)
        remove_output(partial_output)
        raise
    finally:
        abort.set()
        processes.stop_process(proc, kill_grace)  # a no-op once ffmpeg has exited
        processes.unregister(proc)
        if proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
        pump.join(timeout=_JOIN)  # both end at EOF, right after the process is gone
        tail.join(timeout=_JOIN)
        if feeder is not None:
            # A feeder blocked inside the caller's iterator cannot be interrupted from here;
            # it sees the abort flag when the iterator yields again and writes nothing more.
            feeder.join(timeout=_POLL)

    try:
        _raise_for(verdict, proc.returncode, tracker, tail, feeder, stall_timeout)
    except BaseException:
        remove_output(partial_output)
        raise


def disk_refusal(stderr_lines: list[str]) -> str | None:
    """The stderr line (cleaned) where the file system refused ffmpeg a write; None if none.

    The first such line is the one that names the file ("Error opening output file
    file:/book/.tokysnatcher/0003/output.mp3: Read-only file system").
    """
    for line in stderr_lines:
        if any(text in line for text in _DISK_ERRORS):
            return summarize_stderr([line])
    return None


_Verdict = Literal["exited", "stalled", "cancelled", "feeder-failed"]


def _watch(
    proc: subprocess.Popen[bytes],
    pump: processes.LinePump,
    tracker: FfmpegProgressTracker,
    feeder: processes.StdinFeeder | None,
    stop: threading.Event | None,
    on_progress: Callable[[ProgressSample], None] | None,
    duration_hint: float | None,
) -> _Verdict:
    """Follow the progress stream until ffmpeg exits or must be stopped."""
    eof = False
    exited_at: float | None = None
    while True:
        if eof:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_POLL)
        else:
            try:
                line = pump.lines.get(timeout=_POLL)
            except queue.Empty:
                pass
            else:
                if line is None:
                    eof = True
                else:
                    sample = tracker.feed(line, duration_hint)
                    if sample is not None and on_progress is not None:
                        on_progress(sample)
        if proc.poll() is not None:
            exited_at = time.monotonic() if exited_at is None else exited_at
            if eof or time.monotonic() - exited_at > _EOF_GRACE:
                return "exited"
            continue
        if stop is not None and stop.is_set():
            return "cancelled"
        if feeder is not None and feeder.error is not None:
            return "feeder-failed"
        if tracker.stalled():
            return "stalled"


def _raise_for(
    verdict: _Verdict,
    returncode: int | None,
    tracker: FfmpegProgressTracker,
    tail: processes.StderrTail,
    feeder: processes.StdinFeeder | None,
    stall_timeout: float,
) -> None:
    if feeder is not None and feeder.error is not None:
        raise feeder.error
    if verdict == "cancelled":
        raise FfmpegError("conversion cancelled", kind=FailureKind.CANCELLED)
    if verdict == "stalled":
        raise FfmpegError(
            f"ffmpeg made no progress for {stall_timeout:g} s "
            f"(stopped at {tracker.seconds_done:.1f} s of audio)",
            kind=FailureKind.FFMPEG_STALLED,
        )
    if returncode == 0:
        return
    lines = [tail.first] if tail.first is not None else []
    lines += [line for line in tail.tail if line != tail.first]
    if (refused := disk_refusal(lines)) is not None:
        raise DiskError(f"ffmpeg could not write its output: {refused}")
    if processes.registry().closed:
        raise FfmpegError("ffmpeg ended: shutting down", kind=FailureKind.CANCELLED)
    status = f"signal {-returncode}" if returncode is not None and returncode < 0 else returncode
    raise FfmpegError(
        f"ffmpeg failed (exit status {status}): {summarize_stderr(lines)}",
        kind=FailureKind.INVALID_MEDIA,
    )
