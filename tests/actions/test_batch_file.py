"""Reading a batch file: one reference a line, comments and blank lines ignored, line numbers
kept for the messages, and a file that cannot be read is a usage error."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tokysnatcher.actions.batch import BatchRef, batch_refs, read_batch_file
from tokysnatcher.errors import UsageError


def test_references_keep_their_line_numbers(tmp_path: Path) -> None:
    listing = tmp_path / "books.txt"
    # A BOM (Windows editors) and CRLF line ends are text, not references.
    text = "\ufeff# to listen to\r\nfirst-book\r\n\r\n   # indented comment\n  second-book  \n"
    listing.write_bytes(text.encode())
    assert read_batch_file(listing) == [BatchRef("first-book", 2), BatchRef("second-book", 5)]


def test_a_dash_reads_standard_input() -> None:
    stdin = io.StringIO("one\n\n#two\nthree\n")
    assert read_batch_file(Path("-"), stdin) == [BatchRef("one", 1), BatchRef("three", 4)]


def test_arguments_come_first_then_the_file(tmp_path: Path) -> None:
    listing = tmp_path / "books.txt"
    listing.write_text("from-file\n", "utf-8")
    assert batch_refs(["given"], listing) == [BatchRef("given"), BatchRef("from-file", 1)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        (b"\xff\xfe\x00bad", "not UTF-8 text"),
        (b"# only a comment\n\n", "no book in it"),
    ],
)
def test_a_file_without_usable_text_is_a_usage_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    listing = tmp_path / "books.txt"
    if content is not None:
        listing.write_bytes(content)
    with pytest.raises(UsageError, match=message) as caught:
        batch_refs([], listing)
    assert caught.value.exit_code == 2
    assert str(listing) in caught.value.message
