"""``--stats``: what the history says about every run so far (``--json`` for scripts)."""

from __future__ import annotations

from tokysnatcher.config.settings import Settings
from tokysnatcher.errors import ExitCode
from tokysnatcher.store import history
from tokysnatcher.store.database import database_path, opened
from tokysnatcher.store.stats import compute
from tokysnatcher.ui.output import Output
from tokysnatcher.ui.store_view import print_json, stats_report


def stats(settings: Settings, output: Output, *, as_json: bool) -> ExitCode:
    with opened(settings.data_dir) as database:
        found = compute(history.records(database))
    if as_json:
        print_json(output, found.to_json())
    else:
        stats_report(output, found, database_path(settings.data_dir))
    return ExitCode.OK
