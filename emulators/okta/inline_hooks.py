"""Inline hooks management: ``/api/v1/inlineHooks`` create, list, get, update, replace, lifecycle, delete.

OpenAPI operations ``createInlineHook`` (created ACTIVE), ``listInlineHooks`` (``type`` filter),
``getInlineHook``, ``updateInlineHook`` (POST), ``replaceInlineHook`` (PUT), ``activateInlineHook``,
``deactivateInlineHook`` and ``deleteInlineHook`` (INACTIVE hooks only). Channels are ``HTTP``
(header auth) or ``OAUTH`` (``client_secret_post`` with ``clientSecret``, ``private_key_jwt`` with
``hookKeyId``; ``authScheme`` must be null). Version is ``1.0.0``. An org may hold 50 inline
hooks and one password import hook. The emulator's own wording marks errors the spec leaves open.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from emulators.okta import errors
from emulators.okta.channels import (
    hook_links,
    public_channel,
    stored_channel_config,
    validate_uri,
)
from emulators.okta.models import iso, new_id
from emulators.okta.oauth import requires
from emulators.okta.state import EMULATOR_KEY, OktaEmulator
from emulators.okta.wire import base_url, read_object

__all__ = [
    "PASSWORD_IMPORT",
    "activate_inline_hook",
    "create_inline_hook",
    "deactivate_inline_hook",
    "delete_inline_hook",
    "get_inline_hook",
    "hook_json",
    "list_inline_hooks",
    "replace_inline_hook",
    "update_inline_hook",
]

PASSWORD_IMPORT: Final = "com.okta.user.credential.password.import"  # noqa: S105 - a hook type
HOOK_TYPES: Final = frozenset(
    {
        "com.okta.import.transform",
        "com.okta.oauth2.tokens.transform",
        "com.okta.saml.tokens.transform",
        "com.okta.telephony.provider",
        PASSWORD_IMPORT,
        "com.okta.user.pre-registration",
    }
)
MAX_INLINE_HOOKS: Final = 50
_OAUTH_FIELDS: Final = ("clientId", "tokenUrl", "scope", "clientSecret", "hookKeyId")


def _channel(raw: Any, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Validate ``channel`` (HTTP or OAUTH) and return it as stored (secrets kept)."""
    if not isinstance(raw, dict):
        raise errors.validation_failed("channel", "channel: The field cannot be left blank")
    kind = raw.get("type")
    if kind not in ("HTTP", "OAUTH"):
        raise errors.validation_failed("channel", "channel.type: must be HTTP or OAUTH")
    if raw.get("version", "1.0.0") != "1.0.0":
        raise errors.validation_failed("version", "channel.version: must be 1.0.0")
    old_config = previous["config"] if previous and previous["type"] == kind else None
    config_in = raw.get("config")
    config = stored_channel_config(config_in, previous=old_config, oauth=kind == "OAUTH")
    if kind == "OAUTH" and isinstance(config_in, dict):  # stored_channel_config checked the type
        auth_type = config_in.get("authType")
        if auth_type not in ("client_secret_post", "private_key_jwt"):
            raise errors.validation_failed(
                "authType", "authType: must be client_secret_post or private_key_jwt"
            )
        if config_in.get("authScheme") is not None:
            raise errors.validation_failed("authScheme", "authScheme: must be null for OAUTH")
        needed = ["clientId", "tokenUrl"]
        needed.append("clientSecret" if auth_type == "client_secret_post" else "hookKeyId")
        config["authType"] = auth_type
        config["authScheme"] = None
        for name in _OAUTH_FIELDS:
            value = config_in.get(name)
            if value is None and name == "clientSecret" and old_config:
                value = old_config.get("clientSecret")  # write-only: keep it when not resent
            if value is None and name in needed:
                raise errors.validation_failed(name, f"{name}: The field cannot be left blank")
            if name == "tokenUrl":
                _token_url(value)
            if name in needed or name == "scope":
                config[name] = value
    return {"type": kind, "version": "1.0.0", "config": config}


def _token_url(value: Any) -> None:
    """``tokenUrl``: a URL Okta can post to, with the same rules as a hook ``uri``."""
    try:
        validate_uri(value)
    except errors.OktaApiError:
        raise errors.validation_failed("tokenUrl", "tokenUrl: The URI is not valid") from None


def hook_json(hook: dict[str, Any], base: str) -> dict[str, Any]:
    """The ``InlineHook`` object as Okta returns it."""
    return {
        "id": hook["id"],
        "status": hook["status"],
        "name": hook["name"],
        "type": hook["type"],
        "version": hook["version"],
        "channel": public_channel(hook["channel"]),
        "created": iso(hook["created"]),
        "lastUpdated": iso(hook["lastUpdated"]),
        "_links": hook_links(base, "inlineHooks", hook["id"], active=hook["status"] == "ACTIVE"),
    }


