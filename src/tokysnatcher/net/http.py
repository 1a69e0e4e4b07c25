"""HTTP transfers: one pooled session, bounded reads, stall detection, a shared rate limit.

Every read here has a bound (SPEC §5): the connect timeout, a stall window and a deadline, all
applied by :class:`BoundedBody` (which the site's API client uses too). A transfer that
receives less than 1 KiB within ``stall_timeout`` seconds (nothing at all included) is aborted
as ``timeout``: each socket read waits only for what is left of the window, so a trickle is
caught as quickly as silence. The socket's timeout is changed only when it is shorter than
what is left, or longer by more than ``STALL_SLACK`` (5%) of the window: a stall is never
reported early, and at most 5% of ``stall_timeout`` late. A drip that beats the stall rule is
cut by the deadline: ``transfer_timeout`` seconds, plus one second per ``MIN_TRANSFER_RATE``
bytes received. Bodies stream to disk in writes of about ``CHUNK`` bytes; nothing holds more
than two chunks of a body in memory.

Redirects (301/302/303/307/308) are followed up to ``MAX_REDIRECTS`` hops, to http(s) only and
never back to a URL already visited; each hop sends the headers the caller's ``hop_headers``
gives for its own URL, so a site's tokens and cookies stay on the site's hosts. A body cut off
in the middle is continued from where it broke off by the next request for it (``Range`` and
``If-Range``, see :meth:`Fetcher.fetch_to_file` and ``net/parts.py``).

Media requests go straight to the session's own urllib3 pool (the same keep-alive connections,
limits and TLS settings ``requests`` uses): ``requests``' per-call preparation (merging
settings, cookies, hooks) cost a third of the process's CPU time on a book of small segments.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import get_cookie_header
from requests.utils import requote_uri
from urllib3.exceptions import ClosedPoolError

from tokysnatcher.errors import DownloadError, FailureKind, SegmentError
from tokysnatcher.net.failures import (
    classify_status,
    error_from_exception,
    kind_hint,
    parse_retry_after,
)
from tokysnatcher.net.limits import CHUNK, RateLimiter, Transfer
from tokysnatcher.net.parts import PartFile, Validator, range_problem, validator_of
from tokysnatcher.net.urls import is_http_url
from tokysnatcher.utils.atomic import disk_error_for

STALL_MIN_BYTES = 1024
STALL_SLACK = 0.05  # how late (a fraction of the window) a stall may be seen; see the docstring
# Bytes per second a transfer must average once it has run ``transfer_timeout`` seconds: below
# the bitrate of any audiobook stream, so only a drip that games the stall rule ever falls short.
MIN_TRANSFER_RATE = 4 * 1024
TOO_SLOW_HINT = "The server sends too slowly; a larger --transfer-timeout may help on a slow link."
REPORT_EVERY = 0.2  # seconds: the longest a received chunk waits to be written and reported
USER_AGENT = "tokysnatcher (+https://github.com/tokysnatcher/tokysnatcher)"

# Redirects of a media request: archive.org sends one (to a storage host), others may chain two;
# beyond three, or to a URL already visited, a server is going in circles.
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
HopHeaders = Callable[[str], dict[str, str]]  # a request's headers for a redirect's target
_REQUEST_ERRORS = (
    requests.RequestException,  # an unusable URL (scheme, host) found while picking the pool
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


def make_session(connections: int) -> requests.Session:
    """One session whose pool keeps ``connections`` keep-alive connections per host."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=connections, pool_block=True)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    # Never pick up proxies or .netrc credentials from the environment for audio requests.
    session.trust_env = False
    return session


class ReadTimedOut(Exception):
    """A body broke the stall rule (``stalled``) or ran past its deadline (see BoundedBody)."""

    def __init__(self, *, stalled: bool) -> None:
        super().__init__("stalled" if stalled else "past its deadline")
        self.stalled = stalled


