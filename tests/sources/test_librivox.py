"""The LibriVox source against the LibriVox stand-in (real HTTP), and its pure parts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tokysnatcher.config.settings import Quality
from tokysnatcher.errors import BookNotFoundError, SourceError, UsageError
from tokysnatcher.net.http import make_session
from tokysnatcher.sources.api import JsonApi
from tokysnatcher.sources.librivox import (
    LibrivoxSource,
    _http_url,
    is_librivox_ref,
    parse_ref,
    plain_text,
)
from tokysnatcher.sources.source import MediaKind
from tokysnatcher.standin.librivox.catalog import (
    HOSTILE_JSON_IDS,
    MULTI_READER_ID,
    SAMPLE_ID,
    UNFINISHED_ID,
)
from tokysnatcher.standin.librivox.server import LibrivoxSite


class Clock:
    """A clock that only moves when something waits on it; every wait is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def open_source(
    site: LibrivoxSite,
    *,
    quality: Quality = Quality.STANDARD,
    interval: float = 0.0,
    clock: Clock | None = None,
) -> LibrivoxSource:
    clock = clock or Clock()
    session = make_session(4)

    def api() -> JsonApi:
        return JsonApi(
            session,
            site.base_url,
            retry_delay=0.01,
            wait=clock.wait,
            now=lambda: 0.0,
            min_interval=interval,
            clock=clock,
        )

    return LibrivoxSource(
        api(), api(), librivox_url=site.base_url, archive_url=site.base_url, quality=quality
    )


@pytest.fixture
def site(librivox_site: LibrivoxSite) -> Iterator[LibrivoxSite]:
    yield librivox_site
    librivox_site.data.not_found_status = 404
    librivox_site.data.throttle = 0


# -- references -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("librivox:47", ("47", None)),
        (" LIBRIVOX:0047 ", ("47", None)),
        ("https://librivox.org/api/feed/audiobooks?id=47&format=json", ("47", None)),
        ("https://librivox.org/api/feed/audiobooks/id/47/format/json", ("47", None)),
        ("librivox.org/rss/47", ("47", None)),
        (
            "https://librivox.org/the-count-of-monte-cristo-by-alexandre-dumas/",
            (None, "https://librivox.org/the-count-of-monte-cristo-by-alexandre-dumas/"),
        ),
        ("http://www.librivox.org/some-book", (None, "http://www.librivox.org/some-book/")),
    ],
)
def test_reference_forms(ref: str, expected: tuple[str | None, str | None]) -> None:
    assert is_librivox_ref(ref, None)
    assert parse_ref(ref, None) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "librivox:abc",
        "librivox:",
        "https://librivox.org/api/feed/audiobooks?title=x",
        "https://librivox.org/a/b/c",
        "https://librivox.org/",
        "https://example.com/some-book/",
    ],
)
def test_bad_references_are_usage_errors(ref: str) -> None:
    with pytest.raises(UsageError):
        parse_ref(ref, None)


def test_tokybook_references_are_not_librivox_ones() -> None:
    for ref in ("some-book", "https://tokybook.com/post/some-book", "tokybook.com/post/x"):
        assert not is_librivox_ref(ref, None)
    assert is_librivox_ref("http://127.0.0.1:8000/a-book/", "http://127.0.0.1:8000")


def test_old_archive_links_become_https_and_others_are_kept() -> None:
    assert _http_url("http://www.archive.org/download/x/y.mp3", "u") == (
        "https://www.archive.org/download/x/y.mp3"
    )
    assert _http_url("http://127.0.0.1:9/download/x/y.mp3", "u") == (
        "http://127.0.0.1:9/download/x/y.mp3"
    )


def test_description_html_becomes_plain_text() -> None:
    text = plain_text("<p><i>A</i> &amp; B</p><p>two<br>lines</p><script>x()</script> ")
    assert text == "A & B\ntwo\nlines"
    assert plain_text("<p> </p>") is None


# -- resolving ------------------------------------------------------------------------------
def test_a_book_with_sections_served_unsorted_comes_in_section_order(site: LibrivoxSite) -> None:
    book, tracks = open_source(site).resolve(str(SAMPLE_ID))
    assert [t.title for t in tracks.tracks] == [
        "Prologue",
        "The Long Road",
        "A Quiet Harbour",
        "Epilogue",
    ]
    assert [t.index for t in tracks.tracks] == [1, 2, 3, 4]
    assert book.source == "librivox"
    assert book.slug == str(SAMPLE_ID)
    assert (book.title, book.author, book.narrator) == (
        "The Sample Sections",
        "Ada Quill",
        "Reed Voice",
    )
    assert book.year == 1887
    assert book.language == "English"
    assert book.genres == ("Literary Fiction", "Short Stories")
    assert book.description == (
        "The Sample Sections is a short book & a test.\nSecond paragraph,\nwith a line break."
    )
    assert book.source_url == site.book_url(SAMPLE_ID)
    assert book.cover_url is not None
    assert "LibrivoxCdCoverArt" in book.cover_url
    catalog_book = site.catalog[SAMPLE_ID]
    for track, section in zip(tracks.tracks, catalog_book.sections, strict=True):
        name = catalog_book.low_name(section)
        data = site.file_path(SAMPLE_ID, name).read_bytes()
        assert track.kind is MediaKind.FILE
        assert track.url.endswith("/" + name)
        assert track.size == len(data)
        assert track.md5 == hashlib.md5(data).hexdigest()
        assert track.sha1 == hashlib.sha1(data).hexdigest()
        assert track.duration == round(section.seconds)
        assert track.narrator is None  # one reader for the whole book


