"""The JSON API of the stand-in site follows shared/tokybook-api.md §1, §2 and §4."""

from __future__ import annotations

import math
from typing import Any

import pytest
import requests

from tokysnatcher.standin import BookSpec, StandinSite, TrackSpec

from .support import SiteFactory

DETAILS = "/api/v1/search/post-details"
PLAYLIST = "/api/v1/playlist"
SEARCH = "/api/v1/search"


def post(site: StandinSite, path: str, body: Any) -> requests.Response:
    return requests.post(site.base_url + path, json=body, timeout=5)


def details_of(site: StandinSite, slug: str) -> dict[str, Any]:
    answer = post(site, DETAILS, {"dynamicSlugId": slug})
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


def test_details_answer_has_every_documented_field(site: StandinSite) -> None:
    details = details_of(site, "the-sample-book")

    assert details["title"] == "The Sample Book"
    assert details["authors"] == [{"name": "Ada Quill"}]
    assert details["narrators"] == [{"name": "Reed Voice"}]
    assert details["dynamicSlugId"] == "the-sample-book"
    assert details["year"] == 2021
    assert details["audioBookId"]
    assert details["postDetailToken"]
    assert details["coverImage"].startswith(site.base_url + "/")


def test_cover_image_is_a_real_jpeg_without_token(site: StandinSite) -> None:
    cover_url = details_of(site, "cover-book")["coverImage"]

    answer = requests.get(cover_url, timeout=5)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.content[:3] == b"\xff\xd8\xff"
    assert details_of(site, "mp3-stream-book")["coverImage"] is None


def test_unknown_slug_is_404_and_malformed_body_is_400(site: StandinSite) -> None:
    assert post(site, DETAILS, {"dynamicSlugId": "no-such-book"}).status_code == 404
    broken = requests.post(site.base_url + DETAILS, data=b"{not json", timeout=5)
    assert broken.status_code == 400
    assert post(site, DETAILS, ["a", "list"]).status_code == 400


def test_playlist_lists_tracks_in_order_with_a_fresh_token_each_call(site: StandinSite) -> None:
    details = details_of(site, "the-sample-book")
    body = {"audioBookId": details["audioBookId"], "postDetailToken": details["postDetailToken"]}

    first = post(site, PLAYLIST, body).json()
    second = post(site, PLAYLIST, {**body, "userIdentity": {"ipAddress": "1.2.3.4"}}).json()

    assert [t["trackTitle"] for t in first["tracks"]] == [
        "Prologue",
        "The Long Road",
        "A Quiet Harbour",
        "Epilogue",
    ]
    assert first["tracks"][0]["src"] == "Sample Book/Chapter 01/index.m3u8"
    assert first["tracks"][0]["duration"] == 12
    assert first["audioBookId"] == details["audioBookId"]
    assert first["streamToken"]
    assert first["streamToken"] != second["streamToken"]


def test_playlist_with_wrong_detail_token_is_401(site: StandinSite) -> None:
    details = details_of(site, "the-sample-book")
    body = {"audioBookId": details["audioBookId"], "postDetailToken": "forged"}

    assert post(site, PLAYLIST, body).status_code == 401


def test_direct_tracks_have_absolute_src_and_nosrc_tracks_have_none(site: StandinSite) -> None:
    def tracks(slug: str) -> list[dict[str, Any]]:
        d = details_of(site, slug)
        body = {"audioBookId": d["audioBookId"], "postDetailToken": d["postDetailToken"]}
        result: list[dict[str, Any]] = post(site, PLAYLIST, body).json()["tracks"]
        return result

    direct = tracks("direct-file-book")
    nosrc = tracks("nosrc-book")

    assert all(t["src"].startswith(site.base_url + "/files/") for t in direct)
    first_file = requests.get(direct[0]["src"], timeout=5)  # no token needed
    assert first_file.status_code == 200
    assert first_file.content == site.source_media("direct-file-book", 0).read_bytes()
    assert ["src" in t for t in nosrc] == [True, False, True]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SAMPLE", ["the-sample-book"]),
        ("ada quill", ["the-sample-book"]),
        ("mal", ["hostile-server"]),
        ("zzz-nothing", []),
    ],
)
def test_search_matches_title_or_author_case_insensitively(
    site: StandinSite, query: str, expected: list[str]
) -> None:
    answer = post(site, SEARCH, {"query": query, "offset": 0, "limit": 12}).json()

    assert [hit["dynamicSlugId"] for hit in answer["content"]] == expected
    assert answer["totalHits"] == len(expected)


def test_search_pages_through_results_with_offset_and_limit(site: StandinSite) -> None:
    everything = post(site, SEARCH, {"query": "", "offset": 0, "limit": 100}).json()
    pages = [
        post(site, SEARCH, {"query": "", "offset": offset, "limit": 3}).json()
        for offset in range(0, everything["totalHits"], 3)
    ]

    assert everything["totalHits"] == len(site.catalog)
    assert all(page["totalHits"] == len(site.catalog) for page in pages)
    assert [hit for page in pages for hit in page["content"]] == everything["content"]
    first = everything["content"][0]
    assert set(first) == {"title", "dynamicSlugId", "bookId", "authors"}
    assert post(site, SEARCH, {"query": "x", "offset": -1, "limit": 3}).status_code == 400


def test_unknown_paths_are_404_with_content_length(site: StandinSite) -> None:
    answer = requests.get(site.base_url + "/nope", timeout=5)

    assert answer.status_code == 404
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    assert requests.get(site.book_url("the-sample-book"), timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("declared", "raw"),
    [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"), (1e308, "1e+308")],
)
def test_a_declared_duration_goes_out_as_given(
    make_site: SiteFactory, declared: float, raw: str
) -> None:
    track = TrackSpec(title="Odd", seconds=2.0, declared_duration=declared)
    site = make_site(catalog={"odd": BookSpec(slug="odd", title="Odd", tracks=(track,))})
    details = details_of(site, "odd")
    body = {"audioBookId": details["audioBookId"], "postDetailToken": details["postDetailToken"]}
    answer = post(site, PLAYLIST, body)
    assert answer.status_code == 200
    assert f'"duration": {raw}' in answer.text
