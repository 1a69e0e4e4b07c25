"""What fetch workers, conversions and the user tell the scheduler: one frozen dataclass each.

Workers never change shared state; they post these to the scheduler's queue, which applies them
to the chapter's :class:`~tokysnatcher.download.state.Chapter`. Every event names the attempt
(``generation``) it belongs to, so one of an attempt that is over is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokysnatcher.download.chapter import ChapterJob, Resolved
from tokysnatcher.errors import DownloadError, FailureKind
from tokysnatcher.library.manifest_schema import ExpectedDuration


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to one attempt of one chapter."""

    job: ChapterJob
    generation: int


@dataclass(frozen=True, slots=True)
class PlaylistResolved(Event):
    resolved: Resolved


@dataclass(frozen=True, slots=True)
class BytesReceived(Event):
    """Bytes of a request still under way (sent only for requests that take a while)."""

    count: int


@dataclass(frozen=True, slots=True)
class SegmentFetched(Event):
    """A request finished: ``size`` bytes on disk, ``received`` of them not reported yet."""

    index: int
    size: int
    received: int


@dataclass(frozen=True, slots=True)
class RequestRetried(Event):
    """A request failed and is tried again inside the attempt (a quick retry)."""

    what: str  # "chapter 3 segment 2", "chapter 3 playlist"
    kind: FailureKind
    message: str
    number: int  # 1 for the first retry of this request
    delay: float
    received: int  # bytes the failed try received that were not reported yet
    retry_after: float | None = None  # the server's Retry-After, when it sent one


@dataclass(frozen=True, slots=True)
class ConvertProgress(Event):
    seconds: float


@dataclass(frozen=True, slots=True)
class Converted(Event):
    size: int
    sha256: str
    expected: ExpectedDuration | None


@dataclass(frozen=True, slots=True)
class AttemptFailed(Event):
    error: DownloadError


# -- what the user asks of the run (keys in the live view) ------------------------------------
# Commands go to the same queue as the events, so the scheduler thread applies them too: it
# stays the one writer of the run's state.


@dataclass(frozen=True, slots=True)
class Command:
    """Something the user asked of the whole run or one chapter."""


@dataclass(frozen=True, slots=True)
class PauseRun(Command):
    """Pause the run (in-flight requests finish, no new one starts), or resume it."""


@dataclass(frozen=True, slots=True)
class PauseChapter(Command):
    """Pause chapter ``index`` (its connections serve the others), or resume it."""

    index: int


@dataclass(frozen=True, slots=True)
class ChangeConnections(Command):
    """Raise (``delta`` > 0) or lower the connection limit."""

    delta: int
