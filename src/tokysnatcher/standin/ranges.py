"""Range requests as the stand-in sites answer them (RFC 9110 §14), for every file they serve.

:func:`answer_range` decides the status, the slice of the body and the headers of one answer;
the listener then sends that slice. It understands what download clients send: ``bytes=N-``,
``bytes=N-M`` and ``bytes=-K`` (the last K bytes), with ``If-Range`` holding an ETag (compared
strongly) or a Last-Modified date (compared exactly). Anything else is answered as servers do:
several ranges or a malformed header are ignored (200 with the whole body), a start at or past
the end is 416 with ``Content-Range: bytes */<size>``, and an ``If-Range`` that does not match
sends the whole (new) body with 200.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email.utils import formatdate

_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII)
# 2021-06-01 00:00:00 UTC: the stand-in's files "changed" on this day (plus one day per epoch).
_MODIFIED_BASE = 1622505600


@dataclass(frozen=True, slots=True)
class Validators:
    """The ETag and Last-Modified of one version of a served file."""

    etag: str  # with its quotes
    last_modified: str  # an HTTP date

    def headers(self) -> dict[str, str]:
        return {"ETag": self.etag, "Last-Modified": self.last_modified}

    def matches(self, if_range: str) -> bool:
        """Whether ``If-Range`` names this version (a weak ETag never does)."""
        value = if_range.strip()
        return value in (self.etag, self.last_modified) and not value.startswith("W/")


def validators_for(key: str, size: int, epoch: int = 0) -> Validators:
    """Validators of the file at ``key``; another ``epoch`` is another version of it."""
    tag = hashlib.blake2b(f"{key}|{size}|{epoch}".encode(), digest_size=8).hexdigest()
    return Validators(f'"{tag}"', formatdate(_MODIFIED_BASE + 86400 * epoch, usegmt=True))


@dataclass(frozen=True, slots=True)
class RangeAnswer:
    """What to send: ``status`` (200, 206 or 416), ``body[start:stop]`` and ``headers``."""

    status: int
    start: int
    stop: int
    headers: dict[str, str] = field(default_factory=dict)


def answer_range(
    range_header: str | None,
    if_range: str | None,
    size: int,
    validators: Validators | None,
    *,
    honour_ranges: bool = True,
) -> RangeAnswer:
    """How to answer a GET of a ``size``-byte file carrying these request headers.

    ``honour_ranges=False`` is a server that ignores ``Range`` (always 200, no Accept-Ranges).
    """
    headers = validators.headers() if validators is not None else {}
    whole = RangeAnswer(200, 0, size, headers)
    if not honour_ranges:
        return whole
    headers["Accept-Ranges"] = "bytes"
    match = _RANGE.fullmatch((range_header or "").strip())
    if match is None or match.groups() == ("", ""):
        return whole
    if if_range is not None and (validators is None or not validators.matches(if_range)):
        return whole
    first, last = match.groups()
    if first:
        start = int(first)
        stop = min(size, int(last) + 1) if last else size
    else:  # the last ``last`` bytes
        start, stop = max(0, size - int(last)), size
    if start >= size or start >= stop:
        return RangeAnswer(416, 0, 0, {**headers, "Content-Range": f"bytes */{size}"})
    return RangeAnswer(
        206, start, stop, {**headers, "Content-Range": f"bytes {start}-{stop - 1}/{size}"}
    )
