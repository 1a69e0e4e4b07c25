"""What ``--doctor`` asks of a site's host: DNS, TLS, and a timed API call, as ``HealthStep`` rows.

Every source runs the same steps against its own roots (``Source.health``); only the API call
and the hint that names how to point the source elsewhere differ.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from tokysnatcher.errors import SourceError
from tokysnatcher.sources.source import HealthStep


def host_health(
    root: str, ask: Callable[[], object] | None, *, connect_timeout: float, elsewhere: str
) -> list[HealthStep]:
    """DNS, then TLS (https), then ``ask()`` (an API call; None: none), each a row.

    Stops at the first step that fails. ``elsewhere`` says how to choose another root.
    """
    parts = urlsplit(root)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    site = parts.netloc
    offline = f"Check the network connection; {elsewhere}."
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return [HealthStep(f"{site}: DNS", False, f"{host} does not resolve", offline)]
    addresses = sorted({str(info[4][0]) for info in found})
    steps = [HealthStep(f"{site}: DNS", True, f"{host} is {', '.join(addresses[:3])}")]
    if parts.scheme == "https":
        steps.append(_tls(site, host, port, connect_timeout, offline, elsewhere))
        if not steps[-1].ok:
            return steps
    if ask is None:
        return steps
    started = time.monotonic()
    try:
        ask()
    except SourceError as err:
        return [*steps, HealthStep(f"{site}: API", False, err.message, err.hint)]
    took = 1000 * (time.monotonic() - started)
    return [*steps, HealthStep(f"{site}: API", True, f"answered JSON in {took:.0f} ms")]


def _tls(
    site: str, host: str, port: int, timeout: float, offline: str, elsewhere: str
) -> HealthStep:
    """A TLS handshake with the certificate checked against the bundle requests uses."""
    import ssl  # here: only --doctor needs it, and it costs every start-up some milliseconds

    import certifi

    name = f"{site}: TLS"
    context = ssl.create_default_context(cafile=certifi.where())
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            version = tls.version() or "TLS"
    except ssl.SSLCertVerificationError as err:
        return HealthStep(
            name,
            False,
            f"the certificate of {host} is not valid ({err.verify_message})",
            "The clock may be wrong, or something on the network intercepts secure "
            f"connections; {elsewhere}.",
        )
    except ssl.SSLError as err:
        return HealthStep(
            name, False, f"the secure connection failed ({err.reason or err})", offline
        )
    except OSError as err:
        return HealthStep(
            name, False, f"could not connect to {site} ({err.strerror or err})", offline
        )
    return HealthStep(name, True, f"{version}, certificate valid")
