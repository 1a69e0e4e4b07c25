"""The actions behind the command line; each returns an :class:`~tokysnatcher.errors.ExitCode`."""

from tokysnatcher.actions.download import demo, download
from tokysnatcher.actions.interactive import interactive, search
from tokysnatcher.actions.library import list_library, verify

__all__ = ["demo", "download", "interactive", "list_library", "search", "verify"]
