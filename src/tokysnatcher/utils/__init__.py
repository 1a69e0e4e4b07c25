"""tokysnatcher.utils."""
