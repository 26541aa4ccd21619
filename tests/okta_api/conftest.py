"""Fixtures: the Okta emulator and the client on one virtual clock, and a proxy that loses answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from multidict import CIMultiDict

from emulators.okta import (
    DEFAULT_API_TOKEN,
    OktaOrg,
    RunningOktaEmulator,
    SeedGroup,
    SeedOAuthClient,
    start_okta_emulator,
)
from gateway.okta_api import OAuthServiceApp, OktaApiClient, SswsToken

GROUP_ID = "00gemulatorgroup0001"
CLIENT_ID = "0oaserviceapp000001"
KEY_ID = "gateway-key-1"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ALL_SCOPES = [
    "okta.users.read",
    "okta.users.manage",
    "okta.inlineHooks.read",
    "okta.inlineHooks.manage",
    "okta.eventHooks.read",
    "okta.eventHooks.manage",
]


def profile_of(login: str, **extra: Any) -> dict[str, Any]:
    """A profile Okta's default schema accepts."""
    return {"login": login, "email": login, "firstName": "Test", "lastName": "User", **extra}


class VirtualClock:
    """One clock for the emulator (called) and the client (``Clock``); sleeping moves it.

    A sleep of ``d`` seconds ends at ``now + d`` as of the call: concurrent sleepers move the
    clock to the latest of their ends, not to the sum of their durations.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept = 0.0

    def __call__(self) -> float:
        """The emulator's view (epoch seconds)."""
        return self.now

    def time(self) -> float:
        """The client's wall time."""
        return self.now

    def monotonic(self) -> float:
        """The client's monotonic time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Let other tasks run, then move time to this sleep's end."""
        target = self.now + max(seconds, 0.0)
        self.slept += max(seconds, 0.0)
        await asyncio.sleep(0)
        self.now = max(self.now, target)

    def advance(self, seconds: float) -> None:
        """Move time forward by hand."""
        self.now += seconds


@pytest.fixture
def clock() -> VirtualClock:
    """The shared virtual clock."""
    return VirtualClock()


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    """The public half of ``key`` as a JWK with ``kid``."""
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    return jwk


@pytest.fixture
def org() -> OktaOrg:
    """An org with one group and one service app (all management scopes)."""
    return OktaOrg(
        groups=[SeedGroup(name="Office 365 users", id=GROUP_ID)],
        oauth_clients=[
            SeedOAuthClient(
                client_id=CLIENT_ID, jwks=[public_jwk(RSA_KEY, KEY_ID)], scopes=ALL_SCOPES
            )
        ],
    )


@pytest.fixture
async def okta(org: OktaOrg, clock: VirtualClock) -> AsyncIterator[RunningOktaEmulator]:
    """The emulator on a real loopback socket, on the virtual clock."""
    running = await start_okta_emulator(org, clock=clock)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The service app's private key as a PEM file."""
    path = tmp_path / "okta-key.pem"
    path.write_bytes(
        RSA_KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


ClientFactory = Callable[..., Awaitable[OktaApiClient]]


@pytest.fixture
async def make_client(
    okta: RunningOktaEmulator, clock: VirtualClock
) -> AsyncIterator[ClientFactory]:
    """Open clients (SSWS by default) on the virtual clock; all are closed at the end."""
    opened: list[OktaApiClient] = []

    async def make(
        credentials: SswsToken | OAuthServiceApp | None = None,
        *,
        url: str | None = None,
        **options: Any,
    ) -> OktaApiClient:
        options.setdefault("clock", clock)
        client = OktaApiClient(
            url or okta.url, credentials or SswsToken(DEFAULT_API_TOKEN), **options
        )
        await client.open()
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> OktaApiClient:
    """An SSWS client for the emulator."""
    return await make_client()


def oauth_app(key_file: Path, scopes: list[str] | None = None) -> OAuthServiceApp:
    """The service app of ``org``, with its key file."""
    return OAuthServiceApp(
        client_id=CLIENT_ID,
        private_key_file=key_file,
        scopes=scopes if scopes is not None else ALL_SCOPES,
        key_id=KEY_ID,
    )


Action = Literal["lose", "hang", "drop"]
_HOP_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
)


@dataclass
class FaultProxy:
    """An HTTP proxy on loopback in front of the emulator that can lose answers it forwarded.

    The emulator's own faults strike before its handlers run, so they never show a request
    that was carried out but whose answer did not arrive; this proxy does: ``lose`` forwards,
    then answers 502 as a load balancer would; ``hang`` forwards, then never answers; ``drop``
    forwards, then closes the connection. Each planned action is used once.
    """

    upstream: str
    url: str = ""
    plan: list[tuple[str, str, Action]] = field(default_factory=list)
    link_rewrite: Callable[[list[str]], list[str]] | None = None
    forwarded: list[str] = field(default_factory=list)

    def lose_next(self, method: str, path_prefix: str, action: Action = "lose") -> None:
        """Apply ``action`` to the next request of ``method`` whose path starts with the prefix."""
        self.plan.append((method, path_prefix, action))

    def _take(self, method: str, path: str) -> Action | None:
        """The planned action for this request (consumed), if any."""
        for index, (m, prefix, action) in enumerate(self.plan):
            if m == method and path.startswith(prefix):
                del self.plan[index]
                return action
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward to the emulator (keeping Host, so its links and audiences name the proxy)."""
        action = self._take(request.method, request.path)
        body = await request.read()
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS
        )
        self.forwarded.append(f"{request.method} {request.path}")
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as upstream,
        ):
            raw = await upstream.read()
            status = upstream.status
            answer_headers = CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
            )
        if action == "lose":
            return web.Response(status=502, text="Bad Gateway", content_type="text/html")
        if action == "hang":
            await asyncio.sleep(3600)
        if action == "drop":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        if self.link_rewrite is not None and "Link" in answer_headers:
            links = self.link_rewrite(answer_headers.getall("Link"))
            answer_headers.popall("Link")
            for value in links:
                answer_headers.add("Link", value)
        return web.Response(status=status, body=raw, headers=answer_headers)


@pytest.fixture
async def proxy(okta: RunningOktaEmulator) -> AsyncIterator[FaultProxy]:
    """A ``FaultProxy`` in front of the emulator on its own loopback port."""
    fault_proxy = FaultProxy(okta.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fault_proxy.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fault_proxy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fault_proxy
    finally:
        await runner.cleanup()


async def emulator_stats(okta: RunningOktaEmulator) -> dict[str, Any]:
    """The emulator's counters (read directly: the control plane is not under test here)."""
    return okta.emulator.stats()
