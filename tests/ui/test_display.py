"""Site text made inert for the terminal: what is escaped, and what is left alone."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokysnatcher.ui.display import BIDI_CONTROLS, visible


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Evil\x1b]0;pwned\x07", "Evil\\x1b]0;pwned\\x07"),  # sets the window title
        ("a\x1b[2J\x1b[5mb", "a\\x1b[2J\\x1b[5mb"),  # clears the screen, blinks
        ("a\x9b2Jb", "a\\x9b2Jb"),  # the 8-bit CSI
        ("evil\u202egnp.mp3", "evil\\u202egnp.mp3"),  # right-to-left override
        ("a\u2067b\u2069", "a\\u2067b\\u2069"),  # right-to-left isolate
        ("Title\nfake: done", "Title\\nfake: done"),  # a forged line
        ("a\r\tb\x7f\x00", "a\\r\\tb\\x7f\\x00"),
        ("a\u2028b", "a\\u2028b"),  # line separator
        ("lone \ud800", "lone \\ud800"),
    ],
)
def test_controls_are_written_as_escapes(text: str, shown: str) -> None:
    assert visible(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "The Sample Book",
        "第一章 始まり",
        "Ελληνικά 🎧",
        "Ça, c'est \\ [bold]",
        "a\u3000b",
        "👩\u200d🚀",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert visible(text) == text


@given(st.text())
def test_nothing_that_acts_on_a_terminal_remains(text: str) -> None:
    unsafe = [
        ch
        for ch in visible(text)
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in BIDI_CONTROLS
    ]
    assert not unsafe
