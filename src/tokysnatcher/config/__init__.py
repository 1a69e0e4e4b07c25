"""Configuration: :class:`~tokysnatcher.config.settings.Settings` and where its values come from."""
