"""JSON calls to a site's API: bounded reads, retries of what may pass, one line for what fails.

Every call a source makes (book details, chapter list, search, credential renewal) goes through
:meth:`JsonApi.post`, so all of them retry transient failures the way a segment request does
(``download/retry.py``: ``segment_retries`` quick retries, exponential backoff, ``Retry-After``
honoured up to ``MAX_QUICK_WAIT``) and all of them fail with one plain sentence: which server,
and why (DNS, refused, TLS, timeout, a server error, an HTML page where JSON was expected).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3

from tokysnatcher.download.retry import MAX_QUICK_WAIT, segment_backoff
from tokysnatcher.errors import Interrupted, SourceError
from tokysnatcher.net.failures import (
    Unreachable,
    classify_exception,
    describe_exception,
    parse_retry_after,
    unreachable,
)
from tokysnatcher.net.http import MIN_TRANSFER_RATE, TOO_SLOW_HINT, BoundedBody, ReadTimedOut
from tokysnatcher.net.limits import CHUNK

# JSON answers from an API are small; anything larger is hostile or broken.
MAX_JSON_BYTES = 4 * 1024 * 1024
_SERVER_HINT = "The site is having trouble; try again later."
_T = TypeVar("_T")


class _Retryable(Exception):
    """A failure another try may mend; ``error`` is what the user sees if none does."""

    def __init__(self, error: SourceError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class JsonApi:
    """POSTs JSON to one server through a shared ``requests.Session``.

    ``wait(seconds)`` sleeps between retries and returns True when the run is stopping (a
    ``threading.Event.wait``); ``now()`` is the wall clock that dates a ``Retry-After``. Both
    are injectable so tests never really sleep. ``min_interval`` spaces the calls to this
    server (a polite client of a free API), timed by ``clock``. ``site_setting`` is what hints
    name to point the source elsewhere (``--base-url``, ``TOKYSNATCHER_LIBRIVOX_URL``).
    """

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        stall_timeout: float = 30.0,
        transfer_timeout: float = 300.0,
        retries: int = 3,
        retry_delay: float = 0.5,
        wait: Callable[[float], bool] = _sleep,
        now: Callable[[], float] = time.time,
        site_setting: str = "--base-url",
        min_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.base_url = base_url
        parts = urlsplit(base_url)
        self.server = parts.netloc  # named in every message: "tokybook.com", "127.0.0.1:8080"
        self._host = parts.hostname or parts.netloc
        self._timeout = (connect_timeout, stall_timeout)
        self._connect_timeout = connect_timeout
        self._stall_timeout = stall_timeout
        self._transfer_timeout = transfer_timeout
        self._retries = retries
        self._retry_delay = retry_delay
        self._wait = wait
        self._now = now
        # Hints name the setting that points the source at another server.
        self._selects = f"{site_setting} selects another"
        self._offline_hint = f"the site may be offline; {self._selects}"
        self._min_interval = min_interval
        self._clock = clock
        self._pace_lock = threading.Lock()
        self._next_call = -math.inf

    @property
    def connect_timeout(self) -> float:
        """Seconds a connection may take to open."""
        return self._connect_timeout

    def post(self, url: str, body: Mapping[str, Any], what: str) -> tuple[int, Any]:
        """POST ``body``; the status and the parsed answer (None for an HTTP error below 500).

        A connection failure, a stall, 429 and 5xx are retried; when the retries run out (or the
        failure cannot pass) a :class:`SourceError` says what happened in one line.
        """
        return self._retrying(lambda: self._once("POST", url, what, body=body), what)

    def get(
        self, url: str, what: str, *, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """GET JSON: the status and the parsed answer, for an HTTP error below 500 too.

        Some APIs say "nothing found" with a 4xx and a JSON body; the caller reads that body
        (None when it is not JSON). Retries and failures as :meth:`post`.
        """
        return self._retrying(
            lambda: self._once("GET", url, what, headers=headers, error_bodies=True), what
        )

    def get_text(
        self, url: str, what: str, *, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        """GET a page as text (at most ``MAX_JSON_BYTES``): the status and the decoded body."""
        return self._retrying(lambda: self._once_text(url, what, headers), what)

    def _pace(self, what: str) -> None:
        """Wait until ``min_interval`` has passed since the previous call to this server."""
        if self._min_interval <= 0:
            return
        with self._pace_lock:  # callers queue: each takes the next free slot in turn
            delay = self._next_call - self._clock()
            if delay > 0 and self._wait(delay):
                raise Interrupted(f"stopped while waiting to ask {self.server} for {what}")
            self._next_call = self._clock() + self._min_interval

    def _retrying(self, call: Callable[[], tuple[int, _T]], what: str) -> tuple[int, _T]:
        failures = 0
        while True:
            self._pace(what)
            try:
                return call()
            except _Retryable as err:
                failures += 1
                if failures > self._retries:
                    raise err.error from err
                delay = segment_backoff(
                    failures,
                    base=self._retry_delay,
                    retry_after=err.retry_after,
                    cap=MAX_QUICK_WAIT,
                )
                if self._wait(delay):
                    raise Interrupted(f"stopped while asking {self.server} for {what}") from err

    def _fetch(
        self,
        method: str,
        url: str,
        what: str,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, str]:
        """One request: (status, body, content type); raises :class:`_Retryable` for what
        another try may mend."""
        try:
            with self.session.request(
                method,
                url,
                json=dict(body) if body is not None else None,
                headers=dict(headers) if headers else None,
                timeout=self._timeout,
                stream=True,
            ) as r:
                status = r.status_code
                if status == 429 or status >= 500:
                    retry_after = parse_retry_after(r.headers.get("Retry-After"), now=self._now())
                    raise _Retryable(self._status_error(status, what), retry_after)
                raw = self._read_answer(r.raw, what)
                return status, raw, r.headers.get("Content-Type") or ""
        except requests.ReadTimeout as err:
            raise _Retryable(self._stalled(what)) from err
        except requests.RequestException as err:
            cause = unreachable(err)
            error = self._unreachable_error(err, cause, what)
            if cause is Unreachable.TLS or not classify_exception(err).transient:
                raise error from err  # a handshake or a malformed request fails the same again
            raise _Retryable(error) from err

    def _once(
        self,
        method: str,
        url: str,
        what: str,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        error_bodies: bool = False,
    ) -> tuple[int, Any]:
        status, raw, content_type = self._fetch(method, url, what, body=body, headers=headers)
        if status >= 400:
            if not error_bodies:
                return status, None
            try:
                return status, json.loads(raw)
            except (ValueError, RecursionError):
                return status, None
        try:
            return status, json.loads(raw)
        except RecursionError as err:  # nested past the parser's limit: hostile, not data
            raise SourceError(f"the site's answer for {what} is nested too deep; refused") from err
        except ValueError as err:
            if "html" in content_type.lower() or raw.lstrip()[:1] == b"<":
                raise SourceError(
                    f"{self.server} answered {what} with an HTML page, not JSON",
                    hint="it may not be the site's API (a parked domain, a proxy or login "
                    f"page); {self._selects}",
                ) from err
            raise SourceError(f"the site's answer for {what} is not JSON") from err

    def _once_text(self, url: str, what: str, headers: Mapping[str, str] | None) -> tuple[int, str]:
        status, raw, _ = self._fetch("GET", url, what, headers=headers)
        return status, raw.decode("utf-8", "replace")

    def _status_error(self, status: int, what: str) -> SourceError:
        if status == 429:
            return SourceError(
                f"{self.server} answered HTTP 429 for {what} (too many requests)",
                hint="The site is limiting requests; try again later.",
            )
        return SourceError(
            f"{self.server} answered HTTP {status} for {what} (server error)", hint=_SERVER_HINT
        )

    def _unreachable_error(
        self, err: requests.RequestException, cause: Unreachable | None, what: str
    ) -> SourceError:
        if cause is Unreachable.DNS:
            return SourceError(f"{self._host} does not resolve (DNS)", hint=self._offline_hint)
        if cause is Unreachable.REFUSED:
            return SourceError(
                f"could not reach {self.server}: connection refused", hint=self._offline_hint
            )
        if cause is Unreachable.TLS:
            return SourceError(
                f"could not reach {self.server}: the secure connection failed (TLS)",
                hint="the site may not serve https, or its certificate is not valid; "
                + self._selects,
            )
        if cause is Unreachable.TIMEOUT:
            return SourceError(
                f"could not reach {self.server}: no answer in {self._connect_timeout:g} s "
                "(timeout)",
                hint=self._offline_hint,
            )
        return SourceError(f"could not reach {self.base_url} for {what}: {describe_exception(err)}")

    def _read_answer(self, response: urllib3.BaseHTTPResponse, what: str) -> bytes:
        """The whole body of an API answer, at most ``MAX_JSON_BYTES``.

        Read under the same stall rule and deadline as media (SPEC §5), so a site that trickles
        or drips its answer fails the call instead of holding the run.
        """
        reader = BoundedBody(
            response,
            stall_timeout=self._stall_timeout,
            transfer_timeout=self._transfer_timeout,
        )
        chunks: list[bytes] = []
        try:
            while chunk := reader.read(CHUNK):
                chunks.append(chunk)
                if reader.received > MAX_JSON_BYTES:
                    raise SourceError(f"the site's answer for {what} is larger than 4 MiB; refused")
        except ReadTimedOut as err:
            if err.stalled:
                raise _Retryable(self._stalled(what)) from err
            raise SourceError(
                f"the site sent {what} too slowly (over {self._transfer_timeout:g} s at under "
                f"{MIN_TRANSFER_RATE // 1024} KiB/s on average); stopped",
                hint=TOO_SLOW_HINT,
            ) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:  # a reset, a truncated body
            raise _Retryable(
                SourceError(
                    f"could not read {what} from {self.base_url}: {describe_exception(err)}"
                )
            ) from err
        finally:
            reader.close()
        return b"".join(chunks)

    def _stalled(self, what: str) -> SourceError:
        return SourceError(
            f"the site stopped sending {what} (no progress in {self._stall_timeout:g} s)",
            hint="The site is not answering; try again later, or use a larger --stall-timeout "
            "on a slow link.",
        )
