"""A track duration the site declares as NaN, infinite or absurd is unknown, not a crash.

The playlist API's ``duration`` is taken at its word only when it is a positive number of at
most a week; otherwise the chapter is planned and converted as one without a duration. Before,
``NaN`` (which Python's json reads) ended the run with ``cannot convert float NaN to integer``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import decoded_md5, fast_options, run_cli, tree
from tokysnatcher.standin import BookSpec, StandinSite, TrackSpec

pytestmark = pytest.mark.integration

# slug -> the duration its only track declares (how Python's json writes it: NaN, Infinity, ...)
DECLARED = {
    "nan-book": math.nan,
    "infinity-book": math.inf,
    "minus-infinity-book": -math.inf,
    "huge-book": 1e308,
    "zero-book": 0.0,
    "negative-book": -5.0,
}


@pytest.fixture(scope="module")
def odd_site(standin_cache: Path) -> Iterator[StandinSite]:
    catalog = {
        slug: BookSpec(
            slug=slug,
            title=slug.replace("-", " ").title(),
            authors=("Odd Author",),
            tracks=(TrackSpec(title="Only", seconds=4.0, declared_duration=declared),),
        )
        for slug, declared in DECLARED.items()
    }
    with StandinSite(catalog=catalog, cache_dir=standin_cache) as running:
        yield running


@pytest.mark.parametrize("slug", DECLARED)
def test_the_book_downloads_whole(odd_site: StandinSite, tmp_path: Path, slug: str) -> None:
    result = run_cli([slug, "--format", "m4a", *fast_options(odd_site, tmp_path)])
    assert result.returncode == 0, result.stderr
    (chapter,) = tmp_path.rglob("*.m4a")
    assert decoded_md5(chapter) == decoded_md5(odd_site.source_media(slug, 0)), tree(tmp_path)


@pytest.mark.parametrize("slug", DECLARED)
def test_a_dry_run_plans_it_without_a_size(
    odd_site: StandinSite, tmp_path: Path, slug: str
) -> None:
    result = run_cli([slug, "--dry-run", *fast_options(odd_site, tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "01 - Only.mp3" in result.stdout
    assert tree(tmp_path) == []
