"""Which URLs tokysnatcher ever requests: http and https, nothing else (no file:, no data:).

Kept apart from ``net/http.py`` so that code which only checks a URL (a site's track list, a
playlist) does not import the HTTP stack.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def is_http_url(url: str) -> bool:
    """True when ``url`` is an http or https URL: the only kinds we ever request."""
    return urlsplit(url).scheme.lower() in ("http", "https")
