"""Caching, single flight, limits, cool-downs and the breaker, on the memory and Redis backends."""

from __future__ import annotations

import asyncio
from typing import Any

from emulators.entra import RunningEmulator
from gateway.app import METRICS
from gateway.protection import UNKNOWN_IP, limiter_ip, limiter_username
from gateway.runtime import RUNTIME
from plugins.base import derive_key
from tests.conftest import CACHE_SECRET, USERS, GatewayFactory, credential, post_hook

ALICE = "alice@contoso.com"
WRONG = "Wrong#Pass-0000"


def _token_calls(entra: RunningEmulator, username: str = ALICE) -> int:
    return int(entra.emulator.token_requests_by_user[username])


def _metric(client: Any, name: str, **labels: str) -> float:
    value = client.server.app[METRICS].registry.get_sample_value(name, labels)
    return float(value or 0.0)


async def test_repeated_correct_login_within_ttl_reaches_directory_once(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    client = await make_gateway(extra={"cache": cache_config})
    for _ in range(3):
        status, body = await post_hook(client, ALICE, USERS[ALICE])
        assert (status, credential(body)) == (200, "VERIFIED")
    assert _token_calls(entra) == 1
    hits = _metric(client, "gateway_cache_requests_total", cache="verdict", result="hit")
    assert hits == 2


async def test_cached_success_does_not_verify_a_different_password(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    client = await make_gateway(extra={"cache": cache_config})
    await post_hook(client, ALICE, USERS[ALICE])
    _, body = await post_hook(client, ALICE, WRONG)
    assert credential(body) == "UNVERIFIED"
    assert _token_calls(entra) == 2


async def test_ten_concurrent_identical_requests_reach_directory_once(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    client = await make_gateway(extra={"cache": cache_config})
    entra.emulator.set_fault(mode="none", latency_ms=300)
    replies = await asyncio.gather(*(post_hook(client, ALICE, USERS[ALICE]) for _ in range(10)))
    assert all(credential(body) == "VERIFIED" for _, body in replies)
    assert _token_calls(entra) == 1


async def test_sixth_wrong_password_is_refused_without_reaching_directory(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    limits = {"per_username": {"failures": 5, "window_seconds": 1.5}}
    client = await make_gateway(extra={"cache": cache_config, "rate_limits": limits})
    for attempt in range(5):
        status, body = await post_hook(client, ALICE, f"{WRONG}-{attempt}")
        assert credential(body) == "UNVERIFIED"
    assert _token_calls(entra) == 5
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert _token_calls(entra) == 5
    assert _metric(client, "gateway_rate_limited_total", limit="username") == 1
    await asyncio.sleep(1.6)
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "VERIFIED"


async def test_limit_applies_to_the_user_not_to_other_users(
    make_gateway: GatewayFactory, cache_config: dict[str, Any]
) -> None:
    limits = {"per_username": {"failures": 2, "window_seconds": 60}}
    client = await make_gateway(extra={"cache": cache_config, "rate_limits": limits})
    for attempt in range(3):
        await post_hook(client, ALICE, f"{WRONG}-{attempt}")
    _, body = await post_hook(client, "zoë@contoso.com", USERS["zoë@contoso.com"])
    assert credential(body) == "VERIFIED"


async def test_username_limit_ignores_case(make_gateway: GatewayFactory) -> None:
    limits = {"per_username": {"failures": 2, "window_seconds": 60}}
    client = await make_gateway(extra={"rate_limits": limits})
    await post_hook(client, ALICE, f"{WRONG}-1")
    await post_hook(client, "ALICE@contoso.com", f"{WRONG}-2")
    _, body = await post_hook(client, "Alice@Contoso.COM", USERS[ALICE])
    assert credential(body) == "UNVERIFIED"


async def test_credential_stuffing_from_one_ip_is_refused(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    limits = {"per_ip": {"failures": 3, "window_seconds": 60}, "per_username": None}
    client = await make_gateway(extra={"cache": cache_config, "rate_limits": limits})
    victims = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com", "dave@contoso.com"]
    for victim in victims[:3]:
        await post_hook(client, victim, WRONG, ip="203.0.113.9")
    before = entra.emulator.requests_by_kind["token"]
    _, body = await post_hook(client, "zoë@contoso.com", USERS["zoë@contoso.com"], ip="203.0.113.9")
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.requests_by_kind["token"] == before
    _, body = await post_hook(
        client, "zoë@contoso.com", USERS["zoë@contoso.com"], ip="198.51.100.7"
    )
    assert credential(body) == "VERIFIED"
    assert _metric(client, "gateway_rate_limited_total", limit="ip") == 1


async def test_office_behind_one_nat_is_not_throttled_by_default(
    make_gateway: GatewayFactory,
) -> None:
    client = await make_gateway()
    users = [u for u in USERS if u.endswith("@contoso.com") and USERS[u]][:10]
    for _ in range(2):  # a Monday morning: ten people, some typing a wrong password first
        for user in users:
            await post_hook(client, user, WRONG, ip="192.0.2.10")
    _, body = await post_hook(client, ALICE, USERS[ALICE], ip="192.0.2.10")
    assert credential(body) == "VERIFIED"


async def test_429_opens_a_source_cooldown(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    client = await make_gateway(extra={"cache": cache_config})
    _, body = await post_hook(client, "busy@contoso.com", USERS["busy@contoso.com"])
    assert credential(body) == "UNVERIFIED"
    before = entra.emulator.requests_by_kind["token"]
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.requests_by_kind["token"] == before
    assert _metric(client, "gateway_verifications_total", source="entra", result="unavailable") == 2


async def test_loop_detection_cools_down_only_that_user(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await make_gateway()
    looping = "looping@contoso.com"
    await post_hook(client, looping, USERS[looping])
    await post_hook(client, looping, USERS[looping])
    assert _token_calls(entra, looping) == 1
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "VERIFIED"


async def test_circuit_opens_after_consecutive_failures_then_probes(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    breaker = {"circuit_breaker": {"failures": 3, "open_seconds": 0.5}}
    client = await make_gateway(extra={"rate_limits": breaker})
    entra.emulator.set_fault(mode="http_500")
    users = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com", "dave@contoso.com"]
    for user in users[:3]:
        await post_hook(client, user, USERS[user])
    assert _metric(client, "gateway_source_circuit_state", source="entra") == 2
    before = entra.emulator.requests_by_kind["token"]
    _, body = await post_hook(client, users[3], USERS[users[3]])
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.requests_by_kind["token"] == before
    entra.emulator.set_fault(mode="none")
    await asyncio.sleep(0.6)
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "VERIFIED"
    assert _metric(client, "gateway_source_circuit_state", source="entra") == 0


async def test_source_rate_cap_refuses_beyond_the_bucket(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    limits = {"per_source": {"rate_per_second": 0.5, "burst": 2}}
    client = await make_gateway(extra={"cache": cache_config, "rate_limits": limits})
    users = ["alice@contoso.com", "zoë@contoso.com", "bob@contoso.com"]
    answers = [credential((await post_hook(client, u, USERS[u]))[1]) for u in users]
    assert answers == ["VERIFIED", "VERIFIED", "UNVERIFIED"]
    assert entra.emulator.requests_by_kind["token"] == 2
    assert _metric(client, "gateway_rate_limited_total", limit="source") == 1


async def test_unavailable_answers_are_never_cached(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await make_gateway()
    entra.emulator.set_fault(mode="non_json")
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "UNVERIFIED"
    entra.emulator.set_fault(mode="none")
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "VERIFIED"


async def test_ipv6_clients_are_limited_per_64_and_missing_ips_share_one_budget(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    limits = {"per_ip": {"failures": 2, "window_seconds": 60}, "per_username": None}
    client = await make_gateway(extra={"rate_limits": limits})
    victims = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"]
    # Three addresses of one /64 (one host can use them all): one budget.
    for i, victim in enumerate(victims[:2]):
        await post_hook(client, victim, WRONG, ip=f"2001:db8:1:2::{i + 1}")
    before = entra.emulator.requests_by_kind["token"]
    _, body = await post_hook(client, ALICE, USERS[ALICE], ip="2001:DB8:1:2:ffff::9")
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.requests_by_kind["token"] == before
    # The next /64 is another client.
    _, body = await post_hook(client, ALICE, USERS[ALICE], ip="2001:db8:1:3::1")
    assert credential(body) == "VERIFIED"


async def test_requests_without_an_ip_share_one_unknown_ip_budget(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    limits = {"per_ip": {"failures": 2, "window_seconds": 60}, "per_username": None}
    client = await make_gateway(extra={"rate_limits": limits})
    for i, ip in enumerate(["", "not-an-ip"]):
        await post_hook(client, f"nobody{i}@contoso.com", WRONG, ip=ip)
    before = entra.emulator.requests_by_kind["token"]
    _, body = await post_hook(client, ALICE, USERS[ALICE], ip="")
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.requests_by_kind["token"] == before
    assert _metric(client, "gateway_rate_limited_total", limit="ip") == 1


def test_limiter_keys_widen_but_cache_keys_do_not() -> None:
    assert limiter_ip("::ffff:192.0.2.7") == "192.0.2.7"
    assert limiter_ip("2001:db8::1") == limiter_ip("2001:0DB8:0:0:ffff::2") == "2001:db8::/64"
    assert limiter_ip(None) == limiter_ip("") == limiter_ip("300.1.1.1") == UNKNOWN_IP
    assert limiter_username(" \u212aate@Contoso.com") == limiter_username("kate@contoso.com")
    assert limiter_username("straße@x") == limiter_username("STRASSE@x")


async def test_each_source_gets_a_key_of_its_own_never_the_master_secret(
    make_gateway: GatewayFactory, cache_config: dict[str, Any]
) -> None:
    client = await make_gateway(extra={"cache": cache_config})
    source = client.server.app[RUNTIME].current.sources["entra"]
    key = source.services.hmac_secret
    assert len(key) == 32
    assert CACHE_SECRET.encode() not in key and key != CACHE_SECRET.encode()
    assert key == derive_key(CACHE_SECRET.encode(), "source", "entra") or (
        cache_config["backend"] == "memory"
    )
