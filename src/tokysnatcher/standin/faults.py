"""Fault injection for the stand-in site, deterministic from a seed.

Whether an audio request fails, and how, is a pure function of ``(seed, request path, how many
times that path reached the fault stage before)``: the same seed and the same client behaviour
give the same faults, run after run, whatever the thread timing across different paths.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["5xx", "429", "reset", "truncate", "stall"]
FAULT_KINDS: tuple[FaultKind, ...] = ("5xx", "429", "reset", "truncate", "stall")
_STATUSES_5XX = (500, 502, 503)


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What goes wrong on the stand-in site. Everything is off by default.

    Error faults (``error_rate``, ``fail_first``) hit audio requests only: HLS playlists,
    segments and direct files. ``api_error_rate`` makes the JSON API answer 503.
    ``latency`` delays every response; ``connection_setup`` delays the first response of each
    new TCP connection; ``bandwidth`` caps each response's body rate (bytes/s): a cap per
    connection, as a connection carries one response at a time; ``total_bandwidth`` caps the
    body bytes of all responses together (bytes/s), as a site's uplink does.
    ``max_concurrent``: an audio request that arrives while this many are being answered gets
    429 with ``Retry-After`` (``retry_after``), as a site that throttles per client does.
    ``outage_at``/``outage_seconds``: from ``outage_at`` seconds after the faults were set (the
    site started, or ``set_faults``), for ``outage_seconds``, the site is down: every new
    connection and every request is reset, and bodies being sent are cut.
    ``token_ttl`` (seconds) and ``token_max_uses`` (audio requests) expire stream tokens (403).
    ``missing_tracks`` holds ``(slug, 0-based track index)`` pairs that answer 404 forever.
    ``fail_first`` fails the first N requests of every audio path with ``error_kinds[0]``.
    ``trickle`` names request kinds (as ``SiteStats`` counts them: ``details``, ``playlist``,
    ``search``, ``m3u8``, ``segment``, ``file``, ``cover``) whose bodies trickle out
    ``trickle_bytes`` at a time, one piece every ``trickle_every`` seconds: 1 byte a second
    never trips a per-read socket timeout; just over 1 KiB per stall window never trips the
    stall rule either (SPEC §5).
    Direct files and segments carry an ETag and Last-Modified and honour ``Range``
    (``standin/ranges.py``): ``ignore_range`` answers every request whole (200), and another
    ``validator_epoch`` is another version of every file (the file changed between runs).
    ``redirect_media`` answers them with a 302 to a second listener (``localhost``, another
    port) that serves them without a token and records the headers it receives.
    """

    seed: int = 0
    error_rate: float = 0.0
    error_kinds: tuple[FaultKind, ...] = FAULT_KINDS
    retry_after: float = 1.0
    stall_seconds: float = 60.0
    latency: float = 0.0
    connection_setup: float = 0.0
    bandwidth: float | None = None
    token_ttl: float | None = None
    token_max_uses: int | None = None
    missing_tracks: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    fail_first: int = 0
    api_error_rate: float = 0.0
    trickle: frozenset[str] = field(default_factory=frozenset)
    trickle_bytes: int = 1
    trickle_every: float = 1.0
    ignore_range: bool = False
    validator_epoch: int = 0
    redirect_media: bool = False
    total_bandwidth: float | None = None
    max_concurrent: int | None = None
    outage_at: float = 0.0
    outage_seconds: float = 0.0

    def __post_init__(self) -> None:
        # Accept lists from callers and the CLI; store hashable, immutable values.
        object.__setattr__(self, "error_kinds", tuple(self.error_kinds))
        object.__setattr__(self, "trickle", frozenset(self.trickle))
        object.__setattr__(
            self, "missing_tracks", frozenset((str(s), int(i)) for s, i in self.missing_tracks)
        )
        unknown = [kind for kind in self.error_kinds if kind not in FAULT_KINDS]
        if unknown or not self.error_kinds:
            raise ValueError(f"error_kinds must be a non-empty subset of {FAULT_KINDS}: {unknown}")
        for name in ("error_rate", "api_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        for name in (
            "retry_after",
            "stall_seconds",
            "latency",
            "connection_setup",
            "fail_first",
            "validator_epoch",
            "outage_at",
            "outage_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.trickle_bytes < 1 or not self.trickle_every > 0:
            raise ValueError("trickle_bytes must be at least 1 and trickle_every positive")
        for name in ("bandwidth", "total_bandwidth"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (bytes per second) or None")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1 or None")
        if self.token_ttl is not None and self.token_ttl < 0:
            raise ValueError("token_ttl must not be negative")
        if self.token_max_uses is not None and self.token_max_uses < 0:
            raise ValueError("token_max_uses must not be negative")

    @property
    def retry_after_header(self) -> str:
        """The ``Retry-After`` value of a 429: whole seconds, rounded up (``0`` only if asked)."""
        return str(math.ceil(self.retry_after))


@dataclass(frozen=True, kw_only=True)
class FaultDecision:
    """One injected fault.

    ``status`` is the code of a ``5xx``; ``fraction`` is the share of the body sent before a
    truncate, mid-body reset or stall; ``before_response`` makes a reset or stall happen before
    any byte of the response is sent.
    """

    kind: FaultKind
    status: int = 0
    fraction: float = 0.5
    before_response: bool = False


def decide(faults: Faults, key: str, previous: int) -> FaultDecision | None:
    """The fault (if any) for the request of ``key`` that had ``previous`` requests before it."""
    digest = hashlib.blake2b(f"{faults.seed}|{key}|{previous}".encode(), digest_size=16).digest()
    if previous < faults.fail_first:
        kind = faults.error_kinds[0]
    else:
        roll = int.from_bytes(digest[:8], "big") / 2**64
        if roll >= faults.error_rate:
            return None
        kind = faults.error_kinds[digest[8] % len(faults.error_kinds)]
    return FaultDecision(
        kind=kind,
        status=_STATUSES_5XX[digest[9] % len(_STATUSES_5XX)],
        fraction=0.1 + 0.8 * digest[10] / 255,
        before_response=digest[11] % 2 == 0,
    )


def api_fails(faults: Faults, key: str, previous: int) -> bool:
    """Whether the JSON API request of ``key`` (with ``previous`` before it) answers 503."""
    if faults.api_error_rate <= 0:
        return False
    digest = hashlib.blake2b(f"{faults.seed}|api|{key}|{previous}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < faults.api_error_rate
