"""Helpers for tests: run the real command, read audio with the real ffmpeg."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import imageio_ffmpeg
import pytest

from tokysnatcher.cli import main
from tokysnatcher.standin import BookSpec, StandinSite, make_book
from tokysnatcher.ui.display import BIDI_CONTROLS

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKYSNATCHER_")}
    env.pop("CI", None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "120"
    # Keep the user's real config file out of the tests.
    env["TOKYSNATCHER_CONFIG"] = os.devnull + ".absent.toml"
    # A database of its own for each command (in the test's data folder, see conftest.py):
    # the archive of one run must not skip a book in the next unless a test asks for that, by
    # passing the same TOKYSNATCHER_DATA_DIR to both.
    env["TOKYSNATCHER_DATA_DIR"] = tempfile.mkdtemp(
        prefix="data-", dir=os.environ.get("XDG_DATA_HOME")
    )
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, output captured (so not a terminal); ``stdin``: the
    text its standard input reads (else none)."""
    return subprocess.run(
        [sys.executable, "-m", "tokysnatcher", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        check=False,
    )


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """:func:`main_in_process` as (code, out, err), with the ``in_process`` fixture's clean
    environment."""
    result = main_in_process(args, capsys)
    return result.returncode, result.stdout, result.stderr


def start_cli(args: Sequence[str | os.PathLike[str]]) -> subprocess.Popen[str]:
    """The real command started in a child process, its output piped (so not a terminal)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tokysnatcher", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )


def main_in_process(
    args: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> subprocess.CompletedProcess[str]:
    """``cli.main(args)`` in this process, its output captured and its signal handlers undone.

    For quick commands (a child process costs a second or more); the environment is the
    test's (use ``monkeypatch``).
    """
    # SIGHUP is POSIX's: Windows has none to restore.
    caught = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    handlers = {sig: signal.getsignal(sig) for sig in caught}
    try:
        with pytest.raises(SystemExit) as done:
            main(list(args))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(
        list(args), int(done.value.code or 0), captured.out, captured.err
    )


def fast_options(site: StandinSite, root: Path) -> list[str]:
    """Options every integration run uses: the stand-in site, a temp root, quick retries."""
    return [
        "--base-url",
        site.base_url,
        "-d",
        str(root),
        "--retry-delay",
        "0.2",
        "--stall-timeout",
        "3",
    ]


def decoded_md5(path: Path) -> str:
    # Run directly, not through the ffmpeg process registry: in-process cli.main() runs close
    # it for the rest of the pytest process.
    result = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a", "-f", "md5", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def metadata(path: Path) -> dict[str, str]:
    """Tags as ffmpeg reads them (keys lower-cased)."""
    result = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tags: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if "=" in line and not line.startswith((";", "[")):
            key, _, value = line.partition("=")
            tags.setdefault(key.lower(), value)
    return tags


def chapters(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, title) per chapter, read with ``ffmpeg -i X -f ffmetadata -``."""
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    found: list[dict[str, str]] = []
    for line in out.splitlines():
        if line == "[CHAPTER]":
            found.append({})
        elif found and "=" in line:
            key, _, value = line.partition("=")
            found[-1][key.lower()] = value
    result = []
    for chapter in found:
        num, den = (int(x) for x in chapter["timebase"].split("/"))
        scale = num / den
        result.append(
            (int(chapter["start"]) * scale, int(chapter["end"]) * scale, chapter["title"])
        )
    return result


def audio_info(path: Path) -> tuple[str, float]:
    """(codec, duration in seconds) of the first audio stream, read by decoding with ffmpeg."""
    result = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path), "-map", "0:a", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codec = ""
    for line in result.stderr.splitlines():
        if "Audio:" in line and not codec:
            codec = line.split("Audio:")[1].split()[0].strip(",")
    times = [part for part in result.stderr.replace("\r", "\n").split() if part.startswith("time=")]
    hours, minutes, seconds = times[-1][5:].split(":")
    return codec, int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def pcm(path: Path) -> bytes:
    """Decoded audio as mono 16-bit PCM."""
    result = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a", "-ac", "1", "-f", "s16le", "-"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return result.stdout


