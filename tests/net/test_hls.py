"""Tests for net/hls.py: playlist parsing and the checks a hostile server calls for (SPEC §5)."""

from __future__ import annotations

import math

import pytest

from tokysnatcher.errors import FailureKind, PlaylistError
from tokysnatcher.net.hls import (
    DURATION_TOLERANCE,
    MAX_PLAYLIST_BYTES,
    MAX_SEGMENT_BYTES,
    MIN_SEGMENT_LIMIT,
    decode_playlist,
    parse_media_playlist,
    segment_size_limit,
    variant_of,
)

BASE = "https://cdn.example.test/audio/Some%20Book/ch%2001/index.m3u8"


def media(*uris: str, extinf: str = "2.0", head: str = "") -> str:
    body = "".join(f"#EXTINF:{extinf},\n{uri}\n" for uri in uris)
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n{head}{body}#EXT-X-ENDLIST\n"


def refused(text: str, words: str) -> None:
    with pytest.raises(PlaylistError) as caught:
        parse_media_playlist(text, BASE)
    assert caught.value.kind is FailureKind.INVALID_MEDIA
    assert words in caught.value.message


def test_segments_resolve_against_the_playlist_url_in_order() -> None:
    parsed = parse_media_playlist(
        media("seg-0.ts", "../other/seg-1.ts", "/root/seg-2.ts", "http://other.test/seg-3.ts"),
        BASE,
    )
    assert [s.url for s in parsed.segments] == [
        "https://cdn.example.test/audio/Some%20Book/ch%2001/seg-0.ts",
        "https://cdn.example.test/audio/Some%20Book/other/seg-1.ts",
        "https://cdn.example.test/root/seg-2.ts",
        "http://other.test/seg-3.ts",
    ]
    assert [s.index for s in parsed.segments] == [0, 1, 2, 3]
    assert parsed.duration == pytest.approx(8.0)


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",
        "FILE:///etc/shadow",
        "data:video/mp2t;base64,AAAA",
        "ftp://cdn.example.test/seg.ts",
        "concat:seg-0.ts|seg-1.ts",
        "gopher://cdn.example.test/seg.ts",
    ],
)
def test_a_segment_that_is_not_http_is_refused(uri: str) -> None:
    refused(media("seg-0.ts", uri), "not an http(s) URL")


def test_encrypted_hls_is_refused_and_a_local_key_is_named_as_such() -> None:
    key = '#EXT-X-KEY:METHOD=AES-128,URI="https://cdn.example.test/key"\n'
    refused(media("seg-0.ts", head=key), "encrypted HLS")
    local_key = '#EXT-X-KEY:METHOD=AES-128,URI="file:///etc/passwd"\n'
    refused(media("seg-0.ts", head=local_key), "key URL")


def test_method_none_is_no_encryption() -> None:
    parsed = parse_media_playlist(media("seg-0.ts", head="#EXT-X-KEY:METHOD=NONE\n"), BASE)
    assert len(parsed.segments) == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<html>not a playlist</html>", "no #EXTM3U"),
        ("#EXTM3U\n#EXT-X-ENDLIST\n", "no segment"),
        ("", "no #EXTM3U"),
    ],
)
def test_unusable_playlists_are_invalid_media(text: str, words: str) -> None:
    refused(text, words)


def test_a_byte_order_mark_is_accepted() -> None:
    assert len(parse_media_playlist("\ufeff" + media("a.ts"), BASE).segments) == 1


@pytest.mark.parametrize("extinf", ["nan", "-3", "inf", "-inf", "1e308", "0"])
def test_a_nonsense_duration_counts_as_unknown(extinf: str) -> None:
    parsed = parse_media_playlist(media("a.ts", extinf=extinf), BASE)
    assert parsed.segments[0].duration == 0.0
    assert parsed.duration == 0.0
    assert parsed.segments[0].size_limit == MAX_SEGMENT_BYTES


