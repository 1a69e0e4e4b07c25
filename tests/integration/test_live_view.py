"""The real command in a pseudo-terminal: the live view, colours, prompts, Ctrl-C, the cursor
and site text that must not act on the terminal.

The child gets the pty as its controlling terminal, so typing Ctrl-C reaches it the way it
reaches a program in a real terminal. What it writes is replayed on a small screen model
(text, carriage return, newline, erase line, cursor up: all Rich's live view uses), so the
tests look at what a person would see, frame by frame.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from helpers import (
    FFMPEG,
    HOSTILE_SLUG,
    NEEDS_PTY,
    assert_inert,
    cli_env,
    fast_options,
    hostile_text_book,
    run_cli,
)
from tokysnatcher.standin import Faults, StandinSite, make_book

if sys.platform != "win32":  # POSIX-only modules (the tests skip on Windows)
    import fcntl
    import termios

pytestmark = [pytest.mark.integration, NEEDS_PTY]

_TOKEN = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|(\r)|(\n)|([^\x1b\r\n]+)")
_COLOR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|4[0-9]|9[0-7]|38;|48;)[0-9;]*m")
FRAME_START = b"\r\x1b[2K"  # Rich redraws a live frame from the start of its first line
HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"  # cursor visibility (DECTCEM)


class Screen:
    """Just enough of a terminal for what Rich writes; keeps every line (no scrolling off)."""

    def __init__(self) -> None:
        self.lines = [""]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        for match in _TOKEN.finditer(text):
            params, command, cr, lf, plain = match.groups()
            if command:
                count = int(params) if params.isdigit() else 1
                if command == "A":
                    self.row = max(0, self.row - count)
                elif command == "K":
                    line = self.lines[self.row]
                    self.lines[self.row] = "" if params == "2" else line[: self.col]
                elif command == "G":
                    self.col = count - 1
            elif cr:
                self.col = 0
            elif lf:
                self.row += 1
                self.col = 0
                if self.row == len(self.lines):
                    self.lines.append("")
            elif plain:
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[: self.col] + plain + line[self.col + len(plain) :]
                self.col += len(plain)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.lines).strip("\n")


class Terminal:
    """``python -m tokysnatcher ARGS`` on a pseudo-terminal of ``cols`` x ``rows``."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cols: int = 120,
        rows: int = 40,
        timeout: float = 60,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if env is None:
            env = cli_env(TERM="xterm-256color")
            for name in ("NO_COLOR", "COLUMNS", "LINES"):
                env.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tokysnatcher", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            # The pty becomes the controlling terminal: Ctrl-C typed there sends SIGINT.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.master = master
        self.timeout = timeout
        self.started = time.monotonic()
        self.chunks: list[tuple[float, bytes]] = []
        self.screen = Screen()
        self.frames: list[tuple[float, str]] = []  # what the screen showed after each write
        self.closed = False

    @property
    def raw(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)

    @property
    def transcript(self) -> str:
        """Everything written, escape codes removed."""
        text = self.raw.decode("utf-8", "replace")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r", "", text)

    def _read(self, wait: float) -> None:
        if self.closed:
            return
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its end
            data = b""
        if not data:
            self.closed = True
            return
        now = time.monotonic() - self.started
        self.chunks.append((now, data))
        self.screen.feed(data.decode("utf-8", "replace"))
        self.frames.append((now, self.screen.text()))

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        """Read until ``check(screen)`` holds; the screen at that moment."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen.text()
            if check(screen):
                return screen
            if self.closed:
                break
            self._read(0.05)
        raise AssertionError(f"never saw {what}; the screen:\n{self.screen.text()}")

    def expect(self, text: str, timeout: float = 30) -> str:
        return self.wait_for(lambda screen: text in screen, repr(text), timeout)

    def type(self, keys: str) -> None:
        # A person reads the question before answering (and a signal sent within a moment
        # of the prompt made the child's exit hang in the kernel for seconds in this VM).
        time.sleep(0.3)
        os.write(self.master, keys.encode())

    def finish(self) -> int:
        """Read until the program ends; its exit code."""
        deadline = time.monotonic() + self.timeout
        while not self.closed and time.monotonic() < deadline:
            self._read(0.1)
        return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def start(args: Sequence[str], **kwargs: object) -> Terminal:
        term = Terminal(args, **kwargs)  # type: ignore[arg-type]
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.close()


def header_lines(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if line == "The Sample Book by Ada Quill"]


# -- the live view ------------------------------------------------------------------------------
def test_live_view_shows_title_states_percentages_speed_and_eta(
    site: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    # The speed limit keeps the run on screen for a few seconds and is shown in the header.
    term = terminal(["the-sample-book", *fast_options(site, tmp_path), "--speed-limit", "100K"])
    assert term.finish() == 0, term.transcript
    header = re.compile(
        r"^chapters [0-4]/4 done  connections \d+/\d+( \(auto[a-z: ]*\))?  [\d.]+ (B|KiB)/s "
        r"\(limit 100\.0 KiB/s\)  "
        r"ETA (\d+:\d\d|--:--)$",
        re.MULTILINE,
    )
    row = re.compile(
        r"^ +\d (Prologue|The Long Road|A Quiet Harbour|Epilogue) +downloading .*"
        r" +\d+\.\d% [\d.]+ KiB  [\d.]+ KiB/s  ETA \d+:\d\d$",
        re.MULTILINE,
    )
    destination = f"-> {tmp_path / 'Ada Quill' / 'The Sample Book'}"
    live = [screen for _, screen in term.frames if header.search(screen)]
    assert live, term.transcript
    assert all(destination in screen for screen in live)
    assert all(len(header_lines(screen)) == 1 for screen in live)  # redrawn in place
    assert any(row.search(screen) for screen in live), live[-1]
    assert any(re.search(r"[1-9][\d.]* KiB/s \(limit.*ETA \d+:\d\d", s) for s in live)

    final = term.screen.text()
    assert "chapters 4/4 done" in final
    # Finished chapters collapse into the count: no chapter rows are left.
    assert not re.search(r"^ +\d (Prologue|The Long Road|A Quiet Harbour|Epilogue) ", final, re.M)
    assert "The Sample Book - 4 complete, 0 failed" in final
    assert len(header_lines(final)) == 1

    # Smooth, not frantic: at most 10 redraws a second over the run.
    times = [t for t, chunk in term.chunks for _ in range(chunk.count(FRAME_START))]
    assert len(times) >= 10, term.transcript
    assert len(times) - 1 <= 10 * (times[-1] - times[0]) + 1, (len(times), times[-1] - times[0])
    assert _COLOR.search(term.raw.decode()), "a terminal without NO_COLOR gets colours"


def test_messages_print_above_the_live_view(
    standin_cache: Path, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    # -v prints every chapter event; an expiring token logs a renewal; a missing chapter fails.
    faults = Faults(token_max_uses=6, missing_tracks=frozenset({("the-sample-book", 2)}))
    with StandinSite(faults=faults, cache_dir=standin_cache) as slow:
        term = terminal(
            ["the-sample-book", *fast_options(slow, tmp_path), "--speed-limit", "200K", "-v"]
        )
        assert term.finish() == 1, term.transcript
    final = term.screen.text()
    lines = final.splitlines()
    top = lines.index("The Sample Book by Ada Quill")
    assert len(header_lines(final)) == 1
    above, view = lines[:top], lines[top:]
    assert "stream token expired; renewed it through the playlist API" in above
    assert any(re.fullmatch(r"chapter 3 failed \[not_found\] .*404.*", line) for line in above)
    for index, title in ((1, "Prologue"), (2, "The Long Road"), (4, "Epilogue")):
        assert sum(f"chapter {index}/4 '{title}': done" in line for line in above) == 1
    # The final frame is whole, at the bottom, below every message.
    assert view[1].startswith("-> ")
    assert view[2].startswith("chapters 3/4 done")
    assert view[3].startswith("failed 1"), "trouble has a line of its own"
    assert "3 complete, 1 failed" in final


def test_retry_countdown_then_ctrl_c(
    standin_cache: Path, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    # A 429 asking for 6 s is too long for a quick retry: every chapter waits for its retry.
    faults = Faults(fail_first=1, error_kinds=("429",), retry_after=6.0)
    with StandinSite(faults=faults, cache_dir=standin_cache) as busy:
        term = terminal(["the-sample-book", *fast_options(busy, tmp_path)])
        screen = term.wait_for(
            lambda s: re.search(r"retrying 1/3 in [3-6]s", s) is not None, "a retry countdown"
        )
        assert "chapters 0/4 done" in screen
        term.type("\x03")
        started = time.monotonic()
        assert term.finish() == 130, term.transcript
        assert time.monotonic() - started < 5
    assert "to resume: tokysnatcher" in term.transcript
    assert "Traceback" not in term.transcript


def test_the_cursor_is_never_left_hidden_not_even_by_kill_9(
    site: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(["the-sample-book", *fast_options(site, tmp_path), "--speed-limit", "100K"])
    term.expect("connections")  # the live view is up
    term.proc.send_signal(signal.SIGKILL)
    assert term.finish() == -signal.SIGKILL
    raw = term.raw
    # What the terminal is left with: the last cursor-visibility sequence it received.
    seen = re.findall(rb"\x1b\[\?25[hl]", raw)
    assert seen, raw
    assert seen[-1] == SHOW
    # Not hidden even for a moment: a hide only ever comes straight before a show.
    assert HIDE not in raw.replace(HIDE + SHOW, b"")


def test_site_text_in_the_live_view_and_the_search_picker_is_inert(
    standin_cache: Path, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    book = hostile_text_book()
    with StandinSite(catalog={book.slug: book}, cache_dir=standin_cache) as hostile:
        options = [*fast_options(hostile, tmp_path), "--speed-limit", "20K", "-v"]
        term = terminal([HOSTILE_SLUG, *options])
        assert term.finish() == 0, term.transcript
        picker = terminal(["-s", "evil", *options])
        picker.expect("q quit")
        picker.type("q\r")
        assert picker.finish() == 0, picker.transcript
    for shown in (term, picker):
        text = shown.raw.decode()
        # Our own colour codes are fine; the site's sequences never arrive raw.
        for sequence in ("\x1b]0;pwned", "\x1b[2J", "\x1b[5m", "\x07", "\u202e", "\u2067"):
            assert sequence not in text, (sequence, text)
        assert_inert(shown.screen.text())
        assert "Evil\\x1b]0;pwned\\x07 Book" in shown.screen.text()
    frames = [screen for _, screen in term.frames if "connections" in screen]
    assert frames, term.transcript
    row = re.compile(r"^ +1 Chapter\\x1b\[2J\\u2067 one", re.MULTILINE)  # the chapter's bar
    assert any(row.search(screen) for screen in frames), frames[-1]


def test_no_color_keeps_the_view_but_drops_colours(
    site: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    options = [*fast_options(site, tmp_path), "--speed-limit", "300K", "--format", "m4a"]
    env = cli_env(TERM="xterm-256color", NO_COLOR="1")
    env.pop("COLUMNS")
    plain = terminal(["the-sample-book", *options], env=env)
    assert plain.finish() == 0
    raw = plain.raw.decode()
    assert FRAME_START.decode() in raw  # still a live view
    assert not _COLOR.search(raw), _COLOR.search(raw)
    assert "chapters 4/4 done" in plain.screen.text()


# -- prompts ------------------------------------------------------------------------------------
@pytest.fixture
def downloaded(site: StandinSite, tmp_path: Path) -> list[str]:
    """The sample book, complete, under tmp_path; the options that point at it."""
    options = [*fast_options(site, tmp_path), "--format", "m4a"]
    assert run_cli(["the-sample-book", *options]).returncode == 0
    return options


def test_resume_prompt_in_a_terminal(
    downloaded: list[str], terminal: Callable[..., Terminal]
) -> None:
    term = terminal(["the-sample-book", *downloaded])
    term.expect("[r]esume, re[d]ownload all, or [c]ancel?")
    term.type("r\r")
    assert term.finish() == 0, term.transcript
    assert "0 complete, 0 failed, 4 skipped" in term.screen.text()


def test_ctrl_c_at_the_resume_prompt(
    downloaded: list[str], terminal: Callable[..., Terminal]
) -> None:
    term = terminal(["the-sample-book", *downloaded])
    term.expect("[c]ancel?")
    term.type("\x03")
    assert term.finish() == 130
    errors = [line for line in term.screen.text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1, term.transcript
    assert "Traceback" not in term.transcript


def test_menu_paste_a_url(
    site: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal([*fast_options(site, tmp_path), "--format", "m4a"])
    term.expect("choose 1-4")
    for label in ("search the site", "paste a book URL or slug", "list downloads", "exit"):
        assert label in term.screen.text()
    term.type("2\r")
    term.expect("book URL or slug")
    term.type("https://example.com/post/x\r")  # a bad answer is explained, then asked again
    term.expect("not a tokybook book URL")
    term.wait_for(lambda s: s.count("choose 1-4") >= 2, "the menu again")
    term.type("u\r")
    term.wait_for(lambda s: s.count("book URL or slug") >= 2, "the question again")
    term.type(f"{site.base_url}/post/the-sample-book\r")
    assert term.finish() == 0, term.transcript
    assert "4 complete, 0 failed" in term.screen.text()


@pytest.mark.parametrize("keys", ["4\r", "x\r", "\x03", "\x04"])
def test_menu_exit_ctrl_c_and_end_of_input(
    site: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal], keys: str
) -> None:
    term = terminal(fast_options(site, tmp_path))
    term.expect("choose 1-4")
    term.type(keys)
    code = term.finish()
    assert "Traceback" not in term.transcript
    if keys in ("4\r", "x\r"):
        assert code == 0
    else:
        assert code == 130
        errors = [line for line in term.screen.text().splitlines() if line.startswith("error:")]
        assert len(errors) == 1, term.transcript
    assert not (tmp_path / "Ada Quill").exists()


@pytest.fixture(scope="module")
def shelf(standin_cache: Path) -> Iterator[StandinSite]:
    """Twelve tiny books, so that search results take two pages."""
    books = [
        make_book(f"tiny-tale-{n:02d}", title=f"Tiny Tale {n:02d}", chapters=1, chapter_seconds=1)
        for n in range(1, 13)
    ]
    with StandinSite(catalog={b.slug: b for b in books}, cache_dir=standin_cache) as running:
        yield running


def test_search_pages_through_results_and_downloads_the_pick(
    shelf: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(["-s", "tiny", *fast_options(shelf, tmp_path), "--format", "m4a"])
    term.expect("results 1-10 of 12")
    assert " 10. Tiny Tale 10" in term.screen.text()
    term.type("n\r")
    term.expect("results 11-12 of 12")
    term.type("3\r")  # not on this page: explained, asked again
    term.expect("please answer")
    term.type("p\r")
    term.wait_for(lambda s: s.count("results 1-10 of 12") >= 2, "the first page again")
    term.type("n\r")
    term.wait_for(lambda s: s.count("results 11-12 of 12") >= 2, "the second page again")
    term.type("12\r")
    assert term.finish() == 0, term.transcript
    assert (tmp_path / "Anon Author" / "Tiny Tale 12" / "01 - Chapter 1.m4a").is_file()


def test_ctrl_c_in_the_search_picker(
    shelf: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(["-s", "tiny", *fast_options(shelf, tmp_path)])
    term.expect("q quit")
    term.type("\x03")
    assert term.finish() == 130
    assert "Traceback" not in term.transcript
    assert "error: interrupted" in term.screen.text()


def test_menu_lists_downloads(downloaded: list[str], terminal: Callable[..., Terminal]) -> None:
    term = terminal(downloaded)
    term.expect("choose 1-4")
    term.type("l\r")
    term.expect("The Sample Book")
    assert re.search(r"Ada Quill\s+m4a\s+4/4", term.screen.text()), term.screen.text()
    term.type("\x03")  # whatever --list-downloads asks next, Ctrl-C leaves cleanly
    assert term.finish() in (0, 130), term.transcript
    assert "Traceback" not in term.transcript


# A wrapper around the real ffmpeg that runs the m4b join (the concat input) at 8x playback
# speed: a join of two 12 s parts lasts about 3 s, long enough to be seen on screen.
SLOW_JOIN = """#!{python}
import os, sys
args = sys.argv[1:]
if "concat" in args:
    at = args.index("concat") - 1
    args[at:at] = ["-readrate", "8"]
