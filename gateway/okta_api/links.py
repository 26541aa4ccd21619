"""``Link`` headers (RFC 8288) as Okta paginates with them, and the request templates for buckets.

Okta sends one ``Link`` header per relation (``self`` first, then ``next``) but may also combine
them in one header; both forms, in any order, are handled here. The client follows the ``next``
URL exactly as given and never builds a cursor itself (reference/okta-hooks.md §2.5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from yarl import URL

__all__ = ["bucket_key", "next_link", "parse_links", "path_template"]

# A new link value starts at a comma followed by "<" (URLs may contain commas themselves).
_SPLIT = re.compile(r",(?=\s*<)")
_VALUE = re.compile(r"^\s*<([^>]*)>\s*(.*)$", re.DOTALL)
_PARAM = re.compile(r';\s*([A-Za-z0-9!#$&+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


def parse_links(values: Iterable[str]) -> list[tuple[str, frozenset[str]]]:
    """``(url, rels)`` for every link in the given ``Link`` header values, in order."""
    links: list[tuple[str, frozenset[str]]] = []
    for value in values:
        for part in _SPLIT.split(value):
            match = _VALUE.match(part)
            if match is None:
                continue
            rels: set[str] = set()
            for name, raw in _PARAM.findall(match.group(2)):
                if name.lower() == "rel":
                    rels.update(raw.strip('"').lower().split())
            links.append((match.group(1).strip(), frozenset(rels)))
    return links


def next_link(values: Iterable[str], base: URL) -> URL | None:
    """The ``rel="next"`` URL, resolved against ``base`` (the page's URL), or None on the last page."""
    for url, rels in parse_links(values):
        if "next" in rels and url:
            return base.join(URL(url, encoded=True))
    return None


def path_template(path: str) -> str:
    """``/api/v1/users/00u1/lifecycle/activate`` -> ``/api/v1/users/{id}/lifecycle/activate``.

    Templates name endpoints in errors, logs and rate-limit buckets; concrete paths may carry
    a login, which must stay out of logs.
    """
    parts = [part for part in path.split("/") if part]
    if parts[:2] != ["api", "v1"]:
        return "/" + "/".join(parts)
    shaped: list[str] = []
    for index, part in enumerate(parts):
        # api/v1/<collection>/<id>/<sub-collection>/<id>...; lifecycle/<verb> keeps its verb.
        is_id = index >= 3 and (index - 3) % 2 == 0 and parts[index - 1] != "lifecycle"
        shaped.append("{id}" if is_id else part)
    return "/" + "/".join(shaped)


def bucket_key(method: str, path: str) -> str:
    """The rate-limit bucket a request counts against, as far as the client can know it.

    Okta's buckets are per endpoint family and method (reference/okta-hooks.md §2.6); where its
    table says several methods share one bucket, they share one key here, so the client paces
    them together: create and list (``/api/v1/users``), the writes on one user, and everything
    under ``/api/v1/users/{id}/`` (lifecycle and the rest, UNCONFIRMED: Okta's longest match).
    Other endpoints are keyed by method and path template.
    """
    template = path_template(path)
    method = method.upper()
    if template == "/api/v1/users" and method in ("GET", "POST"):
        return "GET|POST /api/v1/users"
    if template == "/api/v1/users/{id}":
        return "GET /api/v1/users/{id}" if method == "GET" else "POST|PUT|DELETE /api/v1/users/{id}"
    if template.startswith("/api/v1/users/{id}/"):
        return "/api/v1/users/{id}/*"
    return f"{method} {template}"
