"""Event hooks management: ``/api/v1/eventHooks`` create, list, get, replace, lifecycle, verify, delete.

OpenAPI operations ``createEventHook`` (created ACTIVE and UNVERIFIED), ``listEventHooks``,
``getEventHook``, ``replaceEventHook`` (PUT; a changed channel needs verifying again),
``activateEventHook``, ``deactivateEventHook``, ``deleteEventHook`` (INACTIVE only) and
``verifyEventHook``. Verification is Okta's one-time GET (reference/okta-hooks.md §3.1): the hook
URI gets ``x-okta-verification-challenge: <value>`` plus the auth and custom headers, must answer
``{"verification": "<value>"}`` within 3 s (one retry after a timeout or error, redirects not
followed); otherwise the verify call answers 400. Only header auth exists for event hooks.
Deliveries of events are in ``delivery``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Final

import aiohttp
from aiohttp import web

from emulators.okta import errors
from emulators.okta.channels import hook_links, public_channel, stored_channel_config
from emulators.okta.models import iso, new_id
from emulators.okta.oauth import requires
from emulators.okta.state import EMULATOR_KEY, OktaEmulator
from emulators.okta.wire import base_url, read_object

__all__ = [
    "activate_event_hook",
    "create_event_hook",
    "deactivate_event_hook",
    "delete_event_hook",
    "get_event_hook",
    "list_event_hooks",
    "replace_event_hook",
    "verify_event_hook",
]

MAX_EVENT_HOOKS: Final = 25
MAX_EVENT_TYPES: Final = 300
CREATED_BY: Final = "00uemulatoradmin0000"  # the admin the emulator pretends to be
CHALLENGE_HEADER: Final = "x-okta-verification-challenge"


def _events(raw: Any) -> dict[str, Any]:
    """``events``: ``{"type": "EVENT_TYPE", "items": [...]}`` (1 to 300 event types)."""
    if not isinstance(raw, dict) or raw.get("type") != "EVENT_TYPE":
        raise errors.validation_failed("events", "events.type: must be EVENT_TYPE")
    items = raw.get("items")
    if (
        not isinstance(items, list)
        or not items
        or len(items) > MAX_EVENT_TYPES
        or not all(isinstance(item, str) and item for item in items)
    ):
        raise errors.validation_failed("events", "events.items: 1 to 300 event types")
    return {"type": "EVENT_TYPE", "items": list(dict.fromkeys(items)), "filter": None}


def _channel(raw: Any, previous: dict[str, Any] | None) -> dict[str, Any]:
    """``channel``: type HTTP, version 1.0.0, a header-auth config."""
    if not isinstance(raw, dict) or raw.get("type") != "HTTP":
        raise errors.validation_failed("channel", "channel.type: must be HTTP")
    if raw.get("version") != "1.0.0":
        raise errors.validation_failed("channel", "channel.version: must be 1.0.0")
    old = previous["config"] if previous else None
    return {
        "type": "HTTP",
        "version": "1.0.0",
        "config": stored_channel_config(raw.get("config"), previous=old),
    }


def _hook_json(hook: dict[str, Any], base: str) -> dict[str, Any]:
    """The ``EventHook`` object as Okta returns it."""
    return {
        "id": hook["id"],
        "status": hook["status"],
        "verificationStatus": hook["verificationStatus"],
        "name": hook["name"],
        "description": hook["description"],
        "created": iso(hook["created"]),
        "createdBy": CREATED_BY,
        "lastUpdated": iso(hook["lastUpdated"]),
        "events": dict(hook["events"]),
        "channel": public_channel(hook["channel"]),
        "_links": hook_links(base, "eventHooks", hook["id"], active=hook["status"] == "ACTIVE"),
    }


def _require(emulator: OktaEmulator, request: web.Request) -> dict[str, Any]:
    """The event hook the path names, or 404 E0000007."""
    hook_id = request.match_info["hook_id"]
    hook = emulator.event_hooks.get(hook_id)
    if hook is None:
        raise errors.not_found(hook_id, "EventHook")
    return hook


def _fields(body: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the writable fields of an event hook body."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise errors.validation_failed("name", "name: must be 1 to 255 characters")
    description = body.get("description")
    return {
        "name": name,
        "description": description if isinstance(description, str) else None,
        "events": _events(body.get("events")),
        "channel": _channel(body.get("channel"), previous["channel"] if previous else None),
    }


@requires("okta.eventHooks.manage")
async def create_event_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/eventHooks``: created ACTIVE, UNVERIFIED until verified."""
    emulator = request.app[EMULATOR_KEY]
    fields = _fields(await read_object(request), None)
    if len(emulator.event_hooks) >= MAX_EVENT_HOOKS:
        raise errors.validation_failed("name", "name: an org can have at most 25 event hooks")
    now = emulator.clock()
    hook = {
        "id": new_id("who"),
        "status": "ACTIVE",
        "verificationStatus": "UNVERIFIED",
        "created": now,
        "lastUpdated": now,
        **fields,
    }
    emulator.event_hooks[hook["id"]] = hook
    emulator.events["event_hooks_created"] += 1
    return web.json_response(_hook_json(hook, base_url(request)))


