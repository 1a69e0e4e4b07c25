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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tokysnatcher.config.settings import (
    MIN_SPEED_LIMIT,
    NUMBERS,
    OutputFormat,
    Settings,
    Verbosity,
)
from tokysnatcher.errors import ConfigError, UsageError
from tokysnatcher.utils.units import parse_rate

ENV_PREFIX = "TOKYSNATCHER_"


def _path(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError("expected a folder path")
    return Path(str(value)).expanduser()


def _int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"expected a whole number, not {value!r}")
    try:
        return int(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError):
        raise ValueError(f"expected a whole number, not {value!r}") from None


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, not {value!r}")
    try:
        return float(value)
    except (ValueError, TypeError):
        raise ValueError(f"expected a number of seconds, not {value!r}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def parse_speed_limit(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "0")):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return parse_rate(str(value))


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _format(value: Any) -> OutputFormat:
    try:
        return OutputFormat(str(value).lower())
    except ValueError:
        raise ValueError(f"expected one of mp3, m4a, m4b, not {value!r}") from None


def _verbosity(value: Any) -> Verbosity:
    try:
        return Verbosity(str(value).lower())
    except ValueError:
        raise ValueError(f"expected one of quiet, normal, verbose, debug, not {value!r}") from None


# Settings field -> (converter, config/env key)
FIELDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "directory": (_path, "directory"),
    "output_format": (_format, "format"),
    "jobs": (_int, "jobs"),
    "connections": (_int, "connections"),
    "base_url": (_str, "base-url"),
    "ffmpeg": (_str, "ffmpeg"),
    "max_retries": (_int, "max-retries"),
    "retry_delay": (_float, "retry-delay"),
    "stall_timeout": (_float, "stall-timeout"),
    "transfer_timeout": (_float, "transfer-timeout"),
    "speed_limit": (parse_speed_limit, "speed-limit"),
    "chapters": (_str, "chapters"),
    "resume": (_bool, "resume"),
    "no_cover": (_bool, "no-cover"),
    "keep_parts": (_bool, "keep-parts"),
    "verbosity": (_verbosity, "verbosity"),
}
_BY_KEY = {key: name for name, (_, key) in FIELDS.items()}
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
)


def default_config_path() -> Path:
    import platformdirs  # imported here: runs naming a config file never need it (start-up)

    return Path(platformdirs.user_config_dir("tokysnatcher")) / "config.toml"


def convert(name: str, raw: Any) -> Any:
    """``raw`` (from a file or the environment) as the value of Settings field ``name``.

    Ranges are checked here too, so that a bad value is reported with the file and key (or
    the variable) it came from rather than as if it had been typed on the command line.
    """
    value = FIELDS[name][0](raw)
    number = NUMBERS.get(name)
    if number is not None and not number.accepts(value):
        raise ValueError(f"expected {number.accepted}, not {raw!r}")
    if name == "speed_limit" and value is not None and value < MIN_SPEED_LIMIT:
        raise ValueError(f"expected at least 1K (1024 bytes/s), not {raw!r}")
    return value


def _convert_table(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for raw_key, raw_value in table.items():
        key = raw_key.replace("_", "-")
        name = _BY_KEY.get(key)
        if name is None:
            known = ", ".join(sorted(_BY_KEY))
            raise ConfigError(f"{where}: unknown key {raw_key!r}", hint=f"Known keys: {known}.")
        try:
            values[name] = convert(name, raw_value)
        except (ValueError, TypeError, UsageError) as err:
            detail = err.message if isinstance(err, UsageError) else str(err)
            raise ConfigError(f"{where}: bad value for {raw_key!r}: {detail}") from err
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
        var = ENV_PREFIX + FIELDS[name][1].replace("-", "_").upper()
        if var in env and env[var] != "":
            try:
                values[name] = convert(name, env[var])
            except (ValueError, TypeError, UsageError) as err:
                detail = err.message if isinstance(err, UsageError) else str(err)
                raise UsageError(f"environment variable {var}={env[var]!r}: {detail}") from err
    return values


def load_settings(
    cli: Mapping[str, Any],
    *,
    profile: str | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge every source into validated :class:`Settings` (bad values raise exit-2 errors)."""
    env = os.environ if env is None else env
    if config_file is not None and not config_file.is_file():
        raise ConfigError(
            f"--config {config_file}: no such file", hint="Check the path, or drop --config."
        )
    path = config_file or (
        Path(env["TOKYSNATCHER_CONFIG"]).expanduser() if env.get("TOKYSNATCHER_CONFIG") else None
    )
    profile = profile or env.get("TOKYSNATCHER_PROFILE") or None
    file_values, profile_values = read_config(path or default_config_path(), profile)
    merged: dict[str, Any] = {}
    merged.update(file_values)
    merged.update(profile_values)
    merged.update(read_env(env))
    cli_values = dict(cli)
    if "speed_limit" in cli_values:
        cli_values["speed_limit"] = parse_speed_limit(cli_values["speed_limit"])
    merged.update(cli_values)
    return Settings(**merged)
