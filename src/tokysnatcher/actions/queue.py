"""The queue commands: ``--queue-add``, ``--queue-list``, ``--queue-remove``,
``--queue-priority``, ``--queue-pause`` / ``--queue-resume`` and ``--queue-run``.

``--queue-run`` downloads each entry with the same per-book function a single reference uses
(:func:`tokysnatcher.actions.download.download`), one after the other, so every book is resumed,
archived and recorded in the history the same way.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path

from tokysnatcher.actions.download import download
from tokysnatcher.config.settings import OutputFormat, Settings
from tokysnatcher.errors import ExitCode, Interrupted, TokysnatcherError
from tokysnatcher.store.database import DatabaseError, database_path, opened
from tokysnatcher.store.queue import EntryState, Queue, QueueEntry, run_lock
from tokysnatcher.ui.display import visible
from tokysnatcher.ui.output import Output
from tokysnatcher.ui.store_view import describe_entry, print_json, queue_table
from tokysnatcher.utils.units import ChapterSpec

RUN_AGAIN = (
    "Run tokysnatcher --queue-run again to continue; the book under way resumes from its manifest."
)


def queue_add(refs: list[str], priority: int, settings: Settings, output: Output) -> ExitCode:
    """Queue each reference with this run's format, chapters and library folder.

    Every reference is checked before any is added: a bad one adds none (exit 2).
    """
    from tokysnatcher.net.http import make_session
    from tokysnatcher.sources.registry import open_source

    session = make_session(1)
    books: list[tuple[str, str, str]] = []
    try:
        for ref in refs:  # each reference names its own source
            source = open_source(session, settings, wait=threading.Event().wait, ref=ref)
            # The reference only, but for a LibriVox page (read once for the id it links).
            books.append((ref, source.name, source.book_slug(ref)))
    finally:
        session.close()
    chapters = str(settings.chapters) if settings.chapters else None
    with opened(settings.data_dir) as database:
        queue = Queue(database)
        for ref, name, book_id in books:
            entry, added = queue.add(
                ref=ref,
                source=name,
                book_id=book_id,
                fmt=str(settings.output_format),
                chapters=chapters,
                directory=settings.directory.absolute(),
                priority=priority,
            )
            said = "queued" if added else "already queued"
            output.out.print(visible(f"{said} {describe_entry(entry)}"), markup=False)
    return ExitCode.OK


def queue_list(settings: Settings, output: Output, *, as_json: bool) -> ExitCode:
    with opened(settings.data_dir) as database:
        entries = Queue(database).entries()
    if as_json:
        print_json(
            output,
            [
                {**asdict(entry), "state": entry.shown_state, "run_state": str(entry.state)}
                for entry in entries
            ],
        )
    else:
        queue_table(output, entries, database_path(settings.data_dir))
    return ExitCode.OK


def queue_remove(entry_id: int, settings: Settings, output: Output) -> ExitCode:
    with opened(settings.data_dir) as database:
        entry = Queue(database).remove(entry_id)
    note = " (its download under way goes on until it ends)" if _running(entry) else ""
    output.out.print(visible(f"removed {describe_entry(entry)}{note}"), markup=False)
    return ExitCode.OK


def queue_priority(entry_id: int, priority: int, settings: Settings, output: Output) -> ExitCode:
    with opened(settings.data_dir) as database:
        entry = Queue(database).set_priority(entry_id, priority)
    output.out.print(visible(f"priority changed: {describe_entry(entry)}"), markup=False)
    return ExitCode.OK


def queue_pause(entry_id: int, paused: bool, settings: Settings, output: Output) -> ExitCode:
    with opened(settings.data_dir) as database:
        entry = Queue(database).set_paused(entry_id, paused)
    said = "paused" if paused else "resumed"
    note = " (its download under way goes on until it ends)" if paused and _running(entry) else ""
    output.out.print(visible(f"{said} {describe_entry(entry)}{note}"), markup=False)
    return ExitCode.OK


def _running(entry: QueueEntry) -> bool:
    return entry.state is EntryState.RUNNING


def entry_settings(entry: QueueEntry, settings: Settings) -> Settings:
    """This run's settings with the entry's format, chapters and folder.

    An entry resumes what its manifest proves complete without a prompt, whoever is watching:
    a queue runs unattended.
    """
    return settings.replace(
        output_format=OutputFormat(entry.format),
        chapters=ChapterSpec.parse(entry.chapters) if entry.chapters else None,
        directory=Path(entry.directory),
        resume=not settings.force_redownload,
    )


def queue_run(settings: Settings, output: Output) -> ExitCode:
    """Download the queue's entries, highest priority first, until none is left to run.

    Exit 0 when every entry completed, 1 when any failed (it stays in the queue, marked
    failed, and the next ``--queue-run`` tries it again), 130 when interrupted.
    """
    data_dir = database_path(settings.data_dir).parent
    with opened(settings.data_dir) as database, run_lock(data_dir):
        queue = Queue(database)
        queue.start_run()
        complete: list[QueueEntry] = []
        failed: list[tuple[QueueEntry, str]] = []
        while (entry := queue.take_next()) is not None:
            waiting = sum(
                1 for e in queue.entries() if e.state is EntryState.WAITING and not e.paused
            )
            output.info(f"queue: {describe_entry(entry)}; {waiting} more waiting")
            try:
                code, message = _run_entry(entry, settings, output)
            except BaseException:
                with suppress(DatabaseError):  # the entry waits again, for the next run
                    queue.finished(entry, ExitCode.INTERRUPTED)
                raise
            queue.finished(entry, code, message)
            if code == ExitCode.INTERRUPTED:
                raise Interrupted(f"the queue run was interrupted at #{entry.id}", hint=RUN_AGAIN)
            if code == ExitCode.OK:
                complete.append(entry)
            else:
                failed.append((entry, message or f"exit code {code}"))
        left = sum(1 for e in queue.entries() if e.paused)
    line = f"queue run done: {len(complete)} complete, {len(failed)} failed"
    if left:
        line += f", {left} paused left in the queue"
    output.out.print(line, style="bold" if not failed else "red")
    for entry, message in failed:
        output.out.print(visible(f"  failed #{entry.id} {entry.ref}: {message}"), markup=False)
    if failed:
        output.out.print("failed entries stay in the queue: --queue-run tries them again")
    return ExitCode.FAILED if failed else ExitCode.OK


def _run_entry(entry: QueueEntry, settings: Settings, output: Output) -> tuple[int, str | None]:
    """Download one entry: its exit code and, when it ended in an error, the error's message."""
    try:
        return download(entry.ref, entry_settings(entry, settings), output), None
    except DatabaseError:
        raise  # the database went bad under us: nothing more can be recorded
    except Interrupted as err:
        return ExitCode.INTERRUPTED, err.message
    except TokysnatcherError as err:
        # One book's error (not found, folder in use ...) is that book's failure, not the queue's.
        Output.error_line(err.message, err.hint)
        return err.exit_code, err.message
