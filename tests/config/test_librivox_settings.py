"""The LibriVox settings: where each site is, how polite to be, which quality and source."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokysnatcher.config.settings import Quality
from tokysnatcher.config.sources import load_settings
from tokysnatcher.errors import ConfigError, UsageError

ABSENT = Path("/nonexistent/tokysnatcher.toml")


def test_environment_and_config_file_name_the_sites(tmp_path: Path) -> None:
    env = {
        "TOKYSNATCHER_CONFIG": str(ABSENT),
        "TOKYSNATCHER_LIBRIVOX_URL": "http://127.0.0.1:8000/",
        "TOKYSNATCHER_ARCHIVE_URL": "https://mirror.example/ia",
        "TOKYSNATCHER_LIBRIVOX_INTERVAL": "0",
    }
    settings = load_settings({}, env=env)
    assert settings.librivox_url == "http://127.0.0.1:8000"
    assert settings.archive_url == "https://mirror.example/ia"
    assert settings.librivox_interval == 0.0
    config = tmp_path / "config.toml"
    config.write_text(
        'quality = "high"\nsource = "librivox"\nlibrivox-url = "https://lv.example"\n'
    )
    from_file = load_settings({}, config_file=config, env={})
    assert from_file.quality is Quality.HIGH
    assert from_file.source == "librivox"
    assert from_file.librivox_url == "https://lv.example"


def test_defaults_are_the_real_sites_and_two_seconds() -> None:
    settings = load_settings({}, env={"TOKYSNATCHER_CONFIG": str(ABSENT)})
    assert (settings.librivox_url, settings.archive_url) == (None, None)
    assert settings.librivox_interval == 2.0
    assert settings.quality is Quality.STANDARD
    assert settings.source == "tokybook"


@pytest.mark.parametrize(
    ("cli", "option"),
    [({"quality": "best"}, "--quality"), ({"source": "audible"}, "--source")],
)
def test_bad_command_line_values_name_their_option(cli: dict[str, str], option: str) -> None:
    with pytest.raises(UsageError, match=f"^{option}: "):
        load_settings(cli, env={"TOKYSNATCHER_CONFIG": str(ABSENT)})


def test_a_bad_site_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="TOKYSNATCHER_LIBRIVOX_URL"):
        load_settings(
            {}, env={"TOKYSNATCHER_CONFIG": str(ABSENT), "TOKYSNATCHER_LIBRIVOX_URL": "ftp://x"}
        )
    config = tmp_path / "config.toml"
    config.write_text('archive-url = "archive.org"\n')
    with pytest.raises(ConfigError, match="archive-url"):
        load_settings({}, config_file=config, env={})
