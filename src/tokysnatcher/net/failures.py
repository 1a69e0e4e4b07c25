"""Failure kinds (SPEC §5): every exception of a chapter attempt gets one, with a message.

Pure logic: nothing here sleeps or touches the network. ``download/retry.py`` decides what to do
with a kind (retry or give up); this module only names what happened.

Classification choices (why, not what):

* Any 4xx we have no better name for (400, 405, 413, ...) is ``invalid_media``: the server says
  the request itself is wrong, and asking again the same way will not change its mind. 408
  (Request Timeout) is the exception: it is the server saying the link was too slow, ``timeout``.
* An exception we do not recognise is ``invalid_media`` (permanent). An unexpected error is
  almost always a bug or malformed content; retrying only delays the failure, and a chapter that
  fails fast with the exception's name in its message is easy to redo with ``--resume``.
* ``ssl.SSLError`` and resolver errors are checked before errno values, because their numbering
  overlaps the errno table (SSL error 1 is not ``EPERM``).
"""

from __future__ import annotations

import errno
import http.client
import re
import socket
import ssl
import subprocess
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum

import requests
import urllib3.exceptions

from tokysnatcher.errors import DiskError, DownloadError, FailureKind, Interrupted

K = FailureKind

_DISK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG")
    if hasattr(errno, name)
)
# Friendlier than strerror where the usual wording blames "peer" or a pipe.
_ERRNO_TEXT = {
    errno.ECONNRESET: "connection reset by server",
    errno.EPIPE: "connection closed by server",
}
_KIND_HINTS: dict[FailureKind, str] = {
    K.NETWORK: "Check your connection, then run the same command with --resume.",
    K.TIMEOUT: "The server stopped sending data; a larger --stall-timeout may help on a slow link.",
    K.HTTP_5XX: "The site is having trouble; try again later with --resume.",
    K.RATE_LIMITED: "The site is limiting requests; lower --jobs/--connections or retry later.",
    K.AUTH: "The site refused the stream token; run again with --resume to get a fresh one.",
    K.NOT_FOUND: "The site no longer serves this file; check the book page.",
    K.INVALID_MEDIA: "The site sent something unusable; rerun with -vv and report it if it stays.",
    K.FFMPEG_STALLED: "ffmpeg stopped making progress; a larger --stall-timeout may help.",
    K.CANCELLED: "Run the same command with --resume to continue.",
}
_DELTA_SECONDS = re.compile(r"[+-]?\d+(?:\.\d+)?")


# --- classification -------------------------------------------------------------------------


def classify_status(status: int) -> FailureKind:
    """The failure kind of an unwanted HTTP status (see the module notes for other 4xx)."""
    if status in (401, 403):
        return K.AUTH
    if status in (404, 410):
        return K.NOT_FOUND
    if status == 429:
        return K.RATE_LIMITED
    if status == 408:
        return K.TIMEOUT
    if 500 <= status <= 599:
        return K.HTTP_5XX
    # Other 4xx, and 1xx-3xx that reach here (a 3xx that is no redirect we follow): permanent.
    return K.INVALID_MEDIA


def classify_exception(exc: BaseException) -> FailureKind:
    """The failure kind of any exception raised while working on a chapter."""
    if isinstance(exc, DownloadError):
        return exc.kind
    if isinstance(exc, KeyboardInterrupt | Interrupted) or not isinstance(exc, Exception):
        return K.CANCELLED  # also SystemExit / GeneratorExit: the process is going away
    if isinstance(exc, requests.RequestException):
        return _classify_requests(exc)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return _classify_urllib3(exc)
    if isinstance(exc, subprocess.TimeoutExpired):
        return K.FFMPEG_STALLED
    if isinstance(exc, http.client.HTTPException):
        return K.NETWORK  # IncompleteRead, BadStatusLine, RemoteDisconnected
    if isinstance(exc, OSError):
        return _classify_os_error(exc)
    return K.INVALID_MEDIA


