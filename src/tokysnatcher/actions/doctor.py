"""``--doctor``: run every check and print one row each (or JSON); exit 0 only if all pass."""

from __future__ import annotations

from pathlib import Path

from tokysnatcher.config.settings import Settings
from tokysnatcher.diagnostics.doctor import run_checks
from tokysnatcher.errors import ExitCode, TokysnatcherError
from tokysnatcher.ui.output import Output


def doctor(
    settings: Settings,
    output: Output,
    *,
    config_path: Path,
    config_error: TokysnatcherError | None,
    as_json: bool,
) -> ExitCode:
    """Check what a download needs; ``config_error`` is why the config file did not load."""
    checks = run_checks(settings, config_path=config_path, config_error=config_error)
    output.doctor_report(checks, as_json=as_json)
    return ExitCode.OK if all(check.passed for check in checks) else ExitCode.FAILED
