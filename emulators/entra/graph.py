"""Microsoft Graph `users` and `groups` endpoints for the Entra emulator.

* `GET /v1.0/users?$filter=...`: Graph v1.0 "List users", for username resolution
* `GET /v1.0/users?$top=N[&$filter=accountEnabled eq true]`: "List users", every user, in pages
  linked by `@odata.nextLink` (as Graph does: default 100, at most 999 a page), for imports
* `GET /v1.0/users/{id or userPrincipalName}`: Graph v1.0 "Get user"
* `GET /v1.0/groups/{id}/members[/microsoft.graph.user]`: "List group members", paged the same way

Served by the same emulator app (a loopback gateway sends every URL to one base). Supports the
`$filter` forms the gateway uses (`userPrincipalName eq`, `mail eq`, `proxyAddresses/any`), `$select`
and `$count`, and app-only bearer tokens from the emulator's client-credentials grant. As in real
Graph, a lambda filter on `proxyAddresses` needs the advanced query parameters
(`ConsistencyLevel: eventual` and `$count=true`), and errors use Graph's error resource
(`error.code`, `error.message`, `error.innerError`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from typing import Any

from aiohttp import web

from emulators.entra.directory import EmulatedUser
from emulators.entra.state import EmulatorState

GRAPH_AUDIENCE = "https://graph.microsoft.com"
_QUOTED = r"'((?:[^']|'')*)'"
_EQ = re.compile(rf"\b(userPrincipalName|mail|id)\s+eq\s+{_QUOTED}", re.IGNORECASE)
_ANY = re.compile(rf"\bproxyAddresses/any\((\w+):\s*\1\s+eq\s+{_QUOTED}\)", re.IGNORECASE)
_DEFAULT_SELECT = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip  # Graph v1.0's default property set for users
_ENABLED = re.compile(r"^\s*accountEnabled\s+eq\s+(true|false)\s*$", re.IGNORECASE)
DEFAULT_PAGE = 100
MAX_PAGE = 999


def _graph_error(status: int, code: str, message: str) -> web.Response:
    """Graph's error shape."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": str(uuid.uuid4()),
            },
        }
    }
    return web.json_response(body, status=status)


