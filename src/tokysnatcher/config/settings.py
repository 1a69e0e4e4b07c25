"""Settings: every knob of a run, its default, and the one parser of each kind of value.

A :class:`Settings` is built by ``config.sources`` from the command line, the environment and the
config file, each value parsed by its :data:`KEYS` entry, then handed to the core. The core never
reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from tokysnatcher.errors import BadValue, UsageError
from tokysnatcher.library.layout import FORM as OUTPUT_FORM
from tokysnatcher.library.layout import OutputTemplate
from tokysnatcher.net.limits import AUTO, MAX_CONNECTIONS, Connections
from tokysnatcher.utils.units import CHAPTERS_FORM, SPEED_LIMIT_FORM, ChapterSpec, parse_speed_limit


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


class Key(NamedTuple):
    """How a Settings field is given: its config/env key, its parser and its accepted form.

    The parser is the only place a value of that kind is checked: the command line, the
    environment and the config file all go through it (``config.sources``). It takes text as
    typed, or a TOML value, and raises :class:`BadValue` saying what is wrong with the value;
    the caller names where the value came from and shows ``accepted``.
    """

    name: str
    parse: Callable[[object], Any]
    accepted: str


def _number(name: str, low: float, high: float, *, whole: bool) -> Key:
    what = "a whole number" if whole else "a number"

    def parse(raw: object) -> float:
        value = math.nan
        if isinstance(raw, str | int | float) and not isinstance(raw, bool):
            try:
                value = float(raw.strip() if isinstance(raw, str) else raw)
            except ValueError:
                pass
            except OverflowError:  # an integer too large for a float (TOML has no limit)
                value = math.inf
        if math.isnan(value) or (whole and math.isfinite(value) and not value.is_integer()):
            raise BadValue(f"{raw!r} is not {what}")
        if not low <= value <= high:
            raise BadValue(f"{raw!r} is out of range")
        return int(value) if whole else value

    return Key(name, parse, f"{'a whole number' if whole else 'seconds'} from {low:g} to {high:g}")


def _connections(raw: object) -> Connections:
    """``auto`` or a fixed count of connections."""
    if isinstance(raw, str) and raw.strip().lower() == AUTO:
        return AUTO
    try:
        return int(_FIXED_CONNECTIONS.parse(raw))
    except BadValue:
        raise BadValue(
            f"{raw!r} is neither auto nor a whole number from 1 to {MAX_CONNECTIONS}"
        ) from None


_FIXED_CONNECTIONS = _number("connections", 1, MAX_CONNECTIONS, whole=True)


def parse_path(raw: object) -> Path:
    """A folder or file name, ``~`` expanded."""
    if not isinstance(raw, str | os.PathLike):
        raise BadValue(f"{raw!r} is not a path")
    if not str(raw).strip():
        raise BadValue("an empty path")
    return Path(raw).expanduser()


def parse_text(raw: object) -> str:
    """Any text but an empty one."""
    if not isinstance(raw, str):
        raise BadValue(f"{raw!r} is not text")
    if not raw.strip():
        raise BadValue("an empty value")
    return raw


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise BadValue(f"{raw!r} is not true or false")


def _format(raw: object) -> OutputFormat:
    try:
        return OutputFormat(str(raw).strip().lower())
    except ValueError:
        raise BadValue(f"{raw!r} is not a known format") from None


class Quality(StrEnum):
    """Which of a source's audio files to take, where it offers more than one (``--quality``)."""

    STANDARD = "standard"  # what the site streams (LibriVox: the 64 kb/s MP3)
    HIGH = "high"  # the better original where the site lists one (LibriVox: 128 kb/s)


def _quality(raw: object) -> Quality:
    try:
        return Quality(str(raw).strip().lower())
    except ValueError:
        raise BadValue(f"{raw!r} is not a known quality") from None


#: The sources a search can ask (``--source``); the registry maps each name to its code.
SOURCE_NAMES = ("tokybook", "librivox")


def _source(raw: object) -> str:
    name = str(raw).strip().lower()
    if name not in SOURCE_NAMES:
        raise BadValue(f"{raw!r} is not a known source")
    return name


