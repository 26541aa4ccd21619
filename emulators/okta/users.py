"""Users API: create, list (``limit``/``after``/``search``/``filter``/``q``), get, update, replace, delete.

Shapes, parameters and status codes from the OpenAPI spec operations ``createUser``, ``listUsers``,
``getUser``, ``updateUser`` (POST, partial), ``replaceUser`` (PUT, full) and ``deleteUser``.
Pagination: ``limit`` defaults to 200 and is capped there, ``after`` is the id of the last user of
the previous page, and each page carries ``Link: <...>; rel="self"`` and, while more users match,
a separate ``Link: <...after=...>; rel="next"``. A plain list omits DEPROVISIONED users;
``search`` and ``filter`` include them; ``q`` (prefix of firstName, lastName or email) omits them,
defaults to 10 results and never paginates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from emulators.okta import errors, search
from emulators.okta.hashes import check_hash
from emulators.okta.models import Credential, Status, UserRecord
from emulators.okta.oauth import requires
from emulators.okta.state import EMULATOR_KEY
from emulators.okta.wire import base_url, json_with_links, query_bool, read_object

__all__ = [
    "create_user",
    "delete_user",
    "get_user",
    "list_users",
    "parse_credentials",
    "replace_user",
    "update_user",
]

MAX_LIMIT: Final = 200
Q_DEFAULT_LIMIT: Final = 10


def parse_credentials(raw: Any) -> tuple[Credential | None, str | None]:
    """The password credential kind and recovery question a body sets (values are dropped)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise errors.validation_failed("credentials", "credentials: must be an object")
    question: str | None = None
    recovery = raw.get("recovery_question")
    if isinstance(recovery, dict) and isinstance(recovery.get("question"), str):
        question = recovery["question"]
    password = raw.get("password")
    if password is None or password == {}:
        return None, question
    if not isinstance(password, dict):
        raise errors.validation_failed("password", "password: must be an object")
    given = [name for name in ("value", "hash", "hook") if password.get(name) is not None]
    if len(given) > 1:
        raise errors.validation_failed(
            "password", "password: Only one of value, hash or hook can be specified"
        )
    if not given:
        return None, question
    kind = given[0]
    if kind == "hook":
        hook = password["hook"]
        if not isinstance(hook, dict) or hook.get("type") != "default":
            raise errors.validation_failed(
                "hook", "hook.type: The password hook type must be 'default'"
            )
        return Credential.HOOK, question
    if kind == "hash":
        check_hash(password["hash"])  # per algorithm, as Okta checks it (400 E0000001)
        return Credential.HASH, question
    if not isinstance(password["value"], str) or not password["value"]:
        raise errors.validation_failed("password", "password: The field cannot be left blank")
    return Credential.PASSWORD, question


def _password_hash(body: dict[str, Any]) -> dict[str, Any] | None:
    """The ``credentials.password.hash`` a checked body carries, kept to check sign-ins."""
    credentials = body.get("credentials")
    password = credentials.get("password") if isinstance(credentials, dict) else None
    hashed = password.get("hash") if isinstance(password, dict) else None
    return dict(hashed) if isinstance(hashed, dict) else None


def _profile(body: dict[str, Any]) -> dict[str, Any]:
    """``profile`` as an object (400 E0000001 when missing or not an object)."""
    profile = body.get("profile")
    if not isinstance(profile, dict):
        raise errors.validation_failed("profile", "profile: The field cannot be left blank")
    return profile


@requires("okta.users.manage")
async def create_user(request: web.Request) -> web.Response:
    """``POST /api/v1/users?activate=true|false`` with profile, credentials and groupIds."""
    emulator = request.app[EMULATOR_KEY]
    activate = query_bool(request, "activate", True)
    body = await read_object(request)
    profile = _profile(body)
    credential, question = parse_credentials(body.get("credentials"))
    group_ids = body.get("groupIds") or []
    if not isinstance(group_ids, list) or not all(isinstance(g, str) for g in group_ids):
        raise errors.validation_failed("groupIds", "groupIds: must be a list of group ids")
    user = emulator.create_user(
        profile,
        credential or Credential.NONE,
        activate=activate,
        group_ids=group_ids,
        recovery_question=question,
        password_hash=_password_hash(body),
    )
    return web.json_response(user.to_json(base_url(request)))


