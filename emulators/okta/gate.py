"""The middleware every API request passes: counters, concurrency, faults, rate limits, auth, errors.

Order, as a request meets it: count it per endpoint -> refuse past the concurrency limit (429,
``X-Rate-Limit-Limit: 0``) -> injected latency -> injected fault -> count it in its bucket (429
E0000047 past the limit) -> authenticate (``/api/v1`` but ``/api/v1/authn``) -> handler. Every API
response carries ``X-Rate-Limit-Limit/-Remaining/-Reset``, ``X-Okta-Request-Id`` and a ``Date``
from the emulator's clock (the SDKs wait ``Reset - Date + 1`` seconds, so both must come from the
same clock).
Handler errors (``OktaApiError``) and unknown routes become Okta's JSON error objects.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Final

from aiohttp import web

from emulators.okta import errors
from emulators.okta.limits import RateLimitState, bucket_for
from emulators.okta.oauth import authenticate
from emulators.okta.state import EMULATOR_KEY, OktaEmulator
from emulators.okta.system_log import REQUEST_CONTEXT, RequestContext

__all__ = ["HANG_SECONDS", "api_gate", "contain_errors"]

logger = logging.getLogger(__name__)

HANG_SECONDS: Final = 3600.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def contain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn an emulator bug into a bare 500 E0000009 without logging request data."""
    try:
        return await handler(request)
    except (web.HTTPException, asyncio.CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 - an emulator bug must not echo request bodies
        logger.error("okta emulator: %s on %s %s", type(exc).__name__, request.method, request.path)
        return errors.internal_error().response()


def _endpoint(request: web.Request) -> str:
    """``METHOD /path/{template}``: a closed set of names for the per-endpoint counter."""
    route = request.match_info.route
    canonical = route.resource.canonical if route.resource is not None else "(unmatched)"
    return f"{request.method} {canonical}"


def _fault_response(emulator: OktaEmulator, bucket: str) -> web.Response | None:
    """The answer an injected fault gives (None for ``hang``, which the caller sleeps on)."""
    mode = emulator.fault.mode
    emulator.faults_injected[mode] += 1
    if mode == "http_429":
        state = emulator.limiter.peek(bucket)
        headers = RateLimitState(
            state.limit, 0, int(emulator.clock()) + emulator.fault.retry_after, True
        ).headers()
        return errors.rate_limited(headers).response()
    if mode == "http_500":
        return errors.internal_error().response()
    if mode in ("http_503", "http_504"):
        # What a load balancer in front of Okta answers: not an Okta JSON error object.
        status = int(mode.removeprefix("http_"))
        return web.Response(status=status, text="Service Unavailable", content_type="text/html")
    return None


async def _admit(
    emulator: OktaEmulator, request: web.Request, handler: Handler, bucket: str
) -> tuple[web.StreamResponse, RateLimitState]:
    """Everything after the concurrency check: latency, faults, rate limit, auth, handler."""
    if emulator.latency_ms:
        await asyncio.sleep(emulator.latency_ms / 1000)
    if emulator.fault.strikes(bucket):
        faulted = _fault_response(emulator, bucket)
        if faulted is None:  # hang: hold the request until the client gives up
            await asyncio.sleep(HANG_SECONDS)
            faulted = web.Response(status=504)
        return faulted, emulator.limiter.peek(bucket)
    state = emulator.limiter.hit(bucket)
    if state.exceeded:
        emulator.rate_limited_by_bucket[bucket] += 1
        return errors.rate_limited(state.headers()).response(), state
    try:
        # Primary authentication is a public application's call: no API token (authn module).
        if request.path.startswith("/api/v1/") and bucket != "authn":
            authenticate(emulator, request)
        return await handler(request), state
    except errors.OktaApiError as err:
        return err.response(), state
    except web.HTTPNotFound:
        return errors.not_found(request.path, "Resource").response(), state
    except web.HTTPMethodNotAllowed:
        return errors.method_not_allowed().response(), state


@web.middleware
async def api_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply Okta's limits and headers to ``/api/v1/*`` and ``/oauth2/v1/token``."""
    emulator = request.app[EMULATOR_KEY]
    bucket = bucket_for(request.method, request.path)
    if bucket is None:
        return await handler(request)
    emulator.requests_by_endpoint[_endpoint(request)] += 1
    request_id = secrets.token_urlsafe(18)
    # Events the handler publishes name this request (debugContext, transaction).
    REQUEST_CONTEXT.set(RequestContext(request_id, request.path))
    limit = emulator.concurrency_limit
    if limit is not None and emulator.in_flight >= limit:
        emulator.concurrency_rejections += 1
        reset = int(emulator.clock()) + 1  # an estimate, as Okta's is for concurrency 429s
        response: web.StreamResponse = errors.rate_limited(
            RateLimitState(0, 0, reset, True).headers()
        ).response()
    else:
        emulator.in_flight += 1
        emulator.peak_in_flight = max(emulator.peak_in_flight, emulator.in_flight)
        try:
            response, state = await _admit(emulator, request, handler, bucket)
        finally:
            emulator.in_flight -= 1
        for name, value in state.headers().items():
            response.headers.setdefault(name, value)
    response.headers["X-Okta-Request-Id"] = request_id
    response.headers["Date"] = formatdate(emulator.clock(), usegmt=True)
    emulator.responses_by_status[response.status] += 1
    return response