class BoundedBody:
    """Reads one response body under the stall rule and the transfer deadline (SPEC §5).

    A stall is less than ``STALL_MIN_BYTES`` arriving within ``stall_timeout`` seconds (nothing
    at all included). The deadline is ``transfer_timeout`` seconds plus one per
    ``MIN_TRANSFER_RATE`` bytes received: a server dripping just over 1 KiB per window is cut
    off, while a large file on a slow but working link keeps its time. Each read waits only for
    what is left of the nearer bound (plus at most ``STALL_SLACK`` of the window), so a trickle
    is caught as soon as a silent server is. Time given to :meth:`paused` (our own rate limit)
    counts against neither bound. :meth:`read` raises :class:`ReadTimedOut` when a bound is
    reached; anything else the read raises is passed on as is.
    """

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        *,
        stall_timeout: float,
        transfer_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.received = 0
        self._response = response
        self._clock = clock
        self._window = stall_timeout
        self._slack = STALL_SLACK * stall_timeout
        self._budget = transfer_timeout
        self._started = self._mark_time = clock()  # mark: when the last KiB of progress was made
        self._mark_bytes = 0
        self._timeout_set = stall_timeout  # urllib3 gave the socket this for the status line

    def paused(self, seconds: float) -> None:
        """``seconds`` were spent waiting on our side: the server is not to blame for them."""
        self._mark_time += seconds
        self._started += seconds

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body, as soon as any arrive; ``b""`` at its end."""
        now = self._clock()
        window_left = min(self._mark_time + self._window - now, self._window)
        deadline_left = self._started + self._budget + self.received / MIN_TRANSFER_RATE - now
        if window_left <= 0 or deadline_left <= 0:
            raise ReadTimedOut(stalled=window_left <= deadline_left)
        left = min(window_left, deadline_left)
        # A shorter timeout than ``left`` would report a stall early; a longer one lets it be
        # seen late. Within the slack the socket is left alone: on a healthy transfer that
        # spares a system call per read.
        if not left <= self._timeout_set <= left + self._slack:
            # Asked anew: once the body is complete urllib3 hands the connection back to the
            # pool, where another request may use (or close) that socket.
            sock = _socket_of(self._response)
            if sock is not None:
                with contextlib.suppress(OSError):  # closed under us: the read says so
                    sock.settimeout(left)
                self._timeout_set = left
        try:
            chunk = self._response.read1(size, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as err:
            raise ReadTimedOut(stalled=window_left <= deadline_left) from err
        self.received += len(chunk)
        if self.received - self._mark_bytes >= STALL_MIN_BYTES:
            self._mark_time, self._mark_bytes = self._clock(), self.received
        return chunk

    def close(self) -> None:
        """Give the socket back the timeout urllib3 set, if it is still ours to change.

        Only a connection still mid-body can hold our value (a finished one went back to the
        pool untouched); it is closed next, so this is tidiness, not correctness.
        """
        if self._timeout_set != self._window and (sock := _socket_of(self._response)) is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(self._window)


class Fetcher:
    """Runs single GET requests to disk or memory with every limit of SPEC §5 applied.

    ``cancelled`` (per call) is asked before every read: a transfer of a chapter attempt that
    has already failed stops at once instead of holding a connection.
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        connect_timeout: float,
        stall_timeout: float,
        stop: threading.Event,
        transfer_timeout: float = 300.0,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self.transfer_timeout = transfer_timeout
        self.stop = stop
        self.limiter = limiter
        self.transfer = Transfer()
        self._clock = clock
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=stall_timeout)
        self._pools: dict[tuple[str, str], urllib3.HTTPConnectionPool] = {}

    def _pool(self, url: str, parts: SplitResult) -> urllib3.HTTPConnectionPool:
        """The session's pool for the URL's host, looked up once per host."""
        key = (parts.scheme, parts.netloc)
        pool = self._pools.get(key)
        # A pool is closed when the session is, or when its manager drops it for a newer host.
        if pool is None or pool.pool is None:
            pool = self._pools[key] = self._session_pool(url)
        return pool

    def _session_pool(self, url: str) -> urllib3.HTTPConnectionPool:
        """The pool ``requests`` itself would pick for ``url``: same key, size and TLS setup."""
        adapter = self.session.get_adapter(url)  # InvalidSchema for anything but http(s)
        if not isinstance(adapter, HTTPAdapter):
            raise TypeError(f"the session's adapter for {url} has no connection pool")
        prepared = requests.PreparedRequest()
        prepared.prepare(method="GET", url=url)
        verify = True if self.session.verify is None else self.session.verify
        cert = self.session.cert
        host, pool_kwargs = adapter.build_connection_pool_key_attributes(prepared, verify, cert)
        pool: urllib3.HTTPConnectionPool
        pool = adapter.poolmanager.connection_from_host(**host, pool_kwargs=pool_kwargs)
        # The CA bundle and client certificate requests sets on the pool before each request.
        adapter.cert_verify(pool, url, verify, cert)  # type: ignore[no-untyped-call]
        return pool

    def _headers(self, url: str, given: dict[str, str]) -> dict[str, str]:
        """The session's User-Agent (and cookies, if any), then the caller's headers as given.

        Compressed media would make Content-Length (wire bytes) disagree with what we count
        (decoded bytes) and let a small gzip body expand past our limits before we see it.
        """
        names = {name.lower() for name in given}
        headers = {}
        if "user-agent" not in names:
            agent = self.session.headers.get("User-Agent", USER_AGENT)
            headers["User-Agent"] = agent if isinstance(agent, str) else agent.decode()
        if "accept-encoding" not in names:
            headers["Accept-Encoding"] = "identity"
        if "cookie" not in names and len(self.session.cookies):
            # Same cookie rules (domain, path, secure) as requests applies to its own requests.
            request = requests.Request("GET", url)
            cookie = get_cookie_header(self.session.cookies, request)  # type: ignore[no-untyped-call]
            if cookie:
                headers["Cookie"] = cookie
        headers.update(given)
        return headers

    def _open(
        self,
        url: str,
        headers: dict[str, str],
        what: str,
        *,
        hop_headers: HopHeaders | None = None,
        extra: dict[str, str] | None = None,
        allow: frozenset[int] = frozenset(),
    ) -> urllib3.BaseHTTPResponse:
        """Send the GET, following up to ``MAX_REDIRECTS`` redirects; a 2xx (or ``allow``) answer.

        ``headers`` go to ``url`` only: each hop's are asked of ``hop_headers`` for its own URL
        (none when not given), so a site's cookies and tokens never reach another host. ``extra``
        (our own: Range, If-Range) goes to every hop.
        """
        seen = {url}
        for hop in range(MAX_REDIRECTS + 1):
            response = self._send(url, {**headers, **(extra or {})}, what)
            location = response.headers.get("Location")
            if response.status not in REDIRECTS or not location:
                break
            _finish(response)
            if hop == MAX_REDIRECTS:
                raise _redirect_error(what, f"more than {MAX_REDIRECTS} redirects")
            try:
                url = requote_uri(urljoin(url, location.strip()))
            except ValueError as err:
                raise _redirect_error(what, "a redirect to a malformed address") from err
            if not is_http_url(url) or not urlsplit(url).hostname:
                raise _redirect_error(what, "a redirect to something other than http(s)")
            if url in seen:
                raise _redirect_error(what, "redirects in a loop")
            seen.add(url)
            headers = hop_headers(url) if hop_headers is not None else {}
        if response.status >= 300 and response.status not in allow:
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            reason = response.reason or ""
            _finish(response)
            # A 3xx that is no redirect we follow is as unusable as a bad 4xx.
            kind = FailureKind.INVALID_MEDIA if status < 400 else classify_status(status)
            raise SegmentError(
                f"{what}: HTTP {status} {reason}".rstrip(),
                kind=kind,
                retry_after=retry_after,
                hint=kind_hint(kind),
            )
        return response

    def _send(self, url: str, headers: dict[str, str], what: str) -> urllib3.BaseHTTPResponse:
        """One request, no redirect followed: the answer whatever its status."""
        try:
            url = requote_uri(url)  # as requests would send it (spaces, non-ASCII escaped)
            parts = urlsplit(url)
            target = parts.path or "/"
            if parts.query:
                target = f"{target}?{parts.query}"
            sent = self._headers(url, headers)

            def send() -> urllib3.BaseHTTPResponse:
                return self._pool(url, parts).urlopen(
                    "GET",
                    target,
                    headers=sent,
                    preload_content=False,
                    redirect=False,
                    retries=False,
                    timeout=self._timeout,
                )

            try:
                return send()
            except ClosedPoolError:
                # The pool was closed between our lookup and its use (nothing was sent yet):
                # once more with the pool the session has now.
                return send()
        except _REQUEST_ERRORS as err:
            raise self._transfer_error(err, what) from err

    def _transfer_error(self, err: BaseException, what: str) -> DownloadError:
        """A failed request or read, classified by ``net/failures`` and named for the user."""
        error = error_from_exception(err, what)
        return self._stalled(what) if error.kind is FailureKind.TIMEOUT else error

    def _chunks(
        self,
        response: urllib3.BaseHTTPResponse,
        what: str,
        limit: int,
        cancelled: Callable[[], bool] | None,
    ) -> Iterator[bytes]:
        """Yield body chunks, enforcing the size limit, Content-Length, the stall window and the
        deadline (see :class:`BoundedBody`)."""
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        if expected is not None and expected > limit:
            raise SegmentError(
                f"{what}: {expected} bytes is over the {_mib(limit)} limit; refused",
                kind=FailureKind.INVALID_MEDIA,
            )
        size = self.limiter.chunk_size() if self.limiter else CHUNK
        body = BoundedBody(
            response,
            stall_timeout=self.stall_timeout,
            transfer_timeout=self.transfer_timeout,
            clock=self._clock,
        )
        try:
            while True:
                if self.stop.is_set() or (cancelled is not None and cancelled()):
                    raise SegmentError(f"{what}: cancelled", kind=FailureKind.CANCELLED)
                if self.limiter is not None:
                    # Time spent waiting for our own rate limit is not the server's stall.
                    body.paused(self.limiter.acquire(size, self.stop))
                try:
                    chunk = body.read(size)
                except ReadTimedOut as err:
                    raise (self._stalled(what) if err.stalled else self._overdue(what)) from err
                except Exception as err:  # urllib3 raises its own types for resets and timeouts
                    raise self._transfer_error(err, what) from err
                if self.limiter is not None and len(chunk) < size:
                    self.limiter.refund(size - len(chunk))
                if not chunk:
                    break
                if body.received > limit:
                    raise SegmentError(
                        f"{what}: body is over the {_mib(limit)} limit; refused",
                        kind=FailureKind.INVALID_MEDIA,
                    )
                yield chunk
        finally:
            body.close()
        if expected is not None and body.received != expected:
            raise SegmentError(
                f"{what}: body truncated ({body.received} of {expected} bytes)",
                kind=FailureKind.NETWORK,
                hint=kind_hint(FailureKind.NETWORK),
            )

    def _stalled(self, what: str) -> SegmentError:
        return SegmentError(
            f"{what}: no progress (under 1 KiB) in {self.stall_timeout:g} s; stalled",
            kind=FailureKind.TIMEOUT,
            hint=kind_hint(FailureKind.TIMEOUT),
        )

    def _overdue(self, what: str) -> SegmentError:
        return SegmentError(
            f"{what}: too slow (over {self.transfer_timeout:g} s at under "
            f"{MIN_TRANSFER_RATE // 1024} KiB/s on average); stopped",
            kind=FailureKind.TIMEOUT,
            hint=TOO_SLOW_HINT,
        )

    def _write_body(
        self,
        fd: int,
        response: urllib3.BaseHTTPResponse,
        what: str,
        limit: int,
        on_bytes: Callable[[int], None] | None,
        cancelled: Callable[[], bool] | None,
        first_write: Callable[[], None] | None = None,
    ) -> int:
        """Write the body to ``fd`` in batches and report them to ``on_bytes``; its size.

        A batch goes out once it holds ``CHUNK`` bytes or is ``REPORT_EVERY`` seconds old: a
        small segment arrives in a few reads but costs one write and one report (whose
        callback takes locks), and a slow transfer still shows progress several times a second.
        ``first_write`` runs before the first batch that is not also the last: a body that
        arrives in one batch never needs it (it is whole by the time it is written).
        """
        size = batched = 0
        batch: list[bytes] = []
        began = 0.0
        try:
            for chunk in self._chunks(response, what, limit, cancelled):
                if not batch:
                    began = self._clock()
                batch.append(chunk)
                batched += len(chunk)
                if batched >= CHUNK or self._clock() - began >= REPORT_EVERY:
                    if first_write is not None:
                        first_write()
                        first_write = None
                    _flush(fd, batch, batched, on_bytes)
                    size += batched
                    batch, batched = [], 0
            if batch:
                _flush(fd, batch, batched, on_bytes)
                size += batched
                batched = 0
        except DownloadError as err:
            # What arrived before a break is kept too: a continued transfer asks only for the
            # rest. A disk that refuses it now is the next write's to report.
            if batched and (err.kind.transient or err.kind is FailureKind.CANCELLED):
                with contextlib.suppress(OSError):
                    if first_write is not None:
                        first_write()
                    _flush(fd, batch, batched, on_bytes)
                    batched = 0
            raise
        finally:
            if batched and on_bytes is not None:
                on_bytes(batched)  # received, though not written: the network did deliver them
        return size

    def fetch_bytes(
        self,
        url: str,
        headers: dict[str, str],
        *,
        what: str,
        limit: int,
        cancelled: Callable[[], bool] | None = None,
        hop_headers: HopHeaders | None = None,
    ) -> bytes:
        """A small body (a playlist) into memory, at most ``limit`` bytes (see :meth:`_open`)."""
        self.transfer.started()
        try:
            response = self._open(url, headers, what, hop_headers=hop_headers)
            if response.status == 206:
                _finish(response)
                raise _partial_error(what)
            try:
                return b"".join(self._chunks(response, what, limit, cancelled))
            finally:
                _finish(response)
        finally:
            self.transfer.ended()

    def fetch_to_file(
        self,
        url: str,
        headers: dict[str, str],
        dest: Path,
        *,
        what: str,
        limit: int,
        on_bytes: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        hop_headers: HopHeaders | None = None,
    ) -> int:
        """Stream a body to ``dest``; it appears under that name only when complete. Its size.

        The body goes to ``<dest>.part`` (see ``net/parts.py``). A part an earlier request left
        is continued with ``Range: bytes=N-`` and ``If-Range``: a 206 is taken only when its
        Content-Range starts at N and the file is the size it was; a 200 (the file changed, or
        the server ignores ranges), a 416 or any other 206 start the part again from byte 0. A
        transfer that breaks off keeps its part when it can be continued (the server gave a
        validator); anything else removes it. Only the bytes received now go to ``on_bytes``.
        """
        self.transfer.started()
        try:
            with PartFile.claim(dest) as part:
                return self._fetch_part(
                    url, headers, part, what, limit, on_bytes, cancelled, hop_headers
                )
        finally:
            self.transfer.ended()

    def _fetch_part(
        self,
        url: str,
        headers: dict[str, str],
        part: PartFile,
        what: str,
        limit: int,
        on_bytes: Callable[[int], None] | None,
        cancelled: Callable[[], bool] | None,
        hop_headers: HopHeaders | None,
    ) -> int:
        fd: int | None = None
        try:
            try:
                fd, offset, validator = part.open()
                if offset > limit:
                    part.restart(fd)
                    offset, validator = 0, None
            except OSError as err:
                raise disk_error_for(err, part.path) from err
            response = self._open_from(url, headers, what, hop_headers, fd, part, offset, validator)
            try:
                if response.status != 206:
                    offset = 0
                    length = response.headers.get("Content-Length")
                    size = int(length) if length and length.isdigit() else None
                    validator = validator_of(response.headers, size)
                # The body reader raises only DownloadError, so an OSError here is the disk's
                # (the note, writing, closing, or the rename).
                try:
                    received = self._write_body(
                        fd,
                        response,
                        what,
                        limit - offset,
                        on_bytes,
                        cancelled,
                        first_write=lambda: part.remember(validator),
                    )
                    written, fd = fd, None
                    os.close(written)
                    part.complete()
                except DownloadError:
                    raise
                except OSError as err:
                    # Any local write failure ends the run: a folder we cannot write to fails
                    # every chapter.
                    raise disk_error_for(err, part.path) from err
                return offset + received
            finally:
                _finish(response)
        except DownloadError as err:
            _close(fd)
            if (err.kind.transient or err.kind is FailureKind.CANCELLED) and not err.kind.stops_run:
                part.keep_or_discard()
            else:
                part.discard()
            raise
        except BaseException:  # Ctrl-C: what the part holds is kept for the next run
            _close(fd)
            part.keep_or_discard()
            raise

    def _open_from(
        self,
        url: str,
        headers: dict[str, str],
        what: str,
        hop_headers: HopHeaders | None,
        fd: int,
        part: PartFile,
        offset: int,
        validator: Validator | None,
    ) -> urllib3.BaseHTTPResponse:
        """The answer that continues the part from ``offset``, else one for the whole body.

        A part that cannot be continued is emptied here: the caller writes from its start.
        """
        if offset and validator is not None:
            ranged = {"Range": f"bytes={offset}-", "If-Range": validator.value}
            response = self._open(
                url,
                headers,
                what,
                hop_headers=hop_headers,
                extra=ranged,
                allow=frozenset({416}),
            )
            if response.status == 206:
                # A server that ignores If-Range but names its version shows a change too.
                now = validator_of(response.headers, validator.size)
                problem = range_problem(response.headers.get("Content-Range"), offset, validator)
                if problem is None and (now is None or now.value == validator.value):
                    return response
            whole = response.status not in (206, 416)  # the server sends it all again
            if not whole:
                _finish(response)
            try:
                part.restart(fd)
            except OSError as err:
                if whole:
                    _finish(response)
                raise disk_error_for(err, part.path) from err
            if whole:
                return response
        response = self._open(url, headers, what, hop_headers=hop_headers)
        if response.status == 206:
            _finish(response)
            raise _partial_error(what)
        return response


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _partial_error(what: str) -> SegmentError:
    return SegmentError(
        f"{what}: a partial answer (HTTP 206) to a request for the whole file",
        kind=FailureKind.INVALID_MEDIA,
    )


