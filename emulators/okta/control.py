"""The emulator's own control plane under ``/_emulator/`` (no auth, no rate limits; loopback use only).

* ``GET  /_emulator/stats``: counters (requests per endpoint, responses per status, 429s per
  bucket, concurrency rejections, injected faults, users created/activated/..., activation emails
  per login, profile updates) and a census of users by status and provider.
* ``POST /_emulator/reset``: zero counters and rate-limit windows; ``{"users": true}`` also puts
  users, groups, hooks and tokens back as the org file had them (authorization servers get new
  signing keys, cached hook tokens are forgotten) and clears fault and latency.
* ``GET|PUT /_emulator/fault``: ``{"mode", "rate", "retry_after", "buckets", "latency_ms"}``.
* ``GET|PUT /_emulator/limits``: ``{"limits": {bucket: per_minute|null}, "concurrency_limit"}``.
* ``GET  /_emulator/profile-updates``: the attributes each profile update changed, in order.
* ``POST /_emulator/users/{login}/sign-in``: see ``signin``.
* ``/_emulator/events/*`` and ``/_emulator/apps/{appId}/users/{userId}``: see ``event_control``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulators.okta.limits import FaultMode
from emulators.okta.state import EMULATOR_KEY

__all__ = [
    "handle_get_fault",
    "handle_get_limits",
    "handle_profile_updates",
    "handle_put_fault",
    "handle_put_limits",
    "handle_reset",
    "handle_stats",
]


class _FaultRequest(BaseModel):
    """Body of ``PUT /_emulator/fault``; ``latency_ms`` omitted or null keeps the latency."""

    model_config = ConfigDict(extra="forbid")

    mode: FaultMode = "none"
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    retry_after: int = Field(default=1, ge=0, le=3600)
    buckets: list[str] = Field(default_factory=list)
    latency_ms: int | None = Field(default=None, ge=0, le=3_600_000)


class _LimitsRequest(BaseModel):
    """Body of ``PUT /_emulator/limits``; buckets not named keep their limit."""

    model_config = ConfigDict(extra="forbid")

    limits: dict[str, int | None] = Field(default_factory=dict)
    concurrency_limit: int | None = Field(default=None, ge=1)


def _problems(exc: ValidationError) -> web.Response:
    """400 listing what was wrong, by location."""
    problems = [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_input=False, include_url=False)
    ]
    return web.json_response({"error": "invalid body", "problems": problems}, status=400)


async def handle_stats(request: web.Request) -> web.Response:
    """``GET /_emulator/stats``."""
    return web.json_response(request.app[EMULATOR_KEY].stats())


async def handle_reset(request: web.Request) -> web.Response:
    """``POST /_emulator/reset`` (``{"users": true}`` for a full reset to the org file)."""
    emulator = request.app[EMULATOR_KEY]
    try:
        body: Any = await request.json() if request.can_read_body else {}
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    full = isinstance(body, dict) and body.get("users") is True
    if full:
        emulator.reset_all()
    else:
        emulator.reset_counters()
    return web.json_response({"reset": True, "users": full})


async def handle_get_fault(request: web.Request) -> web.Response:
    """``GET /_emulator/fault``."""
    emulator = request.app[EMULATOR_KEY]
    return web.json_response({**emulator.fault.to_json(), "latency_ms": emulator.latency_ms})


async def handle_put_fault(request: web.Request) -> web.Response:
    """``PUT /_emulator/fault``."""
    emulator = request.app[EMULATOR_KEY]
    try:
        settings = _FaultRequest.model_validate_json(await request.read())
        emulator.set_fault(
            settings.mode,
            settings.rate,
            settings.retry_after,
            settings.buckets,
            settings.latency_ms,
        )
    except ValidationError as exc:
        return _problems(exc)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({**emulator.fault.to_json(), "latency_ms": emulator.latency_ms})


async def handle_get_limits(request: web.Request) -> web.Response:
    """``GET /_emulator/limits``."""
    emulator = request.app[EMULATOR_KEY]
    return web.json_response(
        {"limits": emulator.limiter.limits, "concurrency_limit": emulator.concurrency_limit}
    )


async def handle_put_limits(request: web.Request) -> web.Response:
    """``PUT /_emulator/limits``; ``concurrency_limit`` omitted keeps the current cap."""
    emulator = request.app[EMULATOR_KEY]
    try:
        settings = _LimitsRequest.model_validate_json(await request.read())
        keep = "concurrency_limit" not in settings.model_fields_set
        emulator.set_limits(
            settings.limits, concurrency_limit="keep" if keep else settings.concurrency_limit
        )
    except ValidationError as exc:
        return _problems(exc)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(
        {"limits": emulator.limiter.limits, "concurrency_limit": emulator.concurrency_limit}
    )


async def handle_profile_updates(request: web.Request) -> web.Response:
    """``GET /_emulator/profile-updates``: ``[{"id", "method", "attributes"}]`` since the last reset."""
    return web.json_response(request.app[EMULATOR_KEY].profile_updates)
