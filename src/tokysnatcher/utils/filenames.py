"""Safe file and folder names from untrusted site text (SPEC §3).

Every name that comes from the site (author, book title, chapter title) passes through
:func:`sanitize_component` before it touches the disk, and every path built from such a name is
checked to stay inside its folder. The rules are the strictest of the platforms we run on, so a
library copied from Linux to Windows or macOS keeps working.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# Characters that reorder text on screen (bidi overrides): never in a name, never shown raw.
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


MAX_NAME_BYTES = 200

# Characters Windows refuses in a name. Some get a readable stand-in so "Book: Part 1" or
# "AC/DC" stay legible; the rest become a space.
_REPLACEMENTS = str.maketrans(
    {
        ":": " - ",
        "/": "-",
        "\\": "-",
        '"': "'",
        "<": " ",
        ">": " ",
        "|": " ",
        "?": " ",
        "*": " ",
    }
)

# Device names Windows reserves in every folder, with or without an extension. The superscript
# digits are reserved as well (COM¹ …), a lesser-known corner.
_RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"]
)

_WHITESPACE_RE = re.compile(r"\s+")
_EXT_RE = re.compile(r"[A-Za-z0-9]{1,16}")
_NOT_PLAIN_RE = re.compile(r"[/\\:\x00]")


def _drop_unsafe_chars(text: str) -> str:
    """Any whitespace becomes a space; controls, lone surrogates and bidi controls go."""
    kept = []
    for ch in text:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cs") and ch not in BIDI_CONTROLS:
            kept.append(ch)
    return "".join(kept)


def is_reserved_name(name: str) -> bool:
    """True when Windows treats ``name`` as a device (``CON``, ``con.txt``, ``LPT1 .log`` …)."""
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _RESERVED_NAMES


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that fits ``max_bytes`` of UTF-8.

    Never cuts inside a character, and never leaves a combining mark orphaned from its base
    character at the cut (the base goes too, so no accent lands on the wrong letter).
    """
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    cut = 0
    used = 0
    for i, ch in enumerate(text):
        size = len(ch.encode("utf-8"))
        if used + size > max_bytes:
            break
        used += size
        cut = i + 1
    while 0 < cut < len(text) and unicodedata.combining(text[cut]):
        cut -= 1
    return text[:cut]


def _clean(name: str, max_bytes: int) -> str:
    text = unicodedata.normalize("NFC", name)
    text = _drop_unsafe_chars(text).translate(_REPLACEMENTS)
    # Removing characters can leave a base letter next to its combining mark; compose them
    # again. NFC of text that was already NFC only composes, so the text cannot grow.
    text = unicodedata.normalize("NFC", text)
    text = _WHITESPACE_RE.sub(" ", text).strip(" .")
    text = truncate_utf8(text, max_bytes).rstrip(" .")
    if text and is_reserved_name(text):
        # A prefix keeps the name readable and survives the truncation below, which cuts
        # from the end.
        text = truncate_utf8("_" + text, max_bytes).rstrip(" .")
    return text


