"""Groups, enough for ``groupIds`` at user creation and for checking memberships afterwards.

``POST /api/v1/groups`` (``OktaUserGroupProfile``: name, description), ``GET /api/v1/groups``
(``q`` = name prefix, ``limit``), ``GET /api/v1/groups/{id}``, ``GET /api/v1/groups/{id}/users``,
``PUT /api/v1/groups/{id}/users/{userId}`` and ``GET /api/v1/users/{id}/groups``. Shapes follow the
spec example ``group-example``. Lists are returned in one page (an org has few groups here).
"""

from __future__ import annotations

from aiohttp import web

from emulators.okta import errors
from emulators.okta.oauth import requires
from emulators.okta.state import EMULATOR_KEY
from emulators.okta.wire import base_url, json_with_links, read_object

__all__ = [
    "add_group_member",
    "create_group",
    "get_group",
    "list_group_users",
    "list_groups",
    "list_user_groups",
]


@requires("okta.groups.manage")
async def create_group(request: web.Request) -> web.Response:
    """``POST /api/v1/groups`` with ``{"profile": {"name", "description"}}``."""
    emulator = request.app[EMULATOR_KEY]
    body = await read_object(request)
    profile = body.get("profile")
    name = profile.get("name") if isinstance(profile, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise errors.validation_failed("name", "name: The field cannot be left blank")
    if any(group.name.casefold() == name.casefold() for group in emulator.groups.values()):
        raise errors.validation_failed(
            "name", "name: An object with this field already exists in the current organization"
        )
    description = profile.get("description") if isinstance(profile, dict) else None
    group = emulator.add_group(name, description if isinstance(description, str) else None)
    return web.json_response(group.to_json(base_url(request)))


@requires("okta.groups.read")
async def list_groups(request: web.Request) -> web.Response:
    """``GET /api/v1/groups?q=<name prefix>``."""
    emulator = request.app[EMULATOR_KEY]
    prefix = request.query.get("q", "").casefold()
    base = base_url(request)
    found = [
        group.to_json(base)
        for group in emulator.groups.values()
        if group.name.casefold().startswith(prefix)
    ]
    return json_with_links(found, request.url, None)


@requires("okta.groups.read")
async def get_group(request: web.Request) -> web.Response:
    """``GET /api/v1/groups/{groupId}``."""
    emulator = request.app[EMULATOR_KEY]
    group = emulator.groups.get(request.match_info["group_id"])
    if group is None:
        raise errors.not_found(request.match_info["group_id"], "UserGroup")
    return web.json_response(group.to_json(base_url(request)))


@requires("okta.groups.read")
async def list_group_users(request: web.Request) -> web.Response:
    """``GET /api/v1/groups/{groupId}/users``: members in creation order."""
    emulator = request.app[EMULATOR_KEY]
    group = emulator.groups.get(request.match_info["group_id"])
    if group is None:
        raise errors.not_found(request.match_info["group_id"], "UserGroup")
    base = base_url(request)
    members = sorted(
        (emulator.users[user_id] for user_id in group.member_ids if user_id in emulator.users),
        key=lambda user: user.seq,
    )
    return json_with_links([u.to_json(base, full=False) for u in members], request.url, None)


@requires("okta.groups.manage")
async def add_group_member(request: web.Request) -> web.Response:
    """``PUT /api/v1/groups/{groupId}/users/{userId}``: 204."""
    emulator = request.app[EMULATOR_KEY]
    group_id = request.match_info["group_id"]
    if group_id not in emulator.groups:
        raise errors.not_found(group_id, "UserGroup")
    user = emulator.users.get(request.match_info["user_id"])
    if user is None:
        raise errors.not_found(request.match_info["user_id"], "User")
    emulator.add_memberships(user, [group_id])
    return web.Response(status=204)


@requires("okta.users.read")
async def list_user_groups(request: web.Request) -> web.Response:
    """``GET /api/v1/users/{id}/groups``."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    base = base_url(request)
    found = [emulator.groups[g].to_json(base) for g in user.group_ids if g in emulator.groups]
    return json_with_links(found, request.url, None)
