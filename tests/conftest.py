"""Shared fixtures: the stand-in site and the real ffmpeg (helpers live in helpers.py)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import FFMPEG
from tokysnatcher.standin import StandinSite

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
