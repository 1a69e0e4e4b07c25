"""The package people install: ``python -m build`` makes an sdist and a wheel twine accepts.

Built offline (``--no-isolation``: setuptools, build and twine come with the test extras), into
a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tokysnatcher import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return out


def test_the_sdist_and_the_wheel_pass_twine_check(dist: Path) -> None:
    files = sorted(p.name for p in dist.iterdir())
    assert files == [
        f"tokysnatcher-{__version__}-py3-none-any.whl",
        f"tokysnatcher-{__version__}.tar.gz",
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_wheel_carries_the_version_the_license_and_the_command(dist: Path) -> None:
    wheel = dist / f"tokysnatcher-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"tokysnatcher-{__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert f"{info}/licenses/LICENSE" in names
    assert "tokysnatcher/py.typed" in names
    assert "tokysnatcher/standin/server.py" in names, "--demo needs the stand-in site"
    assert f"Version: {__version__}" in metadata, "the version comes from __init__.py"
    assert "License-Expression: MIT" in metadata
    assert "Classifier: Operating System :: Microsoft :: Windows" in metadata
    assert "Project-URL: Source, " in metadata
    assert "tokysnatcher = tokysnatcher.cli:main" in entry_points
    with tarfile.open(dist / f"tokysnatcher-{__version__}.tar.gz") as sdist:
        assert f"tokysnatcher-{__version__}/LICENSE" in sdist.getnames()