def _classify_requests(exc: requests.RequestException) -> FailureKind:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return classify_status(exc.response.status_code)
    if isinstance(exc, requests.ReadTimeout):
        return K.TIMEOUT
    if isinstance(exc, requests.ConnectionError):
        return K.NETWORK  # includes ConnectTimeout: we never got a byte, "could not connect"
    if isinstance(exc, requests.Timeout):
        return K.TIMEOUT
    if isinstance(
        exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    ):
        return K.NETWORK
    # A malformed URL, header or JSON body, or a redirect loop: asking again cannot help.
    if isinstance(exc, ValueError | TypeError | requests.TooManyRedirects | requests.URLRequired):
        return K.INVALID_MEDIA
    return K.NETWORK


def _classify_urllib3(exc: urllib3.exceptions.HTTPError) -> FailureKind:
    """urllib3's own errors: media requests go straight to the pool, so they arrive unwrapped."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return classify_exception(exc.reason)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return K.TIMEOUT
    # A bad URL or header is permanent (LocationParseError, ...); everything else is the link:
    # refused, reset, timed-out connects, TLS, truncated bodies (same as requests' wrappers).
    return K.INVALID_MEDIA if isinstance(exc, ValueError) else K.NETWORK


def _classify_os_error(exc: OSError) -> FailureKind:
    if isinstance(exc, ssl.SSLError | socket.gaierror | socket.herror):
        return K.NETWORK  # their errno values are not errno.* values
    if isinstance(exc, PermissionError) or exc.errno in _DISK_ERRNOS:
        return K.DISK
    if isinstance(exc, TimeoutError):
        return K.TIMEOUT
    return K.NETWORK


def error_from_exception(
    exc: BaseException, context: str, *, now: float | None = None
) -> DownloadError:
    """``exc`` as a :class:`DownloadError` with its kind and a one-line message.

    A ``DownloadError`` is returned unchanged (it already names its context and kind). ``now``
    (epoch seconds, default the wall clock) dates an HTTP-date ``Retry-After``.
    """
    if isinstance(exc, DownloadError):
        return exc
    kind = classify_exception(exc)
    message = f"{context}: {describe_exception(exc)}" if context else describe_exception(exc)
    if kind is K.DISK:
        return DiskError(message)
    retry_after = None
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        header = exc.response.headers.get("Retry-After")
        retry_after = parse_retry_after(header, now=time.time() if now is None else now)
    return DownloadError(message, kind=kind, retry_after=retry_after, hint=kind_hint(kind))


class Unreachable(StrEnum):
    """Why a connection to a server never carried a request (named in one line to the user)."""

    DNS = "DNS"  # the name does not resolve
    REFUSED = "refused"  # nothing listens on that port
    TLS = "TLS"  # the secure handshake failed (a certificate, or not an https server)
    TIMEOUT = "timeout"  # no answer to the connection attempt in time


def unreachable(exc: BaseException) -> Unreachable | None:
    """Why ``exc`` (from requests or urllib3) never reached the server; None if it did."""
    u3 = urllib3.exceptions
    for inner in (exc, *_wrapped(exc)):
        if isinstance(inner, socket.gaierror | u3.NameResolutionError):
            return Unreachable.DNS
        if isinstance(inner, ssl.SSLError | u3.SSLError | requests.exceptions.SSLError):
            return Unreachable.TLS
        if isinstance(inner, ConnectionRefusedError) or (
            isinstance(inner, OSError) and inner.errno == errno.ECONNREFUSED
        ):
            return Unreachable.REFUSED
    for inner in (exc, *_wrapped(exc)):
        # NewConnectionError is a subclass of ConnectTimeoutError, and not a timeout.
        if isinstance(inner, requests.ConnectTimeout) or (
            isinstance(inner, u3.ConnectTimeoutError)
            and not isinstance(inner, u3.NewConnectionError)
        ):
            return Unreachable.TIMEOUT
    return None


def describe_exception(exc: BaseException) -> str:
    """A short, single-line, human description of ``exc`` (no traceback, no class soup)."""
    if isinstance(exc, KeyboardInterrupt | Interrupted):
        return "cancelled"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        response = exc.response
        return f"HTTP {response.status_code} {response.reason or ''}".rstrip()
    if isinstance(exc, requests.ConnectTimeout):
        return "could not connect (timed out)"
    if isinstance(exc, requests.ReadTimeout):
        return "no data received before the timeout; stalled"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection lost in the middle of the body"
    if isinstance(exc, requests.ConnectionError):
        # requests wraps urllib3's error, whose words name the cause (DNS, TLS, refused).
        u3 = urllib3.exceptions
        nested = next((e for e in _wrapped(exc) if isinstance(e, u3.HTTPError)), None)
        if nested is not None and (text := _describe_urllib3(nested)):
            return text
        cause = _errno_text(_nested_os_error(exc))
        return f"connection failed: {cause}" if cause else "connection failed"
    if isinstance(exc, urllib3.exceptions.HTTPError) and (text := _describe_urllib3(exc)):
        return text
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"process made no progress for {exc.timeout:g} s and was stopped"
    if isinstance(exc, OSError) and (text := _errno_text(exc)):
        return f"{text}: {exc.filename}" if exc.filename else text
    detail = _one_line(str(exc))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _describe_urllib3(exc: urllib3.exceptions.HTTPError) -> str | None:
    """Words for the urllib3 errors a media request meets (None: use the generic form)."""
    u3 = urllib3.exceptions
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        return describe_exception(exc.reason)
    if isinstance(exc, u3.NameResolutionError):
        return f"could not resolve host {exc.conn.host}"
    if isinstance(exc, u3.ConnectTimeoutError) and not isinstance(exc, u3.NewConnectionError):
        return "could not connect (timed out)"  # (NewConnectionError is a subclass, sadly)
    if isinstance(exc, u3.ReadTimeoutError):
        return "no data received before the timeout; stalled"
    if isinstance(exc, u3.SSLError):
        detail = _one_line(str(exc.args[0] if exc.args else exc))
        return f"TLS error: {detail}" if detail else "TLS error"
    if isinstance(exc, u3.NewConnectionError):
        cause = _errno_text(_nested_os_error(exc))
        return f"connection failed: {cause}" if cause else "connection failed"
    if isinstance(exc, u3.ProtocolError):
        if _nested(exc, http.client.IncompleteRead):
            return "connection lost in the middle of the body"
        cause = _errno_text(_nested_os_error(exc))
        if cause:
            return f"connection failed: {cause}"
        if _nested(exc, http.client.RemoteDisconnected):
            return "connection closed by server without a response"
        return "connection failed"
    return None


def _nested(exc: BaseException, kind: type[BaseException]) -> bool:
    """True when ``exc`` wraps (in args, ``reason`` or its chain) an exception of ``kind``."""
    return any(isinstance(inner, kind) for inner in _wrapped(exc))


def _wrapped(exc: BaseException) -> list[BaseException]:
    """The exceptions ``exc`` wraps, nearest first (requests/urllib3 nest a few levels deep)."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    for _ in range(32):  # the bound guards against cycles
        if not todo:
            break
        current = todo.pop(0)
        if not isinstance(current, BaseException):
            continue
        if current is not exc:
            found.append(current)
        todo.extend(current.args)
        todo.extend((getattr(current, "reason", None), current.__cause__, current.__context__))
    return found


def _errno_text(err: OSError | None) -> str | None:
    if err is None or not err.errno or isinstance(err, ssl.SSLError | socket.gaierror):
        return None
    text = _ERRNO_TEXT.get(err.errno) or err.strerror
    return text[:1].lower() + text[1:] if text else None


def _nested_os_error(exc: BaseException) -> OSError | None:
    """The low-level OSError that requests/urllib3 wrap (in args, ``reason`` or the chain)."""
    for inner in _wrapped(exc):
        if isinstance(inner, OSError) and inner.errno:
            return inner
    return None


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Retry-After ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    ``now`` is the current epoch time (for the date form). A time in the past or a negative
    delta gives 0; a missing or unreadable value gives None.
    """
    if value is None or not (text := value.strip()):
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return max(0.0, float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC of unknown origin; treat as UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def kind_hint(kind: FailureKind) -> str | None:
    """What a user can do about a failure of ``kind`` (None when nothing useful can be said)."""
    return _KIND_HINTS.get(kind)
