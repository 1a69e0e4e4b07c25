"""tokysnatcher.core."""
