"""Settings: every knob of a run, its default, and its validation.

A :class:`Settings` is built by ``cli.py`` from the command line, the environment and the config
file, then handed to the core. The core never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from tokysnatcher.errors import UsageError


class OutputFormat(StrEnum):
    """What the chapters become on disk (SPEC §2 ``--format``)."""

    MP3 = "mp3"
    M4A = "m4a"
    M4B = "m4b"


class Verbosity(StrEnum):
    QUIET = "quiet"
    NORMAL = "normal"
    VERBOSE = "verbose"
    DEBUG = "debug"


@dataclass(frozen=True)
class NumberRange:
    """The accepted values of a numeric option (checked the same way for every source)."""

    option: str
    low: float
    high: float
    whole: bool

    @property
    def accepted(self) -> str:
        what = "a whole number" if self.whole else "seconds"
        return f"{what} from {self.low:g} to {self.high:g}"

    def accepts(self, value: float) -> bool:
        # NaN fails both comparisons, so it is refused too.
        return self.low <= value <= self.high and (not self.whole or float(value).is_integer())


#: Settings field -> its accepted range.
NUMBERS: dict[str, NumberRange] = {
    "jobs": NumberRange("--jobs", 1, 32, whole=True),
    "connections": NumberRange("--connections", 1, 64, whole=True),
    "max_retries": NumberRange("--max-retries", 0, 100, whole=True),
    "retry_delay": NumberRange("--retry-delay", 0, 3600, whole=False),
    "stall_timeout": NumberRange("--stall-timeout", 0.1, 3600, whole=False),
    "transfer_timeout": NumberRange("--transfer-timeout", 1, 86400, whole=False),
}
#: The lowest ``--speed-limit`` (bytes/s): less is most likely a forgotten suffix (500 for 500K).
MIN_SPEED_LIMIT = 1024.0


def default_library_root() -> Path:
    """``<user music dir>/Audiobooks`` (platformdirs)."""
    import platformdirs  # imported here: runs given a directory never need it (start-up time)

    return Path(platformdirs.user_music_dir()) / "Audiobooks"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of a run. Times are seconds, rates bytes per second."""

    directory: Path = field(default_factory=default_library_root)
    output_format: OutputFormat = OutputFormat.MP3
    jobs: int = 2
    connections: int = 8
    # The user's --base-url; None: the source's own site (sources/ knows which).
    base_url: str | None = None
    ffmpeg: str | None = None
    max_retries: int = 3
    retry_delay: float = 2.0
    stall_timeout: float = 30.0
    # A request running longer must have averaged net.http.MIN_TRANSFER_RATE: cuts off a drip
    # that keeps just above the stall rule.
    transfer_timeout: float = 300.0
    speed_limit: float | None = None
    chapters: str | None = None
    resume: bool = False
    force_redownload: bool = False
    dry_run: bool = False
    report: Path | None = None
    verbosity: Verbosity = Verbosity.NORMAL
    no_cover: bool = False
    keep_parts: bool = False
    # Quick in-attempt retries of one segment request before the chapter attempt fails.
    segment_retries: int = 3
    segment_retry_delay: float = 0.5
    # Upper bound for a server's Retry-After, so a hostile value cannot park a chapter forever.
    max_retry_after: float = 60.0
    # Connect timeout for every request; reads are bounded by stall_timeout.
    connect_timeout: float = 10.0
    # Grace between terminate and kill for a child process.
    kill_grace: float = 5.0

    def __post_init__(self) -> None:
        for name, number in NUMBERS.items():
            value = getattr(self, name)
            if not number.accepts(value):
                raise UsageError(f"{number.option} must be {number.accepted}, not {value:g}")
        if self.speed_limit is not None and not self.speed_limit >= MIN_SPEED_LIMIT:
            raise UsageError("--speed-limit must be at least 1K (1024 bytes/s)")
        if self.resume and self.force_redownload:
            raise UsageError("--resume and --force-redownload cannot be used together; pick one")

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
