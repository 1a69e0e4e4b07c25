"""Helpers for the stand-in site tests: a small catalog and a client of the audio protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from tokysnatcher.standin import BookSpec, StandinSite, TrackKind, TrackSpec, make_book


def small_catalog() -> dict[str, BookSpec]:
    """Two short books: one HLS, one with a direct MP3 track."""
    tiny = make_book("tiny", title="Tiny Book", author="Tim Y", chapters=2, chapter_seconds=4.0)
    direct = BookSpec(
        slug="tiny-direct",
        title="Tiny Direct",
        authors=("Dee",),
        tracks=(TrackSpec(title="Only", seconds=6.0, kind=TrackKind.DIRECT),),
    )
    return {tiny.slug: tiny, direct.slug: direct}


SiteFactory = Callable[..., StandinSite]


@dataclass
class BookClient:
    """Resolves a book through the JSON API and fetches its audio with the right headers."""

    site: StandinSite
    slug: str
    audio_book_id: str
    token: str
    session: requests.Session

    @classmethod
    def open(cls, site: StandinSite, slug: str) -> BookClient:
        session = requests.Session()
        details = session.post(
            f"{site.base_url}/api/v1/search/post-details", json={"dynamicSlugId": slug}, timeout=5
        ).json()
        playlist = session.post(
            f"{site.base_url}/api/v1/playlist",
            json={
                "audioBookId": details["audioBookId"],
                "postDetailToken": details["postDetailToken"],
            },
            timeout=5,
        ).json()
        return cls(site, slug, details["audioBookId"], playlist["streamToken"], session)

    def playlist_path(self, index: int) -> str:
        return urlsplit(self.site.playlist_url(self.slug, index)).path

    def segment_path(self, index: int, segment: int) -> str:
        folder = self.playlist_path(index).rsplit("/", 1)[0]
        return f"{folder}/seg-{segment:05d}.ts"

    def headers(self, path: str) -> dict[str, str]:
        return {
            "X-Audiobook-Id": self.audio_book_id,
            "X-Stream-Token": self.token,
            "X-Track-Src": path,
            "Referer": self.site.base_url + "/",
            "Accept-Encoding": "identity",
        }

    def get(
        self,
        path: str,
        timeout: float = 5,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """GET ``path`` with the audio headers (``headers`` added or replacing some)."""
        sent = {**self.headers(path), **(headers or {})}
        return self.session.get(
            self.site.base_url + path, headers=sent, timeout=timeout, stream=stream
        )