def _name(raw: Any) -> str:
    """``name``: 1 to 255 characters."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 255:
        raise errors.validation_failed("name", "name: must be 1 to 255 characters")
    return raw


def _require(emulator: OktaEmulator, request: web.Request) -> dict[str, Any]:
    """The inline hook the path names, or 404 E0000007."""
    hook_id = request.match_info["hook_id"]
    hook = emulator.inline_hooks.get(hook_id)
    if hook is None:
        raise errors.not_found(hook_id, "InlineHook")
    return hook


@requires("okta.inlineHooks.manage")
async def create_inline_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/inlineHooks``: the hook is created ACTIVE."""
    emulator = request.app[EMULATOR_KEY]
    body = await read_object(request)
    name = _name(body.get("name"))
    kind = body.get("type")
    if kind not in HOOK_TYPES:
        raise errors.validation_failed("type", "type: not a supported inline hook type")
    if body.get("version", "1.0.0") != "1.0.0":
        raise errors.validation_failed("version", "version: must be 1.0.0")
    if len(emulator.inline_hooks) >= MAX_INLINE_HOOKS:
        raise errors.validation_failed("type", "type: an org can have at most 50 inline hooks")
    if kind == PASSWORD_IMPORT and any(
        hook["type"] == PASSWORD_IMPORT for hook in emulator.inline_hooks.values()
    ):
        raise errors.validation_failed(
            "type", f"type: an org can have only one inline hook of type {PASSWORD_IMPORT}"
        )
    now = emulator.clock()
    hook = {
        "id": new_id("cal"),
        "status": "ACTIVE",
        "name": name,
        "type": kind,
        "version": "1.0.0",
        "channel": _channel(body.get("channel"), None),
        "created": now,
        "lastUpdated": now,
    }
    emulator.inline_hooks[hook["id"]] = hook
    emulator.events["inline_hooks_created"] += 1
    return web.json_response(hook_json(hook, base_url(request)))


@requires("okta.inlineHooks.read")
async def list_inline_hooks(request: web.Request) -> web.Response:
    """``GET /api/v1/inlineHooks[?type=...]``."""
    emulator = request.app[EMULATOR_KEY]
    kind = request.query.get("type")
    base = base_url(request)
    return web.json_response(
        [
            hook_json(hook, base)
            for hook in emulator.inline_hooks.values()
            if kind is None or hook["type"] == kind
        ]
    )


@requires("okta.inlineHooks.read")
async def get_inline_hook(request: web.Request) -> web.Response:
    """``GET /api/v1/inlineHooks/{inlineHookId}``."""
    emulator = request.app[EMULATOR_KEY]
    return web.json_response(hook_json(_require(emulator, request), base_url(request)))


async def _change(request: web.Request, *, replace: bool) -> web.Response:
    """POST merges the fields given; PUT needs name and channel. ``type`` cannot change."""
    emulator = request.app[EMULATOR_KEY]
    hook = _require(emulator, request)
    body = await read_object(request)
    if "type" in body and body["type"] != hook["type"]:
        raise errors.validation_failed("type", "type: cannot be changed")
    if replace or "name" in body:
        hook["name"] = _name(body.get("name"))
    if replace or "channel" in body:
        hook["channel"] = _channel(body.get("channel"), hook["channel"])
    hook["lastUpdated"] = emulator.clock()
    emulator.events["inline_hooks_updated"] += 1
    return web.json_response(hook_json(hook, base_url(request)))


@requires("okta.inlineHooks.manage")
async def update_inline_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/inlineHooks/{inlineHookId}``."""
    return await _change(request, replace=False)


@requires("okta.inlineHooks.manage")
async def replace_inline_hook(request: web.Request) -> web.Response:
    """``PUT /api/v1/inlineHooks/{inlineHookId}``."""
    return await _change(request, replace=True)


async def _set_status(request: web.Request, status: str) -> web.Response:
    """Activate or deactivate; answers the hook."""
    emulator = request.app[EMULATOR_KEY]
    hook = _require(emulator, request)
    hook["status"] = status
    hook["lastUpdated"] = emulator.clock()
    return web.json_response(hook_json(hook, base_url(request)))


@requires("okta.inlineHooks.manage")
async def activate_inline_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/inlineHooks/{inlineHookId}/lifecycle/activate``."""
    return await _set_status(request, "ACTIVE")


@requires("okta.inlineHooks.manage")
async def deactivate_inline_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/inlineHooks/{inlineHookId}/lifecycle/deactivate``."""
    return await _set_status(request, "INACTIVE")


@requires("okta.inlineHooks.manage")
async def delete_inline_hook(request: web.Request) -> web.Response:
    """``DELETE /api/v1/inlineHooks/{inlineHookId}``: only an INACTIVE hook; 204."""
    emulator = request.app[EMULATOR_KEY]
    hook = _require(emulator, request)
    if hook["status"] != "INACTIVE":
        raise errors.validation_failed(
            "status", "status: only INACTIVE inline hooks can be deleted"
        )
    del emulator.inline_hooks[hook["id"]]
    return web.Response(status=204)
