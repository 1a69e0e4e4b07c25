"""Where setting values come from: command line > environment > profile > config file > default.

The config file is TOML at ``<user config dir>/tokysnatcher/config.toml`` (platformdirs; or
``--config FILE`` / ``TOKYSNATCHER_CONFIG``). Keys are the long option names; ``[profiles.NAME]``
tables hold named sets of values chosen with ``--profile NAME`` (or ``TOKYSNATCHER_PROFILE``)::

    format = "m4b"
    directory = "~/Audiobooks"
    jobs = 3

    [profiles.slow-link]
    connections = 2
    speed-limit = "500K"

Environment variables are ``TOKYSNATCHER_<KEY>`` (``TOKYSNATCHER_SPEED_LIMIT=2M``) for the keys in
:data:`ENV_FIELDS`. A bad file, key or value is a :class:`ConfigError` naming the file and key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokysnatcher.config.settings import KEYS, Settings
from tokysnatcher.errors import BadValue, ConfigError, UsageError

ENV_PREFIX = "TOKYSNATCHER_"
_BY_KEY = {key.name: name for name, key in KEYS.items()}
# Only these come from the environment (the rest would surprise in a shell profile).
ENV_FIELDS = (
    "directory",
    "output_format",
    "jobs",
    "connections",
    "base_url",
    "ffmpeg",
    "max_retries",
    "retry_delay",
    "stall_timeout",
    "transfer_timeout",
    "speed_limit",
    "librivox_url",
    "archive_url",
    "librivox_interval",
    "data_dir",
    "max_wait",
)


def default_config_path() -> Path:
    import platformdirs  # imported here: runs naming a config file never need it (start-up)

    return Path(platformdirs.user_config_dir("tokysnatcher")) / "config.toml"


def config_path(config_file: Path | None, env: Mapping[str, str]) -> Path:
    """The config file a run reads: ``--config``, else ``TOKYSNATCHER_CONFIG``, else the
    default (which need not exist)."""
    if config_file is not None:
        return config_file
    if env.get("TOKYSNATCHER_CONFIG"):
        return Path(env["TOKYSNATCHER_CONFIG"]).expanduser()
    return default_config_path()


def _expected(name: str, raw: object) -> str:
    return f"expected {KEYS[name].accepted}, not {raw!r}"


def _convert_table(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for raw_key, raw_value in table.items():
        key = raw_key.replace("_", "-")
        name = _BY_KEY.get(key)
        if name is None:
            known = ", ".join(sorted(_BY_KEY))
            raise ConfigError(f"{where}: unknown key {raw_key!r}", hint=f"Known keys: {known}.")
        try:
            values[name] = KEYS[name].parse(raw_value)
        except BadValue as err:
            message = f"{where}: bad value for {raw_key!r}: {_expected(name, raw_value)}"
            raise ConfigError(message) from err
    return values


def read_config(path: Path, profile: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(file values, profile values) from the TOML file; a missing file gives nothing."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        if profile:
            raise ConfigError(
                f"--profile {profile}: no config file at {path}",
                hint="Create it with a [profiles.NAME] table, or drop --profile.",
            ) from None
        return {}, {}
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the config file {path}: {err}") from err
    import tomllib  # only when there is a file to parse: most runs have none

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err
    profiles = data.pop("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    base = _convert_table(data, str(path))
    chosen: dict[str, Any] = {}
    if profile:
        table = profiles.get(profile)
        if not isinstance(table, dict):
            names = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                f"{path}: no profile named {profile!r}", hint=f"Profiles in the file: {names}."
            )
        chosen = _convert_table(table, f"{path} [profiles.{profile}]")
    return base, chosen


def read_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ENV_FIELDS:
        var = ENV_PREFIX + KEYS[name].name.replace("-", "_").upper()
        if var in env and env[var] != "":
            try:
                values[name] = KEYS[name].parse(env[var])
            except BadValue as err:
                message = f"environment variable {var}={env[var]!r}: {_expected(name, env[var])}"
                raise UsageError(message) from err
    return values


def read_command_line(cli: Mapping[str, Any]) -> dict[str, Any]:
    """The command line's values, each parsed like the same key from anywhere else."""
    values = dict(cli)
    for name, raw in cli.items():
        key = KEYS.get(name)
        if key is None:  # a command-line-only value (--report, --dry-run ...), parsed by cli.py
            continue
        try:
            values[name] = key.parse(raw)
        except BadValue as err:
            raise UsageError(
                f"--{key.name}: {err.message}", hint=f"Expected {key.accepted}."
            ) from err
    return values


def load_settings(
    cli: Mapping[str, Any],
    *,
    profile: str | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge every source into validated :class:`Settings` (bad values raise exit-2 errors).

    ``cli`` holds the options given on the command line: text as typed for the keys of
    :data:`KEYS` (``"none"`` for ``speed_limit`` lifts a configured limit), parsed values for
    the command-line-only ones.
    """
    env = os.environ if env is None else env
    # The command line is checked first: its mistakes are the ones just typed.
    cli_values = read_command_line(cli)
    if config_file is not None and not config_file.is_file():
        raise ConfigError(
            f"--config {config_file}: no such file", hint="Check the path, or drop --config."
        )
    profile = profile or env.get("TOKYSNATCHER_PROFILE") or None
    file_values, profile_values = read_config(config_path(config_file, env), profile)
    merged: dict[str, Any] = {}
    merged.update(file_values)
    merged.update(profile_values)
    merged.update(read_env(env))
    merged.update(cli_values)
    return Settings(**merged)
