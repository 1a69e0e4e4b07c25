"""``LibrivoxSite``: a local imitation of librivox.org and archive.org's file hosting.

One listener on 127.0.0.1 plays both librivox.org and archive.org (their paths do not clash);
``/download/…`` redirects to a second listener, addressed as ``localhost`` on another port, so
that a client sees another host as it does on archive.org::

    with LibrivoxSite() as site:
        download(f"librivox:{SAMPLE_ID}", librivox_url=site.base_url, archive_url=site.base_url)
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tokysnatcher.standin.catalog import BookSpec, TrackKind, TrackSpec
from tokysnatcher.standin.faults import Faults
from tokysnatcher.standin.librivox.catalog import (
    COVER_ITEM,
    Cover,
    LvBook,
    Original,
    default_catalog,
)
from tokysnatcher.standin.librivox.feed import ItemFile
from tokysnatcher.standin.librivox.handler import FileHostHandler, LibrivoxHandler, LvData, LvState
from tokysnatcher.standin.media import MediaCache
from tokysnatcher.standin.server import STOP_GRACE, Listener, Listeners
from tokysnatcher.standin.stats import SiteStats


def _media_book(book: LvBook) -> BookSpec:
    """The book's files as the tokybook stand-in's media cache makes them: per section the
    64 kb/s MP3, then the 128 kb/s original (same tone and noise) when the item holds one."""
    tracks: list[TrackSpec] = []
    for section in book.sections:
        if section.unfinished:
            continue
        digest = hashlib.sha256(f"{book.id}|{section.number}".encode()).digest()
        tone = round(220.0 * 2 ** (((3 * section.number) + digest[0] % 12) % 36 / 12), 3)
        seed = int.from_bytes(digest[1:4], "big")
        rates = ["64k"] if book.original is Original.NONE else ["64k", "128k"]
        tracks += [
            TrackSpec(
                title=f"{section.number}-{rate}",
                seconds=section.seconds,
                codec="mp3",
                kind=TrackKind.DIRECT,
                frequency=tone,
                seed=seed,
                bitrate=None if rate == "64k" else rate,
                loop_seconds=section.loop_seconds,
            )
            for rate in rates
        ]
    return BookSpec(slug=f"librivox-{book.id}", title=book.title, cover=True, tracks=tracks)


class LibrivoxSite:
    """The LibriVox stand-in: real HTTP on 127.0.0.1, real MP3s made by ffmpeg, faults.

    ``faults`` (the tokybook stand-in's) apply to files (``error_rate``, ``fail_first``…) and
    to the API (``api_error_rate``); :attr:`data` holds the LibriVox-specific switches
    (``redirect``, ``not_found_status``, ``throttle``, ``corrupt_first``, ``wrong_md5_first``).
    :attr:`stats` counts the site's requests, :attr:`file_stats` the file host's (with the
    headers of each request).
    """

    def __init__(
        self,
        catalog: Mapping[int, LvBook] | None = None,
        faults: Faults | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        ffmpeg: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        redirect: bool = True,
        verbose: bool = False,
    ) -> None:
        books = dict(default_catalog() if catalog is None else catalog)
        self.data = LvData(books=books, redirect=redirect)
        faults = faults or Faults()
        self._site = LvState(self.data, faults=faults, clock=time.monotonic, verbose=verbose)
        self._files = LvState(self.data, faults=faults, clock=time.monotonic, verbose=verbose)
        self._cache = MediaCache(cache_dir, ffmpeg)
        self._port = port
        self._listeners = Listeners()
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LibrivoxSite:
        """Generate (or load) the files, then serve the site and the file host."""
        with self._lock:
            if self._listeners:
                raise RuntimeError("this LibrivoxSite is already started")
            self._prepare_items()
            site = Listener(("127.0.0.1", self._port), LibrivoxHandler, self._site)
            try:
                files = Listener(("127.0.0.1", 0), FileHostHandler, self._files)
            except BaseException:
                site.server_close()
                raise
            self.data.base_url = f"http://127.0.0.1:{site.server_port}"
            # Same machine, another host name: a client must treat it as another host.
            self.data.file_host = f"http://localhost:{files.server_port}"
            self._listeners.serve(site, "librivox-site")
            self._listeners.serve(files, "librivox-files")
        return self

    def stop(self) -> None:
        """Stop both listeners within about a second."""
        with self._lock:
            for state in (self._site, self._files):
                state.stop_event.set()
            self._listeners.shutdown()
            for state in (self._site, self._files):
                state.cut_connections(time.monotonic() + STOP_GRACE)

    def __enter__(self) -> LibrivoxSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare_items(self) -> None:
        specs = {f"librivox-{book.id}": _media_book(book) for book in self.data.books.values()}
        media = self._cache.prepare(specs)
        cover_item: dict[str, ItemFile] = {}
        for book in self.data.books.values():
            spec = specs[f"librivox-{book.id}"]
            files: dict[str, ItemFile] = {}
            position = 0
            for section in book.sections:
                if section.unfinished:
                    continue
                low = media[(spec.slug, position)].source
                position += 1
                original = book.original_name(section)
                if original is not None:
                    files[original] = ItemFile(
                        name=original,
                        body=media[(spec.slug, position)].source,
                        format="128Kbps MP3" if book.original is Original.KB128 else "VBR MP3",
                        source="original",
                        seconds=section.seconds,
                        title=section.title,
                        track=section.number,
                    )
                    position += 1
                files[book.low_name(section)] = ItemFile(
                    name=book.low_name(section),
                    body=low,
                    format="64Kbps MP3",
                    source="derivative" if original else "original",
                    seconds=section.seconds,
                    original=original,
                    title=section.title,
                    track=section.number,
                )
            cover = self._cache.cover(spec)
            if book.cover is Cover.API:
                cover_item[book.cover_name] = ItemFile(
                    name=book.cover_name, body=cover, format="JPEG", source="original"
                )
            elif book.cover is Cover.ITEM:
                files[book.cover_name] = ItemFile(
                    name=book.cover_name, body=cover, format="JPEG", source="original"
                )
                thumb = book.cover_name.replace(".jpg", "_thumb.jpg")
                files[thumb] = ItemFile(
                    name=thumb, body=cover, format="JPEG Thumb", source="derivative"
                )
            files["__ia_thumb.jpg"] = ItemFile(
                name="__ia_thumb.jpg", body=cover, format="Item Tile", source="original"
            )
            self.data.items[book.identifier] = files
            self.data.tiles[book.identifier] = cover
        self.data.items[COVER_ITEM] = cover_item

    # -- information ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: both ``librivox-url`` and ``archive-url``."""
        if not self.data.base_url:
            raise RuntimeError("the site is not started")
        return self.data.base_url

    @property
    def file_host(self) -> str:
        """``http://localhost:<port>``: where ``/download/`` redirects to."""
        return self.data.file_host

    @property
    def catalog(self) -> dict[int, LvBook]:
        """The books served, id -> book."""
        return self.data.books

    @property
    def stats(self) -> SiteStats:
        """The site's counters (API, pages, RSS, metadata, redirects)."""
        return self._site.stats

    @property
    def file_stats(self) -> SiteStats:
        """The file host's counters; ``other_host_requests`` holds every request's headers."""
        return self._files.stats

    def set_faults(self, faults: Faults) -> None:
        """Change the faults of both listeners (per-path counts restart from zero)."""
        self._site.set_faults(faults)
        self._files.set_faults(faults)

    def book_url(self, book_id: int) -> str:
        """The book's page (what a user pastes)."""
        return f"{self.base_url}/{self.catalog[book_id].slug}/"

    def env(self) -> dict[str, str]:
        """The environment that points tokysnatcher at this site, with no pause between calls."""
        return {
            "TOKYSNATCHER_LIBRIVOX_URL": self.base_url,
            "TOKYSNATCHER_ARCHIVE_URL": self.base_url,
            "TOKYSNATCHER_LIBRIVOX_INTERVAL": "0",
        }

    def file_path(self, book_id: int, name: str) -> Path:
        """The generated file served as ``name`` in the book's item."""
        return self.data.items[self.catalog[book_id].identifier][name].body
