"""The README's main job: ``--demo`` downloads the sample book from the bundled stand-in site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli
from tokysnatcher.utils.atomic import sha256_file

pytestmark = pytest.mark.integration


def test_demo_downloads_the_sample_book(tmp_path: Path) -> None:
    result = run_cli(["--demo", "-d", str(tmp_path)], timeout=180)
    assert result.returncode == 0, result.stderr + result.stdout
    folder = tmp_path / "Ada Quill" / "The Sample Book"
    files = sorted(folder.glob("*.mp3"))
    assert [p.name for p in files] == [
        "01 - Prologue.mp3",
        "02 - The Long Road.mp3",
        "03 - A Quiet Harbour.mp3",
        "04 - Epilogue.mp3",
    ]
    manifest = json.loads((folder / ".tokysnatcher.json").read_text("utf-8"))
    for path in files:
        entry = manifest["chapters"][path.name]
        assert entry["status"] == "complete"
        assert (entry["size"], entry["sha256"]) == sha256_file(path)
    assert "4 complete, 0 failed" in result.stdout
    assert f"your files are under {tmp_path}" in result.stderr
