"""Names from the site become safe file and folder names (SPEC §3)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tokysnatcher.utils.filenames import (
    TEMP_SUFFIX_UNITS,
    FittedNames,
    NameParts,
    PathTooLong,
    book_dir,
    book_folder_names,
    chapter_filename,
    chapter_name_parts,
    check_plain_name,
    fit_path_budget,
    is_inside,
    is_reserved_name,
    max_path_units,
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


# ---------------------------------------------------------------------------------------------
# The path budget (Windows: 259 UTF-16 units per path; every platform: 255 bytes per name)

WINDOWS = max_path_units("win32")


def deepest_path(root: Path, fitted: FittedNames, work_units: int = 0) -> int:
    """The longest path a book's files reach, temporary names included, in UTF-16 units."""
    folder = root.joinpath(*fitted.folders)
    longest = max(len(str(folder / name).encode("utf-16-le")) // 2 for name in fitted.files)
    return longest + work_units + TEMP_SUFFIX_UNITS


def chapter_parts(titles: list[str], ext: str = "mp3") -> list[NameParts]:
    return [chapter_name_parts(i, len(titles), t, ext) for i, t in enumerate(titles, 1)]


def test_names_that_fit_are_left_exactly_as_they_are(tmp_path: Path) -> None:
    titles = ["Prologue", "The Long Road", "x" * 190]
    fitted = fit_path_budget(
        tmp_path, book_folder_names("Ada", "Book"), chapter_parts(titles), max_path=4095
    )
    assert not fitted.shortened
    assert fitted.folders == ("Ada", "Book")
    assert list(fitted.files) == [chapter_filename(i, 3, t, "mp3") for i, t in enumerate(titles, 1)]


def test_a_deep_root_with_200_byte_titles_is_shortened_longest_first(tmp_path: Path) -> None:
    root = tmp_path / ("r" * (180 - len(str(tmp_path)) - 1))
    assert len(str(root)) == 180
    author, title = "Ann Author", "T" * 200
    chapters = ["é" * 100, "Short", "Ω" * 100]  # 200 bytes of UTF-8 each, where long
    fitted = fit_path_budget(
        root, book_folder_names(author, title), chapter_parts(chapters), max_path=WINDOWS
    )
    assert fitted.shortened
    assert deepest_path(root, fitted) <= WINDOWS
    folder_author, folder_title = fitted.folders
    assert folder_author == "Ann Author"  # the short name is kept; the longest gave way
    assert folder_title.startswith("TTT")
    assert len(folder_title) < 200
    assert [name[:5] for name in fitted.files] == ["01 - ", "02 - ", "03 - "]
    assert fitted.files[1] == "02 - Short.mp3"
    assert all(name.endswith(".mp3") for name in fitted.files)
    assert len(set(fitted.files)) == 3


def test_a_240_character_root_is_refused_on_windows_and_kept_elsewhere(tmp_path: Path) -> None:
    root = tmp_path / ("r" * (240 - len(str(tmp_path)) - 1))
    names = book_folder_names("A" * 200, "T" * 200)
    files = chapter_parts(["C" * 200, "D" * 200])
    with pytest.raises(PathTooLong, match=r"too deep: .* at least \d+ characters, .* allows 259"):
        fit_path_budget(root, names, files, max_path=WINDOWS)
    fitted = fit_path_budget(root, names, files, max_path=max_path_units("linux"))
    assert not fitted.shortened
    assert all(len(n.encode()) <= 255 for n in (*fitted.folders, *fitted.files))


def test_names_equal_but_for_case_get_distinct_names(tmp_path: Path) -> None:
    files = [NameParts("", "Intro", ".mp3"), NameParts("", "INTRO", ".mp3")]
    files.append(NameParts("", "intro", ".mp3"))
    fitted = fit_path_budget(tmp_path, ["A", "B"], files, max_path=4095)
    assert fitted.files == ("Intro.mp3", "INTRO (2).mp3", "intro (3).mp3")
    # Shortening can make names equal too: they are told apart within the same budget.
    long = [
        NameParts("01 - ", "x" * 150 + "a", ".mp3"),
        NameParts("01 - ", "X" * 150 + "b", ".mp3"),
    ]
    root = tmp_path / ("r" * (150 - len(str(tmp_path)) - 1))
    short = fit_path_budget(root, ["A", "B"], long, max_path=WINDOWS)
    assert short.shortened
    assert len({n.casefold() for n in short.files}) == 2
    assert deepest_path(root, short) <= WINDOWS


@settings(max_examples=150, deadline=None)
@given(
    root_len=st.integers(min_value=3, max_value=200),
    author=hostile_text,
    title=hostile_text,
    chapters=st.lists(hostile_text, min_size=1, max_size=12),
    ext=st.sampled_from(["mp3", "m4a"]),
)
def test_every_fitted_path_is_within_the_budget_or_refused(
    root_len: int, author: str, title: str, chapters: list[str], ext: str
) -> None:
    root = Path("/" + "r" * (root_len - 1))
    names = book_folder_names(author, title)
    files = chapter_parts(chapters, ext)
    try:
        fitted = fit_path_budget(root, names, files, max_path=WINDOWS)
    except PathTooLong:
        assert root_len + TEMP_SUFFIX_UNITS + len("/A/T/01.mp3") > WINDOWS - 20
        return
    assert deepest_path(root, fitted) <= WINDOWS
    for name in (*fitted.folders, *fitted.files):
        assert_safe_component(name, max_bytes=255)
    for name, parts in zip(fitted.files, files, strict=True):
        number = parts.head.rstrip(" -")
        assert name.startswith(number)  # the number and the extension are kept
        assert name.endswith(f".{ext}")
    assert len({n.casefold() for n in fitted.files}) == len(fitted.files)
