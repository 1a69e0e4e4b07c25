"""Safe file and folder names from untrusted site text (SPEC §3).

Every name that comes from the site (author, book title, chapter title) passes through
:func:`sanitize_component` before it touches the disk, and every path built from such a name is
checked to stay inside its folder. The rules are the strictest of the platforms we run on, so a
library copied from Linux to Windows or macOS keeps working.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

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


def chapter_filename(index: int, total: int, title: str, ext: str) -> str:
    """``NN - <Title>.<ext>`` with ``NN`` 1-based and zero-padded (SPEC §3).

    ``NN`` has at least 2 digits and as many as ``total`` has. A title that sanitizes to nothing
    becomes ``Chapter NN``. The whole name fits :data:`MAX_NAME_BYTES`: only the title part is
    shortened, the number and the extension are always kept.
    """
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
    return f"{prefix}{title_part}{suffix}"


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


def book_dir(root: Path, author: str, title: str) -> Path:
    """``root/<Author>/<Title>`` from site text, guaranteed to be inside ``root``."""
    folder = (
        root
        / sanitize_component(author, fallback="Unknown Author")
        / sanitize_component(title, fallback="Untitled")
    )
    if not is_inside(root, folder):  # sanitizing makes this impossible; keep the promise explicit
        raise ValueError(f"book folder {folder} would be outside {root}")
    return folder