def sanitize_component(name: str, *, fallback: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """One safe path component (file or folder name) from untrusted text.

    NFC-normalized; control characters removed; ``<>:"/\\|?*`` replaced, so the result never
    holds a path separator; whitespace collapsed; no leading or trailing dots or spaces (so
    ``.`` and ``..`` are impossible); Windows device names prefixed with ``_``; at most
    ``max_bytes`` of UTF-8. When nothing usable is left, the (equally sanitized) ``fallback``.
    """
    if max_bytes < 5:
        raise ValueError(f"max_bytes must be at least 5, not {max_bytes}")
    cleaned = _clean(name, max_bytes)
    if cleaned:
        return cleaned
    cleaned = _clean(fallback, max_bytes)
    if not cleaned:
        raise ValueError(f"the fallback name {fallback!r} is empty once sanitized")
    return cleaned


class NameParts(NamedTuple):
    """A file name in three parts: only ``body`` may be shortened to fit a path budget."""

    head: str  # kept whole: the chapter number ("01 - ")
    body: str  # the title
    tail: str  # kept whole: the extension (".mp3", " (chapters 1-3).m4b")

    def __str__(self) -> str:
        return f"{self.head}{self.body}{self.tail}"


def chapter_filename(index: int, total: int, title: str, ext: str) -> str:
    """``NN - <Title>.<ext>`` with ``NN`` 1-based and zero-padded (SPEC §3).

    ``NN`` has at least 2 digits and as many as ``total`` has. A title that sanitizes to nothing
    becomes ``Chapter NN``. The whole name fits :data:`MAX_NAME_BYTES`: only the title part is
    shortened, the number and the extension are always kept.
    """
    return str(chapter_name_parts(index, total, title, ext))


def chapter_name_parts(index: int, total: int, title: str, ext: str) -> NameParts:
    """:func:`chapter_filename` as :class:`NameParts` (number, title, extension)."""
    if index < 1:
        raise ValueError(f"chapter index must be 1 or more, not {index}")
    ext = ext.removeprefix(".")
    if not _EXT_RE.fullmatch(ext):
        raise ValueError(f"bad file extension {ext!r}")
    number = f"{index:0{max(2, len(str(max(total, 1))))}d}"
    prefix = f"{number} - "
    suffix = f".{ext}"
    budget = MAX_NAME_BYTES - len(prefix) - len(suffix)
    title_part = sanitize_component(title, fallback=f"Chapter {number}", max_bytes=budget)
    return NameParts(prefix, title_part, suffix)


def _lexical(path: Path) -> Path:
    # normpath (not resolve) on purpose: untrusted names must not climb out with "..", but a
    # folder the user symlinked elsewhere inside their own library is their choice to honour.
    return Path(os.path.normpath(path.absolute()))


def is_inside(folder: Path, candidate: Path) -> bool:
    """True when ``candidate`` lies strictly inside ``folder`` (``folder`` itself is not inside).

    The check is lexical, after making both absolute and folding ``.``/``..``; symbolic links
    already on disk are not followed.
    """
    base = _lexical(folder)
    target = _lexical(candidate)
    return target != base and target.is_relative_to(base)


def check_plain_name(name: str) -> str:
    """``name`` itself when it is a plain file name, else ``ValueError``.

    Plain means: not empty, not ``.``/``..``, no ``/`` or ``\\``, no NUL, no drive colon, so it
    can only name an entry directly inside a folder.
    """
    # Without separators and colons no name is absolute, on POSIX or Windows (C:, \\server).
    if not name or name in (".", "..") or _NOT_PLAIN_RE.search(name):
        raise ValueError(f"{name!r} is not a plain file name")
    return name


def book_folder_names(author: str, title: str) -> list[str]:
    """``<Author>``, ``<Title>``: the folder names of a book, from site text."""
    return [
        sanitize_component(author, fallback="Unknown Author"),
        sanitize_component(title, fallback="Untitled"),
    ]


def book_dir(root: Path, author: str, title: str) -> Path:
    """``root/<Author>/<Title>`` from site text, guaranteed to be inside ``root``."""
    return folder_path(root, book_folder_names(author, title))


def folder_path(root: Path, names: Sequence[str]) -> Path:
    """``root/<name>/…`` from sanitized folder names, guaranteed to be inside ``root``."""
    folder = root.joinpath(*(check_plain_name(n) for n in names))
    if not is_inside(root, folder):  # sanitizing makes this impossible; keep the promise explicit
        raise ValueError(f"book folder {folder} would be outside {root}")
    return folder


_SUFFIX_BUDGET = 60  # longest "(chapters ...)" kept in a file name


def chapter_ranges(indices: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    spans: list[list[int]] = []
    for index in sorted(set(indices)):
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in spans)


# The longest tail a book file's name may have: what a path budget counts for it, whichever
# chapters a run selects (so a selection never changes the folder's name).
LONGEST_BOOK_FILE_TAIL = f" (chapters {'9' * _SUFFIX_BUDGET}).m4b"


def book_file_name(title: str, indices: Sequence[int], total: int) -> str:
    """``<Title>.m4b``, or ``<Title> (chapters 1-3,7).m4b`` for a selection of chapters."""
    return str(book_file_parts(title, indices, total))


def book_file_parts(title: str, indices: Sequence[int], total: int) -> NameParts:
    """:func:`book_file_name` as :class:`NameParts`: the title, and the suffix kept whole."""
    suffix = ".m4b"
    if sorted(set(indices)) != list(range(1, total + 1)):
        ranges = chapter_ranges(indices)
        if len(ranges) > _SUFFIX_BUDGET:
            ranges = f"{len(set(indices))} of {total}"
        suffix = f" (chapters {ranges}).m4b"
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    return NameParts("", sanitize_component(title, fallback="Untitled", max_bytes=budget), suffix)


# The longest path each platform opens: Windows without the ``\\?\`` prefix (MAX_PATH is 260
# with the final NUL, counted in UTF-16 units), macOS and Linux their PATH_MAX less the NUL.
_MAX_PATHS = {"win32": 259, "darwin": 1023}
_DEFAULT_MAX_PATH = 4095

# What the tool may add below a chapter file's own path while it works: a temporary or ``.part``
# name beside it (``.<pid>-<n>.part``, ``.<name>.<8 hex>.tmp``) and, for an m4b's parts, the
# ``.tokysnatcher/parts/`` folders above it. Callers add the folders; this is the suffix.
TEMP_SUFFIX_UNITS = 24


def max_path_units(platform: str | None = None) -> int:
    """The longest whole path (in UTF-16 units) the platform opens (``sys.platform`` default)."""
    return _MAX_PATHS.get(platform or sys.platform, _DEFAULT_MAX_PATH)


class PathTooLong(ValueError):
    """The root alone leaves no room for a book's folders and files within the path limit."""

    def __init__(self, root: Path, need: int, limit: int) -> None:
        super().__init__(
            f"the library folder {root} is too deep: a book below it needs paths of at least "
            f"{need} characters, and this system allows {limit}"
        )
        self.need = need
        self.limit = limit


@dataclass(frozen=True)
class FittedNames:
    """Folder and file names that fit the path budget, and whether any had to be shortened."""

    folders: tuple[str, ...]
    files: tuple[str, ...]
    shortened: bool


def _units(text: str) -> int:
    """Length as Windows counts it: UTF-16 code units (a character beyond U+FFFF is two)."""
    return len(text.encode("utf-16-le")) // 2


def _truncate_units(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` UTF-16 units, without loose ends."""
    if _units(text) <= limit:
        return text
    used = cut = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            break
        cut = i + 1
    while 0 < cut < len(text) and unicodedata.combining(text[cut]):
        cut -= 1
    shortened = text[:cut].rstrip(" .")
    if shortened and is_reserved_name(shortened):
        shortened = "_" + shortened[: max(0, cut - 1)].rstrip(" .")
    return shortened


def fit_path_budget(
    root: Path,
    folders: Sequence[str],
    files: Sequence[NameParts],
    *,
    work_units: int = 0,
    fixed: Sequence[str] = (),
    loose: Sequence[NameParts] = (),
    max_path: int | None = None,
) -> FittedNames:
    """``folders`` (below ``root``) and ``files`` (in the last folder) within the path limit.

    The deepest path counted is the longest file plus ``work_units`` (what the tool may add
    below it while working) plus :data:`TEMP_SUFFIX_UNITS`; ``fixed`` are the paths, relative to
    the last folder, that the tool writes there under names of its own (never shortened);
    ``loose`` are files of the last folder that the tool does not work below (an m4b), shortened
    like ``files`` and returned after them. When over ``max_path`` (the
    platform's, by default), the longest names are shortened first, to a common length: each
    folder name and each file's ``body``; heads and tails (number, extension) stay whole. Names
    that would then be equal (ignoring case and Unicode normalization, as Windows and macOS
    do) get `` (2)``, `` (3)`` … before the tail. Raises :class:`PathTooLong` when even
    one-character names do not fit.
    """
    limit = max_path if max_path is not None else max_path_units()
    base = _units(str(root)) + TEMP_SUFFIX_UNITS
    every = [*files, *loose]
    fixed_len = max((_units(f) for f in fixed), default=0)

    def deepest(cap: int) -> int:
        folders_len = sum(1 + min(_units(f), cap) for f in folders)
        file_len = max(
            (
                (work_units if n < len(files) else 0)
                + _units(f.head)
                + min(_units(f.body), cap)
                + _units(f.tail)
                for n, f in enumerate(every)
            ),
            default=0,
        )
        return base + folders_len + 1 + max(file_len, fixed_len)

    longest = max([_units(f) for f in folders] + [_units(f.body) for f in every], default=0)
    shortened = deepest(longest) > limit
    cap = longest
    if shortened:
        if deepest(1) > limit:
            raise PathTooLong(root, deepest(1), limit)
        low, high = 1, longest  # deepest(low) fits, deepest(high) does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if deepest(middle) <= limit else (low, middle)
        cap = low
    new_folders = tuple(_truncate_units(f, cap) or f[:1] for f in folders)
    fitted: list[NameParts] = []
    for parts in every:
        body = _truncate_units(parts.body, cap)
        # Shortened away entirely: "01.mp3", not "01 - .mp3".
        head = parts.head.rstrip(" -") if parts.body and not body else parts.head
        fitted.append(NameParts(head, body, parts.tail))
    return FittedNames(new_folders, tuple(_distinct(fitted, shortened=shortened)), shortened)


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _distinct(names: list[NameParts], *, shortened: bool) -> list[str]:
    """The names as text, with those equal but for case or normalization told apart."""
    taken: set[str] = set()
    result: list[str] = []
    for parts in names:
        name = str(parts)
        number = 1
        while _fold(name) in taken:
            number += 1
            mark = f" ({number})"
            body = parts.body
            if shortened:  # stay within the length the budget allowed
                body = body[: max(0, len(body) - len(mark))].rstrip(" .")
            name = f"{parts.head}{body}{mark}{parts.tail}"
        taken.add(_fold(name))
        result.append(name)
    return result
