"""The crash report: what an unexpected error (a bug) leaves for the bug report.

A plain text file in ``<data dir>/crash-reports/``: the traceback, the versions of the tool,
Python and its libraries, the platform, the command line and the settings, all passed through
:func:`~tokysnatcher.diagnostics.redact.redact` (no tokens, credentials, query strings or home
folder). Nothing else about the machine or the user is read: no environment, no host name.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tokysnatcher import __version__
from tokysnatcher.config.settings import Settings, default_data_dir
from tokysnatcher.config.sources import read_env
from tokysnatcher.diagnostics.redact import redact
from tokysnatcher.errors import UsageError
from tokysnatcher.utils.atomic import atomic_write_text

REPORTS_DIR = "crash-reports"
_LIBRARIES = ("requests", "urllib3", "rich", "typer", "blessed", "platformdirs", "m3u8")


def _versions() -> list[str]:
    lines = [
        f"tokysnatcher {__version__}",
        f"python {platform.python_version()} ({platform.python_implementation()})",
    ]
    for name in _LIBRARIES:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    return lines


def _settings(settings: Settings | None) -> list[str]:
    if settings is None:
        return ["(not read yet)"]
    return [
        f"{field.name} = {getattr(settings, field.name)}" for field in dataclasses.fields(settings)
    ]


def report_text(
    error: BaseException, *, settings: Settings | None, argv: Sequence[str], when: datetime
) -> str:
    """The report of ``error``, redacted."""
    sections = [
        ("tokysnatcher crash report", [when.strftime("%Y-%m-%dT%H:%M:%SZ")]),
        ("versions", _versions()),
        ("platform", [f"{platform.platform()} {platform.machine()}".strip()]),
        ("command", [shlex.join(["tokysnatcher", *argv])]),
        ("settings", _settings(settings)),
        (
            "traceback",
            "".join(traceback.format_exception(error)).rstrip("\n").splitlines(),
        ),
    ]
    text = "\n\n".join(
        f"{title}\n" + "\n".join(f"  {line}" for line in lines) for title, lines in sections
    )
    return redact(text) + "\n"


def write_crash_report(
    error: BaseException,
    *,
    data_dir: Path,
    settings: Settings | None,
    argv: Sequence[str],
    now: datetime | None = None,
) -> Path:
    """Write the report of ``error`` under ``data_dir``; its path. Raises ``OSError``."""
    when = now or datetime.now(UTC)
    folder = data_dir / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"crash-{when.strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}.txt"
    atomic_write_text(path, report_text(error, settings=settings, argv=argv, when=when))
    return path


def report_crash(
    error: BaseException, *, settings: Settings | None, argv: Sequence[str]
) -> tuple[Path | None, str]:
    """Write the crash report of ``error``: ``(path, "")``, or ``(None, why it could not)``.

    The data folder is the settings' (``TOKYSNATCHER_DATA_DIR`` or the config file's
    ``data-dir``); when the error came before the settings were read, the environment's or
    the platform's default.
    """
    if settings is not None:
        data_dir = settings.data_dir
    else:
        try:
            data_dir = read_env(os.environ).get("data_dir") or default_data_dir()
        except UsageError:
            data_dir = default_data_dir()
    try:
        return write_crash_report(error, data_dir=data_dir, settings=settings, argv=argv), ""
    except OSError as err:
        return None, f"{data_dir}: {err.strerror or err}"
