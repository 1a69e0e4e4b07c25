"""Settings: every knob of a run, its default, and its validation.

A :class:`Settings` is built by ``cli.py`` from the command line, the environment and the config
file, then handed to the core. The core never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import platformdirs

from tokysnatcher.errors import UsageError

DEFAULT_BASE_URL = "https://tokybook.com"


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


def default_library_root() -> Path:
    """``<user music dir>/Audiobooks`` (platformdirs)."""
    return Path(platformdirs.user_music_dir()) / "Audiobooks"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of a run. Times are seconds, rates bytes per second."""

    directory: Path = field(default_factory=default_library_root)
    output_format: OutputFormat = OutputFormat.MP3
    jobs: int = 2
    connections: int = 8
    base_url: str = DEFAULT_BASE_URL
    ffmpeg: str | None = None
    max_retries: int = 3
    retry_delay: float = 2.0
    stall_timeout: float = 30.0
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
        checks: list[tuple[bool, str]] = [
            (1 <= self.jobs <= 32, f"--jobs must be a whole number from 1 to 32, not {self.jobs}"),
            (
                1 <= self.connections <= 64,
                f"--connections must be a whole number from 1 to 64, not {self.connections}",
            ),
            (
                0 <= self.max_retries <= 100,
                f"--max-retries must be a whole number from 0 to 100, not {self.max_retries}",
            ),
            (
                0 <= self.retry_delay <= 3600,
                f"--retry-delay must be seconds from 0 to 3600, not {self.retry_delay:g}",
            ),
            (
                0.1 <= self.stall_timeout <= 3600,
                f"--stall-timeout must be seconds from 0.1 to 3600, not {self.stall_timeout:g}",
            ),
            (
                self.speed_limit is None or self.speed_limit >= 1024,
                "--speed-limit must be at least 1K (1024 bytes/s)",
            ),
            (
                not (self.resume and self.force_redownload),
                "--resume and --force-redownload cannot be used together; pick one",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
