"""HTTP transfers: one pooled session, bounded reads, stall detection, a shared rate limit.

Every read here has a bound (SPEC §5): the connect timeout, and a stall window. A transfer that
receives less than 1 KiB within ``stall_timeout`` seconds (nothing at all included) is aborted
as ``timeout``: each socket read waits only for what is left of the window, so a trickle is
caught as quickly as silence. Bodies stream to disk; nothing holds a whole segment in memory.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from tokysnatcher.core.failures import (
    classify_status,
    error_from_exception,
    kind_hint,
    parse_retry_after,
)
from tokysnatcher.errors import DiskError, DownloadError, FailureKind, SegmentError
from tokysnatcher.utils.atomic import disk_error_for

CHUNK = 64 * 1024
STALL_MIN_BYTES = 1024
USER_AGENT = "tokysnatcher (+https://github.com/tokysnatcher/tokysnatcher)"


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


class RateLimiter:
    """A token bucket shared by every connection: smooth at chunk level, stop-aware."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        # A quarter second of burst keeps transfers smooth without bursts-then-pauses.
        self.capacity = max(rate / 4, float(self.chunk_size()))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def chunk_size(self) -> int:
        return int(min(CHUNK, max(1024, self.rate / 8)))

    def acquire(self, n: int, stop: threading.Event | None = None) -> float:
        """Block until ``n`` bytes may pass; returns the seconds waited."""
        waited = 0.0
        # More than the bucket holds is let through once it is full, as a debt later callers
        # wait for; waiting for ``n`` itself would never end.
        need = min(n, self.capacity)
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= need:
                    self._tokens -= n
                    return waited
                pause = (need - self._tokens) / self.rate
            if stop is not None and stop.is_set():
                return waited
            pause = min(pause, 0.25)
            self._sleep(pause)
            waited += pause

    def refund(self, n: int) -> None:
        """Give back tokens taken for bytes that did not come (a short read, the end of a body).

        Without it every short read (and the final empty one) costs a whole chunk, and a book
        of small segments is fetched at a fraction of the limit.
        """
        if n > 0:
            with self._lock:
                self._tokens = min(self.capacity, self._tokens + n)


