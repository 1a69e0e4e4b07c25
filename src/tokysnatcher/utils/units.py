"""Parsing and formatting of sizes, rates, durations and chapter selections."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tokysnatcher.errors import BadValue, UsageError

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?)(b?)(?:/s)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
#: The lowest speed limit (bytes/s): less is most likely a forgotten suffix (500 for 500K).
MIN_SPEED_LIMIT = 1024.0
SPEED_LIMIT_FORM = (
    "at least 1K bytes per second, with an optional K, M or G suffix, e.g. 500K, 2M, 1.5MiB "
    "(none: no limit)"
)


def parse_speed_limit(raw: object) -> float | None:
    """``500K``, ``2M``, ``1.5MiB``, ``800000`` -> bytes per second (K = 1024).

    Takes text as typed or a TOML number; ``none`` or 0 is no limit (None), so that it can lift
    a configured one. A bad or too low value is a :class:`BadValue`.
    """
    if isinstance(raw, str) and raw.strip().lower() in ("", "none", "0"):
        return None
    rate = math.nan
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if raw == 0:
            return None
        try:
            rate = float(raw)
        except OverflowError:  # an integer too large for a float (TOML has no limit)
            rate = math.inf
    elif isinstance(raw, str) and (match := _RATE_RE.match(raw)):
        rate = float(match.group(1)) * _FACTORS[match.group(2).lower()]
    if not 0 < rate < math.inf:  # NaN fails this too
        raise BadValue(f"{raw!r} is not a rate")
    if rate < MIN_SPEED_LIMIT:
        raise BadValue(f"{raw!r} is below the lowest limit, 1K")
    return rate


CHAPTERS_FORM = "chapter numbers and ranges separated by commas, e.g. 1-3,7 or 5-"
# Nine digits at most: more is no chapter number (and int() refuses past 4300 digits).
_CHAPTERS_RE = re.compile(r"(\d{1,9})(?:\s*-\s*(\d{0,9}))?")


def _part(first: int, last: int | None) -> str:
    return f"{first}-" if last is None else str(first) if last == first else f"{first}-{last}"


@dataclass(frozen=True)
class ChapterSpec:
    """A ``--chapters`` selection: 1-based ``(first, last)`` ranges, ``last`` None to the end.

    :meth:`parse` checks the syntax; whether the numbers exist is known once the book is
    resolved (:meth:`select`).
    """

    ranges: tuple[tuple[int, int | None], ...]

    @classmethod
    def parse(cls, raw: object) -> ChapterSpec:
        """``1-3,7`` or ``5-`` (text as typed, or a TOML number) -> the ranges it names."""
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            raise BadValue(f"{raw!r} is not a chapter number or range")
        ranges: list[tuple[int, int | None]] = []
        for raw_part in raw.split(","):
            part = raw_part.strip()
            match = _CHAPTERS_RE.fullmatch(part)
            if match is None:
                raise BadValue(f"{part!r} is not a chapter number or range")
            first, end = int(match.group(1)), match.group(2)
            last = first if end is None else int(end) if end else None
            if first < 1:
                raise BadValue(f"{part!r}: chapters are numbered from 1")
            if last is not None and last < first:
                raise BadValue(f"{part!r} is a backwards range (write {last}-{first})")
            ranges.append((first, last))
        return cls(tuple(ranges))

    def __str__(self) -> str:
        return ",".join(_part(first, last) for first, last in self.ranges)

    def select(self, total: int) -> list[int]:
        """The chapters chosen from a book of ``total`` (sorted, unique); all must exist."""
        chosen: set[int] = set()
        for first, last in self.ranges:
            end = total if last is None else last
            if first > total or end > total:
                raise UsageError(
                    f"--chapters: {_part(first, last)!r} is outside 1-{total} "
                    f"(the book has {total} chapters)",
                    hint="Use numbers and ranges separated by commas, e.g. 1-3,7.",
                )
            chosen.update(range(first, end + 1))
        return sorted(chosen)


#: The longest declared duration taken at its word: a week (no chapter or book is longer).
MAX_MEDIA_SECONDS = 7 * 24 * 3600


def plausible_seconds(value: object) -> float | None:
    """A duration the site declared, in seconds; None when it is missing or absurd.

    Not a number, not finite, zero or less, or over ``MAX_MEDIA_SECONDS``: unknown, so plans,
    progress and checks do what they do without one instead of computing with it.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 < value <= MAX_MEDIA_SECONDS:  # NaN fails this too; a huge int never meets float
        return None
    return float(value)


def format_bytes(n: float) -> str:
    """Human-readable binary size: ``1.5 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
