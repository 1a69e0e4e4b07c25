"""The hostile-server book misbehaves in exactly the ways SPEC §5 Security guards against."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tokysnatcher.standin import BookSpec, StandinSite, default_catalog
from tokysnatcher.standin.catalog import TrackKind, TrackSpec

from .support import BookClient

OpenBook = Callable[[StandinSite, str], BookClient]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def hostile_site() -> Iterator[StandinSite]:
    with StandinSite(catalog={"hostile-server": default_catalog()["hostile-server"]}) as site:
        yield site


@pytest.fixture
def book(hostile_site: StandinSite, open_book: OpenBook) -> BookClient:
    return open_book(hostile_site, "hostile-server")


def uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_track_titles_name_each_hostility(hostile_catalog: dict[str, BookSpec]) -> None:
    titles = [track.title for track in hostile_catalog["hostile-server"].tracks]

    assert titles[0] == "Normal Chapter"
    assert len(titles) == 6


def test_normal_chapter_is_normal(book: BookClient) -> None:
    names = uris(book.get(book.playlist_path(0)).text)

    assert names == ["seg-00000.ts", "seg-00001.ts"]


def test_playlist_points_at_a_local_file(book: BookClient) -> None:
    assert "file:///etc/passwd" in uris(book.get(book.playlist_path(1)).text)


def test_other_host_records_the_headers_it_gets(
    hostile_site: StandinSite, book: BookClient
) -> None:
    foreign = [uri for uri in uris(book.get(book.playlist_path(2)).text) if "://" in uri]
    assert len(foreign) == 1
    assert urlsplit(foreign[0]).hostname != urlsplit(hostile_site.base_url).hostname

    polite = requests.get(foreign[0], headers={"X-Probe": "polite"}, timeout=5)
    leaky = requests.get(foreign[0], headers={"x-stream-token": book.token}, timeout=5)

    assert polite.status_code == leaky.status_code == 403
    seen = hostile_site.stats.other_host_headers
    assert seen[-2]["X-Probe"] == "polite"
    assert "X-Stream-Token" not in seen[-2]
    assert seen[-1]["X-Stream-Token"] == book.token  # a leak would be caught


def test_endless_segment_never_ends(book: BookClient) -> None:
    path = book.segment_path(3, 1)

    with book.get(path, stream=True) as answer:
        assert answer.status_code == 200
        assert "Content-Length" not in answer.headers
        received = 0
        for chunk in answer.iter_content(256 * 1024):
            received += len(chunk)
            if received > 4 * MIB:
                break

    assert received > 4 * MIB


def test_huge_playlist_is_over_one_mib(book: BookClient) -> None:
    answer = book.get(book.playlist_path(4))

    assert len(answer.content) > MIB
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    assert answer.text.startswith("#EXTM3U")
    assert answer.text.rstrip().endswith("#EXT-X-ENDLIST")


def test_huge_segment_advertises_over_64_mib(book: BookClient) -> None:
    with book.get(book.segment_path(5, 1), stream=True) as answer:
        advertised = int(answer.headers["Content-Length"])
        first = answer.raw.read(1024)

    assert advertised > 64 * MIB
    assert len(first) == 1024
    assert book.get(book.segment_path(5, 0)).status_code == 200  # the site is fine after


def _short_book() -> BookSpec:
    kinds = (TrackKind.HOSTILE_SHORT_SEGMENT, TrackKind.HOSTILE_JUNK_VARIANT)
    tracks = [
        TrackSpec(title=kind.value, seconds=4.0, segment_seconds=2.0, kind=kind) for kind in kinds
    ]
    tracks.append(TrackSpec(title="short file", seconds=4.0, kind=TrackKind.HOSTILE_SHORT_FILE))
    return BookSpec(slug="short-audio", title="Short Audio", tracks=tracks)


@pytest.fixture(scope="module")
def short_site() -> Iterator[StandinSite]:
    with StandinSite(catalog={"short-audio": _short_book()}) as site:
        yield site


def test_a_short_segment_is_cut_without_content_length(
    short_site: StandinSite, open_book: OpenBook
) -> None:
    book = open_book(short_site, "short-audio")
    full = short_site.segment_paths("short-audio", 0)[1].read_bytes()
    answer = book.get(book.segment_path(0, 1))
    assert answer.status_code == 200
    assert "Content-Length" not in answer.headers  # ends when the server closes: looks whole
    assert answer.content == full[: len(answer.content)]
    assert 0 < len(answer.content) <= len(full) // 3


def test_a_short_file_is_cut_without_content_length(
    short_site: StandinSite, open_book: OpenBook
) -> None:
    book = open_book(short_site, "short-audio")
    src = short_site.track_src("short-audio", 2)
    assert src is not None
    full = short_site.source_media("short-audio", 2).read_bytes()
    answer = book.session.get(src, timeout=5)
    assert answer.status_code == 200
    assert "Content-Length" not in answer.headers
    assert answer.content == full[: len(answer.content)]
    assert 0 < len(answer.content) <= len(full) // 3


def test_a_junk_variant_lives_on_another_host_with_short_segments(
    short_site: StandinSite, open_book: OpenBook
) -> None:
    book = open_book(short_site, "short-audio")
    master = book.get(book.playlist_path(1)).text
    assert "#EXT-X-STREAM-INF" in master
    (variant,) = uris(master)
    assert urlsplit(variant).hostname != urlsplit(short_site.base_url).hostname
    media = requests.get(variant, timeout=5)  # no token: the other host asks for none
    assert media.status_code == 200
    names = uris(media.text)
    assert len(names) == 2
    assert "#EXTINF:2" in media.text  # declares the real durations
    segment = requests.get(variant.rsplit("/", 1)[0] + "/" + names[0], timeout=5)
    full = short_site.segment_paths("short-audio", 1)[0].read_bytes()
    assert segment.status_code == 200
    assert segment.headers["Content-Length"] == str(len(segment.content))  # a whole response
    assert 0 < len(segment.content) <= len(full) // 3
    assert requests.get(variant + "x", timeout=5).status_code == 403  # the rest is refused
