"""How a run ended: one :class:`ChapterResult` per chapter and the :class:`RunResult`.

These are what the summary, the ``--report`` JSON and the exit code are made from (SPEC §6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokysnatcher.download.chapter import ChapterJob
from tokysnatcher.errors import DownloadError
from tokysnatcher.ui.status import ChapterState

_STATUS = {
    ChapterState.DONE: "complete",
    ChapterState.FAILED: "failed",
    ChapterState.SKIPPED: "skipped",
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
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class RunResult:
    """The whole run: every chapter, totals, and whether it was cut short (and why)."""

    chapters: list[ChapterResult]
    bytes_received: int
    seconds: float
    retries: int
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


def chapter_result(job: ChapterJob, attempts: int, *, now: float) -> ChapterResult:
    """The outcome of ``job`` from its view (``attempts``: made so far, per the retry queue)."""
    view = job.view
    status = _STATUS.get(view.state, "pending")  # anything unfinished is pending (interrupted)
    begun, ended = view.started_at, view.finished_at or now
    return ChapterResult(
        index=job.index,
        title=view.title,
        filename=job.dest.name,
        status=status,
        attempts=attempts if begun is not None else 0,
        kinds=[str(k) for k in view.kinds],
        kind=str(view.kind) if status == "failed" and view.kind else None,
        message=view.message if status == "failed" else "",
        bytes=job.done_bytes,
        seconds=(ended - begun) if begun is not None else 0.0,
    )
