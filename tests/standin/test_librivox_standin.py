"""The LibriVox stand-in answers as shared/librivox-api.md §6 says the real sites do."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tokysnatcher.standin import Faults
from tokysnatcher.standin.librivox.catalog import (
    COVER_ITEM,
    MULTI_READER_ID,
    SAMPLE_ID,
    UNFINISHED_ID,
)
from tokysnatcher.standin.librivox.server import LibrivoxSite

BOOK_KEYS = [
    "id", "title", "description", "url_text_source", "language", "copyright_year",
    "num_sections", "url_rss", "url_zip_file", "url_project", "url_librivox", "url_other",
    "totaltime", "totaltimesecs", "authors", "coverart_jpg", "coverart_pdf",
    "coverart_thumbnail", "url_iarchive", "sections", "genres", "translators",
]  # fmt: skip


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects: status, headers, body."""
    response = requests.get(url, allow_redirects=False, timeout=10)
    return response.status_code, dict(response.headers), response.content


@pytest.fixture
def site(librivox_site: LibrivoxSite) -> Iterator[LibrivoxSite]:
    yield librivox_site
    librivox_site.data.not_found_status = 404
    librivox_site.data.throttle = 0


def feed(site: LibrivoxSite, tail: str) -> tuple[int, Any]:
    status, _, body = get(f"{site.base_url}/api/feed/audiobooks{tail}")
    return status, json.loads(body)


def test_both_parameter_forms_give_the_same_book_with_string_values_in_key_order(
    site: LibrivoxSite,
) -> None:
    query = feed(site, f"?id={SAMPLE_ID}&extended=1&coverart=1&format=json")
    path = feed(site, f"/id/{SAMPLE_ID}/extended/1/coverart/1/format/json")
    short = get(f"{site.base_url}/api/audiobooks/id/{SAMPLE_ID}/format/json")
    assert query == path
    assert json.loads(short[2])["books"][0]["id"] == str(SAMPLE_ID)
    status, answer = query
    book = answer["books"][0]
    assert status == 200
    assert list(book) == BOOK_KEYS
    assert isinstance(book["totaltimesecs"], int)
    for key in ("id", "num_sections", "copyright_year"):
        assert isinstance(book[key], str)
    numbers = [s["section_number"] for s in book["sections"]]
    assert all(isinstance(n, str) for n in numbers)
    assert numbers != sorted(numbers, key=int)  # served unsorted, as the real API may
    assert all(isinstance(r["reader_id"], str) for s in book["sections"] for r in s["readers"])


def test_the_answer_escapes_slashes_as_php_does(site: LibrivoxSite) -> None:
    _, _, body = get(f"{site.base_url}/api/feed/audiobooks?id={SAMPLE_ID}&format=json")
    assert b"\\/rss\\/" in body
    assert b'"id":"101"' in body


def test_searches_match_title_prefix_and_exact_last_name(site: LibrivoxSite) -> None:
    _, by_title = feed(site, "?title=%5Ethe%20sam&format=json")
    _, by_author = feed(site, "?author=echo&format=json")
    assert [b["id"] for b in by_title["books"]] == [str(SAMPLE_ID)]
    assert [b["id"] for b in by_author["books"]] == [str(MULTI_READER_ID)]
    assert feed(site, "?author=ech&format=json")[0] == 404  # last name: exact only


def test_nothing_found_is_a_404_body_or_a_200_when_switched(site: LibrivoxSite) -> None:
    assert feed(site, "?id=9999&format=json") == (404, {"error": "Audiobooks could not be found"})
    assert feed(site, "?offset=10000&format=json")[0] == 404
    site.data.not_found_status = 200
    assert feed(site, "?id=9999&format=json") == (200, {"error": "Audiobooks could not be found"})


def test_paging_and_the_limit(site: LibrivoxSite) -> None:
    _, first = feed(site, "?limit=2&format=json&fields={id}")
    _, second = feed(site, "?limit=2&offset=2&format=json&fields={id}")
    assert list(first["books"]) == [{"id": "101"}, {"id": "102"}]
    assert [b["id"] for b in second["books"]] == ["103", "104"]
    status, answer = feed(site, "?limit=501&format=json")
    assert status == 400
    assert answer["error"].startswith("Too many records requested.")


def test_unfinished_section_has_an_empty_listen_url(site: LibrivoxSite) -> None:
    _, answer = feed(site, f"?id={UNFINISHED_ID}&extended=1&format=json")
    listen = {s["title"]: s["listen_url"] for s in answer["books"][0]["sections"]}
    assert listen["Still Being Read"] == ""
    assert all(url for title, url in listen.items() if title != "Still Being Read")


