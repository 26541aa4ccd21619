"""Upstream answers read under a cap: bombs, endless and dripped bodies from a hostile server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.origin import foreign_origin, origin_of
from gateway.upstream_body import ResponseTooLarge, capped_session, read_capped
from tests.hostile_upstream import GIB, HostileUpstream, bomb, drip, gzip_json, hostile, huge

MIB = 1024 * 1024


@pytest.fixture
async def server() -> AsyncIterator[HostileUpstream]:
    """A hostile server with no upstream behind it."""
    async with hostile() as running:
        yield running


async def _read(url: str, limit: int, **session: object) -> bytes:
    async with capped_session(**session) as http, http.get(url) as response:  # type: ignore[arg-type]
        return await read_capped(response, limit)


async def test_two_gib_gzip_bomb_is_refused_without_inflating_it(server: HostileUpstream) -> None:
    server.rules["/bomb"] = bomb(2 * GIB)
    with pytest.raises(ResponseTooLarge):
        await _read(server.url + "/bomb", 16 * MIB)


async def test_small_gzip_bomb_under_the_raw_cap_stops_at_the_inflated_cap(
    server: HostileUpstream,
) -> None:
    server.rules["/bomb"] = bomb(64 * MIB)  # about 64 KB as sent
    with pytest.raises(ResponseTooLarge, match="inflates"):
        await _read(server.url + "/bomb", MIB)


async def test_honest_gzip_answer_is_inflated(server: HostileUpstream) -> None:
    server.rules["/doc"] = gzip_json({"value": ["a"] * 1000})
    assert (
        await _read(server.url + "/doc", MIB)
        == b'{"value": [' + b", ".join([b'"a"'] * 1000) + b"]}"
    )


@pytest.mark.parametrize("chunked", [True, False])
async def test_endless_plain_answer_is_cut_at_the_cap_and_the_connection_dropped(
    server: HostileUpstream, chunked: bool
) -> None:
    behaviour, seen = huge(4 * GIB, chunked=chunked)
    server.rules["/huge"] = behaviour
    with pytest.raises(ResponseTooLarge):
        await _read(server.url + "/huge", MIB)
    await asyncio.wait_for(seen.hung_up.wait(), 10)
    assert seen.sent < 256 * MIB  # socket buffers only, never the 4 GiB


async def test_dripped_answer_is_ended_by_the_total_deadline(server: HostileUpstream) -> None:
    behaviour, _ = drip(interval=0.05)
    server.rules["/drip"] = behaviour
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _read(
            server.url + "/drip", MIB, timeout=aiohttp.ClientTimeout(total=0.5, sock_read=0.2)
        )
    assert time.monotonic() - started < 5  # generous: the deadline is 0.5 s


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://graph.microsoft.com/v1.0/users?$skiptoken=x", "https://graph.microsoft.com"),
        ("https://GRAPH.microsoft.com:443/v1.0/users", "https://graph.microsoft.com"),
        ("http://127.0.0.1:8400/v1.0/users", "http://127.0.0.1:8400"),
    ],
)
def test_link_on_the_configured_origin_is_allowed(url: str, allowed: str) -> None:
    assert foreign_origin(url, [allowed]) is None


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://graph.microsoft.com.evil.example/v1.0/users", "graph.microsoft.com.evil.example"),
        ("https://graph.microsoft.com@evil.example/v1.0/users", "evil.example"),
        ("http://graph.microsoft.com/v1.0/users", "http://graph.microsoft.com:80"),
        ("https://graph.microsoft.com:8443/v1.0/users", ":8443"),
        ("/v1.0/users?$skiptoken=x", "/v1.0/users"),
        ("https://graph.microsoft.com:99999/v1.0/users", ":99999"),
    ],
)
def test_link_to_another_scheme_host_or_port_is_foreign_and_named(url: str, named: str) -> None:
    found = foreign_origin(url, ["https://graph.microsoft.com"])
    assert found is not None and named in found


def test_origin_writes_the_default_port_out() -> None:
    assert origin_of("https://Acme.Okta.com/api/v1/users") == "https://acme.okta.com:443"
