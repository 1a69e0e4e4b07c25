"""``--doctor`` against the stand-in site: all pass (exit 0), or each problem named with its fix.

The checks are real: ffmpeg makes a tone into each kind of output, the site is asked through
its API, the folders are written to.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FFMPEG, cli_env, run_cli
from tokysnatcher.standin import StandinSite
from tokysnatcher.standin.librivox.server import LibrivoxSite

pytestmark = pytest.mark.integration


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, the rest of its row)."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"(ok|warning|failed|skipped)\s{2,}(.+?)\s{2,}(.*)$", line.rstrip())
        if match:
            found[match.group(2)] = (match.group(1), match.group(3))
    return found


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def doctor_env(tmp_path: Path, librivox: dict[str, str] | None = None) -> dict[str, str]:
    """The data folder in ``tmp_path``; LibriVox and archive.org at ``librivox`` (a stand-in's
    ``env()``) or at a closed port: the doctor asks every source, and never a real site."""
    closed = f"http://127.0.0.1:{closed_port()}"
    elsewhere = {"TOKYSNATCHER_LIBRIVOX_URL": closed, "TOKYSNATCHER_ARCHIVE_URL": closed}
    return cli_env(TOKYSNATCHER_DATA_DIR=str(tmp_path / "data"), **(librivox or elsewhere))


def test_a_healthy_setup_passes_every_check(
    site: StandinSite, librivox_site: LibrivoxSite, tmp_path: Path
) -> None:
    args = ["--doctor", "--base-url", site.base_url, "-d", tmp_path / "lib", "--ffmpeg", FFMPEG]
    env = doctor_env(tmp_path, librivox_site.env())
    result = run_cli(args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    found = rows(result.stdout)
    server = site.base_url.removeprefix("http://")
    librivox = librivox_site.base_url.removeprefix("http://")
    for name in (
        f"{librivox}: DNS",
        f"{librivox}: API",
        "python",
        "ffmpeg",
        "ffmpeg: AAC copy",
        "ffmpeg: MP3 encode",
        "ffmpeg: MP4 mux",
        f"{server}: DNS",
        f"{server}: API",
        "library folder",
        "free space",
        "name length",
        "config file",
        "proxy",
        "data folder",
    ):
        assert name in found, (name, result.stdout)
        assert found[name][0] in ("ok", "warning"), found[name]
    assert re.search(r"answered JSON in \d+ ms", found[f"{server}: API"][1])
    assert re.search(r"all \d+ checks passed", result.stdout)
    assert site.stats.requests["search"] >= 1  # asked through the source's own API

    scripted = run_cli([*args, "--json"], env=env)
    assert scripted.returncode == 0, scripted.stderr
    data = json.loads(scripted.stdout)
    assert data["ok"] is True
    assert [sorted(check) for check in data["checks"]] == [
        ["detail", "fix", "name", "status"]
    ] * len(data["checks"])
    assert {check["name"] for check in data["checks"]} == set(found)


def test_each_problem_is_named_with_its_fix(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("jobs = [not toml")
    port = closed_port()
    env = doctor_env(tmp_path) | {"TOKYSNATCHER_CONFIG": str(config)}
    args = ["--doctor", "--base-url", f"http://127.0.0.1:{port}", "-d", tmp_path / "lib"]
    result = run_cli([*args, "--ffmpeg", tmp_path / "no-ffmpeg"], env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    found = rows(result.stdout)
    status, rest = found["ffmpeg"]
    assert status == "failed"
    assert "not found" in rest
    assert "Install ffmpeg" in rest
    assert found["ffmpeg: MP3 encode"][0] == "skipped"
    status, rest = found[f"127.0.0.1:{port}: API"]
    assert status == "failed"
    assert "connection refused" in rest
    assert "--base-url" in rest
    status, rest = found["config file"]
    assert status == "failed"
    assert "not valid TOML" in rest
    assert found["library folder"][0] == "ok"
    summary = (
        r"4 of \d+ checks failed: ffmpeg, 127\.0\.0\.1:\d+: API, 127\.0\.0\.1:\d+: API, "
        r"config file; 3 not checked"
    )
    assert re.search(summary, result.stdout), result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_read_only_library_folder_fails_with_its_fix(tmp_path: Path) -> None:
    """The folder is a read-only tmpfs in a private mount namespace (root ignores mode bits)."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], check=False).returncode:
        pytest.skip("needs root and mount namespaces")
    library = tmp_path / "lib"
    library.mkdir()
    script = 'mount -t tmpfs -o ro tokysnatcher-test "$1" && shift && exec "$@"'
    unshare = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", script, "sh"]
    doctor = [sys.executable, "-m", "tokysnatcher", "--doctor", "-d", library]
    elsewhere = ["--base-url", f"http://127.0.0.1:{closed_port()}", "--ffmpeg", FFMPEG]
    result = subprocess.run(
        [*unshare, library, *doctor, *elsewhere],
        capture_output=True,
        text=True,
        timeout=60,
        env=doctor_env(tmp_path),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    status, rest = rows(result.stdout)["library folder"]
    assert status == "failed"
    assert "Read-only file system" in rest
    assert "-d DIR" in rest


def test_json_without_an_action_that_prints_it_is_bad_usage(tmp_path: Path) -> None:
    result = run_cli(["--json", "-d", tmp_path], env=doctor_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: --json goes with --doctor")
