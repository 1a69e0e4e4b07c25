"""Shared fixtures: running stand-in sites and a tiny client that speaks the audio protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tokysnatcher.standin import BookSpec, Faults, StandinSite, default_catalog

from .support import BookClient, SiteFactory, small_catalog


@pytest.fixture(scope="module")
def site() -> Iterator[StandinSite]:
    """The default catalog, no faults, shared by a test module (read-only use)."""
    with StandinSite() as running:
        yield running


@pytest.fixture
def make_site() -> Iterator[SiteFactory]:
    """Start sites (small catalog unless given) that are stopped after the test."""
    started: list[StandinSite] = []

    def factory(faults: Faults | None = None, **kwargs: object) -> StandinSite:
        kwargs.setdefault("catalog", small_catalog())
        running = StandinSite(faults=faults, **kwargs)  # type: ignore[arg-type]
        started.append(running.start())
        return running

    yield factory
    for running in started:
        running.stop()


@pytest.fixture
def open_book() -> Callable[[StandinSite, str], BookClient]:
    """Resolve a book through the API: ``open_book(site, slug) -> BookClient``."""
    return BookClient.open


@pytest.fixture
def hostile_catalog() -> dict[str, BookSpec]:
    """Only the hostile-server book of the default catalog."""
    return {"hostile-server": default_catalog()["hostile-server"]}
