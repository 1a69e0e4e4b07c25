from __future__ import annotations

import pytest

from tokysnatcher.errors import UsageError
from tokysnatcher.utils.units import (
    MAX_MEDIA_SECONDS,
    format_bytes,
    format_duration,
    parse_chapter_spec,
    parse_rate,
    plausible_seconds,
)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("500K", 500 * 1024),
        ("2M", 2 * 1024**2),
        ("1.5MiB", 1.5 * 1024**2),
        ("800000", 800000),
        ("2mb/s", 2 * 1024**2),
        ("1G", 1024**3),
    ],
)
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "-5K", "0", "5X", "K"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="speed-limit"):
        parse_rate(text)


def test_chapter_spec() -> None:
    assert parse_chapter_spec("1-3,7", 10) == [1, 2, 3, 7]
    assert parse_chapter_spec("7, 2-3, 3", 10) == [2, 3, 7]
    assert parse_chapter_spec("8-", 10) == [8, 9, 10]


@pytest.mark.parametrize("spec", ["0", "11", "3-2", "a", "1-3,x", "", "5-20"])
def test_chapter_spec_rejects(spec: str) -> None:
    with pytest.raises(UsageError, match="chapters"):
        parse_chapter_spec(spec, 10)


def test_formatting() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_duration(75) == "1:15"
    assert format_duration(3725) == "1:02:05"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (12, 12.0),
        (12.5, 12.5),
        (MAX_MEDIA_SECONDS, float(MAX_MEDIA_SECONDS)),
        (MAX_MEDIA_SECONDS + 1, None),
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        (1e308, None),
        (10**400, None),  # an integer no float can hold: JSON allows it
        (0, None),
        (-5.0, None),
        (True, None),
        ("12", None),
        (None, None),
    ],
)
def test_a_declared_duration_is_kept_only_when_plausible(
    value: object, seconds: float | None
) -> None:
    assert plausible_seconds(value) == seconds
