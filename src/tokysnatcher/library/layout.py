"""Where a book's files go: the library layout and the ``-o/--output`` template.

One template names the book's folders and its chapter files::

    {author}/{series}/{title}/{index} - {chapter_title}.{ext}      (the default)

Folders may use the book's fields (:data:`BOOK_FIELDS`); the last part, the chapter file name,
may use those and :data:`CHAPTER_FIELDS`. A template whose last part uses no chapter field names
folders only, and the chapter files keep their default name. Every field value is sanitized as
one name (a ``/`` in a value is never a separator), and an empty optional field takes its
separator with it: ``{series}/`` leaves no empty folder, ``{series_index} - {title}`` leaves no
dangling `` - `` and ``{title} ({year})`` no empty brackets. The default template reproduces the
names of :func:`~tokysnatcher.utils.filenames.book_dir` and
:func:`~tokysnatcher.utils.filenames.chapter_filename` exactly.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokysnatcher.errors import BadValue
from tokysnatcher.utils.filenames import (
    MAX_NAME_BYTES,
    NameParts,
    book_folder_names,
    chapter_name_parts,
    folder_path,
    sanitize_component,
)

if TYPE_CHECKING:
    from tokysnatcher.sources.source import Book

BOOK_FIELDS = ("author", "title", "series", "series_index", "narrator", "year", "source", "id")
CHAPTER_FIELDS = ("index", "chapter_title", "ext")
DEFAULT_FOLDERS = "{author}/{series}/{title}"
DEFAULT_FILE = "{index} - {chapter_title}.{ext}"
DEFAULT_TEMPLATE = f"{DEFAULT_FOLDERS}/{DEFAULT_FILE}"
MAX_FOLDERS = 6  # folders below the library root a template may name
_MAX_LITERAL_BYTES = 100  # fixed text in one folder or file name
# What a missing value becomes, for the fields that always have one.
_FALLBACKS = {"author": "Unknown Author", "title": "Untitled"}
_SEPARATORS = re.compile(r"[\s\-_.,;+~\u2013\u2014]*")
_BRACKETS = {"(": ")", "[": "]"}
_DRIVE = re.compile(r"[A-Za-z]:")

FORM = f"a layout of folders and a file name, e.g. '{DEFAULT_TEMPLATE}'"

Piece = tuple[bool, str]  # (is a field, its name or the literal text)


@dataclass(frozen=True)
class OutputTemplate:
    """A checked ``-o`` template: folder parts and the chapter file's stem (before ``.{ext}``)."""

    text: str
    folders: tuple[tuple[Piece, ...], ...]
    stem: tuple[Piece, ...]

    @classmethod
    def parse(cls, raw: object) -> OutputTemplate:
        """The template in ``raw``; :class:`BadValue` (one line) when it cannot be used."""
        if not isinstance(raw, str):
            raise BadValue(f"{raw!r} is not text")
        text = raw.strip()
        if not text:
            raise BadValue("an empty template")
        if "\\" in text:
            raise BadValue(f"{text!r}: separate folders with /, not \\")
        if text.startswith(("/", "~")) or _DRIVE.match(text):
            raise BadValue(f"{text!r} is an absolute path; it must be relative to the root (-d)")
        parts = [_pieces(text, part) for part in _split(text)]
        if len(parts[-1]) and not any(
            is_field and name in CHAPTER_FIELDS for is_field, name in parts[-1]
        ):
            parts.append(_pieces(text, DEFAULT_FILE))  # folders only: default file names
        *folders, last = parts
        stem = _file_stem(text, last)
        for folder in folders:
            for is_field, name in folder:
                if is_field and name in CHAPTER_FIELDS:
                    raise BadValue(f"{text!r}: {{{name}}} may only be used in the file name")
        if len(folders) > MAX_FOLDERS:
            raise BadValue(f"{text!r} names {len(folders)} folders; at most {MAX_FOLDERS}")
        if not any((True, f) in folder for folder in folders for f in ("title", "id")):
            raise BadValue(f"{text!r}: the folders must name the book with {{title}} or {{id}}")
        return cls(text, tuple(folders), stem)

    @property
    def is_default(self) -> bool:
        """True when this template lays a book out as the default does."""
        return (self.folders, self.stem) == (DEFAULT.folders, DEFAULT.stem)

    def book_folder(self, root: Path, book: Book) -> Path:
        """The book's folder under ``root``: always inside it, never ``root`` itself."""
        return folder_path(root, self.folder_names(book))

    def folder_names(self, book: Book) -> list[str]:
        """The book's folders below the library root, each one safe name."""
        values = _book_values(book)
        if self.folders == DEFAULT.folders:
            # The default calls the shared sanitizers: <Author>[/<Series>]/<Title>.
            author, title = book_folder_names(book.author, book.title)
            return [author, values["series"], title] if values["series"] else [author, title]
        rendered = (_render(pieces, values, MAX_NAME_BYTES) for pieces in self.folders)
        return [part for part in rendered if part]

    def chapter_name(self, book: Book, index: int, total: int, title: str, ext: str) -> str:
        """Chapter ``index`` of ``total``'s file name: ``<stem>.<ext>``, at most
        :data:`MAX_NAME_BYTES`; ``{index}`` is zero-padded as
        :func:`~tokysnatcher.utils.filenames.chapter_filename` pads it."""
        return str(self.chapter_parts(book, index, total, title, ext))

    def chapter_parts(self, book: Book, index: int, total: int, title: str, ext: str) -> NameParts:
        """:meth:`chapter_name` in parts: the default's title may be shortened to fit a path
        budget; a custom file name is kept whole (only its folders give way)."""
        if self.stem == DEFAULT.stem:
            return chapter_name_parts(index, total, title, ext)
        number = f"{index:0{max(2, len(str(max(total, 1))))}d}"
        values = {**_book_values(book), "index": number}
        values["chapter_title"] = title if _name(title, "") else f"Chapter {number}"
        suffix = f".{ext.removeprefix('.')}"
        stem = _render(self.stem, values, MAX_NAME_BYTES - len(suffix.encode()))
        return NameParts(stem, "", suffix)


