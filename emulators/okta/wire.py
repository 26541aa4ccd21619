"""HTTP helpers shared by the Okta emulator's handlers: bodies, query flags, base URL, Link headers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from emulators.okta import errors

__all__ = ["base_url", "json_with_links", "link_header", "query_bool", "read_object"]


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object body, or 400 E0000003 when it is missing, not JSON, or not an object."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError):
        raise errors.bad_json() from None
    if not isinstance(body, dict):
        raise errors.bad_json()
    return body


def query_bool(request: web.Request, name: str, default: bool) -> bool:
    """A boolean query parameter (``true``/``false``, any case); 400 E0000001 for anything else."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise errors.validation_failed(name, f"{name}: must be true or false")
    return lowered == "true"


def base_url(request: web.Request) -> str:
    """The org URL as the client reached it, for ``_links`` and ``Link`` headers."""
    return str(request.url.origin())


def link_header(url: URL, rel: str) -> str:
    """One RFC 8288 ``Link`` value as Okta writes it: ``<url>; rel="next"``."""
    return f'<{url}>; rel="{rel}"'


def json_with_links(body: Any, self_url: URL, next_url: URL | None) -> web.Response:
    """A list response with Okta's pagination: ``self`` then ``next``, as separate Link headers."""
    headers: CIMultiDict[str] = CIMultiDict()
    # Okta sends one Link header per relation, self first; clients that keep only the last
    # header (the Python SDK's dict) still see "next" because of that order.
    headers.add("Link", link_header(self_url, "self"))
    if next_url is not None:
        headers.add("Link", link_header(next_url, "next"))
    return web.json_response(body, headers=headers)
