"""The reporters: what the live view draws, what plain and quiet runs print (fake clock).

Each draws a :class:`Chapter` as the scheduler leaves it; the chapters here are set up through
the same methods the scheduler calls.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from tokysnatcher.download.events import RequestRetried
from tokysnatcher.download.state import BatchState, BookPhase, BookRun, Chapter, Phase, RunState
from tokysnatcher.errors import DownloadError, FailureKind
from tokysnatcher.ui.live import (
    REFRESH_PER_SECOND,
    LiveView,
    PlainLines,
    QuietReporter,
    make_reporter,
)
from tokysnatcher.ui.status import SmoothedRate, state_text

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


def chapter(index: int, phase: Phase, **fields: object) -> Chapter:
    made = Chapter(
        index=index,
        title=f"Chapter {index}",
        filename=f"{index:02d} - Chapter {index}.mp3",
        max_attempts=4,
    )
    made.phase = phase
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def downloading(index: int, *, done: int, of: int, segment: int, inflight: int = 0) -> Chapter:
    """A chapter ``done`` of ``of`` segments in (``segment`` bytes each), ``inflight`` more."""
    made = chapter(index, Phase.DOWNLOADING, segments_total=of)
    for _ in range(done):
        made.kept(segment)
    made.inflight_bytes = inflight
    return made


def status_with(*chapters: Chapter, **fields: object) -> RunState:
    status = RunState(
        book_title="The Sample Book",
        author="Ada Quill",
        destination=Path("/lib/Ada Quill/The Sample Book"),
        connections=8,
    )
    for made in chapters:
        status.chapters[made.index] = made
    for name, value in fields.items():
        setattr(status, name, value)
    return status


def draw(view: LiveView, width: int = 120, height: int = 40) -> str:
    out, stream = console(terminal=False, width=width, height=height)
    out.print(view.render())
    return stream.getvalue()


def test_retrying_says_which_retry_of_how_many_and_when() -> None:
    waiting = chapter(3, Phase.RETRYING, attempt=1, retry_due=1003.2)
    assert state_text(waiting, 1000.0) == "retrying 1/3 in 4s"
    assert state_text(waiting, 1003.2) == "retrying 1/3 in 0s"
    again = chapter(3, Phase.DOWNLOADING, attempt=2)
    assert state_text(again, 1000.0) == "downloading (retry 1/3)"
    converting = chapter(3, Phase.CONVERTING, convert_fraction=0.4)
    assert state_text(converting, 1000.0) == "converting 40%"


def test_a_chapter_without_a_byte_is_queued_not_downloading_0_b() -> None:
    clock = FakeClock()
    made = chapter(1, Phase.WAITING)
    made.start_attempt(1, clock.now)
    view = LiveView(Console(file=io.StringIO()), clock=clock)
    view.status = status_with(made)
    row = next(line for line in draw(view).splitlines() if "Chapter 1" in line)
    assert "queued" in row
    assert "downloading" not in row
    assert "0 B" not in row
    made.received(10 * KIB, clock.now)
    assert made.phase is Phase.DOWNLOADING


def test_never_100_percent_before_the_last_segment_is_on_disk() -> None:
    # Three of four segments in, the fourth's bytes all received (or more: a retried request).
    made = downloading(1, done=3, of=4, segment=100 * KIB, inflight=150 * KIB)
    fraction = made.fraction()
    assert fraction is not None
    assert fraction < 1.0
    assert f"{100 * fraction:5.1f}%" != "100.0%"
    made.segment_done(100 * KIB)
    assert made.fraction() == 1.0


def test_a_stall_says_stalled_and_when_the_retry_comes() -> None:
    clock = FakeClock()
    made = downloading(1, done=1, of=4, segment=100 * KIB)
    made.received(KIB, clock.now)
    view = LiveView(Console(file=io.StringIO()), clock=clock)
    view.status = status_with(made, stall_timeout=30.0)
    clock.now += 10.0  # no byte for ten seconds: the request is cut at thirty
    row = next(line for line in draw(view).splitlines() if "Chapter 1" in line)
    assert "stalled - retry in 20s" in row
    assert "100.0%" not in row
    made.request_retrying(clock.now + 2.0)  # cut: the quick retry waits two seconds
    row = next(line for line in draw(view).splitlines() if "Chapter 1" in line)
    assert "stalled - retry in 2s" in row
    made.received(KIB, clock.now + 2.5)
    clock.now += 2.5
    row = next(line for line in draw(view).splitlines() if "Chapter 1" in line)
    assert "stalled" not in row
    assert "downloading" in row
    made.request_retrying(clock.now + 1.0, FailureKind.HTTP_5XX)  # a 503 is no stall
    row = next(line for line in draw(view).splitlines() if "Chapter 1" in line)
    assert "http_5xx - retry in 1s" in row
    assert "stalled" not in row


def test_the_eta_is_smoothed_and_does_not_jump_tenfold() -> None:
    rate = SmoothedRate()
    now, total = 0.0, 0
    rate.sample(now, total)
    etas = []
    # A steady 100 KiB/s, then one quarter second with a burst ten times as fast.
    for step in range(40):
        now += 0.25
        total += 25 * KIB if step != 30 else 250 * KIB
        etas.append(1000 * KIB / rate.sample(now, total))
    steady = etas[29]
    assert max(etas[30:]) / steady < 10
    assert steady / min(etas[30:]) < 2


@pytest.mark.parametrize(
    ("chapter_retries", "request_retries", "shown"),
    [(0, 0, None), (0, 5, "retries 5 request"), (2, 0, "retries 2 chapter")],
)
def test_the_header_names_only_the_levels_that_retried(
    chapter_retries: int, request_retries: int, shown: str | None
) -> None:
    loading = downloading(1, done=1, of=4, segment=100 * KIB)
    loading.chapter_retries = chapter_retries
    loading.request_retries = request_retries
    view = LiveView(Console(file=io.StringIO()), clock=FakeClock())
    view.status = status_with(loading)
    lines = draw(view).splitlines()
    assert lines[2].startswith("chapters 0/1 done"), lines
    trouble = [line for line in lines if line.startswith("retries")]
    assert trouble == ([] if shown is None else [shown]), lines


def test_live_view_header_and_active_chapters() -> None:
    clock = FakeClock()
    loading = downloading(2, done=1, of=4, segment=100 * KIB)
    views = [
        chapter(1, Phase.DONE, file_size=300 * KIB),
        loading,
        chapter(3, Phase.CONVERTING, segments_total=2, segments_done=2, segment_bytes=200 * KIB),
        chapter(4, Phase.RETRYING, attempt=1, retry_due=1005.0, kind=FailureKind.HTTP_5XX),
        chapter(5, Phase.FAILED, kind=FailureKind.NOT_FOUND),
        chapter(6, Phase.WAITING),
    ]
    views[3].chapter_retries = 1
    views[1].request_retries = 2
    status = status_with(*views, speed_limit=150 * KIB, active_connections=3)
    view = LiveView(Console(file=io.StringIO()), clock=clock)
    view.status = status
    draw(view)  # the first frame starts the speed meters
    clock.now += 2.0
    with status.lock:
        loading.inflight_bytes = 100 * KIB
        status.bytes_received = 300 * KIB
    screen = draw(view)

    lines = screen.splitlines()
    assert lines[0] == "The Sample Book by Ada Quill"
    assert lines[1] == "-> /lib/Ada Quill/The Sample Book"
    assert re.match(
        r"chapters 1/6 done  connections 3/8  150\.0 KiB/s \(limit 150\.0 KiB/s\)  "
        r"ETA \d+:\d\d$",
        lines[2],
    ), lines[2]
    assert lines[3] == "failed 1  retries 1 chapter, 2 request", "trouble on a line of its own"
    row = next(line for line in lines if "Chapter 2" in line)
    assert re.search(r"downloading .* 50\.0% 200\.0 KiB  50\.0 KiB/s  ETA 0:04$", row), row
    assert "converting" in next(line for line in lines if "Chapter 3" in line)
    assert "retrying 1/3 in 3s" in next(line for line in lines if "Chapter 4" in line)
    # Finished chapters (done or failed) only count in the header; waiting ones in the footer.
    assert "Chapter 1" not in screen
    assert "Chapter 5" not in screen
    assert lines[-1] == "1 waiting"


def test_an_interrupted_run_says_so_and_counts_no_chapter_as_waiting() -> None:
    clock = FakeClock()
    views = [chapter(1, Phase.DONE), chapter(2, Phase.DOWNLOADING), chapter(3, Phase.WAITING)]
    status = status_with(*views)
    view = LiveView(Console(file=io.StringIO()), clock=clock)
    view.status = status
    for made in views:
        made.interrupted()
    status.interrupted = True
    lines = draw(view).splitlines()
    assert lines[3] == "interrupted", lines
    assert not any("waiting" in line for line in lines)
    assert lines[-1] == "2 not finished"


def test_the_m4b_join_is_a_step_of_its_own() -> None:
    view = LiveView(Console(file=io.StringIO()), clock=FakeClock())
    view.status = status_with(chapter(1, Phase.DONE), chapter(2, Phase.DONE), joining=0.42)
    lines = draw(view).splitlines()
    assert "chapters 2/2 done" in lines[2]
    assert lines[3] == "joining m4b 42%"


def test_rows_fit_the_terminal_and_the_rest_is_counted() -> None:
    views = [chapter(n, Phase.DOWNLOADING) for n in range(1, 21)]
    view = LiveView(Console(file=io.StringIO(), height=10, width=100), clock=FakeClock())
    view.status = status_with(*views)
    screen = draw(view, height=10)
    assert len(screen.splitlines()) <= 10
    assert screen.splitlines()[-1] == "15 more active"


def test_live_view_prints_messages_above_and_leaves_the_final_frame() -> None:
    out, stream = console(terminal=True)
    view = LiveView(out, clock=FakeClock())
    status = status_with(chapter(1, Phase.DOWNLOADING), chapter(2, Phase.WAITING))
    view.start(status)
    with status.lock:
        status.chapters[1].failed(DownloadError("HTTP 404", kind=FailureKind.NOT_FOUND), 1.0)
        status.chapters[2].phase = Phase.DONE
    view.event(status.chapters[1])
    view.stop()
    view.stop()  # idempotent
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", stream.getvalue())
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
    status = status_with(chapter(1, Phase.WAITING), chapter(2, Phase.WAITING))
    reporter.start(status)
    for made in (
        chapter(1, Phase.QUEUED),
        chapter(1, Phase.DOWNLOADING),
        chapter(1, Phase.CONVERTING),
        chapter(1, Phase.DONE, file_size=120 * KIB, bytes_received=110 * KIB),
        chapter(
            2,
            Phase.RETRYING,
            attempt=1,
            retry_due=1002.0,
            kind=FailureKind.HTTP_5XX,
            message="HTTP 503",
        ),
        chapter(2, Phase.FAILED, kind=FailureKind.NOT_FOUND, message="HTTP 404"),
    ):
        reporter.event(made)
    text = stream.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "The Sample Book by Ada Quill: 2 chapters -> /lib/Ada Quill/The Sample Book",
        "chapter 1/2 'Chapter 1': downloading",
        "chapter 1/2 'Chapter 1': done (file 120.0 KiB, downloaded 110.0 KiB) "
        "-> 01 - Chapter 1.mp3",
        "chapter 2/2 'Chapter 2': retrying 1/3 in 2s after [http_5xx] HTTP 503",
        "chapter 2/2 'Chapter 2': failed [not_found] HTTP 404",
    ]


def test_an_m4b_chapter_is_named_as_a_part() -> None:
    out, stream = console(terminal=False)
    reporter = PlainLines(out, clock=FakeClock())
    done = chapter(1, Phase.DONE, file_size=120 * KIB, bytes_received=110 * KIB)
    done.filename = "01 - Chapter 1.m4a"
    reporter.start(status_with(done, parts=True))
    reporter.event(done)
    assert stream.getvalue().splitlines()[-1] == (
        "chapter 1/1 'Chapter 1': done (part 120.0 KiB, downloaded 110.0 KiB) "
        "-> part 01 - Chapter 1.m4a"
    )


def retry_event(made: Chapter) -> RequestRetried:
    return RequestRetried(
        job=None,  # type: ignore[arg-type]  # the reporters never look at the job
        generation=1,
        what="chapter 3 segment 2",
        kind=FailureKind.HTTP_5XX,
        message="chapter 3 segment 2: HTTP 503 Service Unavailable",
        number=1,
        delay=0.5,
        received=0,
    )


@pytest.mark.parametrize(
    ("verbosity", "expected"),
    [
        ("normal", []),
        ("verbose", ["chapter 3 segment 2: retry 1/5 in 0.5 s [http_5xx]"]),
        (
            "debug",
            ["chapter 3 segment 2: retry 1/5 in 0.5 s [http_5xx] - HTTP 503 Service Unavailable"],
        ),
    ],
)
def test_request_retries_show_from_v_with_their_kind_and_the_prefix_once(
    verbosity: str, expected: list[str]
) -> None:
    out, stream = console(terminal=False)
    reporter = make_reporter(out, verbosity, 5)
    made = chapter(3, Phase.DOWNLOADING)
    reporter.retried(made, retry_event(made))
    assert stream.getvalue().splitlines() == expected


def test_plain_lines_verbose_adds_every_state() -> None:
    out, stream = console(terminal=False)
    reporter = PlainLines(out, verbose=True, clock=FakeClock())
    reporter.event(chapter(1, Phase.QUEUED))
    assert stream.getvalue() == "chapter 1/? 'Chapter 1': queued\n"


def test_quiet_reporter_prints_failures_only() -> None:
    out, stream = console(terminal=False)
    reporter = QuietReporter(out)
    reporter.start(status_with(chapter(1, Phase.WAITING)))
    reporter.event(chapter(1, Phase.DONE))
    reporter.retried(chapter(1, Phase.DOWNLOADING), retry_event(chapter(1, Phase.DOWNLOADING)))
    assert stream.getvalue() == ""
    reporter.event(chapter(1, Phase.FAILED, kind=FailureKind.AUTH, message="HTTP 403"))
    assert stream.getvalue().splitlines() == ["error: chapter 1 failed [auth] HTTP 403"]


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
    assert type(make_reporter(out, verbosity, 5)) is expected


def test_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    out, _ = console(terminal=True)
    assert type(make_reporter(out, "normal", 5)) is PlainLines


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_narrow_terminals_shorten_the_title_never_the_numbers(width: int) -> None:
    clock = FakeClock()
    long_title = downloading(7, done=1, of=4, segment=100 * KIB)
    long_title.title = "T" * 60
    view = LiveView(Console(file=io.StringIO(), width=width), clock=clock)
    view.status = status_with(long_title, chapter(8, Phase.RETRYING, attempt=2))
    draw(view, width=width)
    clock.now += 1.0
    long_title.inflight_bytes = 100 * KIB
    lines = draw(view, width=width).splitlines()
    row = next(line for line in lines if line.startswith("  7 "))
    assert all(len(line) <= width for line in lines)
    if width >= 80:
        assert row.endswith("50.0% 200.0 KiB  100.0 KiB/s  ETA 0:02")
    else:  # too narrow for everything: the percentage stays
        assert row.endswith(" 50.0%")
    assert "downloading" in row
    assert "TTTT…" in row
    assert ("T" * 31 + "…" in row) == (width >= 160)
    assert "retrying 2/3 in 0s" in next(line for line in lines if line.startswith("  8 "))


def test_a_batch_adds_a_header_line_for_its_books() -> None:
    clock = FakeClock()
    current = status_with(downloading(1, done=2, of=4, segment=100 * KIB), bytes_received=200 * KIB)
    first = status_with(chapter(1, Phase.DONE), bytes_received=400 * KIB)
    books = [
        BookRun(number=1, ref="first", label="first"),
        BookRun(number=2, ref="second", label="second"),
        BookRun(number=3, ref="third", label="third"),
        BookRun(number=4, ref="fourth", label="fourth"),
    ]
    books[0].running(first)
    books[0].ended(BookPhase.COMPLETE)
    books[1].ended(BookPhase.FAILED, "no book with the slug 'second'")
    books[2].running(current)
    view = LiveView(Console(file=io.StringIO()), clock=clock, batch=BatchState(books=books))
    view.status = current
    lines = draw(view).splitlines()
    assert lines[0].startswith("book 3/4  books done 1  failed 1  total 600.0 KiB  batch ETA")
    assert lines[1].startswith("The Sample Book by Ada Quill")
    # One book: no batch line, the view is as it always was.
    alone = LiveView(Console(file=io.StringIO()), clock=clock, batch=BatchState(books=books[2:3]))
    alone.status = current
    assert draw(alone).splitlines()[0].startswith("The Sample Book by Ada Quill")


def test_plain_lines_of_a_book_of_a_batch_say_which_book() -> None:
    out, stream = console(terminal=False)
    lines = PlainLines(out, clock=FakeClock(), prefix="[2/3 the-sample-book] ")
    lines.start(status_with(chapter(1, Phase.WAITING)))
    lines.event(chapter(1, Phase.DONE, file_size=KIB, bytes_received=KIB))
    printed = stream.getvalue().splitlines()
    assert len(printed) == 2
    assert all(line.startswith("[2/3 the-sample-book] ") for line in printed)


def test_the_header_says_why_the_connection_limit_is_what_it_is_and_a_network_wait() -> None:
    clock = FakeClock()
    status = status_with(
        downloading(1, done=1, of=4, segment=10 * KIB),
        connections=6,
        active_connections=5,
        connections_reason="auto: throughput rising",
        network_retry_at=clock.now + 2.5,
    )
    view = LiveView(Console(file=io.StringIO(), width=120), clock=clock)
    view.status = status
    lines = draw(view).splitlines()
    assert re.match(r"chapters 0/1 done  connections 5/6 \(auto: throughput rising\)  ", lines[2])
    assert lines[3] == "waiting for the network - next try in 3s"
    # On a narrow screen the reason gives way: the figures never wrap.
    narrow = LiveView(Console(file=io.StringIO(), width=60), clock=clock)
    narrow.status = status
    assert draw(narrow, width=60).splitlines()[2].startswith("chapters 0/1 done  connections 5/6  ")