def _split(text: str) -> list[str]:
    """The template's parts between ``/`` (a ``/`` inside braces is an error found later)."""
    parts = text.split("/")
    for part in parts:
        if not part.strip():
            raise BadValue(f"{text!r} has an empty folder name (two / in a row, or a / at the end)")
        if part.strip() in (".", ".."):
            raise BadValue(f"{text!r}: '{part.strip()}' may not be a folder name")
        if len(part.encode("utf-8")) > _MAX_LITERAL_BYTES + 64:
            raise BadValue(f"{text!r}: a part is longer than {_MAX_LITERAL_BYTES} bytes of text")
    return parts


def _pieces(text: str, part: str) -> tuple[Piece, ...]:
    """One part's literal text and fields; :class:`BadValue` for braces or fields we refuse."""
    try:
        parsed = list(string.Formatter().parse(part))
    except ValueError:
        raise BadValue(
            f"{text!r} has an unbalanced {{ or }} (write {{{{ or }}}} for one)"
        ) from None
    pieces: list[Piece] = []
    literal_bytes = 0
    for literal, name, spec, conversion in parsed:
        if literal:
            pieces.append((False, literal))
            literal_bytes += len(literal.encode("utf-8"))
        if name is None:
            continue
        if name not in BOOK_FIELDS and name not in CHAPTER_FIELDS:
            known = ", ".join(BOOK_FIELDS + CHAPTER_FIELDS)
            raise BadValue(f"{text!r}: unknown field {{{name}}} (known: {known})")
        if spec or conversion:
            raise BadValue(f"{text!r}: write {{{name}}} without a format (: or !)")
        pieces.append((True, name))
    if literal_bytes > _MAX_LITERAL_BYTES:
        raise BadValue(f"{text!r}: a part has more than {_MAX_LITERAL_BYTES} bytes of fixed text")
    return tuple(pieces)


