"""HTTP transfers: one pooled session, bounded reads, stall detection, a shared rate limit.

Every read here has a bound (SPEC §5): the connect timeout, a socket read timeout of
``stall_timeout``, and a sliding window that calls a trickle of under 1 KiB per ``stall_timeout``
a stall too. Bodies stream to disk; nothing holds a whole segment in memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from tokysnatcher.core.retry import classify_status, parse_retry_after
from tokysnatcher.errors import DiskError, DownloadError, FailureKind, SegmentError

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
        self.capacity = max(rate / 4, float(CHUNK))
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
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= n:
                    self._tokens -= n
                    return waited
                pause = (n - self._tokens) / self.rate
            if stop is not None and stop.is_set():
                return waited
            pause = min(pause, 0.25)
            self._sleep(pause)
            waited += pause


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
    """Runs single GET requests to disk or memory with every limit of SPEC §5 applied."""

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
        try:
            response = self.session.get(
                url,
                headers=headers,
                stream=True,
                timeout=(self.connect_timeout, self.stall_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as err:
            raise _request_error(err, what) from err
        if response.status_code >= 300:
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            response.close()
            kind = classify_status(status)
            if 300 <= status < 400:
                kind = FailureKind.INVALID_MEDIA
            raise SegmentError(f"{what}: HTTP {status}", kind=kind, retry_after=retry_after)
        return response

    def _chunks(
        self, response: requests.Response, what: str, limit: int, on_bytes: Callable[[int], None]
    ) -> Iterator[bytes]:
        """Yield body chunks, enforcing the size limit, Content-Length and the stall window."""
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        if expected is not None and expected > limit:
            raise SegmentError(
                f"{what}: {expected} bytes is over the {limit // (1024 * 1024)} MiB limit; refused",
                kind=FailureKind.INVALID_MEDIA,
            )
        received = 0
        window_start, window_bytes = self._clock(), 0
        size = self.limiter.chunk_size() if self.limiter else CHUNK
        while True:
            if self.stop.is_set():
                raise SegmentError(f"{what}: cancelled", kind=FailureKind.CANCELLED)
            if self.limiter is not None:
                waited = self.limiter.acquire(size, self.stop)
                if waited:
                    window_start, window_bytes = self._clock(), 0
            try:
                chunk = response.raw.read1(size, decode_content=True)
            except Exception as err:  # urllib3 raises its own types for resets and timeouts
                raise _request_error(err, what) from err
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise SegmentError(
                    f"{what}: body is over the {limit // (1024 * 1024)} MiB limit; refused",
                    kind=FailureKind.INVALID_MEDIA,
                )
            on_bytes(len(chunk))
            yield chunk
            now = self._clock()
            window_bytes += len(chunk)
            if now - window_start >= self.stall_timeout:
                if window_bytes < STALL_MIN_BYTES:
                    raise SegmentError(
                        f"{what}: under 1 KiB in {self.stall_timeout:g} s; stalled",
                        kind=FailureKind.TIMEOUT,
                    )
                window_start, window_bytes = now, 0
        if expected is not None and received != expected:
            raise SegmentError(
                f"{what}: body truncated ({received} of {expected} bytes)",
                kind=FailureKind.NETWORK,
            )

    def _count(self, n: int) -> None:
        self.transfer.add(n)

    def fetch_bytes(self, url: str, headers: dict[str, str], *, what: str, limit: int) -> bytes:
        """A small body (a playlist) into memory, at most ``limit`` bytes."""
        self.transfer.started()
        try:
            with self._open(url, headers, what) as response:
                return b"".join(self._chunks(response, what, limit, self._count))
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
    ) -> int:
        """Stream a body to ``dest`` (via ``dest.part``, renamed only when complete)."""
        part = dest.with_name(dest.name + ".part")

        def count(n: int) -> None:
            self._count(n)
            if on_bytes is not None:
                on_bytes(n)

        self.transfer.started()
        try:
            with self._open(url, headers, what) as response:
                size = 0
                try:
                    with part.open("wb") as out:
                        for chunk in self._chunks(response, what, limit, count):
                            out.write(chunk)
                            size += len(chunk)
                    part.replace(dest)
                except OSError as err:
                    raise DiskError(f"cannot write {part}: {err.strerror or err}") from err
                return size
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
        finally:
            self.transfer.ended()


def _request_error(err: BaseException, what: str) -> DownloadError:
    text = str(err)
    if isinstance(err, requests.ConnectTimeout):
        return SegmentError(f"{what}: could not connect ({text[:160]})", kind=FailureKind.NETWORK)
    if isinstance(err, requests.ReadTimeout) or "timed out" in text.lower():
        return SegmentError(
            f"{what}: no data for the stall timeout; stalled", kind=FailureKind.TIMEOUT
        )
    return SegmentError(f"{what}: connection failed ({_short(text)})", kind=FailureKind.NETWORK)


def _short(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."
