"""Thread-safe counters of what the stand-in site saw and did (``site.stats``)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import NamedTuple

from requests.structures import CaseInsensitiveDict


class FaultEvent(NamedTuple):
    """One injected fault, in the order they fired."""

    kind: str
    path: str
    previous: int


class OtherHostRequest(NamedTuple):
    """A request that reached the "other host" listener of the hostile-server book."""

    method: str
    path: str
    headers: CaseInsensitiveDict[str]


class ServedBody(NamedTuple):
    """One response body the site sent (or began to send), in the order they ended."""

    media_host: bool  # sent by the host media is redirected to
    path: str
    status: int
    range: str | None  # the request's Range header
    sent: int  # body bytes written


class SiteStats:
    """Counters; every property returns a copy taken under the lock.

    Request kinds: ``details``, ``playlist``, ``search``, ``m3u8``, ``segment``, ``file``,
    ``cover``, ``page`` and ``other`` (anything unknown). Fault kinds: the ``Faults.error_kinds``
    plus ``missing_track``, ``token_expired`` and ``api_error``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._requests: Counter[str] = Counter()
            self._statuses: Counter[int] = Counter()
            self._faults: Counter[str] = Counter()
            self._fault_log: list[FaultEvent] = []
            self._paths: Counter[str] = Counter()
            self._other_host: list[OtherHostRequest] = []
            self._served: list[ServedBody] = []
            self._connections = 0
            self._active = 0
            self._peak = 0
            self._bytes_sent = 0

    # -- recording (called by the server) ---------------------------------------------------
    def count_request(self, kind: str, path: str) -> None:
        """Count one request of ``kind`` for the (raw) ``path``."""
        with self._lock:
            self._requests[kind] += 1
            self._paths[path] += 1

    def count_status(self, status: int) -> None:
        """Count one response status line sent."""
        with self._lock:
            self._statuses[status] += 1

    def count_fault(self, kind: str, path: str, previous: int = 0) -> None:
        """Count one injected fault."""
        with self._lock:
            self._faults[kind] += 1
            self._fault_log.append(FaultEvent(kind, path, previous))

    def add_bytes(self, count: int) -> None:
        """Count body bytes written to clients."""
        with self._lock:
            self._bytes_sent += count

    def record_served(
        self, media_host: bool, path: str, status: int, range_header: str | None, sent: int
    ) -> None:
        """Keep what one response's body amounted to."""
        with self._lock:
            self._served.append(ServedBody(media_host, path, status, range_header, sent))

    def connection_opened(self) -> None:
        """Count a newly accepted TCP connection."""
        with self._lock:
            self._connections += 1
            self._active += 1
            self._peak = max(self._peak, self._active)

    def connection_closed(self) -> None:
        """Note that a connection ended."""
        with self._lock:
            self._active -= 1

    def record_other_host(self, method: str, path: str, headers: dict[str, str]) -> None:
        """Keep the headers of a request that reached the other-host listener."""
        with self._lock:
            self._other_host.append(OtherHostRequest(method, path, CaseInsensitiveDict(headers)))

    # -- reading ------------------------------------------------------------------------------
    @property
    def requests(self) -> Counter[str]:
        """Requests by endpoint kind."""
        with self._lock:
            return Counter(self._requests)

    @property
    def statuses(self) -> Counter[int]:
        """Responses by status code (faults that send no status line are not here)."""
        with self._lock:
            return Counter(self._statuses)

    @property
    def faults(self) -> Counter[str]:
        """Injected faults by kind."""
        with self._lock:
            return Counter(self._faults)

    @property
    def fault_log(self) -> list[FaultEvent]:
        """Every injected fault in firing order."""
        with self._lock:
            return list(self._fault_log)

    @property
    def paths(self) -> Counter[str]:
        """Requests by raw request path (without query)."""
        with self._lock:
            return Counter(self._paths)

    @property
    def connections(self) -> int:
        """TCP connections accepted by the main listener."""
        with self._lock:
            return self._connections

    @property
    def active_connections(self) -> int:
        """TCP connections open right now."""
        with self._lock:
            return self._active

    @property
    def peak_connections(self) -> int:
        """Most TCP connections open at the same time."""
        with self._lock:
            return self._peak

    @property
    def bytes_sent(self) -> int:
        """Response body bytes written."""
        with self._lock:
            return self._bytes_sent

    @property
    def other_host_requests(self) -> list[OtherHostRequest]:
        """Requests received by the other-host listener, headers case-insensitive."""
        with self._lock:
            return list(self._other_host)

    @property
    def served(self) -> list[ServedBody]:
        """Every response body sent, with its status, Range and byte count."""
        with self._lock:
            return list(self._served)

    @property
    def other_host_headers(self) -> list[CaseInsensitiveDict[str]]:
        """Just the headers of :attr:`other_host_requests`."""
        return [request.headers for request in self.other_host_requests]

    def snapshot(self) -> dict[str, object]:
        """All counters as plain JSON-friendly values."""
        return {
            "requests": dict(self.requests),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "faults": dict(self.faults),
            "connections": self.connections,
            "peak_connections": self.peak_connections,
            "bytes_sent": self.bytes_sent,
            "other_host_requests": len(self.other_host_requests),
        }
