"""Parsing and formatting of sizes, rates, durations and chapter selections."""

from __future__ import annotations

import re

from tokysnatcher.errors import UsageError

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?)(b?)(?:/s)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_rate(text: str) -> float:
    """``500K``, ``2M``, ``1.5MiB``, ``800000`` -> bytes per second (K = 1024)."""
    match = _RATE_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(
            f"--speed-limit: {text!r} is not a rate",
            hint="Use bytes per second with an optional K, M or G suffix, e.g. 500K, 2M, 1.5MiB.",
        )
    return float(match.group(1)) * _FACTORS[match.group(2).lower()]


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


def parse_chapter_spec(spec: str, total: int) -> list[int]:
    """``1-3,7`` -> ``[1, 2, 3, 7]`` (1-based, sorted, unique), checked against ``total``."""
    chosen: set[int] = set()
    for raw_part in spec.split(","):
        part = raw_part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d*))?", part)
        if not match:
            raise UsageError(
                f"--chapters: {part!r} is not a chapter number or range",
                hint="Use numbers and ranges separated by commas, e.g. 1-3,7 or 5-.",
            )
        start = int(match.group(1))
        end = start if match.group(2) is None else int(match.group(2) or total)
        if start < 1 or end < start or end > total:
            raise UsageError(
                f"--chapters: {part!r} is outside 1-{total} (the book has {total} chapters)",
                hint="Use numbers and ranges separated by commas, e.g. 1-3,7.",
            )
        chosen.update(range(start, end + 1))
    if not chosen:
        raise UsageError("--chapters selects no chapter", hint="For example --chapters 1-3,7.")
    return sorted(chosen)
