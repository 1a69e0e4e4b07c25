"""Configuration: :class:`Settings` and where its values come from."""

from tokysnatcher.config.settings import (
    DEFAULT_BASE_URL,
    OutputFormat,
    Settings,
    Verbosity,
    default_library_root,
)

__all__ = ["DEFAULT_BASE_URL", "OutputFormat", "Settings", "Verbosity", "default_library_root"]
