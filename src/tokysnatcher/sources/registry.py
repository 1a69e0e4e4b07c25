"""Which source a reference belongs to, opened with the run's limits and retry settings.

The only module that knows which sources exist: ``librivox:<id>`` and URLs on LibriVox's host
(librivox.org or ``librivox-url``'s) go to LibriVox, everything else to tokybook.com (or the
site ``--base-url`` names). ``--search`` asks the site ``--source`` names. Actions ask here,
never a source module, for what differs per source: reference checks, the command that reaches
a book again, and whether a recorded book lives on another host than the configured one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import requests

from tokysnatcher.config.settings import Settings
from tokysnatcher.errors import BadValue, UsageError
from tokysnatcher.sources import librivox, tokybook
from tokysnatcher.sources.api import JsonApi
from tokysnatcher.sources.source import Source


def source_name(ref: str | None, settings: Settings, recorded: str | None = None) -> str:
    """The source of ``ref`` (``recorded``: the name a manifest gives); ``--source`` without."""
    if recorded in (tokybook.SOURCE_NAME, librivox.SOURCE_NAME):
        return recorded
    if ref is None:
        return settings.source
    try:
        if librivox.is_librivox_ref(ref, settings.librivox_url):
            return librivox.SOURCE_NAME
    except BadValue as err:
        raise UsageError(f"{librivox.LIBRIVOX_SETTING}: {err.message}") from err
    return tokybook.SOURCE_NAME


def open_source(
    session: requests.Session,
    settings: Settings,
    *,
    wait: Callable[[float], bool],
    ref: str | None = None,
) -> Source:
    """The source for ``ref`` (or ``--source``), asking its API through ``session``.

    ``wait(seconds)`` sleeps between API retries and returns True when the run is stopping.
    """

    def api(root: str, site_setting: str, min_interval: float = 0.0) -> JsonApi:
        return JsonApi(
            session,
            root,
            connect_timeout=settings.connect_timeout,
            stall_timeout=settings.stall_timeout,
            transfer_timeout=settings.transfer_timeout,
            retries=settings.segment_retries,
            retry_delay=settings.segment_retry_delay,
            wait=wait,
            site_setting=site_setting,
            min_interval=min_interval,
        )

    if source_name(ref, settings) == librivox.SOURCE_NAME:
        try:
            librivox_url = librivox.librivox_root(settings.librivox_url)
            archive_url = librivox.archive_root(settings.archive_url)
        except BadValue as err:
            raise UsageError(f"librivox-url / archive-url: {err.message}") from err
        interval = settings.librivox_interval
        return librivox.LibrivoxSource(
            api(librivox_url, librivox.LIBRIVOX_SETTING, interval),
            api(archive_url, librivox.ARCHIVE_SETTING, interval),
            librivox_url=librivox_url,
            archive_url=archive_url,
            quality=settings.quality,
        )
    base_url = tokybook.normalize_base_url(settings.base_url or tokybook.DEFAULT_BASE_URL)
    return tokybook.TokybookSource(api(base_url, "--base-url"), base_url)


def check_ref(ref: str, settings: Settings) -> None:
    """Raise :class:`UsageError` unless ``ref`` is a reference some source accepts (no request)."""
    if source_name(ref, settings) == librivox.SOURCE_NAME:
        librivox.parse_ref(ref, settings.librivox_url)
    else:
        tokybook.parse_book_ref(ref, settings.base_url)


def again_ref(source_url: str, slug: str, settings: Settings, recorded: str | None = None) -> str:
    """What to download a recorded book (its page URL and site id) with again."""
    if source_name(source_url or slug, settings, recorded) == librivox.SOURCE_NAME:
        return librivox.resume_ref(source_url, slug, settings.librivox_url)[0]
    return slug or source_url


class Again(NamedTuple):
    """A command that reaches a book again: ``head`` (``[ENV=…] tokysnatcher <ref>``), then the
    caller's options, then ``site`` (the options that name the site root, maybe none)."""

    head: list[str]
    site: list[str]


def again_command(
    source_url: str,
    slug: str,
    settings: Settings,
    *,
    site_from_page: bool,
    recorded: str | None = None,
) -> Again:
    """How to reach the book again from a command line.

    ``site_from_page``: the book's page names the site root (a book on disk) rather than the
    user's own ``--base-url`` (the run that just downloaded it).
    """
    if source_name(source_url or slug, settings, recorded) == librivox.SOURCE_NAME:
        ref, env = librivox.resume_ref(
            source_url, slug, settings.librivox_url, settings.archive_url
        )
        return Again([*env, "tokysnatcher", ref], [])
    page = source_url if site_from_page else ""
    return Again(
        ["tokysnatcher", source_url or slug], tokybook.base_url_args(settings.base_url, page)
    )


def foreign_host(
    source_url: str, settings: Settings, recorded: str | None = None
) -> tuple[str, str] | None:
    """``(book host, configured host)`` when a recorded book's page is on another host than
    its source's configured one (a request there needs the user's say-so); else None."""
    if source_name(source_url, settings, recorded) == librivox.SOURCE_NAME:
        return librivox.foreign_host(source_url, settings.librivox_url)
    return tokybook.foreign_host(source_url, settings.base_url)
