"""tokysnatcher.sources."""
