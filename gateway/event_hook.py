"""Okta's event hook into `gateway serve`: the verification GET and event deliveries (POST).

Mounted at `migration.event_hook.path` when the migration configures it (reference/okta-hooks.md
§3). The handler is thin: auth -> size -> media type -> envelope -> `EventProcessor` -> answer;
what an event means for the ledger and for Okta lives in `gateway.migrate.events`.

Answers, in the order checked:
- 401 when the auth header is missing or wrong (the same whole-header, constant-time comparison
  with rotation as the password hook), before anything of the body is read;
- 413 past `max_body_bytes`, 415 for a body that is not JSON (`Content-Type`, or a content
  coding the gateway does not decode), 400 for anything that is not an event envelope (or a
  body not all there 2.5 s after its head). Okta does not retry a 4xx, and a retry would not
  fix any of them;
- 503 only while the ledger cannot record the delivery (not open yet, down, too slow to answer
  within Okta's 3 s): Okta retries once, and the events are deduplicated by uuid;
- 200 (empty, as Okta asks) once every event is in the ledger and the migrated marks are
  written. An event that cannot be used is counted `failed`, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

from aiohttp import web

from gateway.auth import header_matches
from gateway.body import (
    ACCEPTED_ENCODINGS,
    BadEncoding,
    BodyTimeout,
    TooLarge,
    UnsupportedEncoding,
    read_body,
)
from gateway.config import GatewayConfig
from gateway.connections import BODY_TIMEOUT, close_connection
from gateway.metrics import GatewayMetrics
from gateway.migrate.events import (
    ActionQueue,
    ActionRunner,
    BadEnvelope,
    Delivery,
    DeliveryOutcome,
    EventProcessor,
    Snapshot,
    parse_delivery,
)
from gateway.migrate.settings import EventHookConfig
from gateway.okta_api import OktaApiClient
from gateway.runtime import RUNTIME
from gateway.serve_ledger import SERVE_LEDGER, LedgerUnavailable

if TYPE_CHECKING:
    from gateway.ledger import Ledger  # SQLAlchemy loads only when the ledger opens

logger = logging.getLogger(__name__)
event_logger = logging.getLogger("gateway.event_hook")

CHALLENGE_HEADER: Final = "x-okta-verification-challenge"
_MAX_CHALLENGE: Final = 1024
# Deliveries applied at once (answered or still committing after a 503): past it a new one is
# answered 503 at once, so a stalled ledger cannot pile up parsed deliveries in memory.
MAX_APPLYING: Final = 4
# Background actions: attempts per action and the first wait between them (doubling).
ACTION_ATTEMPTS: Final = 4
ACTION_BACKOFF_SECONDS = 1.0
ACTION_MAX_QUEUED: Final = 10_000
# The Okta client's own retries (429 waits, 5xx) per call, before the action's retries.
_CLIENT_RETRIES: Final = 2


class EventHook:
    """The event hook's settings (fixed for the process) and what serves it."""

    def __init__(self, settings: EventHookConfig, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.actions: ActionQueue | None = None
        self.processor = EventProcessor(chunk_events=settings.chunk_events)
        # Deliveries being applied (answered or not), and by `eventId`: Okta's retry of a
        # delivery answered 503 carries the same `eventId` and waits for the first to finish.
        self._applying: set[asyncio.Task[DeliveryOutcome]] = set()
        self._by_event_id: dict[str, asyncio.Task[DeliveryOutcome]] = {}

    def start(
        self, ledger: Ledger, delivery: Delivery, snapshot: Snapshot
    ) -> asyncio.Task[DeliveryOutcome] | None:
        """The task applying `delivery`: its own, or the first attempt's still running.

        The task outlives the answer: a delivery answered 503 for time goes on being applied,
        so Okta's retry finds it done (or joins it) rather than starting over. None when
        `MAX_APPLYING` deliveries are being applied already.
        """
        event_id = delivery.event_id
        running = self._by_event_id.get(event_id) if event_id is not None else None
        if running is not None:
            return running
        if len(self._applying) >= MAX_APPLYING:
            return None
        task = asyncio.create_task(self._apply(ledger, delivery, snapshot))
        self._applying.add(task)
        if event_id is not None:
            self._by_event_id[event_id] = task
        task.add_done_callback(lambda done: self._finished(done, event_id))
        return task

    async def _apply(
        self, ledger: Ledger, delivery: Delivery, snapshot: Snapshot
    ) -> DeliveryOutcome:
        """Apply, and count what was applied, even when the answer went out before."""
        outcome = DeliveryOutcome()
        try:
            return await self.processor.process(ledger, delivery, snapshot, outcome=outcome)
        finally:
            for (label, result), count in outcome.counts.items():
                self.metrics.okta_events.labels(type=label, outcome=result).inc(count)

    @property
    def applying(self) -> frozenset[asyncio.Task[DeliveryOutcome]]:
        """The deliveries being applied now (answered or not)."""
        return frozenset(self._applying)

    def _finished(self, task: asyncio.Task[DeliveryOutcome], event_id: str | None) -> None:
        self._applying.discard(task)
        if event_id is not None and self._by_event_id.get(event_id) is task:
            del self._by_event_id[event_id]
        # Retrieved here: after a 503 for time, nobody else awaits the task.
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "event delivery not fully recorded",
                extra={"error": type(task.exception()).__name__},
            )

    async def drain(self, seconds: float) -> None:
        """Let deliveries still committing finish (bounded), then cancel what is left."""
        pending = set(self._applying)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


