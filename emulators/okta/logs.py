"""System Log API: ``GET /api/v1/logs`` (OpenAPI ``listLogEvents``), to backfill missed events.

Parameters as the spec lists them:

* ``since`` / ``until``: ISO 8601 bounds on ``published`` (``since`` inclusive, default 7 days
  before ``until``; ``until`` exclusive, default now); a malformed value is 400 E0000001;
* ``filter``: a SCIM expression over the event (``eventType eq "user.import.password"``,
  ``outcome.result eq "FAILURE"``, ``target.id eq "00u..."``, ``published gt "..."``); ``eq``,
  ``sw``, ``co`` and orderings, ``and``/``or``, parentheses; values compared case-sensitively;
  an array (``target``) matches when any element does; anything else is 400 E0000031;
* ``q``: space-separated keywords, each found case-insensitively in the event type, display
  message, outcome or an actor/target id, login or name;
* ``limit``: 0 to 1000, default 100; ``sortOrder``: ASCENDING (default) or DESCENDING;
* ``after``: the opaque cursor of the ``next`` link (never build one; follow the link).

Paging as Okta does it: a request without ``until`` is a *polling* request, whose answer always
carries ``Link: <...>; rel="next"`` (an empty page included), so a client can poll the same link
for new events; a *bounded* request (``until`` given, or DESCENDING) has a next link only while
more events match. The ``self`` link comes first, as on every Okta list.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from emulators.okta import errors, search
from emulators.okta.oauth import requires
from emulators.okta.state import EMULATOR_KEY
from emulators.okta.system_log import parse_cursor
from emulators.okta.wire import json_with_links

__all__ = ["list_logs"]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
DEFAULT_WINDOW: Final = 7 * 24 * 3600.0


def _time(request: web.Request, name: str) -> float | None:
    """An ISO 8601 query parameter as epoch seconds (a value without an offset is UTC)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.validation_failed(name, f"{name}: must be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _limit(request: web.Request) -> int:
    """``limit``: 0 to 1000."""
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise errors.validation_failed("limit", "limit: must be an integer") from None
    if not 0 <= value <= MAX_LIMIT:
        raise errors.validation_failed("limit", "limit: must be between 0 and 1000")
    return value


def _haystack(event: dict[str, Any]) -> str:
    """What ``q`` keywords are looked for in, case-folded."""
    parts: list[Any] = [
        event.get("eventType"),
        event.get("displayMessage"),
        (event.get("outcome") or {}).get("result"),
    ]
    for entity in [event.get("actor") or {}, *(event.get("target") or [])]:
        parts.extend(entity.get(name) for name in ("id", "alternateId", "displayName"))
    return " ".join(str(part) for part in parts if part).casefold()


def _walk(value: Any, path: str) -> Any:
    """Follow a dotted path through objects; None where it leads nowhere."""
    for name in path.split(".") if path else []:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _lookup(event: dict[str, Any], attribute: str) -> Any:
    """The value a filter attribute names; through ``target`` (an array) the list of values."""
    head, _, rest = attribute.partition(".")
    value = event.get(head)
    if isinstance(value, list):
        return [_walk(item, rest) for item in value]
    return _walk(value, rest)


@requires("okta.logs.read")
async def list_logs(request: web.Request) -> web.Response:
    """``GET /api/v1/logs``."""
    emulator = request.app[EMULATOR_KEY]
    query = request.query
    now = emulator.clock()
    order = query.get("sortOrder", "ASCENDING")
    if order not in ("ASCENDING", "DESCENDING"):
        raise errors.validation_failed("sortOrder", "sortOrder: must be ASCENDING or DESCENDING")
    descending = order == "DESCENDING"
    until = _time(request, "until")
    polling = until is None and not descending
    since = _time(request, "since")
    if since is None:
        since = (until if until is not None else now) - DEFAULT_WINDOW
    if until is None and descending:
        until = now
    limit = _limit(request)
    after: int | None = None
    if query.get("after"):
        after = parse_cursor(query["after"])
        if after is None:
            raise errors.validation_failed("after", "after: The cursor is not valid")
    predicate = search.parse(query["filter"], "logs") if query.get("filter") else None
    keywords = [word.casefold() for word in query.get("q", "").split()]

    def matches(event: dict[str, Any]) -> bool:
        if predicate is not None and not predicate(lambda name: _lookup(event, name)):
            return False
        if keywords:
            haystack = _haystack(event)
            return all(word in haystack for word in keywords)
        return True

    page = emulator.system_log.query(
        since=since, until=until, after=after, matches=matches, limit=limit, descending=descending
    )
    next_url = None
    if page.more or polling:
        params = {k: v for k, v in query.items() if k != "after"}
        cursor = page.last_cursor or query.get("after")
        if cursor:
            params["after"] = cursor
        next_url = request.url.with_query(params)
    return json_with_links(page.events, request.url, next_url)
