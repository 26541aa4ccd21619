"""Control plane of event delivery and app assignments, under ``/_emulator/`` (no auth; loopback).

* ``POST /_emulator/events/flush`` (optional ``{"timeout": seconds}``, default 30): deliver every
  queued event now, skipping the batch delay, and wait until no delivery is pending. Answers
  ``{"deliveries", "delivered", "failed", "discarded", "pending", "paused", "timed_out",
  "totals"}``: the first four count what settled during the call (deliveries = POSTs that
  finished, the others events); paused, it returns at once with the queue untouched.
* ``POST /_emulator/events/pause`` and ``POST /_emulator/events/resume``: hold or release
  deliveries; both answer ``{"paused", "pending"}``.
* ``GET|PUT /_emulator/events/settings``: ``{"max_batch_size": 1-1000, "batch_delay_ms":
  0-60000, "timeout_ms": 1-60000, "seed": int|null, "paused": bool}``; PUT changes only the
  fields given. ``timeout_ms`` is the org's hook timeout (3000, as Okta's) for every outbound
  hook call; ``seed`` restarts event uuids and delivery ids from that seed (null: random).
* ``GET|PUT /_emulator/events/drop``: ``{"next": N, "rate": 0-1, "event_types": [...]}``; PUT
  replaces the plan (``{}`` drops nothing). Dropped events reach the System Log, not the hooks.
* ``GET /_emulator/events/deliveries[?hook_id=&uuid=&status=&eventType=]``: ``{"deliveries":
  [{"uuid", "eventType", "hook_id", "status", "attempts", "delivery_id", "http_status",
  "error", "queued_at", "finished_at"}], "totals": {...}}``, one entry per (event, hook), in
  publish order; status is queued, sending, delivered, failed, dropped or discarded.
* ``POST /_emulator/apps/{appId}/users/{userIdOrLogin}`` (optional ``{"label": "..."}``, default
  the app id): assign the user to the app and publish ``application.user_membership.add``;
  answers ``{"appId", "userId", "assigned"}`` (``assigned`` false: already assigned, no event).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulators.okta.state import EMULATOR_KEY, OktaEmulator

__all__ = [
    "handle_assign_app",
    "handle_deliveries",
    "handle_flush",
    "handle_get_drop",
    "handle_get_settings",
    "handle_pause",
    "handle_put_drop",
    "handle_put_settings",
    "handle_resume",
]


class _FlushRequest(BaseModel):
    """Body of ``POST /_emulator/events/flush``."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(default=30.0, gt=0, le=600)


class _SettingsRequest(BaseModel):
    """Body of ``PUT /_emulator/events/settings``; fields not given keep their value."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(default=None, ge=1, le=1000)
    batch_delay_ms: int | None = Field(default=None, ge=0, le=60_000)
    timeout_ms: int | None = Field(default=None, ge=1, le=60_000)
    seed: int | None = None
    paused: bool | None = None


class _DropRequest(BaseModel):
    """Body of ``PUT /_emulator/events/drop``."""

    model_config = ConfigDict(extra="forbid")

    next: int = Field(default=0, ge=0)
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    event_types: list[str] = Field(default_factory=list)


class _AssignRequest(BaseModel):
    """Body of ``POST /_emulator/apps/{appId}/users/{userId}``."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, min_length=1, max_length=255)


def _problems(exc: ValidationError) -> web.Response:
    """400 listing what was wrong, by location."""
    problems = [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_input=False, include_url=False)
    ]
    return web.json_response({"error": "invalid body", "problems": problems}, status=400)


async def _body(request: web.Request) -> bytes:
    """The raw body, ``{}`` when there is none."""
    raw = await request.read()
    return raw if raw.strip() else b"{}"


def _settings(emulator: OktaEmulator) -> dict[str, Any]:
    """The delivery settings as ``GET /_emulator/events/settings`` shows them."""
    delivery = emulator.delivery
    return {
        "max_batch_size": delivery.max_batch_size,
        "batch_delay_ms": round(delivery.batch_delay * 1000),
        "timeout_ms": round(emulator.hook_timeout * 1000),
        "seed": emulator.seed,
        "paused": delivery.paused,
    }


