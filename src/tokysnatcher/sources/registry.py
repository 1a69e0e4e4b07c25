"""Which source a run talks to, opened with the run's limits and retry settings.

Today every reference goes to tokybook.com (or the site ``--base-url`` names); a second source
is chosen here, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from tokysnatcher.config.settings import Settings
from tokysnatcher.sources.api import JsonApi
from tokysnatcher.sources.source import Source
from tokysnatcher.sources.tokybook import DEFAULT_BASE_URL, TokybookSource, normalize_base_url


def open_source(
    session: requests.Session, settings: Settings, *, wait: Callable[[float], bool]
) -> Source:
    """The source for ``settings``, asking its API through ``session``.

    ``wait(seconds)`` sleeps between API retries and returns True when the run is stopping.
    """
    base_url = normalize_base_url(settings.base_url or DEFAULT_BASE_URL)
    api = JsonApi(
        session,
        base_url,
        connect_timeout=settings.connect_timeout,
        stall_timeout=settings.stall_timeout,
        transfer_timeout=settings.transfer_timeout,
        retries=settings.segment_retries,
        retry_delay=settings.segment_retry_delay,
        wait=wait,
    )
    return TokybookSource(api, base_url)
