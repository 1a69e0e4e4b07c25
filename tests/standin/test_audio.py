"""Audio endpoint: token rules, percent-encoded paths and real, decodable media."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import pytest
import requests

from tokysnatcher.standin import Faults, StandinSite

from .support import BookClient, SiteFactory

OpenBook = Callable[[StandinSite, str], BookClient]
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [FFMPEG, "-hide_banner", "-nostdin", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def decoded_md5(source: str, *before_input: str) -> str:
    done = ffmpeg(
        "-loglevel", "error", *before_input, "-i", source, "-map", "0:a", "-f", "md5", "-"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_playlist_is_a_vod_media_playlist_with_relative_segments(
    site: StandinSite, open_book: OpenBook
) -> None:
    book = open_book(site, "the-sample-book")

    answer = book.get(book.playlist_path(0))

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    lines = answer.text.splitlines()
    for tag in ("#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"):
        assert tag in lines
    assert lines[0] == "#EXTM3U"
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert any(line.startswith("#EXT-X-TARGETDURATION:") for line in lines)
    uris = [line for line in lines if line and not line.startswith("#")]
    assert uris == [f"seg-{n:05d}.ts" for n in range(len(uris))]
    assert 5 <= len(uris) <= 7  # 12 s in ~2 s segments


def test_playlist_path_has_percent_encoded_spaces(site: StandinSite, open_book: OpenBook) -> None:
    book = open_book(site, "the-sample-book")

    assert book.playlist_path(0) == "/api/v1/public/audio/Sample%20Book/Chapter%2001/index.m3u8"


def test_every_hostile_names_track_is_reachable_by_its_encoded_path(
    site: StandinSite, open_book: OpenBook
) -> None:
    book = open_book(site, "hostile-names")

    for index in range(len(site.catalog["hostile-names"].tracks)):
        path = book.playlist_path(index)
        assert " " not in path
        assert book.get(path).status_code == 200
        assert book.get(book.segment_path(index, 0)).status_code == 200


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"X-Stream-Token": ""}, 401),
        ({"X-Stream-Token": "st-forged"}, 401),
        ({"X-Audiobook-Id": ""}, 401),
        ({"X-Track-Src": "/api/v1/public/audio/elsewhere/index.m3u8"}, 403),
    ],
)
def test_bad_audio_headers_are_refused(
    site: StandinSite, open_book: OpenBook, change: dict[str, str], status: int
) -> None:
    book = open_book(site, "the-sample-book")
    headers = {**book.headers(book.playlist_path(0)), **change}
    headers = {name: value for name, value in headers.items() if value}

    answer = requests.get(site.playlist_url("the-sample-book", 0), headers=headers, timeout=5)

    assert answer.status_code == status


def test_missing_track_src_header_is_refused(site: StandinSite, open_book: OpenBook) -> None:
    book = open_book(site, "the-sample-book")
    headers = book.headers(book.playlist_path(0))
    del headers["X-Track-Src"]

    answer = requests.get(site.playlist_url("the-sample-book", 0), headers=headers, timeout=5)

    assert answer.status_code == 403


def test_token_of_another_book_is_refused(site: StandinSite, open_book: OpenBook) -> None:
    sample = open_book(site, "the-sample-book")
    other = open_book(site, "cover-book")
    path = sample.playlist_path(0)
    headers = {**sample.headers(path), "X-Stream-Token": other.token}

    assert requests.get(site.base_url + path, headers=headers, timeout=5).status_code == 401


def test_expired_token_is_403_and_a_fresh_one_works(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    now = [1000.0]
    site = make_site(Faults(token_ttl=30.0), clock=lambda: now[0])
    book = open_book(site, "tiny")
    path = book.playlist_path(0)
    assert book.get(path).status_code == 200

    now[0] += 31.0

    assert book.get(path).status_code == 403
    assert open_book(site, "tiny").get(path).status_code == 200
    assert site.stats.faults["token_expired"] == 1


def test_token_expires_after_its_allowed_uses(make_site: SiteFactory, open_book: OpenBook) -> None:
    site = make_site(Faults(token_max_uses=3))
    book = open_book(site, "tiny")

    statuses = [book.get(book.segment_path(0, 0)).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 403]


def test_served_segments_concatenate_to_the_source_media(
    site: StandinSite, open_book: OpenBook
) -> None:
    book = open_book(site, "mp3-stream-book")
    playlist = book.get(book.playlist_path(1)).text
    names = [line for line in playlist.splitlines() if line and not line.startswith("#")]

    served = b"".join(book.get(book.segment_path(1, n)).content for n in range(len(names)))

    assert served == site.source_media("mp3-stream-book", 1).read_bytes()


def test_a_served_segment_is_real_audio(
    site: StandinSite, open_book: OpenBook, tmp_path: Path
) -> None:
    book = open_book(site, "the-sample-book")
    answer = book.get(book.segment_path(0, 1))
    segment = tmp_path / "seg.ts"
    segment.write_bytes(answer.content)

    probe = ffmpeg("-i", str(segment), "-f", "null", "-")

    assert answer.headers["Content-Type"] == "video/mp2t"
    assert probe.returncode == 0, probe.stderr
    assert "Audio: aac" in probe.stderr
    assert "44100 Hz, mono" in probe.stderr


def test_chapters_carry_different_audio(site: StandinSite) -> None:
    first = decoded_md5(str(site.source_media("the-sample-book", 0)))
    second = decoded_md5(str(site.source_media("the-sample-book", 1)))

    assert first != second


def test_plain_ffmpeg_reads_the_hls_url_with_headers_for(site: StandinSite) -> None:
    headers = "".join(f"{k}: {v}\r\n" for k, v in site.headers_for("cover-book").items())

    over_http = decoded_md5(site.playlist_url("cover-book", 1), "-headers", headers)

    assert over_http == decoded_md5(str(site.source_media("cover-book", 1)))


def test_segment_byte_ranges(site: StandinSite, open_book: OpenBook) -> None:
    book = open_book(site, "the-sample-book")
    path = book.segment_path(0, 0)
    whole = book.get(path).content

    part = book.get(path, headers={"Range": "bytes=100-199"})

    assert part.status_code == 206
    assert part.content == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"


def test_missing_tracks_answer_404(make_site: SiteFactory, open_book: OpenBook) -> None:
    site = make_site(Faults(missing_tracks=frozenset({("tiny", 1), ("tiny-direct", 0)})))
    book = open_book(site, "tiny")
    direct_url = site.base_url + "/files/tiny-direct/01.mp3"

    assert book.get(book.playlist_path(0)).status_code == 200
    assert book.get(book.playlist_path(1)).status_code == 404
    assert book.get(book.segment_path(1, 0)).status_code == 404
    assert requests.get(direct_url, timeout=5).status_code == 404
    assert site.stats.faults["missing_track"] == 3


def test_keep_alive_reuses_one_connection(make_site: SiteFactory, open_book: OpenBook) -> None:
    site = make_site()
    book = open_book(site, "tiny")  # one Session for API and audio

    for segment in range(2):
        assert book.get(book.segment_path(0, segment)).status_code == 200

    assert site.stats.connections == 1
    assert site.stats.requests["segment"] == 2


def test_track_src_must_include_the_query(site: StandinSite, open_book: OpenBook) -> None:
    book = open_book(site, "the-sample-book")
    path = book.playlist_path(0)
    url = site.base_url + path + "?v=2"

    with_query = requests.get(url, headers=book.headers(path + "?v=2"), timeout=5)
    without_query = requests.get(url, headers=book.headers(path), timeout=5)

    assert with_query.status_code == 200
    assert without_query.status_code == 403


def test_head_reports_the_size_without_a_body(site: StandinSite, open_book: OpenBook) -> None:
    book = open_book(site, "the-sample-book")
    path = book.segment_path(0, 0)

    answer = book.session.head(site.base_url + path, headers=book.headers(path), timeout=5)

    assert answer.status_code == 200
    assert int(answer.headers["Content-Length"]) == len(book.get(path).content)
    assert answer.content == b""
