"""The aiohttp application: Okta hook endpoint, health probes and metrics."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.admin import admin_listener
from gateway.body import (
    ACCEPTED_ENCODINGS,
    BadEncoding,
    BodyTimeout,
    TooLarge,
    UnsupportedEncoding,
    read_body,
)
from gateway.config import GatewayConfig
from gateway.connections import BODY_TIMEOUT, close_connection, serve_guarded
from gateway.ledger.models import Decision as LedgerDecision
from gateway.logs import install_library_filters
from gateway.loop_lag import loop_lag_ctx
from gateway.metrics import GatewayMetrics
from gateway.okta import BadHookRequest, PasswordImportRequest, parse_password_import, reply_body
from gateway.runtime import RUNTIME, Generation, Runtime
from gateway.serve_ledger import SERVE_LEDGER, ServeLedger, ledger_wanted, serve_ledger_ctx
from gateway.service import Decision
from gateway.state import RedisSettings, SharedState, StateLimits
from plugins.base import Source

logger = logging.getLogger(__name__)
decision_logger = logging.getLogger("gateway.decision")

METRICS = web.AppKey("metrics", GatewayMetrics)
STATE = web.AppKey("state", SharedState)
# The process's readiness probe: a path of its own beside /readyz, whose per-source detail is for
# people and alerts. A load balancer that followed /readyz would take every replica out of
# service when the directory is down, and Okta would then get errors instead of UNVERIFIED.
PROCESS_READY_PATH = "/readyz/process"


@dataclass
class ProcessPhase:
    """Where the process is in its life: `starting` -> `serving` -> `stopping`."""

    phase: str = "starting"


PHASE = web.AppKey("phase", ProcessPhase)
# On the metrics listener's app: the gateway app whose registry it exposes.
_GATEWAY_APP = web.AppKey("gateway_app", web.Application)

_JSON = "application/json"
# Time for the bookkeeping after a source's deadline (cache write, counters) before giving up.
_DEADLINE_SLACK_SECONDS = 0.1


def create_app(
    config: GatewayConfig,
    sources: Mapping[str, Source] | None = None,
    config_path: str | None = None,
) -> web.Application:
    """Build the app; sources are created from config unless given (tests may inject them).

    `config_path` is the file a reload (SIGHUP, `POST /admin/reload`) reads again.
    """
    install_library_filters()  # third-party records never carry bodies or secrets
    # The body limit is enforced by the hook handler after authentication, not by aiohttp.
    # aiohttp would inflate a gzip/br body as it arrives, before any handler can check auth, and
    # its lingering close would drain (and inflate) the body of a rejected request for 10 s more:
    # a body the handler did not read just gets its connection closed.
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[_never_5xx_to_okta],
        handler_args={"auto_decompress": False, "lingering_time": 0},
    )
    metrics = GatewayMetrics(with_redis_gauge=config.cache.backend == "redis")
    state = build_state(config, metrics)
    secret = config.cache.hmac_secret
    # Replicas share the configured secret; a lone process with the memory store makes its own.
    shared_key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
    app[METRICS] = metrics
    app[STATE] = state
    app[RUNTIME] = Runtime(config, metrics, state, shared_key, sources, config_path)
    app.cleanup_ctx.append(_state_ctx)
    app.cleanup_ctx.append(loop_lag_ctx(metrics.event_loop_lag))
    if ledger_wanted(config.migration):
        # Cleanup runs in reverse: the ledger closes after the listeners, the sources and the
        # event hook's background actions are done with it.
        app[SERVE_LEDGER] = ServeLedger.from_config(config.migration)
        app.cleanup_ctx.append(serve_ledger_ctx)
    app.cleanup_ctx.append(_sources_ctx)
    if SERVE_LEDGER in app:
        from gateway.migration_gauges import migration_gauges_ctx

        app.cleanup_ctx.append(migration_gauges_ctx)  # gateway_migration_users
    if config.server.metrics_port is not None:
        app.cleanup_ctx.append(_metrics_listener)
    if config.admin is not None:
        app.cleanup_ctx.append(admin_listener)
    app.router.add_post(config.okta.hook_path, handle_password_import)
    if config.migration.event_hook is not None:
        # Imported only when configured: it brings the migration commands' code with it.
        from gateway.event_hook import add_event_hook

        add_event_hook(app, config, metrics)  # after sources and ledger: its actions use both
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.router.add_get(PROCESS_READY_PATH, handle_process_ready)
    if config.server.metrics_port is None:
        app.router.add_get("/metrics", handle_metrics)
    app[PHASE] = ProcessPhase()
    app.cleanup_ctx.append(_serving_ctx)  # last: everything above has started
    app.on_shutdown.append(_stopping)
    return app


def build_state(config: GatewayConfig, metrics: GatewayMetrics) -> SharedState:
    """The one place the state layer is built: Redis if configured, memory as store or fallback."""
    cache = config.cache
    redis = None
    if cache.backend == "redis":
        redis = RedisSettings(cache.url, cache.key_prefix, cache.redis_timeout_seconds)
    limits = StateLimits(
        cache_entries=cache.max_entries,
        protection_entries=config.rate_limits.max_tracked,
        fallback_replicas=config.rate_limits.fallback_replicas,
    )
    return SharedState(
        redis,
        limits,
        on_full=lambda store: metrics.state_full.labels(store=store).inc(),
        on_redis_change=lambda up: metrics.redis_up.set(int(up)),
    )


async def _state_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to Redis (if configured) before serving; close it last."""
    state = app[STATE]
    await state.start()
    logger.info("cache ready", extra={"backend": state.backend_name})
    try:
        yield
    finally:
        await state.close()


