"""How a run ended: one :class:`ChapterResult` per chapter and the :class:`RunResult`.

These are what the summary, the ``--report`` JSON and the exit code are made from (SPEC §6);
each is read off the chapter's :class:`~tokysnatcher.download.state.Chapter` when the run ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokysnatcher.download.state import Chapter, Phase
from tokysnatcher.errors import DownloadError

_STATUS = {
    Phase.DONE: "complete",
    Phase.FAILED: "failed",
    Phase.SKIPPED: "skipped",
}


@dataclass
class ChapterResult:
    """How one chapter ended, for the summary and the JSON report (SPEC §6)."""

    index: int
    title: str
    filename: str
    status: str  # complete | failed | skipped | pending (interrupted)
    attempts: int = 0
    kinds: list[str] = field(default_factory=list)
    kind: str | None = None
    message: str = ""
    file_size: int = 0  # the chapter's file on disk (complete or skipped)
    bytes_received: int = 0  # downloaded for it this run, every attempt and retry
    chapter_retries: int = 0
    request_retries: int = 0
    seconds: float = 0.0


@dataclass
class RunResult:
    """The whole run: every chapter, totals, and whether it was cut short (and why)."""

    chapters: list[ChapterResult]
    bytes_received: int
    seconds: float
    interrupted: bool = False
    stopped_by: DownloadError | None = None  # a disk error that ended the run

    @property
    def failed(self) -> list[ChapterResult]:
        """The chapters that failed for good."""
        return [c for c in self.chapters if c.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when everything asked for is complete (exit code 0)."""
        return not self.interrupted and self.stopped_by is None and not self.failed

    @property
    def chapter_retries(self) -> int:
        """Attempts of a chapter after its first."""
        return sum(c.chapter_retries for c in self.chapters)

    @property
    def request_retries(self) -> int:
        """Quick retries of one request (a segment, a playlist) inside an attempt."""
        return sum(c.request_retries for c in self.chapters)

    @property
    def file_bytes(self) -> int:
        """Sizes of the chapter files this run made or found complete."""
        return sum(c.file_size for c in self.chapters)

    @property
    def success_rate(self) -> float | None:
        """Complete among chapters that reached an end (complete or failed); None if none did."""
        complete = sum(1 for c in self.chapters if c.status == "complete")
        ended = complete + len(self.failed)
        return complete / ended if ended else None


def chapter_result(chapter: Chapter, *, now: float) -> ChapterResult:
    """The outcome of ``chapter`` as its state says when the run ends."""
    status = _STATUS.get(chapter.phase, "pending")  # anything unfinished is pending (interrupted)
    return ChapterResult(
        index=chapter.index,
        title=chapter.title,
        filename=chapter.filename,
        status=status,
        attempts=chapter.attempt,
        kinds=[str(k) for k in chapter.kinds],
        kind=str(chapter.kind) if status == "failed" and chapter.kind else None,
        message=chapter.message if status == "failed" else "",
        file_size=chapter.file_size,
        bytes_received=chapter.bytes_received,
        chapter_retries=chapter.chapter_retries,
        request_retries=chapter.request_retries,
        seconds=chapter.seconds(now),
    )