async def handle_flush(request: web.Request) -> web.Response:
    """``POST /_emulator/events/flush``."""
    emulator = request.app[EMULATOR_KEY]
    try:
        body = _FlushRequest.model_validate_json(await _body(request))
    except ValidationError as exc:
        return _problems(exc)
    return web.json_response(await emulator.flush_events(body.timeout))


async def handle_pause(request: web.Request) -> web.Response:
    """``POST /_emulator/events/pause``."""
    delivery = request.app[EMULATOR_KEY].delivery
    delivery.pause()
    return web.json_response({"paused": True, "pending": delivery.pending})


async def handle_resume(request: web.Request) -> web.Response:
    """``POST /_emulator/events/resume``."""
    delivery = request.app[EMULATOR_KEY].delivery
    delivery.resume()
    return web.json_response({"paused": False, "pending": delivery.pending})


async def handle_get_settings(request: web.Request) -> web.Response:
    """``GET /_emulator/events/settings``."""
    return web.json_response(_settings(request.app[EMULATOR_KEY]))


async def handle_put_settings(request: web.Request) -> web.Response:
    """``PUT /_emulator/events/settings``."""
    emulator = request.app[EMULATOR_KEY]
    try:
        body = _SettingsRequest.model_validate_json(await _body(request))
    except ValidationError as exc:
        return _problems(exc)
    delivery = emulator.delivery
    if body.max_batch_size is not None:
        delivery.max_batch_size = body.max_batch_size
    if body.batch_delay_ms is not None:
        delivery.batch_delay = body.batch_delay_ms / 1000
    if body.timeout_ms is not None:
        emulator.hook_timeout = body.timeout_ms / 1000
    if "seed" in body.model_fields_set:
        emulator.reseed(body.seed)
    if body.paused is True:
        delivery.pause()
    elif body.paused is False:
        delivery.resume()
    return web.json_response(_settings(emulator))


async def handle_get_drop(request: web.Request) -> web.Response:
    """``GET /_emulator/events/drop``."""
    delivery = request.app[EMULATOR_KEY].delivery
    return web.json_response(
        {**delivery.drop_plan.to_json(), "dropped_total": delivery.counters["events_dropped"]}
    )


async def handle_put_drop(request: web.Request) -> web.Response:
    """``PUT /_emulator/events/drop``."""
    delivery = request.app[EMULATOR_KEY].delivery
    try:
        body = _DropRequest.model_validate_json(await _body(request))
    except ValidationError as exc:
        return _problems(exc)
    delivery.set_drop(next=body.next, rate=body.rate, event_types=frozenset(body.event_types))
    return web.json_response(
        {**delivery.drop_plan.to_json(), "dropped_total": delivery.counters["events_dropped"]}
    )


async def handle_deliveries(request: web.Request) -> web.Response:
    """``GET /_emulator/events/deliveries`` with optional exact-match filters."""
    delivery = request.app[EMULATOR_KEY].delivery
    wanted = {
        "hook_id": request.query.get("hook_id"),
        "uuid": request.query.get("uuid"),
        "status": request.query.get("status"),
        "event_type": request.query.get("eventType"),
    }
    rows = [
        record.to_json()
        for record in delivery.records
        if all(value is None or getattr(record, name) == value for name, value in wanted.items())
    ]
    return web.json_response({"deliveries": rows, "totals": delivery.totals()})


async def handle_assign_app(request: web.Request) -> web.Response:
    """``POST /_emulator/apps/{appId}/users/{userId}``."""
    emulator = request.app[EMULATOR_KEY]
    try:
        body = _AssignRequest.model_validate_json(await _body(request))
    except ValidationError as exc:
        return _problems(exc)
    app_id = request.match_info["app_id"]
    user = emulator.find_user(request.match_info["user_id"])
    if user is None:
        return web.json_response({"error": "no such user"}, status=404)
    assigned = emulator.assign_app(app_id, user, body.label or app_id)
    return web.json_response({"appId": app_id, "userId": user.id, "assigned": assigned})
