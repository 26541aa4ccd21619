"""Reference "peer": the password-import hook as a typical sample writes it, run for comparison.

A tiny aiohttp app whose handler parses the hook JSON and runs msal's
`ConfidentialClientApplication.acquire_token_by_username_password` in a thread pool
(`loop.run_in_executor`), with msal's defaults: its own `requests` session (`HTTPAdapter` with
`max_retries=1`, urllib3's pool of 10 connections per host), its HTTP cache (user realm per
*username* for 24 h, 400 answers for 60 s, at most 1,024 entries) and its token cache (every
user's tokens, in memory, for the life of the process). None of the gateway's features: no auth
check, no limits, no verdict cache, no metrics, no logging, asyncio's own event loop.

It reaches the emulator the way the gateway's loopback mode does: msal gets an `https://`
authority and `instance_discovery=False`, and a transport adapter sends every URL, whatever its
host, to the emulator base (path and query kept). The only departures from a stock sample:
a pool of `--threads` threads (default 100: Okta keeps up to about 75 calls in flight, and the
default executor's min(32, CPUs + 4) threads would cap it at 6 / L calls a second), and the
gateway's verdict rule (MFA-required counts as VERIFIED) so the load generator can check it.

    python -m bench.peer --authority http://127.0.0.1:8400 --port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msal
import requests
from aiohttp import web
from requests.adapters import HTTPAdapter

from bench import hook_server
from emulators.entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID

AUTHORITY_HOST = "https://login.loopback.invalid"  # as the gateway's loopback mode; never resolved
MSAL = web.AppKey("msal", msal.ConfidentialClientApplication)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)


class ToEmulator(HTTPAdapter):
    """Sends every request to the emulator base, keeping path and query (like loopback mode)."""

    def __init__(self, base: str) -> None:
        super().__init__(max_retries=1)  # what msal mounts on the session it builds itself
        self._base = urlsplit(base)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        """Rewrite the URL's scheme and host, then send as usual."""
        parts = urlsplit(request.url or "")
        request.url = urlunsplit(
            (self._base.scheme, self._base.netloc, parts.path, parts.query, "")
        )
        return super().send(request, *args, **kwargs)


def build_msal(authority: str) -> msal.ConfidentialClientApplication:
    """One app for the process, as samples build it: msal's default caches, a session of its kind."""
    session = requests.Session()
    session.mount("https://", ToEmulator(authority))
    session.mount("http://", ToEmulator(authority))
    return msal.ConfidentialClientApplication(
        DEFAULT_CLIENT_ID,
        client_credential=DEFAULT_CLIENT_SECRET,
        authority=f"{AUTHORITY_HOST}/{DEFAULT_TENANT_ID}",
        http_client=session,
        instance_discovery=False,
    )


async def handle_hook(request: web.Request) -> web.Response:
    """Parse the hook body, ask msal in the thread pool, answer VERIFIED or UNVERIFIED."""
    payload = await request.json()
    credential = payload["data"]["context"]["credential"]
    app = request.app[MSAL]
    call = functools.partial(
        app.acquire_token_by_username_password,
        credential["username"],
        credential["password"],
        scopes=["User.Read"],
    )
    try:
        answer = await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], call)
    except Exception:  # noqa: BLE001 - a sample answers UNVERIFIED on any msal failure
        answer = {}
    return web.Response(
        body=hook_server.reply(hook_server.verified(answer)), content_type="application/json"
    )


async def main_async(args: argparse.Namespace) -> None:
    """Build msal (discovery happens here), then serve the hook."""
    executor = ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="msal")
    app = web.Application()
    app[MSAL] = await asyncio.get_running_loop().run_in_executor(
        executor, build_msal, args.authority
    )
    app[EXECUTOR] = executor
    app.router.add_post(hook_server.HOOK_PATH, handle_hook)
    try:
        await hook_server.serve(app, args.port)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__)
    parser.add_argument("--authority", required=True, help="emulator base URL (http://...)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=100, help="thread pool size")
    args = parser.parse_args(argv)
    return hook_server.run(lambda: main_async(args), None)


if __name__ == "__main__":
    sys.exit(main())
