"""Shared fixtures: the stand-in site and the real ffmpeg (helpers live in helpers.py)."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import FFMPEG
from tokysnatcher.ffmpeg import processes
from tokysnatcher.standin import Faults, StandinSite
from tokysnatcher.standin.librivox.server import LibrivoxSite

# Every run records its books in the database of the user data folder (platformdirs, which
# follows XDG_DATA_HOME). Tests get their own: one for the session here, one per test below, so
# the archive of one test never skips a book in another, and the user's own is never touched.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="tokysnatcher-test-data-")


@pytest.fixture(autouse=True)
def own_data_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))


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
def in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run ``cli.main`` here (see ``helpers.run_main``) with a clean environment; restore what
    it changes."""
    for name in list(os.environ):
        if name.startswith("TOKYSNATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TOKYSNATCHER_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("NO_COLOR", "1")
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)
    processes.reopen()  # a run's end closed the registry of ffmpeg children


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


@pytest.fixture
def slow_site(standin_cache: Path) -> Iterator[StandinSite]:
    """About a second a segment: a download is well under way, and far from done, for a while."""
    with StandinSite(
        faults=Faults(bandwidth=12_000, latency=0.05), cache_dir=standin_cache
    ) as running:
        yield running
