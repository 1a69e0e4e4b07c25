"""The stand-in site: a local imitation of tokybook.com for the demo, the tests and benchmarks.

It follows ``shared/tokybook-api.md`` exactly, serves books whose audio is generated with ffmpeg,
and injects faults (errors, resets, stalls, latency, throttling, token expiry) deterministically
from a seed::

    with StandinSite(faults=Faults(error_rate=0.2, seed=7)) as site:
        download(site.base_url + "/post/the-sample-book")
"""

from __future__ import annotations

from tokysnatcher.standin.catalog import (
    BookSpec,
    TrackKind,
    TrackSpec,
    default_catalog,
    make_book,
)
from tokysnatcher.standin.faults import FAULT_KINDS, Faults
from tokysnatcher.standin.server import StandinSite
from tokysnatcher.standin.stats import SiteStats

__all__ = [
    "FAULT_KINDS",
    "BookSpec",
    "Faults",
    "SiteStats",
    "StandinSite",
    "TrackKind",
    "TrackSpec",
    "default_catalog",
    "make_book",
]
