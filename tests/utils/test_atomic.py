"""Crash-safe writes: a file is either the old one or the complete new one (STYLE "Files")."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import NEEDS_POSIX_KERNEL
from tokysnatcher.errors import DiskError, ExitCode, FailureKind, ManifestError
from tokysnatcher.utils.atomic import (
    LOCK_NAME,
    HashingFile,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    disk_error_for,
    folder_in_use,
    folder_lock,
    hashing_writer,
    remove_stale_temps,
    sha256_file,
)


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_json_is_sorted_indented_and_ends_with_newline(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    atomic_write_json(target, {"b": 1, "a": {"z": "é", "y": [1, 2]}})
    text = target.read_text(encoding="utf-8")
    assert (
        text
        == '{\n  "a": {\n    "y": [\n      1,\n      2\n    ],\n    "z": "é"\n  },\n  "b": 1\n}\n'
    )
    assert json.loads(text) == {"a": {"y": [1, 2], "z": "é"}, "b": 1}
    assert leftovers(tmp_path) == []


def test_atomic_write_replaces_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    atomic_write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == []


def test_atomic_write_json_survives_a_lone_surrogate(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"title": "broken \ud800 title"})
    assert json.loads(target.read_text("utf-8")) == {"title": "broken \ud800 title"}


def test_atomic_write_json_refuses_unserializable_and_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_text('{"ok": true}\n')
    with pytest.raises(ValueError, match="Out of range float"):
        atomic_write_json(target, {"bad": float("nan")})
    assert target.read_text() == '{"ok": true}\n'
    assert leftovers(tmp_path) == []


def test_crash_mid_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "01 - Chapter.mp3"
    target.write_bytes(b"old complete file")
    temps: list[Path] = []

    def write_then_crash() -> None:
        with hashing_writer(target) as out:
            out.write(b"half of the new")
            temps.append(out.temp_path)
            assert out.temp_path.exists()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_crash()
    assert temps[0].name.startswith(".")
    assert temps[0].name.endswith(".tmp")
    assert not temps[0].exists()
    assert target.read_bytes() == b"old complete file"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01 - Chapter.mp3"]


def test_final_name_appears_only_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"
    with hashing_writer(target) as out:
        out.write(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"


def test_hashing_writer_hash_and_size_match_a_real_read(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    chunks = [bytes([i % 251]) * (64 * 1024 + i) for i in range(40)]
    with hashing_writer(target) as out:
        for chunk in chunks:
            assert out.write(memoryview(chunk)) == len(chunk)
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    assert out.sha256 == expected
    assert out.size == sum(map(len, chunks))
    assert sha256_file(target) == (out.size, expected)
    assert sha256_file(target, chunk=7) == (out.size, expected)


def test_sha256_of_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    atomic_write_bytes(empty, b"")
    assert sha256_file(empty) == (0, hashlib.sha256(b"").hexdigest())


def test_long_final_names_get_a_temp_name_that_fits(tmp_path: Path) -> None:
    target = tmp_path / ("ж" * 100 + ".mp3")  # 204 bytes
    with HashingFile(target) as out:
        assert len(out.temp_path.name.encode()) < 255
        out.write(b"x")
    assert target.read_bytes() == b"x"


def test_abort_is_idempotent_and_commit_after_abort_refused(tmp_path: Path) -> None:
    out = HashingFile(tmp_path / "x")
    out.write(b"data")
    out.abort()
    out.abort()
    with pytest.raises(ValueError, match="already"):
        out.commit()
    assert list(tmp_path.iterdir()) == []


def test_new_files_follow_the_umask_not_0600(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write_bytes(target, b"x")
    assert target.stat().st_mode & 0o044 == 0o044  # readable by group/others under umask 022


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space"),
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
        (errno.EFBIG, "too large"),
    ],
)
def test_disk_errors_map_to_disk_error(code: int, words: str) -> None:
    path = Path("/some/book/01 - A.mp3")
    mapped = disk_error_for(OSError(code, "x"), path)
    assert isinstance(mapped, DiskError)
    assert mapped.kind is FailureKind.DISK
    assert mapped.kind.stops_run
    assert mapped.exit_code is ExitCode.FAILED
    assert str(path) in mapped.message
    assert words in mapped.message
    assert "-d" in mapped.hint


def test_other_os_errors_keep_their_own_reason() -> None:
    assert (
        disk_error_for(OSError(errno.ENOENT, "gone"), Path("x")).message == "cannot write x: gone"
    )
    no_errno = disk_error_for(OSError("no errno"), Path("x"), action="create")
    assert no_errno.message == "cannot create x: no errno"


def test_a_write_the_disk_does_not_refuse_keeps_its_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_json(tmp_path / "gone" / "manifest.json", {"a": 1})


def test_unwritable_folder_raises_disk_error() -> None:
    # Root bypasses file permissions, but sysfs refuses to create files even for root.
    folder = Path("/sys")
    if not folder.is_dir():
        pytest.skip("no /sys to produce a real EACCES as root")
    with pytest.raises(DiskError, match=r"cannot write /sys/manifest\.json: permission denied"):
        atomic_write_json(folder / "manifest.json", {"a": 1})
    assert not (folder / "manifest.json").exists()


@NEEDS_POSIX_KERNEL
def test_full_disk_during_write_raises_disk_error_and_keeps_old(tmp_path: Path) -> None:
    """A real EFBIG from a file-size limit in a child process: the write path maps it."""
    target = tmp_path / "chapter.mp3"
    target.write_bytes(b"old")
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from tokysnatcher.errors import DiskError
        from tokysnatcher.utils.atomic import hashing_writer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            with hashing_writer(Path({str(target)!r})) as out:
                for _ in range(64):
                    out.write(b"x" * 65536)
        except DiskError as err:
            print("DiskError:", err.message)
            sys.exit(0)
        sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "DiskError: cannot write" in done.stdout
    assert str(target) in done.stdout
    assert "too large" in done.stdout
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tokysnatcher.utils.atomic import folder_lock
    with folder_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_folder_lock_excludes_other_processes_until_the_holder_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert folder_in_use(tmp_path)
        with pytest.raises(ManifestError, match="in use by another tokysnatcher") as caught:
            with folder_lock(tmp_path, wait=0.1):
                pass
        assert str(tmp_path) in caught.value.message
        assert caught.value.exit_code is ExitCode.USAGE
        holder.kill()  # kill -9: the system releases the lock, nothing is left to clean
        holder.wait(timeout=10)
        with folder_lock(tmp_path, wait=0.1):
            pass
        assert not folder_in_use(tmp_path)
        # filelock keeps the empty lock file on POSIX (removing a locked name is unsafe) and
        # removes it on Windows.
        assert {p.name for p in tmp_path.iterdir()} <= {LOCK_NAME}
        assert not (tmp_path / LOCK_NAME).exists() or (tmp_path / LOCK_NAME).stat().st_size == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_link_planted_as_the_lock_file_is_removed_not_followed(tmp_path: Path) -> None:
    book, outside = tmp_path / "book", tmp_path / "outside.txt"
    book.mkdir()
    outside.write_text("keep")
    (book / LOCK_NAME).symlink_to(outside)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(book)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert not (book / LOCK_NAME).is_symlink()
        assert folder_in_use(book), "the lock is held, not skipped"
        assert outside.read_text() == "keep"
    finally:
        holder.kill()
        holder.wait()


def test_a_folder_that_was_never_locked_is_not_in_use_and_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    assert not folder_in_use(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_folder_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    with folder_lock(tmp_path), folder_lock(tmp_path / "."), folder_lock(tmp_path):
        pass
    with folder_lock(tmp_path):  # released for real after the outermost exit
        pass


def test_remove_stale_temps_removes_only_our_temporary_files(tmp_path: Path) -> None:
    ours = [".tokysnatcher.json.0123abcd.tmp", ".01 - A.mp3.deadbeef.tmp"]
    theirs = [".hidden", "notes.tmp", ".x.tmp", ".y.ABCDEF01.tmp", "01 - A.mp3"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    (tmp_path / ".dir.00000000.tmp").mkdir()
    assert sorted(remove_stale_temps(tmp_path)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*theirs, ".dir.00000000.tmp"])
    assert remove_stale_temps(tmp_path / "missing") == []
