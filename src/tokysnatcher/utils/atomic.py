"""Crash-safe file writes and SHA-256 helpers (STYLE "Files", SPEC §3).

A file we write appears under its final name only when it is complete: the bytes go to a hidden
temporary file in the same folder (``.<name>.<random>.tmp``), which is flushed, fsynced and then
renamed over the final name with :func:`os.replace`, an atomic step on every platform we support.
A crash at any moment leaves either the old file or the new one, never half of one.

A disk that refuses a write (no space, no permission, read-only, quota) raises
:class:`~tokysnatcher.errors.DiskError`, which stops the run with a message naming the path.

Only one process may write into a book folder at a time: :func:`folder_lock` holds an advisory
lock on ``<book>/.tokysnatcher.lock`` through the ``filelock`` library (``flock`` on POSIX, a
Windows file lock on Windows: the system releases it even after ``kill -9`` or a crash). The empty
lock file stays after a release on POSIX: removing a locked name would let a waiter and a
newcomer lock two different files under it (filelock's own rule). While holding the lock,
:func:`remove_stale_temps` may safely delete the temporary files a killed writer left.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, NoReturn, Self

from tokysnatcher.errors import DiskError, ManifestError
from tokysnatcher.utils.links import open_nofollow, remove_entries

if TYPE_CHECKING:
    from filelock import BaseFileLock

#: The lock file :func:`folder_lock` holds, in the folder it guards.
LOCK_NAME = ".tokysnatcher.lock"
CHUNK_SIZE = 1024 * 1024

_DISK_MESSAGES: dict[int | None, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "the file is too large for this file system",
}
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_error_for(err: OSError, path: Path, *, action: str = "write") -> DiskError:
    """The :class:`DiskError` that ``err`` means for ``path``.

    The message names the path and the reason, the hint says what to do about that reason.
    """
    reason = _DISK_MESSAGES.get(err.errno)
    if reason is None:
        return DiskError(f"cannot {action} {path}: {err.strerror or err}")
    if err.errno in _SPACE_ERRNOS:
        hint = "Free some space or choose another folder with -d, then run again with --resume."
    else:
        hint = (
            "Choose a folder you can write to with -d, or fix its permissions, "
            "then run again with --resume."
        )
    return DiskError(f"cannot {action} {path}: {reason}", hint=hint)


def reraise_disk_refusal(err: OSError, path: Path, *, action: str = "write") -> NoReturn:
    """Raise the :class:`DiskError` for ``err`` if it is a disk refusal, else ``err`` itself."""
    if err.errno in _DISK_MESSAGES:
        raise disk_error_for(err, path, action=action) from err
    raise err


# What _temp_name makes: a hidden name, 8 hex digits, ".tmp".
_TEMP_RE = re.compile(r"\..+\.[0-9a-f]{8}\.tmp", re.DOTALL)


def _temp_name(final: Path) -> str:
    # Keep the temporary name well under the usual 255-byte limit even for a 200-byte name.
    stem = final.name.encode("utf-8")[:120].decode("utf-8", "ignore")
    return f".{stem}.{secrets.token_hex(4)}.tmp"


def _create_temp(final: Path) -> tuple[Path, int]:
    """A new, exclusively created temp file next to ``final`` (mode 0666 minus the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = final.with_name(_temp_name(final))
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as err:
            # The user knows the final name, not our temporary one.
            reraise_disk_refusal(err, final)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort (not every platform or FS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class HashingFile:
    """A file being written under a temporary name, hashed (SHA-256) and counted as it goes.

    :meth:`commit` fsyncs it and renames it to its final name; :meth:`abort` removes it. As a
    context manager it commits on a clean exit and aborts on an exception. ``sha256`` and
    ``size`` describe exactly the bytes written, so no second read of the file is needed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp_path, fd = _create_temp(path)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self.closed = False

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes written so far (final once committed)."""
        return self._hash.hexdigest()

    @property
    def size(self) -> int:
        """Number of bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data``; returns its length."""
        view = memoryview(data).cast("B")
        try:
            self._file.write(view)
        except OSError as err:
            reraise_disk_refusal(err, self.path)
        self._hash.update(view)
        self._size += len(view)
        return len(view)

    def commit(self) -> None:
        """Flush, fsync and rename to the final name; on any failure the temp file is removed."""
        if self.closed:
            raise ValueError(f"{self.path}: the file was already committed or aborted")
        self.closed = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.temp_path.replace(self.path)
        except OSError as err:
            self._file.close()
            _remove_quietly(self.temp_path)
            reraise_disk_refusal(err, self.path)
        except BaseException:
            self._file.close()
            _remove_quietly(self.temp_path)
            raise
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Discard what was written; the final name is left as it was. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            self._file.close()
        except OSError:
            pass  # a failed flush of data we are throwing away anyway
        _remove_quietly(self.temp_path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextmanager
def hashing_writer(path: Path) -> Iterator[HashingFile]:
    """``with hashing_writer(dest) as out: out.write(...)``; see :class:`HashingFile`."""
    with HashingFile(path) as out:
        yield out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (the old content stays until the rename)."""
    with hashing_writer(path) as out:
        out.write(data)


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: Path, obj: object) -> None:
    """Replace ``path`` with ``obj`` as JSON: sorted keys and indentation keep diffs readable.

    The text is written as it is encoded, in pieces: ``json.dumps`` with indentation first
    collects every token (millions for a 200,000-chapter manifest, hundreds of MB).
    """
    try:
        _write_json(path, obj, ensure_ascii=False)
    except UnicodeEncodeError:
        # A lone surrogate (valid in JSON from the site, not in UTF-8): escape everything.
        _write_json(path, obj, ensure_ascii=True)


def _write_json(path: Path, obj: object, *, ensure_ascii: bool) -> None:
    encoder = json.JSONEncoder(sort_keys=True, indent=2, ensure_ascii=ensure_ascii, allow_nan=False)
    tokens = encoder.iterencode(obj)
    with hashing_writer(path) as out:  # an error (or UnicodeEncodeError) leaves the old file
        while piece := "".join(itertools.islice(tokens, 8192)):
            out.write(piece.encode("utf-8"))
        out.write(b"\n")


def sha256_file(path: Path, chunk: int = CHUNK_SIZE) -> tuple[int, str]:
    """``(size, hex SHA-256)`` of a file, read in ``chunk``-byte pieces (bounded memory).

    A symbolic link at ``path`` raises ``OSError`` instead of being followed: what we hash is
    what we vouch for, and a link planted after a check must not swap in another file.
    """
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with os.fdopen(open_nofollow(path), "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def remove_stale_temps(folder: Path) -> list[str]:
    """Delete the temporary files (``.<name>.<hex>.tmp``) a killed writer left in ``folder``.

    Returns the names removed. Call it only while holding :func:`folder_lock`: a live writer's
    temporary file looks exactly the same.
    """
    return remove_entries(
        folder,
        lambda entry: bool(_TEMP_RE.fullmatch(entry.name)) and entry.is_file(follow_symlinks=False),
    )


def _busy(folder: Path) -> ManifestError:
    return ManifestError(
        f"{folder} is in use by another tokysnatcher (a download or verification of this book "
        "is running)",
        hint="Wait for it to finish or stop it, then run again (with --resume to continue).",
    )


_held: dict[str, int] = {}  # real path of a folder this process has locked -> nesting depth
_held_lock = threading.Lock()


@contextmanager
def folder_lock(folder: Path, *, wait: float = 1.0) -> Iterator[None]:
    """Hold the exclusive writer lock of the existing folder ``folder`` for the ``with`` body.

    Re-entrant within a process (a run locks the book folder, and so does each step of it that
    writes). Waits up to ``wait`` seconds for another process (a ``--list-downloads`` probe
    holds it for an instant), then raises :class:`ManifestError` naming the folder. Where the
    lock file cannot be made (a read-only folder) or the file system has no locks (some
    network shares), the body runs unlocked: it either writes nothing or meets the same
    refusal as a :class:`DiskError` naming the file.
    """
    key = os.path.realpath(folder)
    with _held_lock:
        nested = key in _held
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    lock = _acquire(folder, wait)
    with _held_lock:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_lock:
            del _held[key]
        if lock is not None:
            lock.release()


def _acquire(folder: Path, wait: float) -> BaseFileLock | None:
    """The lock of ``folder``, held (None: no locking possible here)."""
    from filelock import Timeout  # imported here: runs that never lock need none of it

    path = folder / LOCK_NAME
    if path.is_symlink():  # planted: filelock refuses to open it, and locking would be off
        with contextlib.suppress(OSError):
            path.unlink()
    lock = _lock_of(folder, wait)
    try:
        lock.acquire()
    except Timeout:
        raise _busy(folder) from None
    except (OSError, NotImplementedError):
        return None  # read-only folder, or no flock on this file system: carry on unlocked
    return lock


def _lock_of(folder: Path, wait: float) -> BaseFileLock:
    from filelock import FileLock

    # Not thread-local: a folder's lock is one per process (see _held), whichever thread
    # releases it.
    return FileLock(folder / LOCK_NAME, timeout=wait, thread_local=False)


def folder_in_use(folder: Path) -> bool:
    """True when another process holds :func:`folder_lock` on ``folder`` right now."""
    from filelock import Timeout

    if not (folder / LOCK_NAME).is_file():
        return False  # a holder makes the file first: no file, no holder (and nothing written)
    lock = _lock_of(folder, 0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except (OSError, NotImplementedError):
        return False
    lock.release()
    return False
