"""The hook's key set fetch against a hostile issuer: capped documents, jwks_uri pinned."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.hook_oauth import METADATA_PATH, KeySet, KeySetError
from tests.hostile_upstream import GIB, HostileUpstream, bomb, hostile, huge, json_answer

ISSUER_PATH = "/oauth2/aus1hostile"


@pytest.fixture
async def issuer() -> AsyncIterator[HostileUpstream]:
    """A hostile issuer."""
    async with hostile() as running:
        yield running


@pytest.fixture
async def foreign() -> AsyncIterator[HostileUpstream]:
    """Another origin, whose keys must never be fetched."""
    async with hostile() as running:
        yield running


async def _load(keys: KeySet) -> None:
    try:
        await keys.load()
    finally:
        await keys.close()


async def test_key_set_gzip_bomb_is_refused(issuer: HostileUpstream) -> None:
    issuer.rules["/keys"] = bomb(2 * GIB)
    with pytest.raises(KeySetError, match="cap"):
        await _load(KeySet(issuer.url + ISSUER_PATH, issuer.url + "/keys"))


async def test_metadata_gzip_bomb_under_the_raw_cap_is_refused(issuer: HostileUpstream) -> None:
    issuer.rules[ISSUER_PATH + METADATA_PATH] = bomb(64 * 1024 * 1024)
    with pytest.raises(KeySetError, match="inflates"):
        await _load(KeySet(issuer.url + ISSUER_PATH, None))


async def test_endless_key_set_is_refused(issuer: HostileUpstream) -> None:
    behaviour, seen = huge(4 * GIB)
    issuer.rules["/keys"] = behaviour
    with pytest.raises(KeySetError, match="cap"):
        await _load(KeySet(issuer.url + ISSUER_PATH, issuer.url + "/keys"))
    assert seen.sent < 256 * 1024 * 1024


async def test_discovered_jwks_uri_on_another_origin_is_not_fetched(
    issuer: HostileUpstream, foreign: HostileUpstream
) -> None:
    name = issuer.url + ISSUER_PATH
    issuer.rules[ISSUER_PATH + METADATA_PATH] = json_answer(
        {"issuer": name, "jwks_uri": foreign.url + "/keys"}
    )
    with pytest.raises(KeySetError) as raised:
        await _load(KeySet(name, None))
    assert foreign.url in str(raised.value)
    assert "okta.auth.oauth2.jwks_uri" in str(raised.value)
    assert foreign.requests == []
