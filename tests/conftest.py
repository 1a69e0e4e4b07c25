"""Shared fixtures: the stand-in site and the real ffmpeg (helpers live in helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import FFMPEG
from tokysnatcher.standin import StandinSite
from tokysnatcher.standin.librivox.server import LibrivoxSite


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return FFMPEG


@pytest.fixture(scope="session")
def standin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated audio is cached across test runs unless TOKYSNATCHER_STANDIN_CACHE says else."""
    configured = os.environ.get("TOKYSNATCHER_STANDIN_CACHE")
    return (
        Path(configured) if configured else tmp_path_factory.getbasetemp().parent / "standin-cache"
    )


@pytest.fixture(scope="session")
def site(standin_cache: Path) -> Iterator[StandinSite]:
    """One fault-free stand-in site for the session (fault tests start their own)."""
    with StandinSite(cache_dir=standin_cache) as running:
        yield running


@pytest.fixture(scope="session")
def librivox_site(standin_cache: Path) -> Iterator[LibrivoxSite]:
    """One LibriVox stand-in for the session; tests that change its switches restore them.

    Files are served at ``/download/`` directly: the redirect to the file host is turned on by
    the tests about it (``librivox_redirecting``).
    """
    with LibrivoxSite(cache_dir=standin_cache, redirect=False) as running:
        yield running


@pytest.fixture
def librivox_redirecting(librivox_site: LibrivoxSite) -> Iterator[LibrivoxSite]:
    """The session's LibriVox stand-in with archive.org's redirect to another host on."""
    librivox_site.data.redirect = True
    try:
        yield librivox_site
    finally:
        librivox_site.data.redirect = False
