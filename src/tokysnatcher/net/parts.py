"""Part files a later request, or a later run, continues: ``<dest>.part`` and its validator.

A body streams into ``<dest>.part``. Before the first of its bytes is written there, the
validator the server gave (a strong ``ETag``, else ``Last-Modified``) and the size it declared
go to ``<dest>.part.json``: a part without that note is never continued, so a part is only ever
continued against the very file it holds the start of. The note is a second small file rather
than part of the name because an ETag is any quoted string (up to a few hundred characters,
anything but controls) and names are short and picky; it is not flushed to disk, like the body
bytes before it (a ``kill -9`` loses neither, a power cut at worst loses the note, and the part
is then fetched again).

Only one request of this process works on a part at a time. Two attempts of one chapter may
fetch the same segment at once (the old one is being cancelled): the second gets a throwaway
part of its own (``<dest>.<pid>-<n>.part``, created with ``O_EXCL``) that is never continued.
One process per book folder is guaranteed by the folder lock, so nothing outside this process
writes to a part.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tokysnatcher.utils.links import open_nofollow, read_text_nofollow

# Longer validators are not kept: no server we know sends them, and a hostile one must not make
# us write (or send back) something large.
_MAX_VALIDATOR = 256
_MAX_NOTE = 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)", re.ASCII)
# Throwaway parts: this process's id and a counter; O_EXCL guards against anything else (a
# file left by a killed run whose pid was this one).
_PID = os.getpid()
_PART_NUMBERS = itertools.count(1)
_claimed: set[Path] = set()
_claimed_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Validator:
    """What identifies one version of a file: the ``If-Range`` value and the declared size."""

    value: str  # a strong ETag (with its quotes) or a Last-Modified date, as the server sent it
    size: int | None  # the whole body's size, when the server declared it


def validator_of(headers: Mapping[str, str], size: int | None) -> Validator | None:
    """The validator of a response, if it has one ``If-Range`` may carry.

    A weak ETag (``W/"…"``) is never used: ``If-Range`` compares strongly, so a server must
    ignore it (RFC 9110 §13.1.5); Last-Modified is the fallback.
    """
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/") and _usable(etag):
        return Validator(etag, size)
    modified = (headers.get("Last-Modified") or "").strip()
    if modified and _usable(modified):
        return Validator(modified, size)
    return None


def _usable(value: str) -> bool:
    return len(value) <= _MAX_VALIDATOR and value.isascii() and value.isprintable()


def range_problem(content_range: str | None, offset: int, validator: Validator) -> str | None:
    """Why a 206 answer to ``Range: bytes=<offset>-`` does not continue our part (None: it does).

    It must start where the part ends, run to the end of the file, and the file must be as
    large as the one the part was started from.
    """
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    if match is None:
        return f"the server's partial answer has no usable Content-Range ({content_range!r})"
    start, end, total = (int(group) for group in match.groups())
    if start != offset or end != total - 1:
        return f"the server sent bytes {start}-{end} of {total}, not {offset} onwards"
    if validator.size is not None and total != validator.size:
        return f"the file is now {total} B, not {validator.size} B"
    return None


class PartFile:
    """The part of one transfer to ``dest``: its name, its note, and whether it may be continued.

    :meth:`claim` returns the continuable ``<dest>.part`` unless another request of this
    process holds it; :meth:`release` must follow (``with`` does it).
    """

    def __init__(self, dest: Path, path: Path, *, continuable: bool) -> None:
        self.dest = dest
        self.path = path
        self.note = path.with_name(path.name + ".json")
        self.continuable = continuable
        self.noted = False  # the note on disk describes what the part holds

    @classmethod
    def claim(cls, dest: Path) -> PartFile:
        """This request's part for ``dest`` (not created yet)."""
        path = dest.with_name(dest.name + ".part")
        with _claimed_lock:
            if path not in _claimed:
                _claimed.add(path)
                return cls(dest, path, continuable=True)
        return cls(dest, _throwaway_name(dest), continuable=False)

    def release(self) -> None:
        """Let another request of this process use the part (idempotent)."""
        if self.continuable:
            with _claimed_lock:
                _claimed.discard(self.path)

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def open(self) -> tuple[int, int, Validator | None]:
        """Open the part for appending: ``(descriptor, bytes it holds, their validator)``.

        What an earlier request left is kept only with a readable note; anything else (no note,
        a link, not a regular file) is replaced by an empty part.
        """
        if not self.continuable:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            while True:
                try:
                    return open_nofollow(self.path, flags), 0, None
                except FileExistsError:
                    self.path = _throwaway_name(self.dest)
        validator = self._read_note()
        if validator is not None:
            with contextlib.suppress(OSError):
                fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND)
                info = os.fstat(fd)
                if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                    self.noted = True
                    return fd, info.st_size, validator
                os.close(fd)
        self.discard()
        return open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL), 0, None

    def restart(self, fd: int) -> None:
        """Empty the part: what it holds belongs to another version of the file."""
        self._forget_note()
        os.ftruncate(fd, 0)

    def remember(self, validator: Validator | None) -> None:
        """Write the note (before the first body byte lands in the part); nothing to note: none."""
        if not self.continuable or self.noted or validator is None:
            return
        text = json.dumps({"validator": validator.value, "size": validator.size})
        self.note.unlink(missing_ok=True)  # a link planted there is removed, never written through
        fd = open_nofollow(self.note, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)
        self.noted = True

    def keep_or_discard(self) -> None:
        """After a transfer broke off: keep a part that can be continued, else remove it."""
        if not (self.continuable and self.noted):
            self.discard()

    def discard(self) -> None:
        """Remove the part and its note."""
        self._forget_note()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def complete(self) -> None:
        """The body is whole: the part becomes ``dest`` (atomically), the note goes."""
        self.path.replace(self.dest)
        self._forget_note()

    def _forget_note(self) -> None:
        self.noted = False
        if self.continuable:
            with contextlib.suppress(OSError):
                self.note.unlink()

    def _read_note(self) -> Validator | None:
        text = read_text_nofollow(self.note, _MAX_NOTE)
        if text is None:
            return None
        try:
            note = json.loads(text)
        except ValueError:
            return None
        if not isinstance(note, dict):
            return None
        value, size = note.get("validator"), note.get("size")
        if not isinstance(value, str) or not _usable(value) or not value:
            return None
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            return None
        return Validator(value, size)


def _throwaway_name(dest: Path) -> Path:
    return dest.with_name(f"{dest.name}.{_PID}-{next(_PART_NUMBERS)}.part")