def _limit(request: web.Request, default: int) -> int:
    """``limit``: an integer, capped at 200 (Okta answers at most 200 users per page)."""
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.validation_failed("limit", "limit: must be an integer") from None
    if value < 1:
        raise errors.validation_failed("limit", "limit: must be greater than 0")
    return min(value, MAX_LIMIT)


def _q_matches(user: UserRecord, prefix: str) -> bool:
    """``q``: a case-insensitive prefix of firstName, lastName or email (not login)."""
    folded = prefix.casefold()
    return any(
        isinstance(user.profile.get(name), str)
        and str(user.profile[name]).casefold().startswith(folded)
        for name in ("firstName", "lastName", "email")
    )


@requires("okta.users.read")
async def list_users(request: web.Request) -> web.Response:
    """``GET /api/v1/users`` with ``limit``, ``after``, ``search``, ``filter`` or ``q``."""
    emulator = request.app[EMULATOR_KEY]
    query = request.query
    base = base_url(request)
    self_url = request.url
    if query.get("q"):
        limit = _limit(request, Q_DEFAULT_LIMIT)
        found = [
            user.to_json(base, full=False)
            for user in emulator.users_after(-1)
            if user.status is not Status.DEPROVISIONED and _q_matches(user, query["q"])
        ][:limit]
        return json_with_links(found, self_url, None)
    limit = _limit(request, MAX_LIMIT)
    matches: Callable[[UserRecord], bool]
    if query.get("search"):
        predicate = search.parse(query["search"], "search")
        matches = lambda user: predicate(user.search_value)  # noqa: E731
    elif query.get("filter"):
        predicate = search.parse(query["filter"], "filter")
        matches = lambda user: predicate(user.search_value)  # noqa: E731
    else:
        matches = lambda user: user.status is not Status.DEPROVISIONED  # noqa: E731
    after = query.get("after")
    start = emulator.cursor_seq(after) if after else -1
    page: list[UserRecord] = []
    more = False
    for user in emulator.users_after(start):
        if not matches(user):
            continue
        if len(page) == limit:
            more = True
            break
        page.append(user)
    next_url = None
    if more:
        params = {k: v for k, v in query.items() if k != "after"}
        params["after"] = page[-1].id
        params.setdefault("limit", str(limit))
        next_url = request.url.with_query(params)
    return json_with_links([u.to_json(base, full=False) for u in page], self_url, next_url)


@requires("okta.users.read")
async def get_user(request: web.Request) -> web.Response:
    """``GET /api/v1/users/{idOrLogin}``."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    return web.json_response(user.to_json(base_url(request)))


async def _update(request: web.Request, *, replace: bool) -> web.Response:
    """Shared body of POST (partial) and PUT (full replace) on ``/api/v1/users/{id}``."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    body = await read_object(request)
    profile = _profile(body) if replace or "profile" in body else None
    credential, question = parse_credentials(body.get("credentials"))
    if credential is Credential.HASH and user.status is not Status.STAGED:
        raise errors.validation_failed(
            "password", "password: A hashed password can only be imported for a STAGED user"
        )
    if profile is not None:
        emulator.update_profile(user, profile, replace=replace, method=request.method)
    if credential is not None:
        # Since 2023.05 Okta accepts a password hook on users in any status (okta-hooks.md §2.3).
        emulator.set_credential(user, credential)
        user.password_hash = _password_hash(body)
    if question is not None:
        user.recovery_question = question
    return web.json_response(user.to_json(base_url(request)))


@requires("okta.users.manage")
async def update_user(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{id}``: partial update of profile and/or credentials."""
    return await _update(request, replace=False)


@requires("okta.users.manage")
async def replace_user(request: web.Request) -> web.Response:
    """``PUT /api/v1/users/{id}``: the profile given replaces the whole profile."""
    return await _update(request, replace=True)


@requires("okta.users.manage")
async def delete_user(request: web.Request) -> web.Response:
    """``DELETE /api/v1/users/{id}``: deactivates first; deletes only a DEPROVISIONED user."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    send_email = query_bool(request, "sendEmail", False)
    if user.status is Status.DEPROVISIONED:
        emulator.delete(user)
    else:
        emulator.deactivate(user, send_email=send_email)
    return web.Response(status=204)
