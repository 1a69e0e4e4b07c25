"""The exception tree and exit codes.

Every error the tool raises on purpose derives from :class:`TokysnatcherError` and carries a
one-line message plus a hint that tells the user what to do. ``cli.py`` prints both and exits
with ``exit_code``; nothing else in the package prints errors or calls ``sys.exit``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """Process exit codes (SPEC §2)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130


class FailureKind(StrEnum):
    """Why a chapter (or one request of it) failed (SPEC §5).

    Whether a kind is worth retrying is a property of the kind, see :attr:`transient`.
    """

    NETWORK = "network"
    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    INVALID_MEDIA = "invalid_media"
    FFMPEG_STALLED = "ffmpeg_stalled"
    DISK = "disk"
    CANCELLED = "cancelled"

    @property
    def transient(self) -> bool:
        """True when another attempt may succeed."""
        return self in _TRANSIENT

    @property
    def stops_run(self) -> bool:
        """True when this failure ends the whole run, not only the chapter (a full disk)."""
        return self is FailureKind.DISK


_TRANSIENT = frozenset(
    {
        FailureKind.NETWORK,
        FailureKind.TIMEOUT,
        FailureKind.HTTP_5XX,
        FailureKind.RATE_LIMITED,
        FailureKind.AUTH,
        FailureKind.FFMPEG_STALLED,
    }
)


class TokysnatcherError(Exception):
    """Root of every error the tool raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        return self.message


class UsageError(TokysnatcherError):
    """Bad command-line input: an invalid URL, option value or folder."""

    exit_code = ExitCode.USAGE
    default_hint = "Run 'tokysnatcher --help' for the accepted forms."


class BadValue(UsageError):
    """A setting's value that does not parse or is out of range, whatever its source.

    The message says what is wrong with the value itself (``'0' is out of range``); the reader
    of the command line, the environment or the config file names where it came from.
    """


class ConfigError(UsageError):
    """A configuration file that cannot be read or has a bad key or value."""

    default_hint = "Fix or remove the named key in the configuration file."


class FfmpegNotFoundError(UsageError):
    """No usable ffmpeg binary (missing, not executable, or failing ``-version``)."""

    default_hint = (
        "Install ffmpeg, pass --ffmpeg PATH or set TOKYSNATCHER_FFMPEG, "
        "or reinstall tokysnatcher so its bundled ffmpeg (imageio-ffmpeg) is present."
    )


class SourceError(TokysnatcherError):
    """The site could not be asked or answered something unusable."""

    default_hint = "Check the URL and your connection; --base-url selects another site root."


class BookNotFoundError(SourceError):
    """The site does not know the book (unknown slug)."""

    exit_code = ExitCode.USAGE
    default_hint = "Check the book URL or slug, or find the book with --search."


class DownloadError(TokysnatcherError):
    """One request or step of a chapter failed; ``kind`` says how (SPEC §5).

    ``retry`` overrides whether the chapter is tried again (default: its kind's ``transient``):
    audio shorter than its playlist declares is ``invalid_media``, yet a new fetch may mend it.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind,
        retry_after: float | None = None,
        hint: str | None = None,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.retry_after = retry_after
        self._retry = retry

    @property
    def transient(self) -> bool:
        """True when another attempt of the chapter may succeed."""
        return self.kind.transient if self._retry is None else self._retry


class PlaylistError(DownloadError):
    """A chapter playlist that cannot be used (bad, oversized, hostile URIs)."""


class SegmentError(DownloadError):
    """A segment request that failed after its quick retries."""


class FfmpegError(DownloadError):
    """ffmpeg failed or stalled while converting a chapter."""


class DiskError(DownloadError):
    """The disk refused a write (no space, no permission): stops the whole run."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            kind=FailureKind.DISK,
            hint=hint or "Free some space or choose another folder with -d, then --resume.",
        )


class ManifestError(TokysnatcherError):
    """A manifest that cannot be used as it is (corrupt, hostile, newer schema)."""

    exit_code = ExitCode.USAGE
    default_hint = "Run --verify-folder on the book folder to rebuild the manifest."


class Interrupted(TokysnatcherError):
    """The user asked to stop (Ctrl-C / SIGTERM), or the terminal hung up (SIGHUP)."""

    exit_code = ExitCode.INTERRUPTED