def freeze_startup_objects() -> None:
    """Take what start-up built (modules, config, clients) out of the garbage collector's sight.

    Those objects live as long as the process; a full collection would walk all of them again
    and again while requests churn through short-lived ones, and the more libraries are loaded
    (SQLAlchemy for the ledger, Jinja2 for the admin page) the more each pass costs. After
    `gc.freeze()` collections only look at what requests create.
    """
    gc.collect()
    gc.freeze()


async def _serving_ctx(app: web.Application) -> AsyncIterator[None]:
    """Mark the process as serving once every other start-up step has finished."""
    app[PHASE].phase = "serving"
    freeze_startup_objects()
    yield


async def _stopping(app: web.Application) -> None:
    """Shutdown began (SIGTERM): the process probe fails from now on."""
    app[PHASE].phase = "stopping"


async def _metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """Serve /metrics on `server.host:server.metrics_port` (plain HTTP) while the gateway runs."""
    server = app[RUNTIME].current.config.server
    assert server.metrics_port is not None
    metrics_app = web.Application()
    metrics_app[_GATEWAY_APP] = app
    metrics_app.router.add_get("/metrics", handle_metrics)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    try:
        await serve_guarded(
            runner,
            server.host,
            server.metrics_port,
            listener="metrics",
            settings=server,
            metrics=app[METRICS],
        )
    except BaseException:
        await runner.cleanup()
        raise
    logger.info(
        "metrics listener started", extra={"host": server.host, "port": server.metrics_port}
    )
    try:
        yield
    finally:
        await runner.cleanup()


