"""Shared fixtures: the stand-in site and the real ffmpeg (helpers live in helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import FFMPEG
from tokysnatcher.standin import Faults, StandinSite


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


@pytest.fixture
def slow_site(standin_cache: Path) -> Iterator[StandinSite]:
    """About a second a segment: a download is well under way, and far from done, for a while."""
    with StandinSite(
        faults=Faults(bandwidth=12_000, latency=0.05), cache_dir=standin_cache
    ) as running:
        yield running
