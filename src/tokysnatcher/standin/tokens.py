"""Stream tokens: issued by the playlist API, checked (and used up) by the audio endpoint."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class TokenCheck(Enum):
    """Outcome of presenting a token to the audio endpoint."""

    OK = "ok"
    MISSING = "missing"  # 401
    BAD = "bad"  # 401: unknown token, or not for this audiobook
    EXPIRED = "expired"  # 403: too old or used too often


@dataclass(kw_only=True)
class _Token:
    audio_book_id: str
    issued_at: float
    uses: int = 0
    lenient: bool = False
    permanent: bool = False


@dataclass(frozen=True, kw_only=True)
class TokenVerdict:
    """The check result; ``lenient`` tokens need no ``X-Track-Src`` (plain ffmpeg can't send it)."""

    check: TokenCheck
    lenient: bool = False


class TokenStore:
    """All tokens issued so far; old tokens stay valid until they expire."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}

    def issue(self, audio_book_id: str, *, lenient: bool = False) -> str:
        """A fresh token for ``audio_book_id``."""
        token = "st-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Token(
                audio_book_id=audio_book_id, issued_at=self._clock(), lenient=lenient
            )
        return token

    def add_permanent(self, token: str, audio_book_id: str) -> None:
        """Accept ``token`` forever (the ``postDetailToken`` of a book without stream tokens)."""
        with self._lock:
            self._tokens[token] = _Token(
                audio_book_id=audio_book_id, issued_at=self._clock(), permanent=True
            )

    def use(
        self,
        token: str | None,
        audio_book_id: str | None,
        *,
        ttl: float | None,
        max_uses: int | None,
    ) -> TokenVerdict:
        """Check a presented token and count one use of it when it is good."""
        if not token or not audio_book_id:
            return TokenVerdict(check=TokenCheck.MISSING)
        with self._lock:
            record = self._tokens.get(token)
            if record is None or record.audio_book_id != audio_book_id:
                return TokenVerdict(check=TokenCheck.BAD)
            if not record.permanent:
                too_old = ttl is not None and self._clock() - record.issued_at > ttl
                used_up = max_uses is not None and record.uses >= max_uses
                if too_old or used_up:
                    return TokenVerdict(check=TokenCheck.EXPIRED, lenient=record.lenient)
            record.uses += 1
            return TokenVerdict(check=TokenCheck.OK, lenient=record.lenient)
