"""Every fault kind is observable by a client, and faults are reproducible from a seed."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable

import pytest
import requests

from tokysnatcher.standin import Faults, StandinSite
from tokysnatcher.standin.faults import decide

from .support import BookClient, SiteFactory

OpenBook = Callable[[StandinSite, str], BookClient]


def first_request_fails_with(kind: str, **more: float) -> Faults:
    return Faults(fail_first=1, error_kinds=(kind,), **more)  # type: ignore[arg-type]


def test_5xx_then_success(make_site: SiteFactory, open_book: OpenBook) -> None:
    site = make_site(first_request_fails_with("5xx"))
    book = open_book(site, "tiny")
    path = book.segment_path(0, 0)

    assert book.get(path).status_code in (500, 502, 503)
    assert book.get(path).status_code == 200
    assert site.stats.faults["5xx"] == 1


def test_429_carries_retry_after_in_whole_seconds(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site(first_request_fails_with("429", retry_after=1.5))
    book = open_book(site, "tiny")

    answer = book.get(book.playlist_path(0))

    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert book.get(book.playlist_path(0)).status_code == 200


def test_reset_breaks_the_connection(make_site: SiteFactory, open_book: OpenBook) -> None:
    site = make_site(first_request_fails_with("reset"))
    book = open_book(site, "tiny")

    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        book.get(book.segment_path(0, 0))

    assert site.stats.faults["reset"] == 1
    assert book.get(book.segment_path(0, 0)).status_code == 200


def test_truncate_sends_fewer_bytes_than_content_length(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site(first_request_fails_with("truncate"))
    book = open_book(site, "tiny")
    path = book.segment_path(0, 1)
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=5)
    connection.request("GET", path, headers=book.headers(path))
    response = connection.getresponse()
    promised = int(response.getheader("Content-Length") or 0)

    with pytest.raises(http.client.IncompleteRead) as short:
        response.read()

    connection.close()
    assert 0 <= len(short.value.partial) < promised
    assert promised == len(book.get(path).content)


def test_stall_makes_a_short_client_timeout_fire(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site(first_request_fails_with("stall"))
    book = open_book(site, "tiny")
    started = time.monotonic()

    with pytest.raises((requests.ReadTimeout, requests.ConnectionError)):
        book.get(book.segment_path(0, 0), timeout=0.3).content  # noqa: B018 - read the body

    assert time.monotonic() - started < 3
    assert site.stats.faults["stall"] == 1


def test_latency_delays_every_response(make_site: SiteFactory, open_book: OpenBook) -> None:
    site = make_site(Faults(latency=0.3))
    started = time.monotonic()
    book = open_book(site, "tiny")  # two API calls

    assert time.monotonic() - started >= 0.6
    site.set_faults(Faults())
    started = time.monotonic()
    assert book.get(book.segment_path(0, 0)).status_code == 200
    assert time.monotonic() - started < 0.3


def test_bandwidth_throttles_a_body(make_site: SiteFactory) -> None:
    site = make_site(Faults(bandwidth=64_000))
    source = site.source_media("tiny-direct", 0).read_bytes()
    started = time.monotonic()

    answer = requests.get(site.base_url + "/files/tiny-direct/01.mp3", timeout=10)

    assert answer.content == source
    assert time.monotonic() - started >= 0.8 * len(source) / 64_000


def test_connection_setup_delays_only_new_connections(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site()
    book = open_book(site, "tiny")
    site.set_faults(Faults(connection_setup=0.4))
    session = requests.Session()
    url = site.base_url + "/files/tiny-direct/01.mp3"

    started = time.monotonic()
    session.get(url, timeout=5)
    first = time.monotonic() - started
    started = time.monotonic()
    session.get(url, timeout=5)
    second = time.monotonic() - started

    assert first >= 0.4
    assert second < 0.3
    assert book.get(book.segment_path(0, 0)).status_code == 200  # its connection predates it


def test_api_error_rate_fails_the_json_api(make_site: SiteFactory) -> None:
    site = make_site(Faults(api_error_rate=1.0))

    answer = requests.post(
        site.base_url + "/api/v1/search/post-details", json={"dynamicSlugId": "tiny"}, timeout=5
    )

    assert answer.status_code == 503
    assert site.stats.faults["api_error"] == 1


def test_error_rate_hits_about_that_share_of_requests(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site(Faults(error_rate=0.3, error_kinds=("5xx",), seed=11))
    book = open_book(site, "tiny")

    statuses = [book.get(book.segment_path(0, 0)).status_code for _ in range(200)]

    failures = sum(status >= 500 for status in statuses)
    assert 30 <= failures <= 90
    assert site.stats.faults["5xx"] == failures


def statuses_of(site: StandinSite, book: BookClient, count: int) -> list[int]:
    return [book.get(book.segment_path(0, n % 2)).status_code for n in range(count)]


def test_same_seed_gives_the_same_faults(make_site: SiteFactory, open_book: OpenBook) -> None:
    faults = Faults(seed=42, error_rate=0.5, error_kinds=("5xx", "429"))
    first_site, second_site = make_site(faults), make_site(faults)

    first = statuses_of(first_site, open_book(first_site, "tiny"), 30)
    second = statuses_of(second_site, open_book(second_site, "tiny"), 30)
    second_site.set_faults(Faults(seed=43, error_rate=0.5, error_kinds=("5xx", "429")))
    other_seed = statuses_of(second_site, open_book(second_site, "tiny"), 30)

    assert first == second
    assert first != other_seed
    assert {200, 429} <= set(first)
    log = first_site.stats.fault_log
    assert all(decide(faults, event.path, event.previous) is not None for event in log)


def test_set_faults_restarts_the_per_path_counts(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site(first_request_fails_with("5xx"))
    book = open_book(site, "tiny")
    path = book.playlist_path(0)
    assert book.get(path).status_code >= 500

    site.set_faults(first_request_fails_with("429"))

    assert book.get(path).status_code == 429
    assert book.get(path).status_code == 200


def test_faults_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=1.5)
    with pytest.raises(ValueError, match="error_kinds"):
        Faults(error_kinds=("explode",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bandwidth"):
        Faults(bandwidth=0)
    with pytest.raises(ValueError, match="trickle"):
        Faults(trickle_bytes=0)
    with pytest.raises(ValueError, match="total_bandwidth"):
        Faults(total_bandwidth=-1)
    with pytest.raises(ValueError, match="max_concurrent"):
        Faults(max_concurrent=0)
    with pytest.raises(ValueError, match="outage_seconds"):
        Faults(outage_seconds=-1)


def test_a_total_cap_is_shared_by_every_response(make_site: SiteFactory) -> None:
    site = make_site(Faults(total_bandwidth=128_000))
    url = site.base_url + "/files/tiny-direct/01.mp3"
    size = len(site.source_media("tiny-direct", 0).read_bytes())
    started = time.monotonic()
    threads = [threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 10})
               for _ in range(3)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Three bodies at once take as long as three in a row would at the cap.
    assert time.monotonic() - started >= 0.8 * 3 * size / 128_000


def test_more_concurrent_audio_requests_than_allowed_get_429(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site()
    book = open_book(site, "tiny")
    site.set_faults(Faults(max_concurrent=1, bandwidth=20_000, retry_after=2.0))
    slow = threading.Thread(target=book.get, args=(book.segment_path(0, 0),))
    slow.start()
    time.sleep(0.2)
    answer = book.get(book.segment_path(0, 1))
    slow.join()
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert book.get(book.segment_path(0, 1)).status_code == 200


def test_an_outage_resets_every_request_for_its_window(
    make_site: SiteFactory, open_book: OpenBook
) -> None:
    site = make_site()
    book = open_book(site, "tiny")
    site.set_faults(Faults(outage_at=0.0, outage_seconds=0.5))
    with pytest.raises(requests.ConnectionError):
        book.get(book.segment_path(0, 0))
    with pytest.raises(requests.ConnectionError):
        requests.get(site.base_url + "/", timeout=5)
    assert site.stats.faults["outage"] >= 2
    time.sleep(0.6)
    assert book.get(book.segment_path(0, 0)).status_code == 200


def test_a_trickled_kind_sends_its_body_a_piece_at_a_time(make_site: SiteFactory) -> None:
    site = make_site(Faults(trickle={"details"}, trickle_bytes=40, trickle_every=0.2))
    url = f"{site.base_url}/api/v1/search/post-details"
    started = time.monotonic()
    with requests.post(url, json={"dynamicSlugId": "tiny"}, stream=True, timeout=5) as answer:
        first = answer.raw.read(40)
        body = first + answer.raw.read()
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert len(first) == 40
    assert b'"dynamicSlugId": "tiny"' in body
    # One pause per piece: the whole answer takes (pieces x 0.2 s).
    assert elapsed >= 0.2 * (len(body) // 40) - 0.1
    # Only the named kind trickles: the search answers at once.
    started = time.monotonic()
    requests.post(f"{site.base_url}/api/v1/search", json={"query": "tiny"}, timeout=5)
    assert time.monotonic() - started < 0.5


def test_client_disconnects_and_faults_print_nothing(
    make_site: SiteFactory, open_book: OpenBook, capfd: pytest.CaptureFixture[str]
) -> None:
    site = make_site(Faults(fail_first=1, error_kinds=("reset", "truncate")))
    book = open_book(site, "tiny")
    for segment in range(2):
        try:
            book.get(book.segment_path(0, segment)).close()
        except requests.RequestException:
            pass
    site.set_faults(Faults(bandwidth=20_000))
    slow = requests.get(site.base_url + "/files/tiny-direct/01.mp3", stream=True, timeout=5)
    slow.raw.read(100)
    slow.close()  # hang up mid-body
    time.sleep(0.1)

    assert capfd.readouterr().err == ""
