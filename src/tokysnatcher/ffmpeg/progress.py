"""ffmpeg's ``-progress`` stream: :class:`FfmpegProgressTracker`, the parser behind the watchdog.

Pure logic (SPEC §5): it knows nothing about processes or threads; ``ffmpeg/run.py`` feeds it
lines and asks it whether ffmpeg is still advancing. Time comes from an injected clock so tests
never sleep.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import NamedTuple

_OUT_TIME = re.compile(r"^(-)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


class ProgressSample(NamedTuple):
    """One completed ``-progress`` block, as reported to ``on_progress`` callbacks."""

    seconds_done: float
    total_size: int | None
    speed: float | None
    fraction: float | None
    finished: bool


class FfmpegProgressTracker:
    """Follows ffmpeg's ``-progress`` key=value stream and tells when it stops advancing.

    An *advance* is a larger output time or a larger output size than seen before. Repeated
    blocks with the same values (ffmpeg keeps printing them while it waits for input) are
    not an advance, so a blocked ffmpeg still counts as stalled. The end marker
    (``progress=end``) counts as an advance too: from then on ffmpeg gets one more
    ``stall_timeout`` to exit.
    """

    def __init__(
        self, *, stall_timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be positive, got {stall_timeout!r}")
        self.stall_timeout = stall_timeout
        self._clock = clock
        self.last_advance = clock()
        self._seconds_done = 0.0
        self._total_size: int | None = None
        self._speed: float | None = None
        self._finished = False

    @property
    def seconds_done(self) -> float:
        """Media seconds written so far (the largest ``out_time`` seen, never negative)."""
        return self._seconds_done

    @property
    def total_size(self) -> int | None:
        """Bytes written so far, when ffmpeg knows."""
        return self._total_size

    @property
    def speed(self) -> float | None:
        """Processing speed as a multiple of real time (``speed=12.5x``), when known."""
        return self._speed

    @property
    def finished(self) -> bool:
        """True once ffmpeg printed ``progress=end``."""
        return self._finished

    def feed(self, line: str | bytes, duration: float | None = None) -> ProgressSample | None:
        """Take one line of the stream; return a sample when it closes a block.

        Unknown keys, ``N/A`` values and malformed lines are ignored: the stream is advisory
        and must never break a conversion.
        """
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        key, value = key.strip(), value.strip()
        if key == "out_time_us" or key == "out_time_ms":
            # ffmpeg has always printed microseconds under out_time_ms too (a historical bug
            # kept for compatibility), so both keys are read the same way.
            self._advance_time(_parse_int(value), scale=1e-6)
        elif key == "out_time":
            self._advance_time(_parse_clock(value), scale=1.0)
        elif key == "total_size":
            size = _parse_int(value)
            if size is not None and (self._total_size is None or size > self._total_size):
                self._total_size = size
                self.last_advance = self._clock()
        elif key == "speed":
            self._speed = _parse_float(value.removesuffix("x"))
        elif key == "progress":
            if value == "end" and not self._finished:
                self._finished = True
                self.last_advance = self._clock()
            return self.sample(duration)
        return None

    def stalled(self, now: float | None = None) -> bool:
        """True when nothing advanced for ``stall_timeout`` seconds."""
        now = self._clock() if now is None else now
        return now - self.last_advance >= self.stall_timeout

    def fraction(self, duration: float | None) -> float | None:
        """Share of ``duration`` (media seconds) done, clamped to 0..1; None when unknown."""
        if self._finished:
            return 1.0
        if duration is None or duration <= 0:
            return None
        return min(1.0, max(0.0, self._seconds_done / duration))

    def sample(self, duration: float | None = None) -> ProgressSample:
        """The current state as a :class:`ProgressSample`."""
        return ProgressSample(
            seconds_done=self._seconds_done,
            total_size=self._total_size,
            speed=self._speed,
            fraction=self.fraction(duration),
            finished=self._finished,
        )

    def _advance_time(self, value: float | None, *, scale: float) -> None:
        if value is None:
            return
        seconds = value * scale
        if seconds > self._seconds_done:
            self._seconds_done = seconds
            self.last_advance = self._clock()


def _parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _parse_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_clock(value: str) -> float | None:
    """``HH:MM:SS.micro`` (optionally negative) to seconds."""
    match = _OUT_TIME.match(value)
    if match is None:
        return None
    sign, hours, minutes, seconds = match.groups()
    total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return -total if sign else total