def test_quality_high_takes_the_128kb_original(site: LibrivoxSite) -> None:
    _, tracks = open_source(site, quality=Quality.HIGH).resolve(str(SAMPLE_ID))
    book = site.catalog[SAMPLE_ID]
    for track, section in zip(tracks.tracks, book.sections, strict=True):
        name = f"{book.file_base(section)}_128kb.mp3"
        assert track.url.endswith("/" + name)
        assert track.size == site.file_path(SAMPLE_ID, name).stat().st_size


def test_several_readers_authors_an_item_cover_and_plain_originals(site: LibrivoxSite) -> None:
    book, tracks = open_source(site, quality=Quality.HIGH).resolve(str(MULTI_READER_ID))
    assert book.author == "Bea Chorus & Cal Echo"
    assert book.narrator == "Ann Reader & Ben Speaker & Cy Teller"
    assert [t.narrator for t in tracks.tracks] == [
        "Ann Reader",
        "Ann Reader & Ben Speaker",
        None,
        "Cy Teller",
    ]
    assert book.year is None  # copyright_year "0"
    assert book.cover_url is not None
    assert book.cover_url.endswith("/ManyVoices.jpg")
    assert all(t.url.endswith(".mp3") and "_64kb" not in t.url for t in tracks.tracks)
    assert all(t.sha1 for t in tracks.tracks)


def test_an_unfinished_section_is_reported_unavailable(site: LibrivoxSite) -> None:
    book, tracks = open_source(site).resolve(str(UNFINISHED_ID))
    assert [t.title for t in tracks.tracks] == ["Done One", "Done Two"]
    assert tracks.unavailable == ("section 2 (Still Being Read)",)
    assert (
        book.cover_url == f"{site.base_url}/services/img/{site.catalog[UNFINISHED_ID].identifier}"
    )


def test_an_unknown_id_is_book_not_found(site: LibrivoxSite) -> None:
    with pytest.raises(BookNotFoundError, match="no LibriVox book with the id 9999"):
        open_source(site).resolve("9999")
    site.data.not_found_status = 200  # keyed on the body, whatever the status
    with pytest.raises(BookNotFoundError):
        open_source(site).resolve("9999")


@pytest.mark.parametrize("book_id", HOSTILE_JSON_IDS)
def test_hostile_answers_are_one_line_errors(site: LibrivoxSite, book_id: int) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(site).resolve(str(book_id))
    assert type(caught.value) is SourceError
    assert "is malformed" in caught.value.message
    assert "\n" not in caught.value.message


def test_a_book_page_gives_the_id_of_its_rss_link(site: LibrivoxSite) -> None:
    source = open_source(site)
    assert source.book_slug(site.book_url(MULTI_READER_ID)) == str(MULTI_READER_ID)
    with pytest.raises(BookNotFoundError):
        source.book_slug(f"{site.base_url}/no-such-book/")


# -- search and politeness ------------------------------------------------------------------
def test_search_merges_title_and_author_matches(site: LibrivoxSite) -> None:
    source = open_source(site)
    by_title = source.search("many", offset=0, limit=10)
    by_author = source.search("Bea Chorus", offset=0, limit=10)
    both = source.search("Echo", offset=0, limit=10)
    assert [r.slug for r in by_title.results] == [f"librivox:{MULTI_READER_ID}"]
    assert [r.slug for r in by_author.results] == [f"librivox:{MULTI_READER_ID}"]
    assert [r.slug for r in both.results] == [f"librivox:{MULTI_READER_ID}"]  # once
    assert by_title.results[0].authors == ("Bea Chorus", "Cal Echo")
    assert by_title.results[0].url == site.book_url(MULTI_READER_ID)


def test_search_pages(site: LibrivoxSite) -> None:
    source = open_source(site)
    first = source.search("hostile json", offset=0, limit=1)
    second = source.search("hostile json", offset=1, limit=1)
    assert len(first.results) == 1
    assert first.total > 1
    assert len(second.results) == 1
    assert second.total == 2
    assert first.results[0].slug != second.results[0].slug


def test_nothing_found_is_no_results_not_an_error(site: LibrivoxSite) -> None:
    assert open_source(site).search("zzz nothing", offset=0, limit=10).results == ()
    site.data.not_found_status = 200
    assert open_source(site).search("zzz nothing", offset=0, limit=10).total == 0


def test_calls_to_one_host_are_spaced_by_the_interval(site: LibrivoxSite) -> None:
    clock = Clock()
    source = open_source(site, interval=2.0, clock=clock)
    source.search("many", offset=0, limit=5)  # two API calls: title, then author
    assert clock.waits == [2.0]
    clock.now += 5.0  # time passes on its own: no wait needed
    source.search("zzz", offset=0, limit=5)
    assert clock.waits == [2.0, 2.0]


def test_a_429_is_retried_after_its_retry_after(site: LibrivoxSite) -> None:
    clock = Clock()
    site.data.throttle = 1
    book, _ = open_source(site, clock=clock).resolve(str(SAMPLE_ID))
    assert book.title == "The Sample Sections"
    assert clock.waits == [1.0]  # Retry-After: 1
