"""The registry: which source a reference belongs to, and how a book is reached again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokysnatcher.config.settings import Settings
from tokysnatcher.errors import UsageError
from tokysnatcher.net.http import make_session
from tokysnatcher.sources.librivox import LibrivoxSource
from tokysnatcher.sources.registry import (
    again_command,
    again_ref,
    check_ref,
    foreign_host,
    open_source,
    source_name,
)
from tokysnatcher.sources.tokybook import TokybookSource

STANDIN = "http://127.0.0.1:8123"


def settings(**changes: object) -> Settings:
    return Settings(directory=Path("/tmp/lib")).replace(**changes)


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("librivox:47", "librivox"),
        ("https://librivox.org/the-count-of-monte-cristo-by-alexandre-dumas/", "librivox"),
        ("www.librivox.org/rss/47", "librivox"),
        ("https://tokybook.com/post/some-book", "tokybook"),
        ("some-book", "tokybook"),
        (f"{STANDIN}/a-book/", "tokybook"),  # not LibriVox's unless configured
    ],
)
def test_the_reference_picks_the_source(ref: str, name: str) -> None:
    assert source_name(ref, settings()) == name
    assert source_name(f"{STANDIN}/a-book/", settings(librivox_url=STANDIN)) == "librivox"


def test_search_asks_the_configured_source_and_a_manifest_names_its_own() -> None:
    assert source_name(None, settings()) == "tokybook"
    assert source_name(None, settings(source="librivox")) == "librivox"
    assert source_name("some-book", settings(), recorded="librivox") == "librivox"


def test_open_source_by_reference() -> None:
    session = make_session(2)
    never = lambda seconds: False  # noqa: E731
    assert isinstance(open_source(session, settings(), wait=never), TokybookSource)
    opened = open_source(session, settings(), wait=never, ref="librivox:1")
    assert isinstance(opened, LibrivoxSource)
    assert opened.librivox_url == "https://librivox.org"
    assert opened.archive_url == "https://archive.org"


def test_check_ref_never_asks_the_site() -> None:
    check_ref("librivox:47", settings())
    check_ref("https://librivox.org/some-book/", settings())
    check_ref("some-book", settings())
    with pytest.raises(UsageError):
        check_ref("librivox:forty-seven", settings())


def test_the_command_that_reaches_a_book_again() -> None:
    real = again_command("https://librivox.org/a-book/", "47", settings(), site_from_page=True)
    assert real.head == ["tokysnatcher", "librivox:47"]
    assert real.site == []
    mirrored = settings(librivox_url=STANDIN, archive_url=STANDIN)
    local = again_command(f"{STANDIN}/a-book/", "47", mirrored, site_from_page=True)
    assert local.head == [
        f"TOKYSNATCHER_LIBRIVOX_URL={STANDIN}",
        f"TOKYSNATCHER_ARCHIVE_URL={STANDIN}",
        "tokysnatcher",
        "librivox:47",
    ]
    toky = again_command(f"{STANDIN}/post/b", "b", settings(), site_from_page=True)
    assert toky.head == ["tokysnatcher", f"{STANDIN}/post/b"]
    assert toky.site == ["--base-url", STANDIN]
    assert again_ref("https://librivox.org/a-book/", "47", settings()) == "librivox:47"
    assert again_ref("https://tokybook.com/post/b", "b", settings()) == "b"


def test_a_book_from_another_host_is_foreign() -> None:
    assert foreign_host("https://librivox.org/a-book/", settings()) is None
    assert foreign_host(f"{STANDIN}/a-book/", settings(librivox_url=STANDIN)) is None
    assert foreign_host(f"{STANDIN}/a-book/", settings(), recorded="librivox") == (
        "127.0.0.1",
        "librivox.org",
    )