# Two MP3 frames: what gapless headers (encoder delay and padding) may trim at the edges.
MP3_EDGE_SAMPLES = 2 * 1152


def assert_same_audio(output: Path, source: Path, *, edge_samples: int = 0) -> None:
    """The decoded output equals the decoded source, but for ``edge_samples`` trimmed or padded.

    MP3 stream copies carry a gapless (LAME/Xing) header, so a decoder skips the encoder delay
    the raw MPEG-TS source still plays; the samples in between must be identical.
    """
    out, src = pcm(output), pcm(source)
    if edge_samples == 0:
        assert out == src
        return
    assert abs(len(out) - len(src)) <= 2 * edge_samples * 2, (len(out), len(src))
    shorter, longer = (out, src) if len(out) <= len(src) else (src, out)
    core = shorter[2 * edge_samples : len(shorter) - 2 * edge_samples]
    assert core, "audio shorter than the allowed edges"
    assert longer.find(core) != -1, "the audio differs beyond gapless trimming at the edges"


# A site whose text would act on a terminal printed raw: it sets the window title (OSC), clears
# the screen and blinks (CSI), reverses the rest (U+202E, U+2067) and forges a line of output.
HOSTILE_SLUG = "hostile-text"
HOSTILE_TITLE = "Evil\x1b]0;pwned\x07 Book\x1b[2J\x1b[5m\u202ekoob\nfake: done"
HOSTILE_AUTHOR = "Mal\x1b]0;pwned\x07lory\u202eroht\nfake: done"
HOSTILE_CHAPTER = "Chapter\x1b[2J\u2067 one\r\nfake: done"
# Everything site text could use to act on a terminal (a newline is ours, between lines).
_CONTROLS = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029" + "".join(sorted(BIDI_CONTROLS)) + "]"
)


def hostile_text_book() -> BookSpec:
    """A short book whose title, author, narrator and first chapter title hold the above."""
    return make_book(
        HOSTILE_SLUG,
        title=HOSTILE_TITLE,
        author=HOSTILE_AUTHOR,
        narrator="Nar\x1b[5mrator",
        chapters=2,
        chapter_seconds=2.0,
        segment_seconds=1.0,
        chapter_titles=(HOSTILE_CHAPTER,),
    )


def assert_inert(text: str) -> None:
    """No control character, C1 code or bidi control reached ``text``; no line is forged."""
    found = _CONTROLS.search(text)
    assert found is None, (found, text)
    assert not [line for line in text.splitlines() if line.lstrip().startswith("fake: done")]


def posix_only(why: str) -> pytest.MarkDecorator:
    """Skip on Windows, saying which POSIX feature the test needs (never a silent skip)."""
    return pytest.mark.skipif(sys.platform == "win32", reason=f"Windows: {why}")


#: The command driven through a pseudo-terminal: prompts answered, Ctrl-C typed.
NEEDS_PTY = posix_only("needs a POSIX pseudo-terminal (pty); a Windows console cannot be driven so")
#: POSIX signals sent to a child (SIGINT, SIGHUP, SIGKILL ...): Windows has only console events.
NEEDS_SIGNALS = posix_only("sends POSIX signals (SIGINT, SIGHUP, SIGKILL) to the command")
#: A ``#!`` script run in place of ffmpeg: Windows runs only .exe, .bat and .cmd files.
NEEDS_SCRIPTS = posix_only("runs a #! script in place of ffmpeg")
#: A file size limit (RLIMIT_FSIZE), /dev/full, root's mounts or sessions: Linux/POSIX kernels.
NEEDS_POSIX_KERNEL = posix_only("needs rlimits, /dev/full, mount namespaces or sessions (POSIX)")
