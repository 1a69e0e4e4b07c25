"""tokysnatcher: a resilient command-line audiobook downloader for tokybook.com."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tokysnatcher")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
