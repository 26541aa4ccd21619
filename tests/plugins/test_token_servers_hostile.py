"""oauth2_password and okta_org against a hostile server: every answer capped, bombs included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from plugins.base import Result
from plugins.oauth2_password import OAuth2PasswordSource
from plugins.okta_org import OktaOrgSource
from tests.conftest import SCAN
from tests.hostile_upstream import GIB, HostileUpstream, bomb, hostile, huge
from tests.plugins import test_oauth2_password, test_okta_org

PASSWORD = "Hostile#Pass-2718"
MIB = 1024 * 1024
SCAN.secrets.add(PASSWORD)


@pytest.fixture
async def server() -> AsyncIterator[HostileUpstream]:
    """The hostile token server / Okta org."""
    async with hostile() as running:
        yield running


@pytest.mark.parametrize("inflated", [2 * GIB, 64 * MIB])
async def test_oauth2_password_bomb_is_unavailable_bad_response(
    server: HostileUpstream, inflated: int
) -> None:
    server.rules["/token"] = bomb(inflated)
    source = OAuth2PasswordSource(test_oauth2_password.source_config(server.url + "/token"))
    await source.start()
    try:
        verdict = await source.verify("someone@example.com", PASSWORD)
    finally:
        await source.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "bad_response")


@pytest.mark.parametrize("inflated", [2 * GIB, 64 * MIB])
async def test_okta_org_bomb_is_unavailable_bad_response(
    server: HostileUpstream, inflated: int
) -> None:
    server.rules["/api/v1/authn"] = bomb(inflated)
    source = OktaOrgSource(test_okta_org.source_config(server.url))
    await source.start()
    try:
        verdict = await source.verify(f"someone@{test_okta_org.DOMAIN}", PASSWORD)
    finally:
        await source.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "bad_response")


async def test_oauth2_password_long_answer_is_cut_at_the_cap(server: HostileUpstream) -> None:
    behaviour, seen = huge(64 * MIB)
    server.rules["/token"] = behaviour
    source = OAuth2PasswordSource(test_oauth2_password.source_config(server.url + "/token"))
    await source.start()
    try:
        verdict = await source.verify("someone@example.com", PASSWORD)
    finally:
        await source.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "bad_response")
    assert seen.sent < 32 * MIB  # the cap and socket buffers, not the whole answer


async def test_okta_org_long_answer_is_cut_at_the_cap(server: HostileUpstream) -> None:
    behaviour, seen = huge(64 * MIB)
    server.rules["/api/v1/authn"] = behaviour
    source = OktaOrgSource(test_okta_org.source_config(server.url))
    await source.start()
    try:
        verdict = await source.verify(f"someone@{test_okta_org.DOMAIN}", PASSWORD)
    finally:
        await source.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "bad_response")
    assert seen.sent < 32 * MIB  # the cap and socket buffers, not the whole answer