def test_page_links_its_rss_feed_and_the_feed_lists_sections_in_order(site: LibrivoxSite) -> None:
    status, _, page = get(site.book_url(SAMPLE_ID))
    assert status == 200
    assert f"/rss/{SAMPLE_ID}".encode() in page
    status, headers, rss = get(f"{site.base_url}/rss/{SAMPLE_ID}")
    assert status == 200
    assert headers["Content-Type"].startswith("application/rss+xml")
    assert rss.count(b'length="0" type="audio/mpeg"') == 4
    assert rss.index(b"Prologue") < rss.index(b"The Long Road") < rss.index(b"Epilogue")


def test_download_redirects_to_another_host_that_serves_the_file(site: LibrivoxSite) -> None:
    site.data.redirect = True
    try:
        book = site.catalog[SAMPLE_ID]
        name = book.low_name(book.sections[0])
        status, headers, _ = get(f"{site.base_url}/download/{book.identifier}/{name}")
        assert status == 302
        location = headers["Location"]
        assert location.startswith(site.file_host + "/")
        assert f"/items/{book.identifier}/{name}" in location
        assert site.file_host.startswith("http://localhost:")
        status, headers, body = get(location)
    finally:
        site.data.redirect = False
    assert status == 200
    assert body == site.file_path(SAMPLE_ID, name).read_bytes()
    assert headers["Content-Type"] == "audio/mpeg"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Last-Modified"]
    assert headers["ETag"]
    seen = site.file_stats.other_host_requests[-1]
    assert seen.path.endswith(name)


def test_item_metadata_lists_sizes_and_sums_as_strings(site: LibrivoxSite) -> None:
    book = site.catalog[SAMPLE_ID]
    _, _, body = get(f"{site.base_url}/metadata/{book.identifier}")
    files = {f["name"]: f for f in json.loads(body)["files"]}
    name = book.low_name(book.sections[1])
    entry = files[name]
    data = site.file_path(SAMPLE_ID, name).read_bytes()
    assert entry["size"] == str(len(data))
    for key in ("size", "md5", "sha1", "crc32", "mtime", "length", "format", "source"):
        assert isinstance(entry[key], str), key
    assert f"{book.file_base(book.sections[1])}_128kb.mp3" in files
    xml = files[f"{book.identifier}_files.xml"]
    assert set(xml) == {"name", "source", "format", "md5"}
    assert json.loads(get(f"{site.base_url}/metadata/no_such_item")[2]) == {}


def test_covers(site: LibrivoxSite) -> None:
    _, answer = feed(site, f"?id={SAMPLE_ID}&coverart=1&format=json")
    cover = answer["books"][0]["coverart_jpg"]
    assert f"/download/{COVER_ITEM}/" in cover
    assert get(cover)[2][:2] == b"\xff\xd8"
    identifier = site.catalog[SAMPLE_ID].identifier
    status, headers, tile = get(f"{site.base_url}/services/img/{identifier}")
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert tile[:2] == b"\xff\xd8"


def test_throttled_api_answers_429_with_retry_after(site: LibrivoxSite) -> None:
    site.data.throttle = 1
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{site.base_url}/api/feed/audiobooks?id=101&format=json")
    assert caught.value.code == 429
    assert caught.value.headers["Retry-After"] == "1"
    assert feed(site, "?id=101&format=json")[0] == 200


def test_file_faults_and_corrupted_bodies(site: LibrivoxSite) -> None:
    book = site.catalog[SAMPLE_ID]
    name = book.low_name(book.sections[2])
    url = f"{site.base_url}/download/{book.identifier}/{name}"
    data = site.file_path(SAMPLE_ID, name).read_bytes()
    site.set_faults(Faults(fail_first=1, error_kinds=("5xx",)))
    try:
        assert get(url)[0] in (500, 502, 503)
        assert get(url)[2] == data  # the next try gets the file
    finally:
        site.set_faults(Faults())
    site.data.corrupt_first = 10**6
    try:
        corrupted = get(url)[2]
    finally:
        site.data.corrupt_first = 0
    assert len(corrupted) == len(data)
    assert corrupted != data
    assert site.stats.faults["corrupt"] >= 1


def test_wrong_md5_in_the_metadata(site: LibrivoxSite) -> None:
    book = site.catalog[SAMPLE_ID]
    name = book.low_name(book.sections[0])
    md5 = hashlib.md5(site.file_path(SAMPLE_ID, name).read_bytes()).hexdigest()

    def listed() -> str:
        files = json.loads(get(f"{site.base_url}/metadata/{book.identifier}")[2])["files"]
        return next(f["md5"] for f in files if f["name"] == name)

    site.data.wrong_md5_first = site.data.served["metadata"] + 1
    try:
        assert listed() != md5
        assert listed() == md5
    finally:
        site.data.wrong_md5_first = 0
