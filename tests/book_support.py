"""Support for the library tests (resume, verify, list, crash): book folders and a terminal.

``PtySession`` runs the real command in a pseudo-terminal, so that it prompts as it would for a
person; the functions read and snapshot book folders.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from helpers import cli_env, decoded_md5, tree
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils.atomic import sha256_file

if sys.platform != "win32":  # PtySession only: its tests skip on Windows (NEEDS_PTY)
    import pty

MANIFEST = ".tokysnatcher.json"


def book_folder(root: Path) -> Path:
    """The one book folder under ``root`` (the folder holding the manifest)."""
    manifests = list(root.rglob(MANIFEST))
    assert len(manifests) == 1, tree(root)
    return manifests[0].parent


def manifest_of(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / MANIFEST).read_text("utf-8"))
    return data


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: relative path -> (inode, mtime in ns, SHA-256 of content)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            files[str(path.relative_to(folder))] = (info.st_ino, info.st_mtime_ns, digest)
    return files


def assert_manifest_matches_files(folder: Path) -> None:
    """Every complete entry's size and SHA-256 are those of its file."""
    for name, entry in manifest_of(folder)["chapters"].items():
        if entry["status"] == "complete":
            assert (entry["size"], entry["sha256"]) == sha256_file(folder / name), name


def assert_book_audio(folder: Path, site: StandinSite, slug: str, ext: str = "m4a") -> None:
    """The folder holds every chapter of ``slug``, each decoding to its source's samples."""
    files = sorted(folder.glob(f"*.{ext}"))
    assert len(files) == len(site.catalog[slug].tracks), [f.name for f in files]
    for index, path in enumerate(files):
        assert decoded_md5(path) == source_md5(site.source_media(slug, index)), path.name


@functools.cache
def source_md5(path: Path) -> str:
    """Decoded MD5 of a generated source (they never change during a session)."""
    return decoded_md5(path)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class PtySession:
    """``python -m tokysnatcher ARGS`` with stdin, stdout and stderr on one terminal."""

    def __init__(self, args: Sequence[str], *, timeout: float = 60) -> None:
        self.timeout = timeout
        master, slave = pty.openpty()
        env = cli_env(TERM="xterm", COLUMNS="160", LINES="40")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tokysnatcher", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.output = ""

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            return False
        if not chunk:
            return False
        self.output += _ANSI.sub("", chunk.decode("utf-8", "replace"))
        return True

    def expect(self, text: str) -> None:
        """Wait until ``text`` has been printed (fails the test after the timeout)."""
        deadline = time.monotonic() + self.timeout
        while text not in self.output:
            if time.monotonic() > deadline or not self._read(0.1):
                if text in self.output:
                    return
                raise AssertionError(f"never saw {text!r}; output so far:\n{self.output}")

    def send(self, line: str) -> None:
        """Type ``line`` and Enter."""
        os.write(self.master, (line + "\n").encode())

    def interrupt(self) -> None:
        """What Ctrl-C does to the foreground program."""
        self.proc.send_signal(signal.SIGINT)

    def wait(self) -> int:
        """Read everything until the program ends; its exit code."""
        deadline = time.monotonic() + self.timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.05):
            if not select.select([self.master], [], [], 0)[0]:
                break
        return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.master)
