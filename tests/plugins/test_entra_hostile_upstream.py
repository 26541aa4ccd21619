"""Entra source behind a hostile proxy: bombs, endless and dripped answers, redirects, foreign links.

The proxy (tests/hostile_upstream.py) forwards to the Entra emulator, as a TLS-intercepting
proxy in front of Entra would, except on the paths a test gives a hostile answer.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emulators.entra import RunningEmulator
from plugins.azure_ad import AzureAdSource
from plugins.base import Result
from plugins.entra_directory import DirectoryListError, get_user, iter_users
from tests.conftest import USERS, GatewayFactory, credential, post_hook
from tests.hostile_upstream import (
    GIB,
    HostileUpstream,
    bomb,
    drip,
    hostile,
    huge,
    json_answer,
    redirect,
)
from tests.plugins.test_azure_ad import source_config

MIB = 1024 * 1024
TOKEN_PATH = "*/oauth2/v2.0/token"
ALICE = "alice@contoso.com"


@pytest.fixture
async def proxy(entra: RunningEmulator) -> AsyncIterator[HostileUpstream]:
    """A hostile proxy in front of the Entra emulator."""
    async with hostile(forward_to=entra.url) as running:
        yield running


@pytest.fixture
async def foreign() -> AsyncIterator[HostileUpstream]:
    """Another origin on 127.0.0.1, which must never be asked anything."""
    async with hostile() as running:
        yield running


async def _source(proxy: HostileUpstream, **extra: Any) -> AzureAdSource:
    source = AzureAdSource(source_config(proxy.url, **extra))
    await source.start()
    assert source.ready
    return source


async def test_token_answer_gzip_bomb_is_unavailable_bad_response(proxy: HostileUpstream) -> None:
    source = await _source(proxy)
    proxy.rules[TOKEN_PATH] = bomb(2 * GIB)
    try:
        verdict = await source.verify(ALICE, USERS[ALICE])
    finally:
        await source.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "bad_response")


async def test_token_bomb_under_the_raw_cap_is_never_inflated_past_it(
    proxy: HostileUpstream,
) -> None:
    source = await _source(proxy)
    proxy.rules[TOKEN_PATH] = bomb(256 * MIB)  # about 260 KB as sent, under the 1 MiB cap
    tracemalloc.start()
    try:
        verdict = await source.verify(ALICE, USERS[ALICE])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await source.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "bad_response")
    assert peak < 32 * MIB  # the 1 MiB cap, and the answer as sent, never the 256 MiB


async def test_endless_token_answer_is_cut_at_the_cap(proxy: HostileUpstream) -> None:
    source = await _source(proxy)
    behaviour, seen = huge(4 * GIB)
    proxy.rules[TOKEN_PATH] = behaviour
    try:
        verdict = await source.verify(ALICE, USERS[ALICE])
    finally:
        await source.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "bad_response")
    await asyncio.wait_for(seen.hung_up.wait(), 10)
    assert seen.sent < 256 * MIB


async def test_token_redirect_is_not_followed(
    proxy: HostileUpstream, foreign: HostileUpstream
) -> None:
    source = await _source(proxy)
    proxy.rules[TOKEN_PATH] = redirect(foreign.url + "/common/oauth2/v2.0/token")
    try:
        verdict = await source.verify(ALICE, USERS[ALICE])
    finally:
        await source.close()
    assert verdict.result is Result.UNAVAILABLE
    assert foreign.requests == []  # the password went nowhere else


async def test_token_bomb_answers_200_unverified_within_budget_and_healthz_stays_fast(
    make_gateway: GatewayFactory, proxy: HostileUpstream
) -> None:
    client = await make_gateway(authority=proxy.url, budget=1.0)
    await post_hook(client, "carol@contoso.com", "Wrong#Pass-0000")  # discovery, realm warm
    proxy.rules[TOKEN_PATH] = bomb(2 * GIB)
    health: list[float] = []

    async def probe() -> None:
        for _ in range(10):
            started = time.monotonic()
            response = await client.get("/healthz")
            assert response.status == 200
            health.append(time.monotonic() - started)
            await asyncio.sleep(0.02)

    started = time.monotonic()
    (status, body), _ = await asyncio.gather(post_hook(client, ALICE, USERS[ALICE]), probe())
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert time.monotonic() - started < 5  # budget 1.0 s; generous bound
    assert max(health) < 2  # generous: the loop is never held by the bomb


async def test_oversized_answers_from_many_users_do_not_open_the_breaker(
    make_gateway: GatewayFactory, proxy: HostileUpstream
) -> None:
    client = await make_gateway(authority=proxy.url, budget=1.0)
    proxy.rules[TOKEN_PATH] = bomb(2 * GIB)
    for index in range(8):  # breaker default: 5 outage answers from 3 users would open it
        status, body = await post_hook(
            client, f"user{index}@contoso.com", "Some#Pass-0000", ip=f"66.124.153.{index}"
        )
        assert (status, credential(body)) == (200, "UNVERIFIED")
    del proxy.rules[TOKEN_PATH]
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(body)) == (200, "VERIFIED")


def _foreign_next_link(foreign: HostileUpstream) -> Any:
    def rewrite(page: dict[str, Any]) -> dict[str, Any]:
        return {**page, "@odata.nextLink": f"{foreign.url}/v1.0/users?$skiptoken=stolen"}

    return rewrite


async def test_graph_next_link_to_another_origin_stops_the_listing_and_names_it(
    proxy: HostileUpstream, foreign: HostileUpstream
) -> None:
    source = await _source(proxy)
    proxy.rewrite["/v1.0/users"] = _foreign_next_link(foreign)
    listed = []
    try:
        with pytest.raises(DirectoryListError) as raised:
            async for user in iter_users(source, ["displayName"], page_size=2):
                listed.append(user)
    finally:
        await source.close()
    assert raised.value.reason == "foreign_link"
    assert f"{foreign.url}" in str(raised.value)  # the foreign origin, named
    assert len(listed) == 2  # the first page, then nothing from the foreign link
    assert foreign.requests == []
    graph_gets = [path for method, path, _ in proxy.requests if path == "/v1.0/users"]
    assert len(graph_gets) == 1  # the link was not followed through the loopback rewrite


async def test_graph_page_bomb_is_a_bad_response_listing_error(proxy: HostileUpstream) -> None:
    source = await _source(proxy)
    proxy.rules["/v1.0/users"] = bomb(2 * GIB)
    try:
        with pytest.raises(DirectoryListError) as raised:
            async for _ in iter_users(source, ["displayName"]):
                pass
    finally:
        await source.close()
    assert raised.value.reason == "bad_response"
    assert "cap" in str(raised.value)


@pytest.mark.parametrize(("cap", "refused"), [(None, False), (65536, True)])
async def test_graph_page_over_the_configured_cap_is_refused(
    proxy: HostileUpstream, cap: int | None, refused: bool
) -> None:
    users = [{"id": str(n), "userPrincipalName": f"u{n}@contoso.com", "displayName": "x" * 1000}
             for n in range(100)]  # fmt: skip
    proxy.rules["/v1.0/users"] = json_answer({"value": users})  # about 110 KB
    source = await _source(proxy, **({} if cap is None else {"max_response_bytes": cap}))
    try:
        if refused:
            with pytest.raises(DirectoryListError, match="bad_response"):
                async for _ in iter_users(source, ["displayName"]):
                    pass
        else:
            assert len([u async for u in iter_users(source, ["displayName"])]) == 100
    finally:
        await source.close()


async def test_dripped_graph_answer_is_ended_by_the_total_deadline(proxy: HostileUpstream) -> None:
    source = await _source(
        proxy, timeouts={"connect_seconds": 1.0, "read_seconds": 2.0, "total_seconds": 1.0}
    )
    behaviour, seen = drip(interval=0.25)
    proxy.rules["/v1.0/users/alice@contoso.com"] = behaviour
    started = time.monotonic()
    try:
        with pytest.raises(DirectoryListError) as raised:
            await get_user(source, ALICE, ["displayName"])
    finally:
        await source.close()
    assert raised.value.reason == "timeout"
    assert seen.sent >= 2  # every byte came within the read timeout: only the total ended it
    assert time.monotonic() - started < 10  # total_seconds 1.0; generous bound
