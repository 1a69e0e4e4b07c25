"""Links planted in a book folder never steer a write or a deletion outside it (ISSUE 11, item 1),
and an m4b join that outlives a ``kill -9`` never becomes the book (item 11).

Every test plants real symbolic links to a folder outside the library, snapshots that folder
(names, kinds, sizes, mtimes, SHA-256, link targets) before the run and compares after it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from book_support import (
    assert_book_audio,
    assert_manifest_matches_files,
    book_folder,
    manifest_of,
)
from helpers import FFMPEG, NEEDS_SCRIPTS, cli_env, fast_options, run_cli
from tokysnatcher.standin import StandinSite
from tokysnatcher.utils.atomic import sha256_file

pytestmark = pytest.mark.integration

SLUG = "the-sample-book"
FOLDER = Path("Ada Quill") / "The Sample Book"
WORK = ".tokysnatcher"
BOOK_FILE = "The Sample Book.m4b"
SAMPLE_TITLES = ["Prologue", "The Long Road", "A Quiet Harbour", "Epilogue"]

State = dict[str, tuple[object, ...]]


def state_of(top: Path) -> State:
    """Every entry under ``top``, ``top`` included, without following links."""
    found: State = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for path in [Path(dirpath), *(Path(dirpath, n) for n in [*dirnames, *filenames])]:
            info = path.lstat()
            name = str(path.relative_to(top))
            if stat.S_ISLNK(info.st_mode):
                found[name] = ("link", str(path.readlink()))
            elif stat.S_ISDIR(info.st_mode):
                found[name] = ("dir", info.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[name] = ("file", info.st_size, info.st_mtime_ns, digest)
    return found


def make_outside(tmp_path: Path) -> Path:
    """A folder of someone else's files, outside the library."""
    outside = tmp_path / "outside"
    (outside / "0001").mkdir(parents=True)
    (outside / "0001" / "notes.txt").write_text("not ours\n")
    (outside / "notes.txt").write_text("not ours either\n")
    (outside / "victim.m4a").write_bytes(b"precious bytes " * 1000)
    return outside


def links_in(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_symlink()]


def parts_of(folder: Path) -> list[Path]:
    return sorted((folder / WORK / "parts").glob("*.m4a"))


def assert_m4b_complete(folder: Path) -> None:
    """The book file is ours, whole, recorded in the manifest, with a chapter per part."""
    m4b = folder / BOOK_FILE
    assert not m4b.is_symlink()
    book_file = manifest_of(folder)["book_file"]
    assert (book_file["size"], book_file["sha256"]) == sha256_file(m4b)
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-i", m4b, "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    titles = [line.partition("=")[2] for line in out.splitlines() if line.startswith("title=")]
    assert titles[1:] == SAMPLE_TITLES  # the book's own title comes first
    assert len(parts_of(folder)) == len(SAMPLE_TITLES)


def assert_one_line_usage_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert needle in lines[0]


# ---------------------------------------------------------------------------------------------
# Item 1: planted links
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_work_folder_linked_outside_the_book_is_refused(
    site: StandinSite, tmp_path: Path, dry_run: bool
) -> None:
    outside = make_outside(tmp_path)
    root = tmp_path / "lib"
    folder = root / FOLDER
    folder.mkdir(parents=True)
    (folder / WORK).symlink_to(outside, target_is_directory=True)
    before = state_of(outside)

    extra = ["--dry-run"] if dry_run else []
    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, root), *extra])

    assert_one_line_usage_error(result, "outside the book folder")
    assert state_of(outside) == before
    assert sorted(p.name for p in folder.iterdir()) == [WORK]  # nothing written, link left
    assert (folder / WORK).is_symlink()


