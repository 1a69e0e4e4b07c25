"""``python -m tokysnatcher.standin``: run the stand-in site until Ctrl-C.

Prints the base URL on the first line, then one book page URL per line, so that a parent process
can read where to point tokysnatcher.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from tokysnatcher.standin.faults import FAULT_KINDS, Faults
from tokysnatcher.standin.server import StandinSite


def _missing(text: str) -> tuple[str, int]:
    slug, sep, index = text.rpartition(":")
    if not sep or not index.isdigit():
        raise argparse.ArgumentTypeError(f"expected SLUG:INDEX (0-based), got {text!r}")
    return slug, int(index)


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [kind for kind in kinds if kind not in FAULT_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"fault kinds are {', '.join(FAULT_KINDS)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    """The command line of the stand-in site."""
    parser = argparse.ArgumentParser(
        prog="python -m tokysnatcher.standin",
        description="Serve a local imitation of tokybook.com (or, with --site librivox, of "
        "librivox.org and archive.org) with generated audio and faults.",
    )
    add = parser.add_argument
    add("--site", choices=("tokybook", "librivox"), default="tokybook", help="which site")
    add("--port", type=int, default=0, help="TCP port (default: any free port)")
    add("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    add("--seed", type=int, default=0, help="seed of the fault decisions")
    add("--error-rate", type=float, default=0.0, help="fraction of audio requests that fail")
    add("--error-kinds", type=_kinds, default=FAULT_KINDS, help="comma list, e.g. 5xx,429,reset")
    add("--fail-first", type=int, default=0, help="fail the first N requests of every audio path")
    add("--retry-after", type=float, default=1.0, help="Retry-After seconds of a 429")
    add("--stall-seconds", type=float, default=60.0, help="how long a stall fault stays silent")
    add("--latency", type=float, default=0.0, help="seconds added before every response")
    add("--connection-setup", type=float, default=0.0, help="delay on each new connection (s)")
    add("--bandwidth", type=float, default=None, help="bytes/second per response (connection)")
    add("--total-bandwidth", type=float, default=None, help="bytes/second over all responses")
    add("--max-concurrent", type=int, default=None, help="429 above N audio requests at once")
    add("--outage-at", type=float, default=0.0, help="the site goes down this many s after start")
    add("--outage-seconds", type=float, default=0.0, help="...for this long (resets everything)")
    add("--token-ttl", type=float, default=None, help="seconds a stream token stays valid")
    add("--token-max-uses", type=int, default=None, help="audio requests a token allows")
    add("--api-error-rate", type=float, default=0.0, help="fraction of JSON API calls that 503")
    add("--missing", type=_missing, action="append", default=[], help="SLUG:INDEX answers 404")
    add("--ignore-range", action="store_true", help="answer Range requests with the whole file")
    add("--validator-epoch", type=int, default=0, help="another N: every file has changed")
    add("--redirect-media", action="store_true", help="302 files and segments to a second host")
    add("--cache-dir", default=None, help="where generated media is cached")
    add("--ffmpeg", default=None, help="ffmpeg binary used to generate media")
    add("-v", "--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the site until interrupted; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        faults = Faults(
            seed=args.seed,
            error_rate=args.error_rate,
            error_kinds=args.error_kinds,
            fail_first=args.fail_first,
            retry_after=args.retry_after,
            stall_seconds=args.stall_seconds,
            latency=args.latency,
            connection_setup=args.connection_setup,
            bandwidth=args.bandwidth,
            total_bandwidth=args.total_bandwidth,
            max_concurrent=args.max_concurrent,
            outage_at=args.outage_at,
            outage_seconds=args.outage_seconds,
            token_ttl=args.token_ttl,
            token_max_uses=args.token_max_uses,
            api_error_rate=args.api_error_rate,
            missing_tracks=frozenset(args.missing),
            ignore_range=args.ignore_range,
            validator_epoch=args.validator_epoch,
            redirect_media=args.redirect_media,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.site == "librivox":
        from tokysnatcher.standin.librivox.server import LibrivoxSite

        lv_site = LibrivoxSite(
            faults=faults,
            cache_dir=args.cache_dir,
            ffmpeg=args.ffmpeg,
            port=args.port,
            verbose=args.verbose,
        )

        def lv_lines() -> list[str]:
            return [
                f"{lv_site.book_url(book_id)}\tlibrivox:{book_id} {book.title!r}"
                for book_id, book in lv_site.catalog.items()
            ]

        def lv_note() -> str:
            env = " ".join(f"{name}={value}" for name, value in lv_site.env().items())
            return f"point tokysnatcher at it with {env}"

        return _serve(lv_site, lv_lines, lv_note)
    site = StandinSite(
        faults=faults,
        cache_dir=args.cache_dir,
        ffmpeg=args.ffmpeg,
        port=args.port,
        host=args.host,
        verbose=args.verbose,
    )

    def lines() -> list[str]:
        return [
            f"{site.book_url(slug)}\t{book.title!r} ({len(book.tracks)} tracks)"
            for slug, book in site.catalog.items()
        ]

    return _serve(site, lines, str)


class _Site(Protocol):
    @property
    def base_url(self) -> str: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


def _serve(site: _Site, lines: Callable[[], list[str]], note: Callable[[], str]) -> int:
    """Start ``site``, print its root and ``lines()`` (one book each), serve until stopped.

    ``note()`` is said on stderr once the site runs (how to use it).
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        site.start()
    except OSError as err:
        print(f"error: cannot start the stand-in site: {err}", file=sys.stderr)
        return 1
    try:
        print(site.base_url, flush=True)
        for line in lines():
            print(line, flush=True)
        said = note()
        print(f"Serving; {said + '; ' if said else ''}press Ctrl-C to stop.", file=sys.stderr)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        site.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
