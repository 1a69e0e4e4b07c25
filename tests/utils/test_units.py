from __future__ import annotations

import pytest

from tokysnatcher.errors import BadValue, UsageError
from tokysnatcher.utils.units import (
    MAX_MEDIA_SECONDS,
    ChapterSpec,
    format_bytes,
    format_duration,
    parse_speed_limit,
    plausible_seconds,
)


@pytest.mark.parametrize(
    ("raw", "rate"),
    [
        ("500K", 500 * 1024),
        ("2M", 2 * 1024**2),
        ("1.5MiB", 1.5 * 1024**2),
        ("800000", 800000),
        ("2mb/s", 2 * 1024**2),
        ("1G", 1024**3),
        (4096, 4096.0),  # a TOML number
        ("none", None),
        (" None ", None),
        ("0", None),
        (0, None),
    ],
)
def test_parse_speed_limit(raw: object, rate: float | None) -> None:
    assert parse_speed_limit(raw) == rate


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("fast", "'fast' is not a rate"),
        ("-5K", "'-5K' is not a rate"),
        ("5X", "'5X' is not a rate"),
        ("K", "'K' is not a rate"),
        (float("inf"), "inf is not a rate"),
        (float("nan"), "nan is not a rate"),
        (10**400, "is not a rate"),
        (True, "True is not a rate"),
        ("512", "'512' is below the lowest limit, 1K"),
        (1000, "1000 is below the lowest limit, 1K"),
    ],
)
def test_parse_speed_limit_rejects(raw: object, problem: str) -> None:
    with pytest.raises(BadValue) as caught:
        parse_speed_limit(raw)
    assert problem in caught.value.message


def test_chapter_spec() -> None:
    assert ChapterSpec.parse("1-3,7").select(10) == [1, 2, 3, 7]
    assert ChapterSpec.parse("7, 2-3, 3").select(10) == [2, 3, 7]
    assert ChapterSpec.parse("8-").select(10) == [8, 9, 10]
    assert ChapterSpec.parse(4).select(10) == [4]  # a TOML number
    # Written back (the resume command) in its plain form.
    assert str(ChapterSpec.parse(" 7 , 2 - 3, 8 -, 5-5")) == "7,2-3,8-,5"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("0", "'0': chapters are numbered from 1"),
        ("3-2", "'3-2' is a backwards range (write 2-3)"),
        ("a", "'a' is not a chapter number or range"),
        ("1-3,x", "'x' is not a chapter number or range"),
        ("1,,2", "'' is not a chapter number or range"),
        ("", "'' is not a chapter number or range"),
        ("1" * 5000, "is not a chapter number or range"),  # past int()'s 4300 digits
        (True, "True is not a chapter number or range"),
    ],
)
def test_chapter_spec_syntax_is_checked_when_parsed(spec: object, problem: str) -> None:
    with pytest.raises(BadValue) as caught:
        ChapterSpec.parse(spec)
    assert problem in caught.value.message


@pytest.mark.parametrize("spec", ["11", "5-20", "12-"])
def test_chapter_spec_numbers_are_checked_against_the_book(spec: str) -> None:
    chosen = ChapterSpec.parse(spec)
    with pytest.raises(UsageError, match=r"--chapters: .* is outside 1-10 \(the book has 10"):
        chosen.select(10)


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