async def _sources_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start every source (none blocks start-up when its upstream is down), close them at exit."""
    runtime = app[RUNTIME]
    try:
        await runtime.start()
        _publish_readiness(app)
        current = runtime.current
        logger.info(
            "gateway started",
            extra={
                "sources": {name: s.ready for name, s in current.sources.items()},
                "hook_path": current.config.okta.hook_path,
                "config_hash": current.config.digest,
            },
        )
        yield
    finally:
        await runtime.close()


@web.middleware
async def _never_5xx_to_okta(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer UNVERIFIED instead of a 5xx: a 5xx makes Okta resend the clear-text password."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        generation = request.app[RUNTIME].current
        if request.path != generation.config.okta.hook_path:
            raise
        logger.exception("hook handler failed; answering UNVERIFIED")
        request.app[METRICS].hook_requests.labels(outcome="unverified").inc()
        _log_decision(generation, "unverified", "other", 0.0)
        return web.Response(body=reply_body(False), content_type=_JSON)


async def handle_password_import(request: web.Request) -> web.Response:
    """POST from Okta: auth (401) -> size (413) -> coding (415/400) -> shape (400) -> 200.

    The request takes the current configuration once and uses only it, even if a reload swaps
    in another while it runs.
    """
    with request.app[RUNTIME].current.serving() as generation:
        return await _answer(request, generation)


async def _answer(request: web.Request, generation: Generation) -> web.Response:
    config, metrics = generation.config, request.app[METRICS]
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + config.budget_seconds
    # Waits only when a token names a key not seen yet, and then for half the budget at most.
    auth_error = await generation.auth.check(request.headers, config.budget_seconds / 2)
    if auth_error is not None:
        summary = "missing or wrong hook credentials"  # the reason is logged, never answered
        return _reject(
            metrics, generation, started, 401, "unauthorized", summary, auth_error=auth_error
        )
    limit = config.server.max_body_bytes
    try:
        body = await read_body(request, limit, deadline)
    except TooLarge:
        return _reject(
            metrics, generation, started, 413, "too_large", f"body larger than {limit} bytes"
        )
    except BodyTimeout:
        # A 400 (a bad request), not a 408: Okta resends nothing after a 4xx, but 408 is the one
        # 4xx an HTTP client may repeat on its own, and a repeat sends the password once more.
        summary = f"body not received within {config.budget_seconds} s"
        response = _reject(metrics, generation, started, 400, "bad_request", summary)
        close_connection(request, response, BODY_TIMEOUT)  # the rest of the body is unread
        return response
    except UnsupportedEncoding:
        # The outcome label set is closed and has no 415 of its own: it is a bad request.
        summary = f"unsupported Content-Encoding; send {ACCEPTED_ENCODINGS} or none"
        headers = {"Accept-Encoding": ACCEPTED_ENCODINGS}  # RFC 9110 §15.5.16
        return _reject(metrics, generation, started, 415, "bad_request", summary, headers=headers)
    except BadEncoding:
        summary = "body does not match its Content-Encoding"
        return _reject(metrics, generation, started, 400, "bad_request", summary)
    try:
        hook = parse_password_import(body)
    except BadHookRequest as err:
        return _reject(metrics, generation, started, 400, "bad_request", err.summary, err.body())
    metrics.inflight.inc()
    try:
        # Sources get the deadline themselves; this also bounds limits and cache lookups, so a
        # slow shared store can never push the answer past the budget.
        async with asyncio.timeout_at(deadline + _DEADLINE_SLACK_SECONDS):
            decision = await generation.service.decide(
                hook.username, hook.password, deadline, hook.client_ip
            )
    except TimeoutError:
        decision = Decision(False, "timeout")
    finally:
        metrics.inflight.dec()
    outcome = "verified" if decision.verified else "unverified"
    metrics.hook_requests.labels(outcome=outcome).inc()
    if decision.verified and decision.source is not None:
        _record_verified(request.app, hook, decision.source)
    _log_decision(
        generation,
        outcome,
        decision.reason,
        loop.time() - started,
        hook,
        decision.route,
        decision.source,
    )
    return web.Response(body=reply_body(decision.verified), content_type=_JSON)


def _record_verified(app: web.Application, hook: PasswordImportRequest, source: str) -> None:
    """Hand a VERIFIED decision to the ledger's recorder: a queue append, no I/O, no await."""
    serve_ledger = app.get(SERVE_LEDGER)
    if serve_ledger is not None:
        serve_ledger.recorder.put(
            LedgerDecision(source, hook.username, "verified", datetime.now(UTC), hook.okta_user_id)
        )


