"""``--verify-folder`` and ``--list-downloads``."""

from __future__ import annotations

from pathlib import Path

from tokysnatcher.config import Settings
from tokysnatcher.errors import ExitCode, UsageError
from tokysnatcher.render import Output


def verify(folder: Path, settings: Settings, output: Output, *, deep: bool) -> ExitCode:
    raise UsageError("--verify-folder is not available yet")


def list_library(settings: Settings, output: Output) -> ExitCode:
    raise UsageError("--list-downloads is not available yet")
