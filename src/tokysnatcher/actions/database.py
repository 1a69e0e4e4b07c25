"""``--rebuild-database``: move a corrupt database aside and rebuild the archive from manifests.

A database that opens and checks out is kept: the complete books found under the library root
are added to its archive. A corrupt one is renamed to ``<name>.corrupt-<time>`` (with its WAL
files), never deleted, and a new one is made whose archive holds every complete book found. A
database that is locked, read-only or of a newer schema is left alone (exit 2): it is not
corrupt, and rebuilding it would lose what it holds.
"""

from __future__ import annotations

from tokysnatcher.config.settings import Settings
from tokysnatcher.errors import ExitCode
from tokysnatcher.store.archive import DatabaseArchive, rebuild_from_manifests
from tokysnatcher.store.database import CorruptDatabase, Database, database_path, move_aside
from tokysnatcher.ui.output import Output


def rebuild_database(settings: Settings, output: Output) -> ExitCode:
    path = database_path(settings.data_dir)
    try:
        database = Database.open(path)
    except CorruptDatabase as err:
        moved = move_aside(path)
        output.warn(f"{err.message}: moved aside to {moved}")
        database = Database.open(path)
        state = "rebuilt"
    else:
        state = "kept (it checks out)"
    assert database is not None  # created if absent
    try:
        root = settings.directory
        added = rebuild_from_manifests(DatabaseArchive(database), root)
    finally:
        database.close()
    output.out.print(
        f"database {path} {state}; {added} complete book(s) under {root} are in its archive",
        markup=False,
    )
    return ExitCode.OK
