"""The tokybook source against the stand-in site: answers it must survive, read with real HTTP."""

from __future__ import annotations

import http.server
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokysnatcher.errors import SourceError
from tokysnatcher.net.http import make_session
from tokysnatcher.sources.api import JsonApi
from tokysnatcher.sources.tokybook import TokybookSource
from tokysnatcher.standin import BookSpec, Faults, StandinSite, TrackSpec

HOSTILE = (math.nan, math.inf, -math.inf, 1e308, 0.0, -5.0, 8 * 24 * 3600.0)


@pytest.fixture(scope="module")
def site(standin_cache: Path) -> Iterator[StandinSite]:
    tracks = [TrackSpec(title="Honest", seconds=2.0)]
    tracks += [TrackSpec(title=f"Odd {d}", seconds=2.0, declared_duration=d) for d in HOSTILE]
    book = BookSpec(slug="odd", title="Odd", tracks=tracks)
    with StandinSite(catalog={"odd": book}, cache_dir=standin_cache) as running:
        yield running


@pytest.fixture
def client(site: StandinSite) -> Iterator[TokybookSource]:
    site.set_faults(Faults())
    session = make_session(2)
    # No retries: these tests are about what one answer does.
    api = JsonApi(session, site.base_url, stall_timeout=1.0, transfer_timeout=2.0, retries=0)
    try:
        yield TokybookSource(api, site.base_url)
    finally:
        session.close()


def test_a_nonsense_duration_is_unknown(client: TokybookSource) -> None:
    tracks = client.resolve("odd")[1].tracks
    assert [track.duration for track in tracks] == [2.0] + [None] * len(HOSTILE)


def test_a_trickled_token_renewal_fails_within_the_stall_window(
    site: StandinSite, client: TokybookSource
) -> None:
    client.resolve("odd")
    generation = client.headers_generation()
    site.set_faults(Faults(trickle={"playlist"}, trickle_bytes=1, trickle_every=0.5))
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        client.renew_headers(generation)
    assert caught.value.message == (
        "the site stopped sending a fresh stream token (no progress in 1 s)"
    )
    assert time.monotonic() - started < 5


def test_an_answer_nested_past_the_parser_limit_is_one_line() -> None:
    """JSON nested 100,000 deep breaks the parser with RecursionError: refused, not a crash."""

    class Deep(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"[" * 100_000 + b"]" * 100_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deep)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    session = make_session(2)
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        client = TokybookSource(JsonApi(session, base_url), base_url)
        with pytest.raises(SourceError) as caught:
            client.resolve("deep")
        assert (
            caught.value.message
            == "the site's answer for the book details is nested too deep; refused"
        )
    finally:
        session.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
