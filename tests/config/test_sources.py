"""Setting precedence: command line > environment > profile > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokysnatcher.config import OutputFormat
from tokysnatcher.config.sources import load_settings
from tokysnatcher.errors import ConfigError, UsageError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, "utf-8")
    return path


def test_defaults_without_any_source(tmp_path: Path) -> None:
    settings = load_settings(
        {}, config_file=None, env={"TOKYSNATCHER_CONFIG": str(tmp_path / "none.toml")}
    )
    assert settings.jobs == 2
    assert settings.connections == 8
    assert settings.output_format is OutputFormat.MP3


def test_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'format = "m4a"\njobs = 3\nconnections = 5\nretry-delay = 1.5\n'
        '[profiles.slow]\njobs = 4\nspeed-limit = "500K"\n',
    )
    env = {"TOKYSNATCHER_CONNECTIONS": "6"}
    settings = load_settings({"retry_delay": 0.5}, profile="slow", config_file=path, env=env)
    assert settings.output_format is OutputFormat.M4A  # file
    assert settings.jobs == 4  # profile beats file
    assert settings.connections == 6  # env beats file
    assert settings.retry_delay == 0.5  # command line beats all
    assert settings.speed_limit == 500 * 1024


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("jobz = 3\n", "unknown key 'jobz'"),
        ('jobs = "many"\n', "bad value for 'jobs'"),
        ("format = 'flac'\n", "bad value for 'format'"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=path, env={})
    assert needle in caught.value.message
    assert str(path) in caught.value.message
    assert caught.value.exit_code == 2


def test_unknown_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "[profiles.fast]\njobs = 4\n")
    with pytest.raises(ConfigError, match="no profile named 'slow'"):
        load_settings({}, profile="slow", config_file=path, env={})


def test_bad_environment_value(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="TOKYSNATCHER_JOBS"):
        load_settings({}, config_file=write(tmp_path, ""), env={"TOKYSNATCHER_JOBS": "lots"})


def test_values_are_validated(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--jobs"):
        load_settings({"jobs": 0}, config_file=write(tmp_path, ""), env={})
