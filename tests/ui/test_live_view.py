"""The reporters: what the live view draws, what plain and quiet runs print (fake clock)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from tokysnatcher.errors import FailureKind
from tokysnatcher.ui.live import (
    REFRESH_PER_SECOND,
    LiveView,
    PlainLines,
    QuietReporter,
    make_reporter,
)
from tokysnatcher.ui.status import ChapterState, ChapterView, RunStatus

KIB = 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def console(*, terminal: bool, width: int = 120, height: int = 40) -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    made = Console(
        file=stream,
        width=width,
        height=height,
        force_terminal=terminal,
        color_system=None,
        highlight=False,
        legacy_windows=False,
    )
    return made, stream


def chapter(index: int, state: ChapterState, **fields: object) -> ChapterView:
    view = ChapterView(
        index=index, title=f"Chapter {index}", filename=f"{index:02d} - Chapter {index}.mp3"
    )
    view.state = state
    view.max_attempts = 4
    for name, value in fields.items():
        setattr(view, name, value)
    return view


def status_with(*views: ChapterView, **fields: object) -> RunStatus:
    status = RunStatus(
        book_title="The Sample Book",
        author="Ada Quill",
        destination=Path("/lib/Ada Quill/The Sample Book"),
        total_chapters=len(views),
        connections=8,
    )
    for view in views:
        status.chapters[view.index] = view
    for name, value in fields.items():
        setattr(status, name, value)
    return status


def draw(view: LiveView, width: int = 120, height: int = 40) -> str:
    out, stream = console(terminal=False, width=width, height=height)
    out.print(view.render())
    return stream.getvalue()


def test_retrying_says_which_retry_of_how_many_and_when() -> None:
    view = chapter(3, ChapterState.RETRYING, attempt=1, retry_due=1003.2)
    assert view.state_text(1000.0) == "retrying 1/3 in 4s"
    assert view.state_text(1003.2) == "retrying 1/3 in 0s"
    again = chapter(3, ChapterState.DOWNLOADING, attempt=2)
    assert again.state_text(1000.0) == "downloading (retry 1/3)"
    converting = chapter(3, ChapterState.CONVERTING, message="converting 40%")
    assert converting.state_text(1000.0) == "converting 40%"


def test_live_view_header_and_active_chapters() -> None:
    clock = FakeClock()
    downloading = chapter(2, ChapterState.DOWNLOADING, bytes_done=0, bytes_expected=400 * KIB)
    views = [
        chapter(1, ChapterState.DONE, size=300 * KIB),
        downloading,
        chapter(3, ChapterState.CONVERTING, bytes_done=200 * KIB, bytes_expected=200 * KIB),
        chapter(4, ChapterState.RETRYING, attempt=1, retry_due=1005.0, kind=FailureKind.HTTP_5XX),
        chapter(5, ChapterState.FAILED, kind=FailureKind.NOT_FOUND),
        chapter(6, ChapterState.WAITING),
    ]
    status = status_with(*views, speed_limit=150 * KIB, active_connections=3, retries=1)
    view = LiveView(Console(file=io.StringIO()), clock=clock)
    view.status = status
    draw(view)  # the first frame starts the speed meters
    clock.now += 2.0
    with status.lock:
        downloading.bytes_done = 100 * KIB
        status.bytes_total = 300 * KIB
    screen = draw(view)

    lines = screen.splitlines()
    assert lines[0] == "The Sample Book by Ada Quill"
    assert lines[1] == "-> /lib/Ada Quill/The Sample Book"
    assert re.match(
        r"chapters 1/6 done  connections 3/8  150\.0 KiB/s \(limit 150\.0 KiB/s\)  "
        r"ETA \d+:\d\d  failed 1  retries 1$",
        lines[2],
    ), lines[2]
    row = next(line for line in lines if "Chapter 2" in line)
    assert re.search(r"downloading .* 25\.0% 100\.0 KiB  50\.0 KiB/s  ETA 0:06$", row), row
    assert "converting" in next(line for line in lines if "Chapter 3" in line)
    assert "retrying 1/3 in 3s" in next(line for line in lines if "Chapter 4" in line)
    # Finished chapters (done or failed) only count in the header; waiting ones in the footer.
    assert "Chapter 1" not in screen
    assert "Chapter 5" not in screen
    assert lines[-1] == "1 waiting"


def test_rows_fit_the_terminal_and_the_rest_is_counted() -> None:
    views = [chapter(n, ChapterState.DOWNLOADING) for n in range(1, 21)]
    view = LiveView(Console(file=io.StringIO(), height=10, width=100), clock=FakeClock())
    view.status = status_with(*views)
    screen = draw(view, height=10)
    assert len(screen.splitlines()) <= 10
    assert screen.splitlines()[-1] == "15 more active"


def test_live_view_prints_messages_above_and_leaves_the_final_frame() -> None:
    out, stream = console(terminal=True)
    view = LiveView(out, clock=FakeClock())
    status = status_with(chapter(1, ChapterState.DOWNLOADING), chapter(2, ChapterState.WAITING))
    view.start(status)
    view.log("stream token expired; renewed it", level="info")
    with status.lock:
        status.chapters[1].state = ChapterState.FAILED
        status.chapters[1].kind = FailureKind.NOT_FOUND
        status.chapters[1].message = "HTTP 404"
        status.chapters[2].state = ChapterState.DONE
    view.event(status.chapters[1])
    view.stop()
    view.stop()  # idempotent
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", stream.getvalue())
    assert "stream token expired; renewed it" in text
    assert "chapter 1 failed [not_found] HTTP 404" in text
    final = text[text.rindex("The Sample Book by Ada Quill") :]
    assert "chapters 1/2 done" in final
    assert "failed 1" in final
    assert text.index("chapter 1 failed") < text.rindex("The Sample Book by Ada Quill")


def test_refresh_rate_is_at_most_ten_a_second() -> None:
    assert 0 < REFRESH_PER_SECOND <= 10


def test_plain_lines_one_per_event_without_escape_codes() -> None:
    out, stream = console(terminal=False)
    clock = FakeClock()
    reporter = PlainLines(out, clock=clock)
    status = status_with(chapter(1, ChapterState.WAITING), chapter(2, ChapterState.WAITING))
    reporter.start(status)
    for view in (
        chapter(1, ChapterState.DOWNLOADING),
        chapter(1, ChapterState.CONVERTING),
        chapter(1, ChapterState.DONE, size=120 * KIB),
        chapter(
            2,
            ChapterState.RETRYING,
            attempt=1,
            retry_due=1002.0,
            kind=FailureKind.HTTP_5XX,
            message="HTTP 503",
        ),
        chapter(2, ChapterState.FAILED, kind=FailureKind.NOT_FOUND, message="HTTP 404"),
    ):
        reporter.event(view)
    reporter.log("a warning", level="warning")
    text = stream.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "The Sample Book by Ada Quill: 2 chapters -> /lib/Ada Quill/The Sample Book",
        "chapter 1/2 'Chapter 1': downloading",
        "chapter 1/2 'Chapter 1': done (120.0 KiB) -> 01 - Chapter 1.mp3",
        "chapter 2/2 'Chapter 2': retrying 1/3 in 2s after [http_5xx] HTTP 503",
        "chapter 2/2 'Chapter 2': failed [not_found] HTTP 404",
        "a warning",
    ]


def test_plain_lines_verbose_adds_every_state() -> None:
    out, stream = console(terminal=False)
    reporter = PlainLines(out, verbose=True, clock=FakeClock())
    reporter.event(chapter(1, ChapterState.CONVERTING))
    assert stream.getvalue() == "chapter 1/? 'Chapter 1': converting\n"


def test_quiet_reporter_prints_failures_and_errors_only() -> None:
    out, stream = console(terminal=False)
    reporter = QuietReporter(out)
    reporter.start(status_with(chapter(1, ChapterState.WAITING)))
    reporter.event(chapter(1, ChapterState.DONE))
    reporter.log("token renewed", level="info")
    reporter.log("a warning", level="warning")
    assert stream.getvalue() == ""
    reporter.event(chapter(1, ChapterState.FAILED, kind=FailureKind.AUTH, message="HTTP 403"))
    reporter.log("disk full", level="error")
    assert stream.getvalue().splitlines() == [
        "error: chapter 1 failed [auth] HTTP 403",
        "error: disk full",
    ]


@pytest.mark.parametrize(
    ("terminal", "verbosity", "expected"),
    [
        (True, "normal", LiveView),
        (True, "debug", LiveView),
        (False, "normal", PlainLines),
        (False, "verbose", PlainLines),
        (True, "quiet", QuietReporter),
        (False, "quiet", QuietReporter),
    ],
)
def test_make_reporter_picks_by_terminal_and_verbosity(
    terminal: bool, verbosity: str, expected: type
) -> None:
    out, _ = console(terminal=terminal)
    assert type(make_reporter(out, verbosity)) is expected


def test_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    out, _ = console(terminal=True)
    assert type(make_reporter(out, "normal")) is PlainLines


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_narrow_terminals_shorten_the_title_never_the_numbers(width: int) -> None:
    clock = FakeClock()
    long_title = chapter(
        7, ChapterState.DOWNLOADING, bytes_done=0, bytes_expected=400 * KIB, title="T" * 60
    )
    view = LiveView(Console(file=io.StringIO(), width=width), clock=clock)
    view.status = status_with(long_title, chapter(8, ChapterState.RETRYING, attempt=2))
    draw(view, width=width)
    clock.now += 1.0
    long_title.bytes_done = 100 * KIB
    lines = draw(view, width=width).splitlines()
    row = next(line for line in lines if line.startswith("  7 "))
    assert all(len(line) <= width for line in lines)
    if width >= 80:
        assert row.endswith("25.0% 100.0 KiB  100.0 KiB/s  ETA 0:03")
    else:  # too narrow for everything: the percentage stays
        assert row.endswith(" 25.0%")
    assert "downloading" in row
    assert "TTTT…" in row
    assert ("T" * 31 + "…" in row) == (width >= 160)
    assert "retrying 2/3 in 0s" in next(line for line in lines if line.startswith("  8 "))