class Transfer:
    """Byte counters shared with the progress view (updated from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_total = 0
        self.active = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes_total += n

    def started(self) -> None:
        with self._lock:
            self.active += 1

    def ended(self) -> None:
        with self._lock:
            self.active -= 1


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
        limiter: RateLimiter | None = None,
        transfer: Transfer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self.stop = stop
        self.limiter = limiter
        self.transfer = transfer or Transfer()
        self._clock = clock

    def _open(self, url: str, headers: dict[str, str], what: str) -> requests.Response:
        # Compressed media would make Content-Length (wire bytes) disagree with what we count
        # (decoded bytes) and let a small gzip body expand past our limits before we see it.
        headers = {"Accept-Encoding": "identity", **headers}
        try:
            response = self.session.get(
                url,
                headers=headers,
                stream=True,
                timeout=(self.connect_timeout, self.stall_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as err:
            raise self._transfer_error(err, what) from err
        if response.status_code >= 300:
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            reason = response.reason or ""
            response.close()
            # We never follow redirects for media: a 3xx is as unusable as a bad 4xx.
            kind = FailureKind.INVALID_MEDIA if status < 400 else classify_status(status)
            raise SegmentError(
                f"{what}: HTTP {status} {reason}".rstrip(),
                kind=kind,
                retry_after=retry_after,
                hint=kind_hint(kind),
            )
        return response

    def _transfer_error(self, err: BaseException, what: str) -> DownloadError:
        """A failed request or read, classified by ``core/failures`` and named for the user."""
        error = error_from_exception(err, what)
        return self._stalled(what) if error.kind is FailureKind.TIMEOUT else error

    def _chunks(
        self,
        response: requests.Response,
        what: str,
        limit: int,
        on_bytes: Callable[[int], None],
        cancelled: Callable[[], bool] | None,
    ) -> Iterator[bytes]:
        """Yield body chunks, enforcing the size limit, Content-Length and the stall window.

        A stall is less than ``STALL_MIN_BYTES`` arriving within ``stall_timeout`` seconds
        (nothing at all included). Each read waits only for what is left of that window, so
        a trickle is caught as soon as a silent server is.
        """
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        if expected is not None and expected > limit:
            raise SegmentError(
                f"{what}: {expected} bytes is over the {_mib(limit)} limit; refused",
                kind=FailureKind.INVALID_MEDIA,
            )
        received = 0
        mark_time, mark_bytes = self._clock(), 0  # when the last KiB of progress was made
        size = self.limiter.chunk_size() if self.limiter else CHUNK
        sock = _socket_of(response)
        try:
            while True:
                if self.stop.is_set() or (cancelled is not None and cancelled()):
                    raise SegmentError(f"{what}: cancelled", kind=FailureKind.CANCELLED)
                if self.limiter is not None:
                    # Time spent waiting for our own rate limit is not the server's stall.
                    mark_time += self.limiter.acquire(size, self.stop)
                left = mark_time + self.stall_timeout - self._clock()
                if left <= 0:
                    raise self._stalled(what)
                # Asked anew each time: once the body is complete urllib3 hands the connection
                # back to the pool, where another request may use (or close) that socket.
                sock = _socket_of(response)
                if sock is not None:
                    with contextlib.suppress(OSError):  # closed under us: the read will say so
                        sock.settimeout(min(left, self.stall_timeout))
                try:
                    chunk = response.raw.read1(size, decode_content=True)
                except Exception as err:  # urllib3 raises its own types for resets and timeouts
                    raise self._transfer_error(err, what) from err
                if self.limiter is not None and len(chunk) < size:
                    self.limiter.refund(size - len(chunk))
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    raise SegmentError(
                        f"{what}: body is over the {_mib(limit)} limit; refused",
                        kind=FailureKind.INVALID_MEDIA,
                    )
                if received - mark_bytes >= STALL_MIN_BYTES:
                    mark_time, mark_bytes = self._clock(), received
                on_bytes(len(chunk))
                yield chunk
        finally:
            if sock is not None and _socket_of(response) is sock:
                with contextlib.suppress(OSError):
                    sock.settimeout(self.stall_timeout)
        if expected is not None and received != expected:
            raise SegmentError(
                f"{what}: body truncated ({received} of {expected} bytes)",
                kind=FailureKind.NETWORK,
                hint=kind_hint(FailureKind.NETWORK),
            )

    def _stalled(self, what: str) -> SegmentError:
        return SegmentError(
            f"{what}: no progress (under 1 KiB) in {self.stall_timeout:g} s; stalled",
            kind=FailureKind.TIMEOUT,
            hint=kind_hint(FailureKind.TIMEOUT),
        )

    def _count(self, n: int) -> None:
        self.transfer.add(n)

    def fetch_bytes(
        self,
        url: str,
        headers: dict[str, str],
        *,
        what: str,
        limit: int,
        cancelled: Callable[[], bool] | None = None,
    ) -> bytes:
        """A small body (a playlist) into memory, at most ``limit`` bytes."""
        self.transfer.started()
        try:
            with self._open(url, headers, what) as response:
                return b"".join(self._chunks(response, what, limit, self._count, cancelled))
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
    ) -> int:
        """Stream a body to ``dest``; it appears under that name only when complete.

        The body goes to a ``.part`` file of this call's own (two attempts of one chapter may
        fetch the same segment at once; each writes its own file and the rename is atomic).
        """
        part = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:12]}.part")

        def count(n: int) -> None:
            self._count(n)
            if on_bytes is not None:
                on_bytes(n)

        self.transfer.started()
        try:
            with self._open(url, headers, what) as response:
                size = 0
                # The body reader raises only DownloadError, so an OSError here is the disk's
                # (opening, writing, the flush on close, or the rename).
                try:
                    with part.open("wb") as out:
                        for chunk in self._chunks(response, what, limit, count, cancelled):
                            out.write(chunk)
                            size += len(chunk)
                    part.replace(dest)
                except DownloadError:
                    raise
                except OSError as err:
                    raise _disk_error(part, err) from err
                return size
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
        finally:
            self.transfer.ended()


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed response, to bound each read by what is left of the window.

    urllib3 resets a pooled connection's timeout on its next request, so changing it here does
    not leak into later requests. None when urllib3 does not expose it (reads then fall back on
    the session's read timeout of ``stall_timeout``).
    """
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _disk_error(path: Path, err: OSError) -> DiskError:
    # Any local write failure ends the run: a folder we cannot write to fails every chapter.
    return disk_error_for(err, path) or DiskError(f"cannot write {path}: {err.strerror or err}")


def _mib(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MiB"