def test_the_master_playlist_variant_with_most_bandwidth_is_chosen() -> None:
    master = (
        "#EXTM3U\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=64000\nlow/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=128000\nhigh/index.m3u8\n"
    )
    variant = variant_of(master, BASE)
    assert variant is not None
    assert variant.url == "https://cdn.example.test/audio/Some%20Book/ch%2001/high/index.m3u8"
    assert variant_of(media("a.ts"), BASE) is None


def test_a_local_variant_is_refused() -> None:
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000\nfile:///etc/passwd\n"
    with pytest.raises(PlaylistError, match="not an http"):
        variant_of(master, BASE)


def test_a_nested_master_is_refused() -> None:
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000\nlow/index.m3u8\n"
    refused(master, "nested master")


def test_decode_playlist_refuses_oversized_and_non_text_bodies() -> None:
    assert decode_playlist(media("a.ts").encode()) == media("a.ts")
    with pytest.raises(PlaylistError, match="larger than 1 MiB") as big:
        decode_playlist(b"#" * (MAX_PLAYLIST_BYTES + 1))
    assert big.value.kind is FailureKind.INVALID_MEDIA
    with pytest.raises(PlaylistError, match="not UTF-8"):
        decode_playlist(b"#EXTM3U\n\xff\xfe\x00")


@pytest.mark.parametrize(
    ("seconds", "limit"),
    [
        (0.0, MAX_SEGMENT_BYTES),  # unknown duration: the flat SPEC limit
        (-1.0, MAX_SEGMENT_BYTES),
        (math.nan, MAX_SEGMENT_BYTES),
        (math.inf, MAX_SEGMENT_BYTES),
        (2.0, MIN_SEGMENT_LIMIT),  # a short segment: the floor
        (10.0, 5 * 1024 * 1024),  # 512 KiB a second
        (100.0, 50 * 1024 * 1024),
        (3600.0, MAX_SEGMENT_BYTES),  # never over 64 MiB, whatever the playlist claims
    ],
)
def test_segment_size_limit(seconds: float, limit: int) -> None:
    assert segment_size_limit(seconds) == limit


def test_every_limit_leaves_room_for_real_audio() -> None:
    # 320 kbit/s (the most any lossy audiobook stream uses) with 10 % container overhead.
    for seconds in (1, 2, 6, 10, 30, 60):
        assert segment_size_limit(seconds) > seconds * 320_000 / 8 * 1.1


def test_durations_that_add_up_to_an_absurd_chapter_count_as_unknown() -> None:
    # Each under a week, together far over: the chapter's length is unknown, not 2.4 years.
    parsed = parse_media_playlist(media(*(f"{n}.ts" for n in range(128)), extinf="600000"), BASE)
    assert parsed.segments[0].duration == 600000.0
    assert parsed.duration == 0.0


@pytest.mark.parametrize(
    ("head", "extinf", "tolerance"),
    [
        ("#EXT-X-VERSION:3\n", "2.000000", DURATION_TOLERANCE),
        ("#EXT-X-VERSION:3\n", "2", DURATION_TOLERANCE),  # version 3 may state fractions
        ("", "2.005", DURATION_TOLERANCE),  # no version tag, but fractions: precise
        ("", "2", DURATION_TOLERANCE + 3 * 0.5),  # whole seconds, each rounded by up to 0.5 s
        ("#EXT-X-VERSION:2\n", "2", DURATION_TOLERANCE + 3 * 0.5),
    ],
)
def test_the_length_tolerance_follows_the_precision_of_the_extinf_durations(
    head: str, extinf: str, tolerance: float
) -> None:
    parsed = parse_media_playlist(media("a.ts", "b.ts", "c.ts", extinf=extinf, head=head), BASE)
    assert parsed.tolerance == pytest.approx(tolerance)
    assert parsed.duration == pytest.approx(3 * float(extinf))