os.execv({real!r}, [{real!r}, *args])
"""


def test_the_live_view_through_a_stall_and_an_m4b_join(
    standin_cache: Path, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(SLOW_JOIN.format(python=sys.executable, real=FFMPEG), "utf-8")
    wrapper.chmod(0o755)
    # The first request of every audio file stalls: each chapter stalls once, then recovers.
    faults = Faults(fail_first=1, error_kinds=("stall",), stall_seconds=20.0)
    root = tmp_path / "lib"
    with StandinSite(faults=faults, cache_dir=standin_cache) as stalling:
        args = ["the-sample-book", "--format", "m4b", "--chapters", "1-2"]
        args += ["--ffmpeg", str(wrapper), *fast_options(stalling, root), "--stall-timeout", "4"]
        term = terminal(args, timeout=120)
        stalled = term.wait_for(
            lambda s: re.search(r"stalled - retry in \d+s", s) is not None, "a stall", 60
        )
        assert "100.0%" not in stalled
        joining = term.wait_for(
            lambda s: re.search(r"^joining m4b \d+%$", s, re.M) is not None, "the join", 90
        )
        assert "chapters 2/2 done" in joining
        assert term.finish() == 0, term.transcript
    shown = {
        int(match)
        for _, screen in term.frames
        for match in re.findall(r"^joining m4b (\d+)%$", screen, re.M)
    }
    assert len(shown) >= 2, shown  # the join's own progress moves
    final = term.screen.text()
    assert "2 complete, 0 failed" in final
    # Request retries (the stalled ones) are counted and labelled; none became a chapter retry.
    assert re.search(r"retries: 0 chapter, [1-9]\d* request", final), final
    assert "Traceback" not in term.transcript


# -- keys ---------------------------------------------------------------------------------------
KEYS_SLUG = "keys-book"
DOWN = "\x1b[B"


@pytest.fixture(scope="module")
def slow_site(standin_cache: Path) -> Iterator[StandinSite]:
    """Four chapters of six segments, each request answered after a quarter second."""
    book = make_book(
        KEYS_SLUG, title="Keys Book", chapters=4, chapter_seconds=6.0, segment_seconds=1.0
    )
    with StandinSite(
        catalog={KEYS_SLUG: book}, faults=Faults(latency=0.25), cache_dir=standin_cache
    ) as running:
        yield running


def requests_seen(site: StandinSite) -> int:
    return sum(site.stats.requests.values())


def cooked(term: Terminal) -> bool:
    """The terminal reads whole lines and echoes them: the mode a shell expects back."""
    lflag = termios.tcgetattr(term.master)[3]
    return bool(lflag & termios.ICANON and lflag & termios.ECHO)


def test_keys_pause_the_run_then_one_chapter_and_resume_both(
    slow_site: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    options = [*fast_options(slow_site, tmp_path), "--connections", "2"]
    term = terminal([KEYS_SLUG, *options])
    term.expect("p pause")  # the keys footer: the view reads keys
    assert not cooked(term), "keys are read a key at a time, without echo"
    term.wait_for(lambda s: "downloading" in s, "a chapter downloading")

    term.type("p")
    pressed = time.monotonic()
    term.expect("paused - p resumes")
    while time.monotonic() < pressed + 1.0:  # in-flight requests finish within a second
        term._read(0.05)
    settled = requests_seen(slow_site)
    while time.monotonic() < pressed + 2.0:
        term._read(0.05)
    assert requests_seen(slow_site) == settled, "a paused run started a request"
    assert "p resume" in term.screen.text()
    # The connection limit moves, paused or not.
    term.type("+")
    term.wait_for(lambda s: re.search(r"connections \d/3 ", s) is not None, "a limit of 3")
    term.type("-")
    term.wait_for(lambda s: re.search(r"connections \d/2 ", s) is not None, "a limit of 2")

    # While the run is paused: select the first chapter and pause it, then resume the run.
    term.type(DOWN)
    selected = re.compile(r"^> (\d) Chapter", re.MULTILINE)
    screen = term.wait_for(lambda s: selected.search(s) is not None, "a chapter selected")
    found = selected.search(screen)
    assert found is not None
    chapter = found.group(1)
    term.type(" ")
    term.type("p")
    term.wait_for(lambda s: "paused - p resumes" not in s, "the run resumed")
    held_row = re.compile(rf"^> {chapter} Chapter {chapter} +paused", re.MULTILINE)
    term.wait_for(
        lambda s: "chapters 3/4 done" in s and held_row.search(s) is not None,
        "the other chapters done, the paused one still paused",
    )
    assert requests_seen(slow_site) > settled
    held = requests_seen(slow_site)
    term._read(1.0)
    assert requests_seen(slow_site) == held, "a paused chapter started a request"

    term.type(" ")  # resume it: the book completes
    assert term.finish() == 0, term.transcript
    assert "4 complete, 0 failed" in term.transcript
    assert cooked(term), "the terminal is left as it was"


@pytest.mark.parametrize("how", ["q", "SIGTERM"])
def test_q_stops_like_ctrl_c_and_the_terminal_is_restored(
    how: str, slow_site: StandinSite, tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal([KEYS_SLUG, *fast_options(slow_site, tmp_path), "--connections", "2"])
    term.wait_for(lambda s: "downloading" in s and "q quit" in s, "the live view with its keys")
    assert not cooked(term)
    started = time.monotonic()
    if how == "q":
        term.type("q")
    else:
        term.proc.send_signal(signal.SIGTERM)
    assert term.finish() == 130, term.transcript
    assert time.monotonic() - started < 5
    assert "to resume: tokysnatcher" in term.transcript
    assert "Traceback" not in term.transcript
    assert cooked(term)
    manifests = list(tmp_path.rglob(".tokysnatcher.json"))
    assert len(manifests) == 1
    statuses = {e["status"] for e in json.loads(manifests[0].read_text())["chapters"].values()}
    assert "downloading" not in statuses, statuses  # saved: unfinished chapters are pending


def test_no_key_is_read_when_stdin_is_not_a_terminal(
    slow_site: StandinSite, tmp_path: Path
) -> None:
    # The view runs on a terminal, but stdin is a pipe holding "q": it is never read.
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = cli_env(TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokysnatcher", KEYS_SLUG, *fast_options(slow_site, tmp_path)],
        stdin=subprocess.PIPE,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    assert proc.stdin is not None
    proc.stdin.write(b"qqq p ")
    proc.stdin.flush()
    output = b""
    try:
        while proc.poll() is None or select.select([master], [], [], 0)[0]:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
        assert proc.wait(timeout=60) == 0, output.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = output.decode("utf-8", "replace")
    assert "connections" in text  # the live view ran
    assert "q quit" not in text
    assert "p pause" not in text
    assert "4 complete, 0 failed" in text
