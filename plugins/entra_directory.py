"""Listing an Entra tenant's users through Microsoft Graph, for imports into Okta.

Graph's "List users" (or "List group members") answers in pages linked by `@odata.nextLink`; the
pages are fetched one at a time and their users yielded one by one, so memory stays flat whatever
the tenant's size. Requests go through the source's own HTTP client (loopback rewriting for an
emulator, proxies, CA bundle) with its app-only Graph token, each answer under the source's
`max_response_bytes`. A next link is followed only to the configured Graph endpoint's origin
(or, in loopback mode, the emulator's), checked as Graph gave it, before the client rewrites it:
the token goes with every page.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from gateway.origin import foreign_origin
from gateway.upstream_body import UpstreamBodyError
from plugins.sync_bridge import run_sync

if TYPE_CHECKING:
    from plugins.azure_ad import AzureAdSource

logger = logging.getLogger(__name__)

PAGE_SIZE = 999  # Graph's maximum $top for users
MAX_ATTEMPTS = 5


class DirectoryListError(Exception):
    """Graph could not list the users; `reason` is a short machine code, the message a sentence."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


async def iter_users(
    source: AzureAdSource,
    select: Sequence[str],
    *,
    group: str | None = None,
    include_disabled: bool = False,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[dict[str, Any]]:
    """Yield every user of the tenant (or of `group`), enabled ones only unless asked."""
    fields = sorted({*select, "id", "userPrincipalName", "accountEnabled"})
    params: dict[str, str] = {"$select": ",".join(fields), "$top": str(page_size)}
    base = source.settings.graph_endpoint
    if group is None:
        url = f"{base}/v1.0/users"
        if not include_disabled:
            params["$filter"] = "accountEnabled eq true"
    else:
        # A group's members may be devices or groups too: the cast keeps users only.
        url = f"{base}/v1.0/groups/{group}/members/microsoft.graph.user"
    next_url: str | None = f"{url}?{urlencode(params)}"
    while next_url is not None:
        page = await _page(source, next_url)
        for user in page.get("value", []):
            if isinstance(user, dict) and (include_disabled or user.get("accountEnabled", True)):
                yield user
        link = page.get("@odata.nextLink")
        next_url = link if isinstance(link, str) else None
        if next_url is not None:
            _check_origin(source, next_url)


def _check_origin(source: AzureAdSource, link: str) -> None:
    """Refuse a next link outside the configured Graph endpoint (and the loopback emulator)."""
    settings = source.settings
    allowed = [settings.graph_endpoint]
    if settings.loopback:
        allowed.append(settings.authority)
    foreign = foreign_origin(link, allowed)
    if foreign is not None:
        raise DirectoryListError(
            "foreign_link",
            f"foreign_link: Graph's @odata.nextLink points to {foreign}, not to "
            f"{' or '.join(allowed)}; not followed (the Graph token would go with it)",
        )


async def get_user(source: AzureAdSource, upn: str, select: Sequence[str]) -> dict[str, Any] | None:
    """Graph's "Get user" by UPN with `select`; None when Graph has no such user (404)."""
    # `@` stays literal (Graph's documented form); anything else odd in a UPN is escaped.
    url = (
        f"{source.settings.graph_endpoint}/v1.0/users/{quote(upn, safe='@')}"
        f"?{urlencode({'$select': ','.join(select)})}"
    )
    return await _get_json(source, url, missing=None)


async def _page(source: AzureAdSource, url: str) -> dict[str, Any]:
    """One page of a listing; an unknown group is an error."""
    page = await _get_json(source, url, missing="group_not_found")
    assert page is not None
    return page


async def _get_json(
    source: AzureAdSource, url: str, *, missing: str | None
) -> dict[str, Any] | None:
    """GET a Graph object, retrying throttling (Retry-After), 5xx and an expired token.

    A 404 raises `missing` as the reason, or answers None when `missing` is None.
    """
    client = source.http_client
    assert client is not None
    for attempt in range(MAX_ATTEMPTS):
        token = await source.graph_token(refresh=attempt > 0)
        try:
            response = await run_sync(client.graph_get, url, {"Authorization": f"Bearer {token}"})
        except UpstreamBodyError as err:
            raise DirectoryListError("bad_response", f"bad_response: Graph {err}") from None
        except TimeoutError:
            seconds = source.settings.timeouts.total_seconds
            raise DirectoryListError(
                "timeout",
                f"timeout: Graph gave no whole answer within {seconds:g} s; raise the "
                f"timeouts.total_seconds of source {source.name} if its pages are that slow",
            ) from None
        status = response.status_code
        if status == 200:
            try:
                page = json.loads(response.text)
            except ValueError:
                raise DirectoryListError("bad_response") from None
            if not isinstance(page, dict):
                raise DirectoryListError("bad_response")
            return page
        if status == 404:
            if missing is None:
                return None
            raise DirectoryListError(missing)
        if status == 403:
            raise DirectoryListError("graph_forbidden")
        if status not in (401, 429) and status < 500:
            raise DirectoryListError(f"http_{status}")
        delay = _retry_after(response.headers.get("Retry-After"), attempt)
        logger.warning(
            "graph listing retried", extra={"source": source.name, "status": status, "wait": delay}
        )
        await asyncio.sleep(delay)
    raise DirectoryListError("retries_exhausted")


def _retry_after(header: str | None, attempt: int) -> float:
    try:
        seconds = float(header or "")
    except ValueError:
        return min(0.5 * 2.0**attempt, 10.0)
    return min(max(seconds, 0.0), 60.0)
