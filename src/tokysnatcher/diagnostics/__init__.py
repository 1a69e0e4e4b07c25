"""Diagnostics: ``--doctor``'s checks and the crash report of an unexpected error."""