def _file_stem(text: str, pieces: tuple[Piece, ...]) -> tuple[Piece, ...]:
    """The file name's pieces before ``.{ext}``, which must end it (and be its only ``{ext}``)."""
    fields = [name for is_field, name in pieces if is_field]
    if "index" not in fields:
        raise BadValue(f"{text!r}: the file name needs {{index}}, so that every chapter has one")
    if pieces[-1] != (True, "ext") or len(pieces) < 2 or not pieces[-2][1].endswith("."):
        raise BadValue(f"{text!r}: the file name must end with .{{ext}}")
    if fields.count("ext") > 1:
        raise BadValue(f"{text!r}: {{ext}} may only end the file name")
    dot = pieces[-2][1].removesuffix(".")
    return (*pieces[:-2], *(((False, dot),) if dot else ()))


def _name(value: str, fallback: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``value`` as one safe name, else ``fallback`` sanitized ("" for an optional field)."""
    try:
        return sanitize_component(value, fallback=fallback or "\x00", max_bytes=max_bytes)
    except ValueError:  # nothing usable in the value, and no fallback: the field is empty
        return ""


def _book_values(book: Book) -> dict[str, str]:
    return {
        "author": book.author,
        "title": book.title,
        "series": _name(book.series or "", ""),
        "series_index": book.series_index or "",
        "narrator": book.narrator or "",
        "year": str(book.year) if book.year else "",
        "source": book.source,
        "id": book.slug,
    }


def _render(pieces: tuple[Piece, ...], raw: dict[str, str], budget: int) -> str:
    """One name from ``pieces``: every field sanitized and shortened to fit ``budget`` bytes
    together; empty fields collapse with their separators; "" when every field is empty."""
    fields = [name for is_field, name in pieces if is_field]
    values = {name: _name(raw[name], _FALLBACKS.get(name, "")) for name in fields}
    if fields and not any(values.values()):
        return ""
    fixed = sum(len(text.encode("utf-8")) for is_field, text in pieces if not is_field)
    cap = _fair_cap([len(values[name].encode("utf-8")) for name in fields], budget - fixed)
    texts: list[Piece] = [
        (True, _name(raw[text], _FALLBACKS.get(text, ""), max(cap, 5)))
        if is_field
        else (False, text)
        for is_field, text in pieces
    ]
    joined = "".join(text for _, text in _collapse(texts))
    return _name(joined, "", budget)


def _fair_cap(sizes: list[int], available: int) -> int:
    """The largest cap such that the sizes, each cut to it, fit ``available`` together."""
    if sum(sizes) <= available:
        return max(sizes, default=0)
    remaining, count = available, len(sizes)
    for size in sorted(sizes):
        share = remaining // count
        if size > share:
            return share
        remaining -= size
        count -= 1
    return available


def _collapse(pieces: list[Piece]) -> list[Piece]:
    """Drop every empty field with the separator (and brackets) around it."""
    # Alternate strictly literal, field, literal ... so every field has a literal on each side.
    seq: list[Piece] = []
    for piece in pieces:
        if piece[0] and (not seq or seq[-1][0]):
            seq.append((False, ""))
        seq.append(piece)
    if not seq or seq[-1][0]:
        seq.append((False, ""))
    while True:
        empty = next((i for i, (is_field, text) in enumerate(seq) if is_field and not text), None)
        if empty is None:
            return seq
        left, right = seq[empty - 1][1], seq[empty + 1][1]
        if left and right and _BRACKETS.get(left[-1]) == right[0]:
            left, right = left[:-1], right[1:]
        left_sep = len(left) - len(left.rstrip(" -_.,;+~\u2013\u2014"))
        right_sep = _SEPARATORS.match(right)
        assert right_sep is not None  # the pattern matches the empty string
        sep_l, sep_r = left[len(left) - left_sep :], right_sep.group()
        left, right = left[: len(left) - left_sep], right[len(sep_r) :]
        at_start, at_end = empty - 1 == 0 and not left, empty + 1 == len(seq) - 1 and not right
        keep = "" if at_start or at_end else max(sep_r, sep_l, key=len)
        seq[empty - 1 : empty + 2] = [(False, left + keep + right)]


DEFAULT = OutputTemplate.parse(DEFAULT_TEMPLATE)


def layout_of(template: OutputTemplate | None) -> OutputTemplate:
    """``template``, or the default layout when none is set."""
    return template if template is not None else DEFAULT