EVENT_HOOK = web.AppKey("event_hook", EventHook)
_JSON = "application/json"


def add_event_hook(app: web.Application, config: GatewayConfig, metrics: GatewayMetrics) -> None:
    """Mount the event hook (GET and POST at its path) and start its actions with the app.

    Call after the sources' and the ledger's cleanup contexts are added: the actions use both,
    so they must stop first (cleanup runs in reverse).
    """
    settings = config.migration.event_hook
    assert settings is not None
    app[EVENT_HOOK] = EventHook(settings, metrics)
    app.router.add_get(settings.path, handle_verification)
    app.router.add_post(settings.path, handle_delivery)
    app.cleanup_ctx.append(_actions_ctx)
    app.cleanup_ctx.append(_deliveries_ctx)  # cleaned up first: a delivery queues actions


def _okta_client(config: GatewayConfig, metrics: GatewayMetrics) -> OktaApiClient | None:
    """The client of the background actions, or None without `okta.org_url` and `okta.api`."""
    if config.okta.api is None or config.okta.org_url is None:
        return None
    from gateway.migrate.commands import build_okta_client

    return build_okta_client(
        config, on_request=metrics.count_okta_request, max_retries=_CLIENT_RETRIES
    )


async def _actions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Prepare and sync workers (when Okta's API is configured); drained, then cancelled, at exit."""
    hook = app[EVENT_HOOK]
    runtime = app[RUNTIME]
    config = runtime.current.config
    okta = _okta_client(config, hook.metrics)
    if okta is None:
        yield
        return
    serve_ledger = app[SERVE_LEDGER]

    def snapshot() -> Snapshot:
        current = runtime.current
        return Snapshot(current.config, current.service.router, current.sources)

    assert config.okta.api is not None  # _okta_client
    actions = ActionQueue(
        ActionRunner(okta, serve_ledger.require, snapshot),
        workers=min(8, config.okta.api.max_concurrency),  # Okta's own concurrency cap stays
        max_queued=ACTION_MAX_QUEUED,
        attempts=ACTION_ATTEMPTS,
        backoff_seconds=ACTION_BACKOFF_SECONDS,
    )
    async with okta:
        actions.start()
        hook.actions = hook.processor.actions = actions
        try:
            yield
        finally:
            hook.processor.actions = None
            await actions.close(config.server.shutdown_grace_seconds)


async def _deliveries_ctx(app: web.Application) -> AsyncIterator[None]:
    """At exit, deliveries still committing (answered 503 already) finish or are cancelled."""
    yield
    await app[EVENT_HOOK].drain(app[RUNTIME].current.config.server.shutdown_grace_seconds)


async def handle_verification(request: web.Request) -> web.Response:
    """Okta's one-time GET: echo `x-okta-verification-challenge` as `{"verification": ...}`."""
    hook = request.app[EVENT_HOOK]
    if not header_matches(request, hook.settings.auth):
        return _answer(request, 401, "missing or wrong event hook credentials")
    challenges = request.headers.getall(CHALLENGE_HEADER, [])  # header names: any case
    if len(challenges) != 1 or not 0 < len(challenges[0]) <= _MAX_CHALLENGE:
        return _answer(request, 400, f"send exactly one {CHALLENGE_HEADER} header")
    _log(request, 200, "verification")
    return web.json_response({"verification": challenges[0]})


async def handle_delivery(request: web.Request) -> web.Response:
    """A delivery: auth (401) -> size (413) -> media type (415) -> envelope (400) -> ledger."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    hook = request.app[EVENT_HOOK]
    settings = hook.settings
    if not header_matches(request, settings.auth):
        return _answer(request, 401, "missing or wrong event hook credentials")
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _answer(request, 413, f"body larger than {limit} bytes")
    if not _is_json(request.content_type):
        return _answer(request, 415, "send Content-Type: application/json")
    try:
        body = await read_body(request, limit, started + settings.budget_seconds)
    except TooLarge:
        return _answer(request, 413, f"body larger than {limit} bytes")
    except BodyTimeout:
        # 400 as for the password hook: no 4xx is resent by Okta, and 408 may be by a client.
        summary = f"body not received within {settings.budget_seconds} s"
        response = _answer(request, 400, summary)
        close_connection(request, response, BODY_TIMEOUT)  # the rest of the body is unread
        return response
    except UnsupportedEncoding:
        summary = f"unsupported Content-Encoding; send {ACCEPTED_ENCODINGS} or none"
        return _answer(request, 415, summary, {"Accept-Encoding": ACCEPTED_ENCODINGS})
    except BadEncoding:
        return _answer(request, 400, "body does not match its Content-Encoding")
    try:
        delivery = parse_delivery(body)
    except BadEnvelope as err:
        return _answer(request, 400, err.summary)
    return await _record(request, hook, delivery, started)


async def _record(
    request: web.Request, hook: EventHook, delivery: Delivery, started: float
) -> web.Response:
    serve_ledger = request.app[SERVE_LEDGER]
    current = request.app[RUNTIME].current
    snapshot = Snapshot(current.config, current.service.router, current.sources)
    try:
        ledger = serve_ledger.require()
    except LedgerUnavailable:
        return _answer(request, 503, "the migration ledger is not open yet", delivery=delivery)
    task = hook.start(ledger, delivery, snapshot)
    if task is None:
        return _answer(request, 503, "the migration ledger is busy", delivery=delivery)
    try:
        # Shielded: the delivery goes on in the background past the answer (a chunk that is
        # committing finishes whole; a cancelled commit could leave the connection unusable).
        async with asyncio.timeout_at(started + hook.settings.budget_seconds):
            outcome = await asyncio.shield(task)
    except TimeoutError:
        return _answer(request, 503, "the migration ledger is too slow", delivery=delivery)
    except Exception as err:  # noqa: BLE001 - the ledger failed to record: Okta retries once
        # Only the type: a database error's text can quote logins and ids.
        logger.warning("event delivery not recorded", extra={"error": type(err).__name__})
        return _answer(request, 503, "the migration ledger is unavailable", delivery=delivery)
    seconds = asyncio.get_running_loop().time() - started
    _log(request, 200, "recorded", delivery, outcome, seconds)
    return web.Response(status=200)


def _is_json(content_type: str) -> bool:
    """`application/json` or a `+json` type (aiohttp lower-cases it and drops parameters)."""
    return content_type == _JSON or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _answer(
    request: web.Request,
    status: int,
    summary: str,
    headers: dict[str, str] | None = None,
    delivery: Delivery | None = None,
) -> web.Response:
    """A refusal with Okta's error shape (never echoing the request), logged."""
    _log(request, status, summary, delivery)
    body = json.dumps({"error": {"errorSummary": summary}}).encode()
    if status == 503:
        headers = {**(headers or {}), "Retry-After": "1"}
    return web.Response(status=status, body=body, headers=headers, content_type=_JSON)


def _log(
    request: web.Request,
    status: int,
    result: str,
    delivery: Delivery | None = None,
    outcome: DeliveryOutcome | None = None,
    seconds: float | None = None,
) -> None:
    """One `event_hook` line per request: counts and ids, never logins or event contents."""
    if not event_logger.isEnabledFor(logging.INFO):
        return
    event_logger.info(
        "event_hook",
        extra={
            "event": "event_hook",
            "method": request.method,
            "status": status,
            "result": result,
            "event_id": delivery.event_id if delivery else None,
            "events": len(delivery.events) if delivery else None,
            **(outcome.by_outcome() if outcome else {}),
            **({"latency_ms": round(seconds * 1000, 1)} if seconds is not None else {}),
        },
    )


__all__ = [
    "CHALLENGE_HEADER",
    "EVENT_HOOK",
    "EventHook",
    "add_event_hook",
    "handle_delivery",
    "handle_verification",
]
