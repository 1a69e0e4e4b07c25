"""--speed-limit: one token bucket over all connections, smooth from second to second.

The rate is measured where it cannot be faked: on the server, from the bytes it has sent,
sampled every 50 ms while the real command downloads a book of about a megabyte.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import fast_options, run_cli
from tokysnatcher.standin import StandinSite, make_book

pytestmark = pytest.mark.integration

LIMIT = 150 * 1024  # --speed-limit 150K


@pytest.fixture(scope="module")
def big_site(standin_cache: Path) -> Iterator[StandinSite]:
    # 4 chapters x 30 s of 64 kbit/s audio in 1 s segments: about 1.1 MB, 7 s at the limit.
    book = make_book(
        "long-listen", title="Long Listen", chapters=4, chapter_seconds=30, segment_seconds=1
    )
    with StandinSite(catalog={book.slug: book}, cache_dir=standin_cache) as running:
        yield running


class ServerMeter:
    """Samples the site's sent-byte counter in a thread."""

    def __init__(self, site: StandinSite, every: float = 0.05) -> None:
        self.site = site
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.site.stats.bytes_sent))
            self._stop.wait(self.every)

    def __enter__(self) -> ServerMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sent_between(self, start: float, end: float) -> int:
        times = [t for t, _ in self.samples]

        def at(moment: float) -> int:
            index = bisect.bisect_right(times, moment) - 1
            return self.samples[max(0, index)][1]

        return at(end) - at(start)


def test_speed_limit_holds_on_average_and_every_second(
    big_site: StandinSite, tmp_path: Path
) -> None:
    big_site.stats.reset()
    with ServerMeter(big_site) as meter:
        options = ["--speed-limit", "150K", "--format", "m4a", "-q"]
        result = run_cli(["long-listen", *options, *fast_options(big_site, tmp_path)])
    assert result.returncode == 0, result.stderr
    total = meter.samples[-1][1]
    first = next(t for t, sent in meter.samples if sent > 0)
    last = next(t for t, sent in meter.samples if sent == total)
    seconds = last - first
    assert total > 1_000_000
    assert seconds > 5  # long enough for the average to mean something
    assert total / seconds <= LIMIT * 1.1, f"{total / seconds / 1024:.1f} KiB/s on average"
    # No second (a sliding window, moved by 50 ms) carries more than twice the limit.
    worst = max(
        meter.sent_between(start, start + 1.0) for start, _ in meter.samples if start < last
    )
    assert worst <= 2 * LIMIT, f"{worst / 1024:.1f} KiB in one second"
    # And the limit is a cap, not a brake: the book comes at close to the allowed rate.
    assert total / seconds >= LIMIT * 0.6
