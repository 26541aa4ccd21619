"""Fault simulation: the global fault modes and the answers every fault gives.

Global fault modes (``set_fault`` / ``PUT /_emulator/fault``): ``http_429``, ``http_500``,
``non_json`` (a proxy's HTML page), ``hang`` on token and realm requests; ``reflect_body`` makes
the token and AD FS endpoints answer 400 ``text/html`` echoing the request body they received
(raw, then URL-decoded), as a misbehaving proxy or WAF page would, so tests can check that no
client logs it (it carries the password and the client secret). Realm requests are not
affected by ``reflect_body``: they carry no body, and the client must get as far as the POST.

A user's ``behaviour`` may name the same HTTP faults (``http_429`` with the user's
``retry_after``, ``http_500``, ``non_json``, ``hang``) for that user's token requests only.
``http_429`` is Entra's throttling answer, AADSTS90055 with ``Retry-After`` (RFC 6585 §4,
RFC 9110 §10.2.3); ``http_500`` is AADSTS50000.

Latency (``latency_ms``, global or per user) is applied by the handlers that spend it: the token
endpoint answers no sooner than the global ``latency_ms`` after the request arrived (a user's own
latency is spent within that time, not added to it: token.py); the AD FS endpoint sleeps the
global latency before reading the request and the user's once it knows the user (wstrust.py).
Discovery, Graph and the control plane have no latency and no faults.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote_plus

from aiohttp import web

from emulators.entra.aadsts import aad_error_response
from emulators.entra.directory import EmulatedDirectory

FaultMode = Literal["none", "http_429", "http_500", "non_json", "hang", "reflect_body"]
HANG_SECONDS: Final = 3600.0


@dataclass(slots=True)
class _FaultSettings:
    """The global outage simulation applied to token and realm requests."""

    mode: FaultMode = "none"
    retry_after: int = 5


def _reflected_body(body: bytes) -> web.Response:
    """The ``reflect_body`` fault: a proxy error page quoting the request, unescaped."""
    raw = body.decode("utf-8", "replace")
    return web.Response(
        status=400,
        text=f"<html><body><h1>400 Bad Request</h1><p>Your request:</p><pre>{raw}</pre>"
        f"<pre>{unquote_plus(raw)}</pre></body></html>",
        content_type="text/html",
    )


async def simulated_fault(
    directory: EmulatedDirectory, mode: str, retry_after: int
) -> web.Response:
    """Simulate throttling, a server error, a proxy's HTML page or a hung connection."""
    if mode == "http_429":
        return aad_error_response(directory, 90055, headers={"Retry-After": str(retry_after)})
    if mode == "http_500":
        return aad_error_response(directory, 50000)
    if mode == "non_json":
        return web.Response(
            status=403,
            text="<html><head><title>403 Forbidden</title></head>"
            "<body><h1>Forbidden</h1><p>Request blocked by proxy.</p></body></html>",
            content_type="text/html",
        )
    # hang: the client's timeout ends it; handler cancellation then stops this sleep.
    await asyncio.sleep(HANG_SECONDS)
    return web.Response(status=504, text="emulator hang ended")
