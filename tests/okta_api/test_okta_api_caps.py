"""The Okta API client against a hostile server: capped answers, no redirects, links pinned."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.okta_api import OktaApiClient, OktaApiError, SswsToken
from tests.hostile_upstream import GIB, HostileUpstream, bomb, drip, hostile, huge, redirect

TOKEN = "00hostile-test-token-5b2e9c"


@pytest.fixture
async def server() -> AsyncIterator[HostileUpstream]:
    """The hostile 'Okta org'."""
    async with hostile() as running:
        yield running


@pytest.fixture
async def foreign() -> AsyncIterator[HostileUpstream]:
    """Another origin, which must never see the token."""
    async with hostile() as running:
        yield running


def _client(url: str, **options: object) -> OktaApiClient:
    return OktaApiClient(url, SswsToken(TOKEN), max_retries=0, **options)  # type: ignore[arg-type]


async def test_gzip_bomb_answer_is_bad_response_and_not_retried(server: HostileUpstream) -> None:
    server.rules["/api/v1/users/someone"] = bomb(2 * GIB)
    async with OktaApiClient(server.url, SswsToken(TOKEN)) as okta:
        with pytest.raises(OktaApiError) as raised:
            await okta.get_user("someone")
    assert raised.value.code == "bad_response"
    assert "cap" in str(raised.value)
    assert len(server.requests) == 1


async def test_small_bomb_stops_at_the_configured_cap(server: HostileUpstream) -> None:
    server.rules["/api/v1/users/someone"] = bomb(64 * 1024 * 1024)  # about 64 KB as sent
    async with _client(server.url, max_response_bytes=1024 * 1024) as okta:
        with pytest.raises(OktaApiError, match="inflates") as raised:
            await okta.get_user("someone")
    assert raised.value.code == "bad_response"


async def test_endless_answer_is_cut_at_the_cap(server: HostileUpstream) -> None:
    behaviour, seen = huge(4 * GIB)
    server.rules["/api/v1/users/someone"] = behaviour
    async with _client(server.url, max_response_bytes=1024 * 1024) as okta:
        with pytest.raises(OktaApiError) as raised:
            await okta.get_user("someone")
    assert raised.value.code == "bad_response"
    assert seen.sent < 256 * 1024 * 1024


async def test_dripped_answer_ends_at_the_request_timeout(server: HostileUpstream) -> None:
    behaviour, _ = drip(interval=0.1)
    server.rules["/api/v1/users/someone"] = behaviour
    started = time.monotonic()
    async with _client(server.url, timeout_seconds=1.0) as okta:
        with pytest.raises(OktaApiError) as raised:
            await okta.get_user("someone")
    assert raised.value.code == "timeout"
    assert time.monotonic() - started < 10  # timeout 1 s; generous bound


async def test_redirect_is_not_followed_with_the_token(
    server: HostileUpstream, foreign: HostileUpstream
) -> None:
    server.rules["/api/v1/users/someone"] = redirect(foreign.url + "/api/v1/users/someone")
    async with _client(server.url) as okta:
        with pytest.raises(OktaApiError):
            await okta.get_user("someone")
    assert foreign.requests == []


async def test_next_link_to_another_origin_is_refused_and_named(
    server: HostileUpstream, foreign: HostileUpstream
) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        link = f'<{foreign.url}/api/v1/inlineHooks?after=x>; rel="next"'
        return web.json_response([{"id": "h1"}], headers={"Link": link})

    server.rules["/api/v1/inlineHooks"] = page
    async with _client(server.url) as okta:
        with pytest.raises(OktaApiError) as raised:
            await okta.list_inline_hooks()
    assert foreign.url in str(raised.value)
    assert foreign.requests == []