def parse_root_url(raw: object) -> str:
    """A site root: an http(s) URL with a host, returned without a trailing slash."""
    text = parse_text(raw).strip()
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0  # .port raises on a bad port
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 bracket
        raise BadValue(f"{raw!r} is not an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise BadValue(f"{raw!r} is not an http(s) URL with a host")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _verbosity(raw: object) -> Verbosity:
    try:
        return Verbosity(str(raw).strip().lower())
    except ValueError:
        raise BadValue(f"{raw!r} is not a known verbosity") from None


#: Settings field -> how it is given. Only these fields come from the config file.
KEYS: dict[str, Key] = {
    "directory": Key("directory", parse_path, "a folder, e.g. ~/Audiobooks"),
    "output_format": Key("format", _format, "one of mp3, m4a, m4b"),
    "jobs": _number("jobs", 1, 32, whole=True),
    "connections": Key(
        "connections", _connections, f"auto or a whole number from 1 to {MAX_CONNECTIONS}"
    ),
    "base_url": Key(
        "base-url", parse_text, "an http(s) URL with a host, e.g. https://tokybook.com"
    ),
    "ffmpeg": Key("ffmpeg", parse_text, "the path of an ffmpeg binary"),
    "max_retries": _number("max-retries", 0, 100, whole=True),
    "retry_delay": _number("retry-delay", 0, 3600, whole=False),
    "stall_timeout": _number("stall-timeout", 0.1, 3600, whole=False),
    "transfer_timeout": _number("transfer-timeout", 1, 86400, whole=False),
    "max_wait": _number("max-wait", 0, 86400, whole=False),
    "speed_limit": Key("speed-limit", parse_speed_limit, SPEED_LIMIT_FORM),
    "chapters": Key("chapters", ChapterSpec.parse, CHAPTERS_FORM),
    "resume": Key("resume", _flag, "true or false"),
    "no_cover": Key("no-cover", _flag, "true or false"),
    "keep_parts": Key("keep-parts", _flag, "true or false"),
    "output": Key("output", OutputTemplate.parse, OUTPUT_FORM),
    "no_sidecars": Key("no-sidecars", _flag, "true or false"),
    "verbosity": Key("verbosity", _verbosity, "one of quiet, normal, verbose, debug"),
    "source": Key("source", _source, "one of " + ", ".join(SOURCE_NAMES)),
    "quality": Key("quality", _quality, "one of standard, high"),
    "librivox_url": Key(
        "librivox-url", parse_root_url, "an http(s) URL with a host, e.g. https://librivox.org"
    ),
    "archive_url": Key(
        "archive-url", parse_root_url, "an http(s) URL with a host, e.g. https://archive.org"
    ),
    "librivox_interval": _number("librivox-interval", 0, 60, whole=False),
    "data_dir": Key("data-dir", parse_path, "a folder, e.g. ~/.local/share/tokysnatcher"),
    "download_archive": Key("download-archive", parse_path, "a text file, e.g. archive.txt"),
}


def default_library_root() -> Path:
    """``~/Music/Audiobooks``: the folder TokySnatcher 0.5 used, on every platform.

    Not the platform's own music folder (XDG's, a relocated Windows one): a library started
    with the old tool must be found, and resumed, where it is.
    """
    return Path.home() / "Music" / "Audiobooks"


def default_data_dir() -> Path:
    """The tool's own files (crash reports, its database): the user data dir (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("tokysnatcher"))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of a run. Times are seconds, rates bytes per second."""

    directory: Path = field(default_factory=default_library_root)
    output_format: OutputFormat = OutputFormat.MP3
    jobs: int = 2
    # "auto": adapts between 2 and 16 (net/limits.py); a number keeps that many.
    connections: Connections = AUTO
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
    # How long an outage (every request failing with a network error) is waited out.
    max_wait: float = 600.0
    chapters: ChapterSpec | None = None
    resume: bool = False
    force_redownload: bool = False
    dry_run: bool = False
    report: Path | None = None
    status_file: Path | None = None
    verbosity: Verbosity = Verbosity.NORMAL
    no_cover: bool = False
    keep_parts: bool = False
    # The site --search asks (a reference names its own site).
    source: str = "tokybook"
    quality: Quality = Quality.STANDARD
    # LibriVox's API root and archive.org's; None: the real sites (sources/ knows them).
    librivox_url: str | None = None
    archive_url: str | None = None
    # Seconds between two calls to one LibriVox or archive.org host (their API notice asks for
    # "several seconds"); 0 in tests against the stand-in.
    librivox_interval: float = 2.0
    output: OutputTemplate | None = None  # -o: the library layout; None: the default one
    no_sidecars: bool = False
    # The tool's own files (env TOKYSNATCHER_DATA_DIR, config key data-dir).
    data_dir: Path = field(default_factory=default_data_dir)
    # A yt-dlp style text archive used instead of the database's (--download-archive).
    download_archive: Path | None = None
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
        # Each value was checked by its parser (KEYS); only how values combine is checked here.
        if self.resume and self.force_redownload:
            raise UsageError("--resume and --force-redownload cannot be used together; pick one")

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (their combination checked again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