@requires("okta.eventHooks.read")
async def list_event_hooks(request: web.Request) -> web.Response:
    """``GET /api/v1/eventHooks``."""
    emulator = request.app[EMULATOR_KEY]
    base = base_url(request)
    return web.json_response([_hook_json(hook, base) for hook in emulator.event_hooks.values()])


@requires("okta.eventHooks.read")
async def get_event_hook(request: web.Request) -> web.Response:
    """``GET /api/v1/eventHooks/{eventHookId}``."""
    emulator = request.app[EMULATOR_KEY]
    return web.json_response(_hook_json(_require(emulator, request), base_url(request)))


@requires("okta.eventHooks.manage")
async def replace_event_hook(request: web.Request) -> web.Response:
    """``PUT /api/v1/eventHooks/{eventHookId}``: a changed channel makes the hook UNVERIFIED."""
    emulator = request.app[EMULATOR_KEY]
    hook = _require(emulator, request)
    fields = _fields(await read_object(request), hook)
    if fields["channel"] != hook["channel"]:
        hook["verificationStatus"] = "UNVERIFIED"
    hook.update(fields)
    hook["lastUpdated"] = emulator.clock()
    emulator.events["event_hooks_updated"] += 1
    return web.json_response(_hook_json(hook, base_url(request)))


async def _set_status(request: web.Request, status: str) -> web.Response:
    """Activate or deactivate; answers the hook."""
    emulator = request.app[EMULATOR_KEY]
    hook = _require(emulator, request)
    hook["status"] = status
    hook["lastUpdated"] = emulator.clock()
    return web.json_response(_hook_json(hook, base_url(request)))


@requires("okta.eventHooks.manage")
async def activate_event_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/eventHooks/{eventHookId}/lifecycle/activate``."""
    return await _set_status(request, "ACTIVE")


@requires("okta.eventHooks.manage")
async def deactivate_event_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/eventHooks/{eventHookId}/lifecycle/deactivate``."""
    return await _set_status(request, "INACTIVE")


@requires("okta.eventHooks.manage")
async def delete_event_hook(request: web.Request) -> web.Response:
    """``DELETE /api/v1/eventHooks/{eventHookId}``: only an INACTIVE hook; 204."""
    emulator = request.app[EMULATOR_KEY]
    hook = _require(emulator, request)
    if hook["status"] != "INACTIVE":
        raise errors.validation_failed("status", "status: only INACTIVE event hooks can be deleted")
    del emulator.event_hooks[hook["id"]]
    return web.Response(status=204)


async def _challenge_once(
    session: aiohttp.ClientSession, config: dict[str, Any], challenge: str, seconds: float
) -> bool | None:
    """One verification GET: True answered, False answered wrongly, None timeout or error (retry)."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    for item in config["headers"]:
        headers[item["key"]] = item["value"]
    scheme = config.get("authScheme")
    if scheme:
        headers[scheme["key"]] = scheme["value"]
    headers[CHALLENGE_HEADER] = challenge
    try:
        async with asyncio.timeout(seconds):
            async with session.get(config["uri"], headers=headers, allow_redirects=False) as resp:
                if resp.status >= 500:
                    return None
                if resp.status != 200:
                    return False
                body = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError):
        return None
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("verification") == challenge


@requires("okta.eventHooks.manage")
async def verify_event_hook(request: web.Request) -> web.Response:
    """``POST /api/v1/eventHooks/{eventHookId}/lifecycle/verify``: Okta's one-time GET challenge."""
    emulator = request.app[EMULATOR_KEY]
    hook = _require(emulator, request)
    challenge = secrets.token_urlsafe(24)
    config = hook["channel"]["config"]
    outcome: bool | None = None
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # the call and at most one retry, only after a timeout or 5xx
            emulator.events["event_hook_verification_requests"] += 1
            outcome = await _challenge_once(session, config, challenge, emulator.hook_timeout)
            if outcome is not None:
                break
    if not outcome:
        raise errors.validation_failed(
            "verification",
            "verification: The event hook endpoint did not answer the verification challenge",
        )
    hook["verificationStatus"] = "VERIFIED"
    hook["lastUpdated"] = emulator.clock()
    return web.json_response(_hook_json(hook, base_url(request)))
