"""Reference "floor": the least any hook gateway must spend, run for comparison.

Per hook call: read and parse the JSON body, one aiohttp POST of the ROPC form (the fields msal
sends) to the emulator's token endpoint on a pooled connection, parse the JSON answer, reply.
No msal, no user-realm lookup, no auth check, no limits, cache, metrics or logs. It runs on the
same event loop as `gateway serve` (uvloop where installed), so the gateway's ratio to it
measures the gateway's code, not a choice of loop.

    python -m bench.floor --authority http://127.0.0.1:8400 --port 8082
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bench import hook_server
from emulators.entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID

SESSION = web.AppKey("session", aiohttp.ClientSession)
TOKEN_URL = web.AppKey("token_url", str)
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_REPLY = {True: hook_server.reply(True), False: hook_server.reply(False)}


async def handle_hook(request: web.Request) -> web.Response:
    """One token POST per hook call; the verdict from its JSON answer."""
    credential = json.loads(await request.read())["data"]["context"]["credential"]
    form = {
        "client_id": DEFAULT_CLIENT_ID,
        "grant_type": "password",
        "client_info": "1",
        "client_secret": DEFAULT_CLIENT_SECRET,
        "username": credential["username"],
        "password": credential["password"],
        "scope": hook_server.SCOPE,
    }
    session = request.app[SESSION]
    body = urlencode(form).encode()
    async with session.post(request.app[TOKEN_URL], data=body, headers=_FORM) as response:
        answer = json.loads(await response.read())
    return web.Response(body=_REPLY[hook_server.verified(answer)], content_type="application/json")


def make_app(authority: str) -> web.Application:
    """The app with its one pooled client session (as many connections as the gateway allows)."""
    app = web.Application()
    app[TOKEN_URL] = f"{authority.rstrip('/')}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token"

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post(hook_server.HOOK_PATH, handle_hook)
    return app


def _loop_factory() -> asyncio.AbstractEventLoop:
    """The event loop `gateway serve` runs on: uvloop where installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--authority", required=True, help="emulator base URL (http://...)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    return hook_server.run(
        lambda: hook_server.serve(make_app(args.authority), args.port, access_log=False),
        _loop_factory if args.loop == "uvloop" else None,
    )


if __name__ == "__main__":
    sys.exit(main())
