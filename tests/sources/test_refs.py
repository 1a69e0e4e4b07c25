"""Book references: page URLs with and without scheme or www., URLs on --base-url, bare slugs."""

from __future__ import annotations

import pytest

from tokysnatcher.errors import UsageError
from tokysnatcher.sources.tokybook import normalize_base_url, parse_book_ref

SITE = "https://tokybook.com"


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("https://tokybook.com/post/the-hobbit", "the-hobbit"),
        ("http://tokybook.com/post/the-hobbit/", "the-hobbit"),
        ("https://www.tokybook.com/post/the-hobbit", "the-hobbit"),
        ("tokybook.com/post/the-hobbit", "the-hobbit"),
        ("www.tokybook.com/post/the-hobbit?ref=home#top", "the-hobbit"),
        ("  the-hobbit  ", "the-hobbit"),
        ("dune_2021", "dune_2021"),
    ],
)
def test_accepts_book_urls_and_slugs(text: str, slug: str) -> None:
    assert parse_book_ref(text, SITE) == slug


def test_accepts_urls_on_the_base_url_host() -> None:
    base = "http://127.0.0.1:8123"
    assert parse_book_ref("http://127.0.0.1:8123/post/sample", base) == "sample"


def test_base_url_with_a_path_prefix() -> None:
    base = "https://mirror.example/toky"
    assert parse_book_ref("https://mirror.example/toky/post/sample", base) == "sample"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "https://example.com/post/the-hobbit",  # another site
        "https://tokybook.com/",  # no book
        "https://tokybook.com/category/fantasy",
        "https://tokybook.com/post/a/b",
        "ftp://tokybook.com/post/x",
        "file:///etc/passwd",
        "../../etc/passwd",
        "tokybook.com/post/..",
        "not a slug",
    ],
)
def test_rejects_anything_else_with_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_book_ref(text, SITE)
    assert caught.value.exit_code == 2
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("bad", ["tokybook.com", "ftp://x", "http://", "javascript:alert(1)"])
def test_base_url_must_be_http_with_a_host(bad: str) -> None:
    with pytest.raises(UsageError):
        normalize_base_url(bad)


def test_base_url_loses_its_trailing_slash() -> None:
    assert normalize_base_url("https://tokybook.com/") == "https://tokybook.com"
