"""The library layout and ``-o``: default names unchanged, fields safe, bad templates refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokysnatcher.errors import BadValue
from tokysnatcher.library.layout import DEFAULT, DEFAULT_TEMPLATE, MAX_FOLDERS, OutputTemplate
from tokysnatcher.sources.source import Book
from tokysnatcher.utils.filenames import MAX_NAME_BYTES, chapter_filename, is_inside

ROOT = Path("/library")
hostile_text = st.text(
    alphabet=st.sampled_from(list('ab ./\\:*?<>|"\x00\x1f\u202e\u0301.-_()CONUL1é😀')),
    max_size=300,
)


def book(**changes: object) -> Book:
    fields: dict[str, object] = {
        "source": "tokybook",
        "slug": "the-hobbit",
        "title": "The Hobbit",
        "author": "J. R. R. Tolkien",
        "source_url": "https://tokybook.com/post/the-hobbit",
    }
    fields.update(changes)
    return Book(**fields)  # type: ignore[arg-type]


def names(template: OutputTemplate, total: int) -> list[str]:
    return [template.chapter_name(book(), n, total, f"Part {n}", "mp3") for n in (1, total)]


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (9, ["01 - Part 1.mp3", "09 - Part 9.mp3"]),
        (10, ["01 - Part 1.mp3", "10 - Part 10.mp3"]),
        (120, ["001 - Part 1.mp3", "120 - Part 120.mp3"]),
    ],
)
def test_the_default_layout_keeps_todays_names(total: int, expected: list[str]) -> None:
    spelled_out = OutputTemplate.parse(DEFAULT_TEMPLATE)
    assert spelled_out.is_default
    assert names(DEFAULT, total) == names(spelled_out, total) == expected
    assert DEFAULT.book_folder(ROOT, book()) == ROOT / "J. R. R. Tolkien" / "The Hobbit"
    assert OutputTemplate.parse("{author}/{title}").chapter_name(book(), 3, total, "X", "m4a") == (
        chapter_filename(3, total, "X", "m4a")
    )


@settings(max_examples=200, deadline=None)
@given(title=hostile_text, index=st.integers(1, 1200), total=st.sampled_from([9, 10, 120, 1200]))
def test_a_custom_file_name_renders_like_the_default_one(
    title: str, index: int, total: int
) -> None:
    # The same file name through the general renderer (a folder differs, so it is not default).
    custom = OutputTemplate.parse("{author}/{title}/{index} - {chapter_title} {year}.{ext}")
    assert custom.chapter_name(book(), index, total, title, "m4a") == chapter_filename(
        index, total, title, "m4a"
    )


def test_a_series_gets_its_own_folder() -> None:
    with_series = book(series="Middle/Earth", series_index="1")
    assert DEFAULT.book_folder(ROOT, with_series) == (
        ROOT / "J. R. R. Tolkien" / "Middle-Earth" / "The Hobbit"
    )
    assert (
        DEFAULT.book_folder(ROOT, book(series=" .. ")) == ROOT / "J. R. R. Tolkien" / "The Hobbit"
    )


def test_every_field_renders_and_empty_ones_collapse() -> None:
    template = OutputTemplate.parse(
        "{source}/{author}/{series}/{series_index} - {title} ({year}) [{narrator}] {id}/"
        "{index}_{chapter_title}.{ext}"
    )
    full = book(series="Legendarium", series_index="2.5", narrator="Andy Serkis", year=2020)
    assert template.book_folder(ROOT, full) == (
        ROOT
        / "tokybook"
        / "J. R. R. Tolkien"
        / "Legendarium"
        / "2.5 - The Hobbit (2020) [Andy Serkis] the-hobbit"
    )
    assert template.book_folder(ROOT, book()) == (
        ROOT / "tokybook" / "J. R. R. Tolkien" / "The Hobbit the-hobbit"
    )
    assert template.chapter_name(full, 4, 12, "", "m4a") == "04_Chapter 04.m4a"
    stems = OutputTemplate.parse("{title}/{index} - {narrator} - {chapter_title}.{ext}")
    assert stems.chapter_name(book(), 1, 2, "A", "mp3") == "01 - A.mp3"


@pytest.mark.parametrize(
    "value", ["../..", "/etc/passwd", "..", "CON", "a\\b", "x" * 600, "Ж" * 300, "\u202e\x00"]
)
def test_hostile_values_stay_one_safe_name(value: str) -> None:
    template = OutputTemplate.parse(
        "{author}/{series}/{title} {narrator}/{year} {id} - {index} - {chapter_title}.{ext}"
    )
    hostile = book(author=value, title=value, series=value, narrator=value, slug=value)
    folder = template.book_folder(ROOT, hostile)
    assert is_inside(ROOT, folder)
    assert 1 <= len(folder.relative_to(ROOT).parts) <= 3
    name = template.chapter_name(hostile, 3, 40, value, "mp3")
    for part in [*folder.relative_to(ROOT).parts, name]:
        assert part not in ("", ".", "..")
        assert not set(part) & set('/\\<>:"|?*\x00')
        assert len(part.encode("utf-8")) <= MAX_NAME_BYTES
        assert part.split(".")[0].upper() not in ("CON", "NUL")
    assert name.endswith(".mp3")
    assert "03" in name


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("", "empty"),
        ("{authr}/{title}", "unknown field {authr}"),
        ("{author/{title}", "unbalanced"),
        ("{title}}", "unbalanced"),
        ("/abs/{title}", "absolute"),
        ("~/{title}", "absolute"),
        ("C:/{title}", "absolute"),
        ("{author}/../{title}", "'..'"),
        ("{author}//{title}", "empty folder"),
        ("{author}\\{title}", "separate folders with /"),
        ("{index}/{title}", "only be used in the file name"),
        ("{author}", "{title} or {id}"),
        ("{title}/{chapter_title}.{ext}", "needs {index}"),
        ("{title}/{index}.mp3", "end with .{ext}"),
        ("{title:>9}", "without a format"),
        ("/".join(["{title}"] * (MAX_FOLDERS + 1)), "at most"),
    ],
)
def test_bad_templates_say_why(template: str, problem: str) -> None:
    with pytest.raises(BadValue, match=None) as caught:
        OutputTemplate.parse(template)
    assert problem in caught.value.message
    assert "\n" not in caught.value.message
