"""Setting precedence: command line > environment > profile > config file > default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tokysnatcher.config.settings import KEYS, OutputFormat
from tokysnatcher.config.sources import load_settings
from tokysnatcher.errors import BadValue, ConfigError, UsageError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, "utf-8")
    return path


def test_defaults_without_any_source(tmp_path: Path) -> None:
    settings = load_settings(
        {}, config_file=None, env={"TOKYSNATCHER_CONFIG": str(tmp_path / "none.toml")}
    )
    assert settings.jobs == 2
    assert settings.connections == "auto"
    assert settings.max_wait == 600
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


def test_profile_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs = 3\n[profiles.slow]\njobs = 1\n")
    settings = load_settings({}, config_file=path, env={"TOKYSNATCHER_PROFILE": "slow"})
    assert settings.jobs == 1
    # --profile wins over the environment's choice.
    path.write_text("jobs = 3\n[profiles.slow]\njobs = 1\n[profiles.fast]\njobs = 6\n", "utf-8")
    settings = load_settings(
        {}, profile="fast", config_file=path, env={"TOKYSNATCHER_PROFILE": "slow"}
    )
    assert settings.jobs == 6


def test_none_on_the_command_line_lifts_a_configured_speed_limit(tmp_path: Path) -> None:
    path = write(tmp_path, 'speed-limit = "2M"\n')
    assert load_settings({}, config_file=path, env={}).speed_limit == 2 * 1024 * 1024
    assert load_settings({"speed_limit": "none"}, config_file=path, env={}).speed_limit is None
    assert load_settings({"speed_limit": "1.5MiB"}, config_file=path, env={}).speed_limit == (
        1.5 * 1024 * 1024
    )


def test_config_file_location_follows_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    from tokysnatcher.config.sources import default_config_path

    expected = Path(platformdirs.user_config_dir("tokysnatcher")) / "config.toml"
    assert default_config_path() == expected


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'format = "m4b"\nno-cover = true\nverbosity = "quiet"\n')
    settings = load_settings({}, env={"TOKYSNATCHER_CONFIG": str(path)})
    assert settings.output_format is OutputFormat.M4B
    assert settings.no_cover is True
    assert str(settings.verbosity) == "quiet"


def test_missing_config_file_given_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=tmp_path / "nope.toml", env={})
    assert "nope.toml: no such file" in caught.value.message
    assert caught.value.hint == "Check the path, or drop --config."


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("jobs = 1.5\n", "bad value for 'jobs': expected a whole number from 1 to 32, not 1.5"),
        ("jobs = true\n", "bad value for 'jobs': expected a whole number"),
        ("jobs = 99\n", "bad value for 'jobs': expected a whole number from 1 to 32, not 99"),
        ('speed-limit = "512"\n', "bad value for 'speed-limit': expected at least 1K"),
        ('retry-delay = "soon"\n', "bad value for 'retry-delay': expected seconds from 0 to 3600"),
        ('chapters = "3-1"\n', "bad value for 'chapters': expected chapter numbers and ranges"),
        ("chapters = true\n", "bad value for 'chapters': expected chapter numbers"),
        ("directory = 3\n", "bad value for 'directory': expected a folder"),
        ('ffmpeg = ""\n', "bad value for 'ffmpeg': expected the path of an ffmpeg binary"),
        ('verbosity = "loud"\n', "expected one of quiet, normal, verbose, debug"),
        ('speed-limit = "fast"\n', "bad value for 'speed-limit'"),
        ("resume = 2\n", "bad value for 'resume': expected true or false"),
        ("[profiles.x]\nchunks = 2\n", "[profiles.x]: unknown key 'chunks'"),
        ("profiles = 3\n", "'profiles' must be a table"),
    ],
)
def test_bad_values_name_file_key_and_form(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, profile="x" if "profiles.x" in text else None, config_file=path, env={})
    assert needle in caught.value.message
    assert str(path) in caught.value.message


def test_keys_may_use_underscores(tmp_path: Path) -> None:
    path = write(tmp_path, "max_retries = 5\nstall_timeout = 12.5\n")
    settings = load_settings({}, config_file=path, env={})
    assert (settings.max_retries, settings.stall_timeout) == (5, 12.5)


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("jobs", [1, 32], [0, 33, 2.5, float("nan")]),
        ("connections", [1, 16], [0, 17, 2.5]),
        ("max_wait", [0, 30, 86400], [-1, 86401, float("nan")]),
        ("max_retries", [0, 100], [-1, 101]),
        ("retry_delay", [0, 0.25, 3600], [-0.1, 3600.5, float("inf")]),
        ("stall_timeout", [0.1, 3600], [0.05, 0]),
        ("transfer_timeout", [1, 300, 86400], [0.5, 86401, float("nan")]),
    ],
)
def test_number_ranges_are_checked_by_one_parser(
    field: str, good: list[float], bad: list[float]
) -> None:
    # The same parser reads the command line's text, the environment's and the file's numbers.
    key = KEYS[field]
    for value in good:
        assert key.parse(value) == value
        assert key.parse(f" {value:g} ") == value
    for value in bad:
        for raw in (value, f"{value:g}"):
            with pytest.raises(BadValue):
                key.parse(raw)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"cli": {"jobs": "0"}}, "--jobs: '0' is out of range"),
        ({"env": {"TOKYSNATCHER_JOBS": "0"}}, "environment variable TOKYSNATCHER_JOBS='0': "),
        ({"file": "jobs = 0\n"}, "bad value for 'jobs': expected a whole number from 1 to 32"),
    ],
)
def test_every_source_refuses_the_same_values(
    tmp_path: Path, source: dict[str, Any], expected: str
) -> None:
    with pytest.raises(UsageError) as caught:
        load_settings(
            source.get("cli", {}),
            config_file=write(tmp_path, source.get("file", "")),
            env=source.get("env", {}),
        )
    assert expected in caught.value.message
    assert caught.value.exit_code == 2


def test_command_line_text_is_parsed_like_the_environment(tmp_path: Path) -> None:
    cli = {"jobs": "4", "retry_delay": "1.5", "speed_limit": "2M", "chapters": "1-3,7"}
    cli |= {"output_format": "M4B", "directory": "~/books"}
    settings = load_settings(cli, config_file=write(tmp_path, ""), env={})
    assert (settings.jobs, settings.retry_delay) == (4, 1.5)
    assert settings.speed_limit == 2 * 1024 * 1024
    assert settings.chapters is not None
    assert settings.chapters.select(8) == [1, 2, 3, 7]
    assert settings.output_format is OutputFormat.M4B
    assert settings.directory == Path("~/books").expanduser()


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("TOKYSNATCHER_JOBS", "99", "expected a whole number from 1 to 32, not '99'"),
        ("TOKYSNATCHER_STALL_TIMEOUT", "0", "expected seconds from 0.1 to 3600"),
        ("TOKYSNATCHER_FORMAT", "wav", "expected one of mp3, m4a, m4b"),
    ],
)
def test_bad_environment_values_name_the_variable(
    tmp_path: Path, variable: str, value: str, needle: str
) -> None:
    with pytest.raises(UsageError) as caught:
        load_settings({}, config_file=write(tmp_path, ""), env={variable: value})
    assert caught.value.message.startswith(f"environment variable {variable}={value!r}: ")
    assert needle in caught.value.message