def _claims(token: str) -> dict[str, Any] | None:
    """Decode an (unsigned) emulator JWT's claims; None when it is not one."""
    parts = token.split(".")
    if len(parts) < 2:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _unauthorized(emulator: EmulatorState, request: web.Request) -> web.Response | None:
    """401 unless the request carries a live app token the emulator issued for Graph."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    claims = _claims(token) if scheme.lower() == "bearer" else None
    if (
        claims is None
        or claims.get("aud") != GRAPH_AUDIENCE
        or claims.get("appid") != emulator.directory.client_id
        or not isinstance(claims.get("exp"), int)
        or claims["exp"] <= time.time()
    ):
        return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
    return None


def _unquote(value: str) -> str:
    return value.replace("''", "'")


def _user_json(emulator: EmulatorState, user: EmulatedUser, select: list[str]) -> dict[str, Any]:
    full = {
        "id": emulator.object_id(user),
        "displayName": user.display_name or user.username,
        "mail": user.mail,
        "userPrincipalName": user.username,
        "proxyAddresses": list(user.proxy_addresses),
        "givenName": user.given_name,
        "surname": user.surname,
        "jobTitle": user.job_title,
        "department": user.department,
        "mobilePhone": user.mobile_phone,
        "employeeId": user.employee_id,
        "accountEnabled": user.account_enabled,
        "businessPhones": [],
        "officeLocation": None,
        "preferredLanguage": None,
    }
    # Graph answers null for a selected property the user does not have.
    return {key: full.get(key) for key in select}


def _select(request: web.Request) -> list[str]:
    raw = request.query.get("$select")
    return [s.strip() for s in raw.split(",") if s.strip()] if raw else list(_DEFAULT_SELECT)


async def handle_users(emulator: EmulatorState, request: web.Request) -> web.Response:
    """`GET /v1.0/users?$filter=...`: users matching any of the equality clauses."""
    emulator.requests_by_kind["graph"] += 1
    denied = _unauthorized(emulator, request)
    if denied is not None:
        return denied
    expression = request.query.get("$filter", "")
    enabled = _ENABLED.fullmatch(expression)
    if not expression or enabled:
        wanted = None if enabled is None else enabled.group(1).lower() == "true"
        users = [
            u for u in emulator.directory.users if wanted is None or u.account_enabled is wanted
        ]
        return _page(emulator, request, users, f"{GRAPH_AUDIENCE}/v1.0/$metadata#users")
    eq = [(field.lower(), _unquote(value).lower()) for field, value in _EQ.findall(expression)]
    proxies = [_unquote(value).lower() for _, value in _ANY.findall(expression)]
    if not eq and not proxies:
        return _graph_error(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter.")
    advanced = request.headers.get("ConsistencyLevel", "").lower() == "eventual"
    if proxies and not (advanced and request.query.get("$count") == "true"):
        # Real Graph needs advanced query parameters for lambda filters on proxyAddresses.
        return _graph_error(
            400, "Request_UnsupportedQuery", "Unsupported query: use ConsistencyLevel and $count."
        )
    matches = []
    for user in emulator.directory.users:
        values = {
            "userprincipalname": user.username.lower(),
            "mail": (user.mail or "").lower(),
            "id": emulator.object_id(user),
        }
        addresses = {a.lower() for a in user.proxy_addresses}
        if any(values[field] == value for field, value in eq) or any(
            p in addresses for p in proxies
        ):
            matches.append(_user_json(emulator, user, _select(request)))
    body: dict[str, Any] = {"@odata.context": f"{GRAPH_AUDIENCE}/v1.0/$metadata#users"}
    if request.query.get("$count") == "true":
        body["@odata.count"] = len(matches)
    body["value"] = matches
    return web.json_response(body)


async def handle_group_members(emulator: EmulatorState, request: web.Request) -> web.Response:
    """`GET /v1.0/groups/{id}/members` (and its `/microsoft.graph.user` cast): paged members."""
    emulator.requests_by_kind["graph"] += 1
    denied = _unauthorized(emulator, request)
    if denied is not None:
        return denied
    group = request.match_info["group_id"].lower()
    members = [u for u in emulator.directory.users if group in (g.lower() for g in u.groups)]
    if not members:
        return _graph_error(
            404,
            "Request_ResourceNotFound",
            f"Resource '{group}' does not exist or one of its queried reference-property "
            "objects are not present.",
        )
    context = f"{GRAPH_AUDIENCE}/v1.0/$metadata#directoryObjects"
    return _page(emulator, request, members, context, odata_type=True)


def _page(
    emulator: EmulatorState,
    request: web.Request,
    users: list[EmulatedUser],
    context: str,
    *,
    odata_type: bool = False,
) -> web.Response:
    """One page of `users`, with `@odata.nextLink` when more follow (an opaque $skiptoken)."""
    try:
        top = min(int(request.query.get("$top", DEFAULT_PAGE)), MAX_PAGE)
        start = int(request.query.get("$skiptoken", "0"), 16)
    except ValueError:
        return _graph_error(400, "Request_BadRequest", "Invalid $top or $skiptoken.")
    if top < 1:
        return _graph_error(400, "Request_BadRequest", "Invalid $top.")
    select = _select(request)
    values = []
    for user in users[start : start + top]:
        item = _user_json(emulator, user, select)
        if odata_type:
            item = {"@odata.type": "#microsoft.graph.user", **item}
        values.append(item)
    body: dict[str, Any] = {"@odata.context": context}
    if start + top < len(users):
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = format(start + top, "x")
        body["@odata.nextLink"] = str(request.url.with_query(query))
    body["value"] = values
    return web.json_response(body)


async def handle_user(emulator: EmulatorState, request: web.Request) -> web.Response:
    """`GET /v1.0/users/{id or userPrincipalName}`."""
    emulator.requests_by_kind["graph"] += 1
    denied = _unauthorized(emulator, request)
    if denied is not None:
        return denied
    wanted = request.match_info["user_id"].lower()
    for user in emulator.directory.users:
        if wanted in (user.username.lower(), emulator.object_id(user)):
            return web.json_response(_user_json(emulator, user, _select(request)))
    return _graph_error(404, "Request_ResourceNotFound", "Resource does not exist.")
