"""Names from the site become safe file and folder names (SPEC §3)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tokysnatcher.utils.filenames import (
    book_dir,
    chapter_filename,
    check_plain_name,
    is_inside,
    is_reserved_name,
    sanitize_component,
)

# Characters Windows refuses in a name.
FORBIDDEN_CHARS = frozenset('<>:"/\\|?*')
RESERVED = ["CON", "PRN", "AUX", "NUL"] + [f"{d}{n}" for d in ("COM", "LPT") for n in range(1, 10)]

# Text with a high share of the characters that matter: separators, dots, spaces, controls,
# reserved punctuation, combining marks, bidi controls, lone surrogates, plus any character.
hostile_text = st.lists(
    st.one_of(
        st.sampled_from(list('<>:"/\\|?*. \t\n\x00\x07\x1f\x7f\u0301\u202e\u00a0~-_')),
        st.sampled_from([*RESERVED, "con.txt", "..", "."]),
        st.characters(codec=None, exclude_categories=()),
    ),
    max_size=300,
).map("".join)


def assert_safe_component(name: str, max_bytes: int = 200) -> None:
    assert name
    assert name not in (".", "..")
    assert not FORBIDDEN_CHARS & set(name)
    assert all(unicodedata.category(ch) not in ("Cc", "Cs") for ch in name)
    assert name == name.strip(" ."), "no leading/trailing dots or spaces"
    assert len(name.encode("utf-8")) <= max_bytes
    assert not is_reserved_name(name)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../x", "-..-x"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Lpt9 .log", "_Lpt9 .log"),
        ("a/b:c*?", "a-b - c"),
        ("Book: A Novel", "Book - A Novel"),
        ('Say "hi"', "Say 'hi'"),
        ("   ", "Untitled"),
        ("", "Untitled"),
        ("...", "Untitled"),
        ("第一章 始まり", "第一章 始まり"),
        ("Dragons 🐉 & Co.", "Dragons 🐉 & Co"),
        ("bad\x07name", "badname"),
        ("  many   spaces\tand\nlines  ", "many spaces and lines"),
        ("e\u0301clair", "\u00e9clair"),  # NFC
        ("evil\u202egnp.mp3", "evilgnp.mp3"),  # no right-to-left override tricks
        (".hidden", "hidden"),
    ],
)
def test_sanitize_component_examples(raw: str, expected: str) -> None:
    assert sanitize_component(raw, fallback="Untitled") == expected


def test_long_title_is_cut_at_a_character_boundary() -> None:
    title = "é" * 300  # two bytes each
    result = sanitize_component(title, fallback="x")
    assert len(result.encode("utf-8")) == 200
    assert result == "é" * 100
    emoji = sanitize_component("🐉" * 300, fallback="x")  # four bytes each
    assert emoji == "🐉" * 50


def test_cut_does_not_orphan_a_combining_mark() -> None:
    # 199 ASCII letters then "e" + combining acute that cannot compose with anything before
    text = "a" * 199 + "q\u0301z"
    assert sanitize_component(text, fallback="x") == "a" * 199


@settings(max_examples=400, deadline=None)
@given(raw=hostile_text, max_bytes=st.integers(min_value=5, max_value=255))
@example(raw="\ud800", max_bytes=200)
@example(raw="COM1 . ", max_bytes=5)
@example(raw="con" + "." * 300, max_bytes=200)
def test_sanitize_component_is_always_safe(raw: str, max_bytes: int) -> None:
    assert_safe_component(
        sanitize_component(raw, fallback="Untitled", max_bytes=max_bytes), max_bytes
    )


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(RESERVED),
    ext=st.sampled_from(["", ".txt", ".mp3", " .log", ".tar.gz"]),
    upper=st.booleans(),
)
def test_reserved_names_never_survive(name: str, ext: str, upper: bool) -> None:
    raw = (name if upper else name.lower()) + ext
    assert is_reserved_name(raw)
    assert not is_reserved_name(sanitize_component(raw, fallback="x"))


def test_empty_fallback_is_refused() -> None:
    with pytest.raises(ValueError, match="fallback"):
        sanitize_component(" \x00 ", fallback=" . ")


@pytest.mark.parametrize(
    ("index", "total", "title", "expected"),
    [
        (1, 12, "Prologue", "01 - Prologue.mp3"),
        (7, 9, "Seven", "07 - Seven.mp3"),
        (3, 120, "Three", "003 - Three.mp3"),
        (5, 12, "   ", "05 - Chapter 05.mp3"),
        (5, 1200, "", "0005 - Chapter 0005.mp3"),
        (2, 12, "Who am I?", "02 - Who am I.mp3"),
        (2, 12, "CON", "02 - _CON.mp3"),
    ],
)
def test_chapter_filename(index: int, total: int, title: str, expected: str) -> None:
    assert chapter_filename(index, total, title, "mp3") == expected


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=1, max_value=100_000),
    title=hostile_text,
    ext=st.sampled_from(["mp3", "m4a", "m4b"]),
)
def test_chapter_filename_is_always_safe(index: int, title: str, ext: str) -> None:
    name = chapter_filename(index, index, title, ext)
    assert_safe_component(name)
    assert name.startswith(f"{index:02d} - ")
    assert name.endswith(f".{ext}")


def test_chapter_filename_keeps_number_and_extension_of_a_long_title() -> None:
    name = chapter_filename(3, 40, "Ж" * 300, "m4a")
    assert name.startswith("03 - ЖЖ")
    assert name.endswith("Ж.m4a")
    assert len(name.encode("utf-8")) <= 200


@pytest.mark.parametrize(("index", "ext"), [(0, "mp3"), (1, "../mp3"), (1, ""), (1, "mp 3")])
def test_chapter_filename_rejects_bad_arguments(index: int, ext: str) -> None:
    with pytest.raises(ValueError, match=r"index|extension"):
        chapter_filename(index, 10, "x", ext)


def test_book_dir_examples(tmp_path: Path) -> None:
    assert book_dir(tmp_path, "J. R. R. Tolkien", "The Hobbit") == (
        tmp_path / "J. R. R. Tolkien" / "The Hobbit"
    )
    assert book_dir(tmp_path, "", "..") == tmp_path / "Unknown Author" / "Untitled"
    assert book_dir(tmp_path, "../..", "/etc/passwd") == tmp_path / "-" / "-etc-passwd"


@settings(max_examples=300, deadline=None)
@given(author=hostile_text, title=hostile_text)
def test_book_dir_always_inside_root(author: str, title: str) -> None:
    root = Path("/library/root")
    folder = book_dir(root, author, title)
    assert is_inside(root, folder)
    assert folder.parent.parent == root
    assert_safe_component(folder.name)
    assert_safe_component(folder.parent.name)


def test_is_inside(tmp_path: Path) -> None:
    assert is_inside(tmp_path, tmp_path / "a" / "b")
    assert not is_inside(tmp_path, tmp_path)
    assert not is_inside(tmp_path, tmp_path / "a" / ".." / "..")
    assert not is_inside(tmp_path / "a", tmp_path / "ab")
    assert not is_inside(tmp_path, Path("/etc/passwd"))


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd", "C:evil", "nul\x00byte"]
)
def test_names_that_could_point_elsewhere_are_not_plain(name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        check_plain_name(name)


def test_plain_names_pass_unchanged() -> None:
    assert check_plain_name("01 - Prologue.mp3") == "01 - Prologue.mp3"
    assert check_plain_name("..weird but plain") == "..weird but plain"
