"""The site client against the stand-in site: answers it must survive, read with real HTTP."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokysnatcher.core.http import make_session
from tokysnatcher.errors import SourceError
from tokysnatcher.sources.tokybook import TokybookClient
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
def client(site: StandinSite) -> Iterator[TokybookClient]:
    site.set_faults(Faults())
    session = make_session(2)
    try:
        yield TokybookClient(session, site.base_url, stall_timeout=1.0, transfer_timeout=2.0)
    finally:
        session.close()


def test_a_nonsense_duration_is_unknown(client: TokybookClient) -> None:
    tracks = client.playlist(client.book("odd")).tracks
    assert [track.duration for track in tracks] == [2.0] + [None] * len(HOSTILE)


def test_a_trickled_token_renewal_fails_within_the_stall_window(
    site: StandinSite, client: TokybookClient
) -> None:
    book = client.book("odd")
    client.playlist(book)
    _, generation = client.token()
    site.set_faults(Faults(trickle={"playlist"}, trickle_bytes=1, trickle_every=0.5))
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        client.refresh_token(book, generation)
    assert caught.value.message == (
        "the site stopped sending a fresh stream token (no progress in 1 s)"
    )
    assert time.monotonic() - started < 5
