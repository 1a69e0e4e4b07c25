"""Take secrets and the user's identity out of text meant to be shared (a crash report).

What goes: URL query strings and ``user:password@`` parts, the value of anything named like a
secret (``X-Stream-Token: ...``, ``"postDetailToken": "..."``, ``Authorization: Bearer ...``,
``password=...``), and the home folder, which names the user (it becomes ``~``).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REMOVED = "<removed>"

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# A key that names a secret: "auth", "authorization", but not "author".
_SECRET_KEY = (
    r"[\w.-]*(?:token|auth(?!or(?!i[sz]))|password|passwd|secret|cookie|session|api[_-]?key"
    r"|credential|signature)[\w.-]*"
)
_PAIR = re.compile(
    rf"""
    (?P<key>["']?{_SECRET_KEY}["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<value>
        "(?:[^"\\]|\\.)*"
      | '(?:[^'\\]|\\.)*'
      | (?:bearer|basic|digest|token|negotiate)\s+[^\s,;&"'}}]+
      | [^\s,;&"'}}\]\[{{]+
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)


def redact_url(url: str) -> str:
    """``url`` without its ``user:password@`` part, query string and fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REMOVED
    if not parts.scheme or not host:
        return url
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    query = REMOVED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _quoted(value: str) -> str:
    if value[:1] in ("'", '"'):
        return f"{value[0]}{REMOVED}{value[0]}"
    return REMOVED


def redact(text: str, *, home: bool = True) -> str:
    """``text`` with secrets removed and (``home``) the home folder written ``~``."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _PAIR.sub(lambda m: m.group("key") + m.group("sep") + _quoted(m.group("value")), text)
    if home:
        folder = str(Path.home())
        if len(folder) > 1:
            text = text.replace(folder, "~")
    return text