def test_a_work_folder_linked_inside_the_book_is_replaced_by_a_real_one(
    site: StandinSite, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    folder = root / FOLDER
    (folder / "mine").mkdir(parents=True)
    (folder / "mine" / "keep.txt").write_text("the user's\n")
    (folder / WORK).symlink_to("mine", target_is_directory=True)
    mine = state_of(folder / "mine")

    result = run_cli([SLUG, "--format", "m4a", *fast_options(site, root)])

    assert result.returncode == 0, result.stderr + result.stdout
    assert state_of(folder / "mine") == mine
    assert not (folder / WORK).exists()  # the link is gone, and so is our emptied work folder
    assert links_in(folder) == []
    assert_book_audio(folder, site, SLUG)
    assert_manifest_matches_files(folder)


@pytest.mark.parametrize(
    ("fmt", "planted", "target"),
    [
        ("m4b", f"{WORK}/0001", "0001"),  # a chapter's work folder
        ("m4b", f"{WORK}/0003", "."),
        ("m4b", f"{WORK}/parts", "."),  # where the m4b's parts go
        ("m4b", f"{WORK}/m4b", "."),  # the join's list, tags, cover and output
        ("m4b", f"{WORK}/parts/01 - Prologue.m4a", "victim.m4a"),
        ("m4b", BOOK_FILE, "victim.m4a"),
        ("m4a", "01 - Prologue.m4a", "victim.m4a"),
    ],
)
def test_links_planted_in_the_book_folder_are_replaced_and_nothing_outside_changes(
    site: StandinSite, tmp_path: Path, fmt: str, planted: str, target: str
) -> None:
    outside = make_outside(tmp_path)
    root = tmp_path / "lib"
    folder = root / FOLDER
    link = folder / planted
    link.parent.mkdir(parents=True)
    link.symlink_to(outside / target)
    before = state_of(outside)

    result = run_cli([SLUG, "--format", fmt, *fast_options(site, root)])

    assert result.returncode == 0, result.stderr + result.stdout
    assert state_of(outside) == before
    assert links_in(folder) == []
    if fmt == "m4b":
        assert_m4b_complete(folder)
    else:
        assert_book_audio(folder, site, SLUG)
        assert_manifest_matches_files(folder)


def test_parts_moved_outside_behind_a_link_are_fetched_again_not_used(
    site: StandinSite, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    result = run_cli([SLUG, "--format", "m4b", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    folder = book_folder(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / WORK / "parts").rename(outside / "parts")  # the very parts the manifest vouches for
    (folder / WORK / "parts").symlink_to(outside / "parts", target_is_directory=True)
    before = state_of(outside)

    result = run_cli([SLUG, "--format", "m4b", "--resume", *fast_options(site, root)])

    assert result.returncode == 0, result.stderr + result.stdout
    assert state_of(outside) == before
    assert links_in(folder) == []
    assert "book file (made)" in result.stderr
    assert_m4b_complete(folder)


FAIL_CONVERT = """#!{python}
import os, sys
args = sys.argv[1:]
if any(arg.endswith("output.m4a") for arg in args):  # the chapter conversion fails
    sys.exit(1)
os.execv({real!r}, [{real!r}, *args])
"""


@NEEDS_SCRIPTS
def test_links_in_a_kept_work_folder_are_never_written_through(
    site: StandinSite, tmp_path: Path
) -> None:
    outside = make_outside(tmp_path)
    root = tmp_path / "lib"
    wrapper = tmp_path / "ffmpeg-fails"
    wrapper.write_text(FAIL_CONVERT.format(python=sys.executable, real=FFMPEG), "utf-8")
    wrapper.chmod(0o755)
    base = [SLUG, "--format", "m4a", "--chapters", "1", *fast_options(site, root)]
    failed = run_cli([*base, "--ffmpeg", str(wrapper)])
    assert failed.returncode == 1, failed.stderr + failed.stdout
    folder = book_folder(root)
    work = folder / WORK / "0001"
    assert (work / "segments.txt").is_file()  # kept for the next run, with its segments
    # ffmpeg's output name leads outside; so does a segment, whose bytes must not be used.
    (work / "output.m4a").symlink_to(outside / "victim.m4a")
    (work / "000001.ts").unlink()
    (work / "000001.ts").symlink_to(outside / "notes.txt")
    before = state_of(outside)

    result = run_cli([*base, "--resume"])

    assert result.returncode == 0, result.stderr + result.stdout
    assert state_of(outside) == before
    assert links_in(folder) == []
    chapter = folder / "01 - Prologue.m4a"
    assert chapter.is_file()
    assert not chapter.is_symlink()
    assert_manifest_matches_files(folder)
    assert not (folder / WORK).exists()


# ---------------------------------------------------------------------------------------------
# Item 11: the join's output appears under the book's name only once proven
# ---------------------------------------------------------------------------------------------

ORPHAN_JOIN = """#!{python}
import os, subprocess, sys, time
args = sys.argv[1:]
if "concat" not in args:
    os.execv({real!r}, [{real!r}, *args])
parent = os.getppid()
with open({marker!r} + ".tmp", "w") as handle:
    handle.write(str(os.getpid()))
os.replace({marker!r} + ".tmp", {marker!r})
while os.getppid() == parent:  # join only once tokysnatcher is gone: an orphan to the end
    time.sleep(0.02)
code = subprocess.run([{real!r}, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode
with open({done!r} + ".tmp", "w") as handle:
    handle.write(str(code))
os.replace({done!r} + ".tmp", {done!r})
"""


def wait_for(path: Path, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc is None or proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.02)


@NEEDS_SCRIPTS
def test_a_join_that_finishes_after_kill_9_is_discarded_and_the_book_rebuilt(
    site: StandinSite, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    marker, done = tmp_path / "join.pid", tmp_path / "join.done"
    wrapper = tmp_path / "ffmpeg-orphan"
    wrapper.write_text(
        ORPHAN_JOIN.format(python=sys.executable, real=FFMPEG, marker=str(marker), done=str(done)),
        "utf-8",
    )
    wrapper.chmod(0o755)
    args = [sys.executable, "-m", "tokysnatcher", SLUG, "--format", "m4b"]
    args += [*fast_options(site, root), "--ffmpeg", str(wrapper)]
    run = subprocess.Popen(
        args,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(marker, "the join", run)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        wait_for(done, "the orphaned join's end")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=10)
    assert done.read_text() == "0"
    folder = book_folder(root)
    stray = list((folder / WORK / "m4b").glob("*.m4b"))
    assert len(stray) == 1
    assert stray[0].stat().st_size > 0  # the orphan wrote its file to the end
    assert not list(folder.glob("*.m4b"))  # but never under the book's name
    assert "book_file" not in manifest_of(folder)

    segments = site.stats.requests.get("segment", 0)
    result = run_cli([SLUG, "--format", "m4b", "--resume", *fast_options(site, root)])

    assert result.returncode == 0, result.stderr + result.stdout
    assert site.stats.requests.get("segment", 0) == segments
    assert "book file (made)" in result.stderr
    assert_m4b_complete(folder)
    assert not (folder / WORK / "m4b").exists()


def test_a_stray_join_output_is_removed_even_when_the_book_is_already_complete(
    site: StandinSite, tmp_path: Path
) -> None:
    root = tmp_path / "lib"
    result = run_cli([SLUG, "--format", "m4b", *fast_options(site, root)])
    assert result.returncode == 0, result.stderr + result.stdout
    folder = book_folder(root)
    made = sha256_file(folder / BOOK_FILE)
    join = folder / WORK / "m4b"
    join.mkdir()
    (join / "book.0123abcd.m4b").write_bytes((folder / BOOK_FILE).read_bytes()[:-1000])

    result = run_cli([SLUG, "--format", "m4b", "--resume", *fast_options(site, root)])

    assert result.returncode == 0, result.stderr + result.stdout
    assert "already complete, verified" in result.stderr
    assert not join.exists()
    assert sha256_file(folder / BOOK_FILE) == made
