"""Links an answer hands back are followed only to the origin we were configured with.

A paging link (`@odata.nextLink`, `Link: rel="next"`) or a discovered URL is followed with the
same credential as the page that named it, so a link to another scheme, host or port would hand
that credential to whoever the answer chose. Compare the link exactly as the answer gave it,
before any loopback rewrite: the rewrite would make every host look like ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["foreign_origin", "origin_of"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """`scheme://host:port` of `url`, lower-cased, with the scheme's default port written out.

    An unparsable URL (a bad port, no host) is its own origin: it then matches nothing.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host:
        return url
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}" if port is not None else f"{scheme}://{shown}"


def foreign_origin(url: str, allowed: Iterable[str]) -> str | None:
    """The origin of `url` when it is none of the `allowed` URLs' origins, else None."""
    found = origin_of(url)
    if any(found == origin_of(base) for base in allowed):
        return None
    return found