def _redirect_error(what: str, reason: str) -> SegmentError:
    return SegmentError(f"{what}: {reason}; refused", kind=FailureKind.INVALID_MEDIA)


def _flush(fd: int, batch: list[bytes], size: int, on_bytes: Callable[[int], None] | None) -> None:
    _write_all(fd, batch, size)
    if on_bytes is not None:
        on_bytes(size)


def _write_all(fd: int, chunks: list[bytes], total: int) -> None:
    """Write ``chunks`` (``total`` bytes) at the end of ``fd``, in one system call if it can.

    POSIX gathers the chunks with ``writev``; Windows has no such call, so there they are
    joined into one buffer first (a copy of one batch, about ``CHUNK`` bytes).
    """
    if len(chunks) == 1:
        written = os.write(fd, chunks[0])
    elif sys.platform == "win32":
        written = os.write(fd, b"".join(chunks))
    else:
        written = os.writev(fd, chunks)
    if written == total:
        return
    rest = memoryview(b"".join(chunks))[written:]
    while rest:  # a short write: a nearly full disk, a signal
        step = os.write(fd, rest)
        if step == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        rest = rest[step:]


def _finish(response: urllib3.BaseHTTPResponse) -> None:
    """Hand the response's connection back to the pool, never with a body half read.

    A body read to its end has released its connection already; otherwise (an error, a
    cancel, a refused status) the connection is closed first, so the next request on it opens
    a fresh one. Releasing even a closed connection matters: the pool blocks when full, and a
    connection never handed back would hold one of its places forever.
    """
    response.close()
    response.release_conn()


def _socket_of(response: urllib3.BaseHTTPResponse) -> socket.socket | None:
    """The socket under a response still reading its body, to bound each read by the window.

    urllib3 sets a pooled connection's timeout again on its next request, so changing it here
    does not leak into later requests. None once the body is complete (the connection is back
    in the pool) or when urllib3 does not expose it (reads then fall back on the read timeout
    of ``stall_timeout`` given to the request).
    """
    sock = getattr(response.connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _mib(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MiB"
