"""The queue's order and changes, on a real SQLite file (two connections, as two processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tokysnatcher.errors import ExitCode, UsageError
from tokysnatcher.store.database import Database, database_path
from tokysnatcher.store.queue import EntryState, Queue, QueueBusy, run_lock


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    database = Database.open(database_path(tmp_path))
    assert database is not None
    yield Queue(database)
    database.close()


def add(queue: Queue, book: str, priority: int = 0, fmt: str = "mp3") -> int:
    entry, added = queue.add(
        ref=book,
        source="tokybook",
        book_id=book,
        fmt=fmt,
        chapters=None,
        directory=Path("/lib"),
        priority=priority,
    )
    assert added
    return entry.id


def run_order(queue: Queue) -> list[str]:
    taken = []
    while (entry := queue.take_next()) is not None:
        taken.append(entry.book_id)
        queue.finished(entry, ExitCode.OK)
    return taken


def test_higher_priority_first_and_first_added_first_within_one(queue: Queue) -> None:
    for book, priority in (("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5)):
        add(queue, book, priority)
    assert [e.book_id for e in queue.entries()] == ["d", "b", "e", "a", "c"]
    assert run_order(queue) == ["d", "b", "e", "a", "c"]
    assert queue.entries() == []


def test_pause_resume_priority_and_remove(queue: Queue) -> None:
    a, b, c = add(queue, "a"), add(queue, "b"), add(queue, "c")
    queue.set_paused(a, True)
    queue.set_priority(c, 7)
    queue.remove(b)
    listed = queue.entries()
    assert [(e.book_id, e.shown_state) for e in listed] == [("c", "waiting"), ("a", "paused")]
    assert run_order(queue) == ["c"]
    queue.set_paused(a, False)
    assert run_order(queue) == ["a"]
    with pytest.raises(UsageError, match="no queue entry #99"):
        queue.remove(99)


def test_the_same_book_alike_is_queued_once(queue: Queue) -> None:
    first = add(queue, "a")
    again, added = queue.add(
        ref="https://tokybook.com/post/a",
        source="tokybook",
        book_id="a",
        fmt="mp3",
        chapters=None,
        directory=Path("/lib"),
        priority=3,
    )
    assert (again.id, added) == (first, False)
    add(queue, "a", fmt="m4b")  # another format is another entry


def test_books_added_by_another_process_meanwhile_are_taken_next(
    queue: Queue, tmp_path: Path
) -> None:
    add(queue, "a")
    running = queue.take_next()
    assert running is not None
    other = Database.open(database_path(tmp_path))  # a --queue-add in another terminal
    assert other is not None
    add(Queue(other), "late", priority=1)
    other.close()
    queue.finished(running, ExitCode.OK)
    assert run_order(queue) == ["late"]


def test_a_killed_runs_entry_and_failed_ones_wait_again(queue: Queue) -> None:
    a, b = add(queue, "a"), add(queue, "b")
    taken = queue.take_next()
    assert taken is not None
    assert taken.id == a
    failed = queue.take_next()
    assert failed is not None
    queue.finished(failed, ExitCode.FAILED, "2 chapters failed")
    assert queue.get(b).state is EntryState.FAILED
    # The process died with "a" running: the next run starts it first again.
    queue.start_run()
    assert {e.state for e in queue.entries()} == {EntryState.WAITING}
    assert run_order(queue) == ["a", "b"]


def test_an_interrupted_book_waits_again(queue: Queue) -> None:
    a = add(queue, "a")
    taken = queue.take_next()
    assert taken is not None
    queue.finished(taken, ExitCode.INTERRUPTED)
    assert queue.get(a).state is EntryState.WAITING


def test_one_queue_run_at_a_time(tmp_path: Path) -> None:
    with run_lock(tmp_path), pytest.raises(QueueBusy, match="another tokysnatcher --queue-run"):
        with run_lock(tmp_path):
            pass
    with run_lock(tmp_path):  # released: the next run gets it
        pass
