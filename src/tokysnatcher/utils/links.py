"""Link-safe handling of the work folder: a symbolic link we did not make is never followed.

A book folder may come from anywhere (a shared drive, a copy of someone else's library). A link
planted in its work folder, ``<book>/.tokysnatcher/``, must not steer our writes or deletions
outside the book: entries of the work folder are checked with ``lstat``, files are opened with
``O_NOFOLLOW`` or written under a new name and renamed into place (a rename replaces a link, it
never writes through one), and a link found where one of our folders or files belongs is
removed, never followed. The book folder itself (and the folders above it) may be links: where
the user keeps a library is their choice.

None of these map errors: callers turn an ``OSError`` into the :class:`DiskError` that names
what they were doing.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

# Windows has no O_NOFOLLOW: there the lstat checks alone keep links out.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def points_inside(link: Path, folder: Path) -> bool:
    """True when the link ``link`` (or whatever it leads to, link after link) is in ``folder``.

    The target need not exist: a dangling link is judged by where it would lead.
    """
    target = Path(os.path.realpath(link))
    return target.is_relative_to(os.path.realpath(folder))


def remove_tree(path: Path) -> None:
    """Remove whatever ``path`` names; a link is unlinked, never followed (missing: done).

    ``shutil.rmtree`` unlinks the links it meets inside a folder instead of descending into
    them; called on a link itself it would refuse, so a link is removed here first.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def fresh_dir(path: Path) -> None:
    """Make ``path`` an emptied folder of ours, whatever was there before (link, file, tree).

    Emptying is best effort (a file another attempt is still writing may survive), but the
    folder is always a real one: a link there, even one appearing meanwhile, raises.
    """
    if is_real_dir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    if not is_real_dir(path):
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))


def is_real_dir(path: Path) -> bool:
    """True when ``path`` is a folder itself, not a link to one."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def remove_links_in(folder: Path) -> list[str]:
    """Unlink every symbolic link directly inside ``folder``; the names removed.

    Nothing in a work folder of ours is a link, so any link there was planted.
    """
    return remove_entries(folder, os.DirEntry.is_symlink)


def remove_entries(folder: Path, select: Callable[[os.DirEntry[str]], bool]) -> list[str]:
    """Unlink the entries directly inside ``folder`` that ``select`` picks; the names removed.

    An unreadable folder removes nothing, an entry that cannot be removed is skipped.
    """
    removed: list[str] = []
    try:
        with os.scandir(folder) as entries:
            chosen = [entry for entry in entries if select(entry)]
    except OSError:
        return removed
    for entry in chosen:
        try:
            Path(entry.path).unlink()
        except OSError:
            continue
        removed.append(entry.name)
    return removed


def open_nofollow(path: Path, flags: int = os.O_RDONLY) -> int:
    """``os.open`` of ``path`` that fails (``ELOOP``) instead of following a link at its end."""
    return os.open(path, flags | NOFOLLOW | _BINARY)


def read_text_nofollow(path: Path, limit: int) -> str | None:
    """The UTF-8 text of the regular file ``path`` (at most ``limit`` bytes read), else None.

    None when the file is missing, is a link or anything but a regular file, or is not UTF-8.
    """
    try:
        fd = open_nofollow(path)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def fsync_file(path: Path) -> None:
    """Flush the regular file ``path`` to disk (a link at ``path`` raises ``OSError``)."""
    fd = open_nofollow(path, os.O_RDWR)  # Windows flushes only a file open for writing
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
