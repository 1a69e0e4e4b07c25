"""tokysnatcher: a resilient command-line audiobook downloader for tokybook.com."""

# Written out rather than read with importlib.metadata: that import (and the email package it
# pulls in) cost every run ~25 ms of CPU. pyproject.toml reads the package's version from here.
__version__ = "0.5.0"

__all__ = ["__version__"]