def _reject(
    metrics: GatewayMetrics,
    generation: Generation,
    started: float,
    status: int,
    outcome: str,
    summary: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth_error: str | None = None,
) -> web.Response:
    """Answer a request that is not a usable hook call (never echoing it), count and log it."""
    metrics.hook_requests.labels(outcome=outcome).inc()
    if auth_error is not None:
        metrics.hook_auth_failures.labels(reason=auth_error).inc()
    seconds = asyncio.get_running_loop().time() - started
    _log_decision(generation, outcome, outcome, seconds, auth_error=auth_error)
    payload = body or json.dumps({"error": {"errorSummary": summary}}).encode()
    return web.Response(status=status, body=payload, headers=headers, content_type=_JSON)


def _log_decision(
    generation: Generation,
    outcome: str,
    reason: str,
    seconds: float,
    hook: PasswordImportRequest | None = None,
    route: str | None = None,
    source: str | None = None,
    auth_error: str | None = None,
) -> None:
    """Exactly one `hook_decision` line per hook request; the username only redacted.

    `auth_error` says why a 401 was answered (gateway/hook_oauth.py AUTH_ERRORS), never with
    anything the request carried.
    """
    if not decision_logger.isEnabledFor(logging.INFO):
        return  # logging set to warning: skip redacting and building the record
    decision_logger.info(
        "hook_decision",
        extra={
            "event": "hook_decision",
            "event_id": hook.event_id if hook else None,
            "okta_request_id": hook.request_id if hook else None,
            "user": generation.redact(hook.username) if hook else None,
            "route": route,
            "source": source,
            "result": outcome,
            "reason": reason,
            "auth_error": auth_error,
            "latency_ms": round(seconds * 1000, 1),
        },
    )


def _publish_readiness(app: web.Application) -> None:
    """Sources become ready in the background: refresh the gauge whenever it is read."""
    for name, source in app[RUNTIME].current.sources.items():
        app[METRICS].source_ready.labels(source=name).set(int(source.ready))


async def handle_healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def handle_process_ready(request: web.Request) -> web.Response:
    """Readiness of the process: it has started with a loaded config and is not stopping.

    It never asks the directories: a source outage is answered UNVERIFIED by every replica
    alike, so taking replicas out of service would only turn those answers into errors.
    """
    app = request.app
    phase = app[PHASE].phase
    body = {"status": phase, "config_hash": app[RUNTIME].current.config.digest}
    return web.json_response(body, status=200 if phase == "serving" else 503)


async def handle_readyz(request: web.Request) -> web.Response:
    """Readiness: every source has started (and the ledger is open, when the gateway uses one).

    The body says what is not ready and why. For people and alerts: the probes of a load
    balancer use `/readyz/process`, which never depends on a directory or a database.
    """
    current = request.app[RUNTIME].current
    sources, guards = current.sources, current.service.guards
    detail = {
        name: {
            "ready": s.ready,
            "circuit": guards[name].breaker.state.name.lower(),
            **({"last_error": s.last_error} if not s.ready else {}),
        }
        for name, s in sources.items()
    }
    _publish_readiness(request.app)
    ready = all(s.ready for s in sources.values())
    state = request.app[STATE]
    # Redis trouble does not make the gateway unready: it falls back to per-process state.
    cache = {"backend": state.backend_name, "redis_up": state.redis_up}
    body: dict[str, object] = {"sources": detail, "cache": cache}
    serve_ledger = request.app.get(SERVE_LEDGER)
    if serve_ledger is not None:
        # The hook never needs the ledger, but the event hook does (it answers 503 without it).
        body["ledger"] = {"open": serve_ledger.ledger is not None}
        ready = ready and serve_ledger.ledger is not None
    return web.json_response(
        {"status": "ready" if ready else "not_ready", **body}, status=200 if ready else 503
    )


async def handle_metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this app's registry (served by the metrics listener too)."""
    app = request.app.get(_GATEWAY_APP, request.app)
    _publish_readiness(app)
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
