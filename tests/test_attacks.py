"""Protection as an attacker would test it.

Races, window edges, slow directories, floods, content that drives a source into its error
paths, look-alike usernames, a failing Redis. Each test states a property from the README's protection section and tries to break it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from emulators.entra import RunningEmulator
from gateway.app import METRICS
from tests.conftest import USERS, GatewayFactory, credential, post_hook
from tests.redis_server import RedisServer
from tests.test_redis import _redis_cache

ALICE = "alice@contoso.com"
ATTACKER_IP = "203.0.113.66"


def _metric(client: Any, name: str, **labels: str) -> float:
    value = client.server.app[METRICS].registry.get_sample_value(name, labels)
    return float(value or 0.0)


def _tokens(entra: RunningEmulator) -> int:
    return int(entra.emulator.requests_by_kind["token"])


def _reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(r.__dict__["reason"]) for r in caplog.records if r.getMessage() == "hook_decision"]


@pytest.mark.parametrize("attempts", [20, 100])
async def test_concurrent_wrong_passwords_for_one_user_reach_the_directory_at_most_five_times(
    make_gateway: GatewayFactory,
    entra: RunningEmulator,
    cache_config: dict[str, Any],
    attempts: int,
) -> None:
    if cache_config["backend"] == "redis":
        # Client, gateway and emulator share one event loop here: a burst of 100 can hold it
        # past the default 0.25 s, and the fallback would then (safely) allow only 2.
        cache_config = {**cache_config, "redis_timeout_seconds": 1.5}
    client = await make_gateway(extra={"cache": cache_config})
    entra.emulator.set_fault(mode="none", latency_ms=200)  # every call overlaps every other
    replies = await asyncio.gather(
        *(
            post_hook(client, ALICE, f"Wrong#{i}", ip=f"198.51.100.{i % 200}")
            for i in range(attempts)
        )
    )
    assert all((status, credential(body)) == (200, "UNVERIFIED") for status, body in replies)
    assert _tokens(entra) == 5
    assert _metric(client, "gateway_rate_limited_total", limit="username") == attempts - 5


async def test_window_edge_lets_no_burst_through(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    # 900 s scaled down to 1.5 s: one failure at t=0, four just before the window ends, seven
    # just after. A fixed window let 10 through within ~1 s; a sliding one lets exactly the
    # slot that aged out through.
    limits = {"per_username": {"failures": 5, "window_seconds": 1.5}}
    client = await make_gateway(extra={"rate_limits": limits})
    loop = asyncio.get_running_loop()
    start = loop.time()
    reached = []
    for at, count in ((0.0, 1), (1.2, 4), (1.6, 7)):
        await asyncio.sleep(max(0.0, start + at - loop.time()))
        before = _tokens(entra)
        await asyncio.gather(*(post_hook(client, ALICE, f"Wrong#{at}-{i}") for i in range(count)))
        reached.append(_tokens(entra) - before)
    assert reached == [1, 4, 1]


async def test_timed_out_attempts_count_against_the_user(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await make_gateway(budget=0.4)
    entra.emulator.set_fault(mode="none", latency_ms=1000)  # slower than the budget
    for i in range(5):
        _, body = await post_hook(client, ALICE, f"Wrong#{i}")
        assert credential(body) == "UNVERIFIED"
    assert _tokens(entra) == 5
    await asyncio.gather(*(post_hook(client, ALICE, f"Wrong#more-{i}") for i in range(10)))
    assert _tokens(entra) == 5


async def test_a_verified_sign_in_does_not_reset_the_count(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    client = await make_gateway(extra={"cache": cache_config})
    for i in range(4):
        await post_hook(client, ALICE, f"Wrong#{i}")
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "VERIFIED"
    for i in range(5):
        await post_hook(client, ALICE, f"Wrong#after-{i}")
    wrong_at_directory = entra.emulator.token_results.get("aadsts_50126", 0)
    assert wrong_at_directory == 5
    assert _tokens(entra) == 6  # 5 wrong and the right one


async def test_a_flood_of_new_users_cannot_evict_a_victims_counter(
    make_gateway: GatewayFactory, entra: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"max_tracked": 100}
    client = await make_gateway(extra={"rate_limits": limits})
    for i in range(5):
        await post_hook(client, ALICE, f"Wrong#{i}", ip=ATTACKER_IP)
    assert _tokens(entra) == 5
    caplog.clear()
    for i in range(300):  # 3 x max_tracked other usernames, each from its own /64
        await post_hook(client, f"flood{i}@contoso.com", "Wrong#flood", ip=f"2001:db8:{i:x}::1")
    reasons = _reasons(caplog)
    # Victim's two keys + 2 per admitted newcomer fill 100 slots; the rest fail closed.
    assert reasons.count("protection_full") == 300 - 49
    assert _metric(client, "gateway_state_full_total", store="protection") == 300 - 49
    before = _tokens(entra)
    _, body = await post_hook(client, ALICE, USERS[ALICE], ip=ATTACKER_IP)
    assert credential(body) == "UNVERIFIED"
    assert _tokens(entra) == before  # the victim's counter survived the flood


async def test_the_protection_store_never_evicts_a_live_counter(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    # Without a flood this time: a full store still answers the victim from its counter.
    client = await make_gateway(extra={"rate_limits": {"max_tracked": 10}})
    for i in range(5):
        await post_hook(client, ALICE, f"Wrong#{i}", ip=ATTACKER_IP)
    for i in range(20):
        await post_hook(client, f"other{i}@contoso.com", "Wrong#x", ip=f"192.0.2.{i}")
    _, body = await post_hook(client, ALICE, USERS[ALICE], ip=ATTACKER_IP)
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.token_requests_by_user[ALICE] == 5


CONTENT_ATTACKS = [
    ("fed1@fabrikam.com", "Fed\x01Pass"),  # WS-Trust XML cannot carry C0 controls
    ("fed2@fabrikam.com", "Fed\ufffePass"),  # nor U+FFFE
    ("ali\r\nce@contoso.com", "Anything#1"),  # CRLF in a username (URL path, header)
    ("b\tob@contoso.com", "Anything#2"),
]


async def test_content_a_protocol_cannot_carry_never_opens_the_breaker(
    make_gateway: GatewayFactory, entra: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"per_ip": {"failures": 20, "window_seconds": 300}}
    client = await make_gateway(extra={"rate_limits": limits})
    for i in range(20):
        username, password = CONTENT_ATTACKS[i % len(CONTENT_ATTACKS)]
        _, body = await post_hook(client, username, f"{password}{i // 4}", ip=ATTACKER_IP)
        assert credential(body) == "UNVERIFIED"
    assert _tokens(entra) == 0  # refused before any I/O
    assert entra.emulator.requests_by_kind["adfs"] == 0
    assert _metric(client, "gateway_source_circuit_state", source="entra") == 0
    assert set(_reasons(caplog)) == {"unsupported_characters"}
    # Other users are unaffected; the attacker's users and IP have spent their budgets.
    _, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
    assert credential(body) == "VERIFIED"
    _, body = await post_hook(client, "fed1@fabrikam.com", USERS["fed1@fabrikam.com"])
    assert credential(body) == "UNVERIFIED"
    _, body = await post_hook(client, "zoë@contoso.com", USERS["zoë@contoso.com"], ip=ATTACKER_IP)
    assert credential(body) == "UNVERIFIED"
    assert _reasons(caplog)[-2:] == ["rate_limited_username", "rate_limited_ip"]


async def test_one_username_alone_cannot_open_the_breaker(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    limits = {"per_username": None}
    client = await make_gateway(budget=0.3, extra={"rate_limits": limits})
    for i in range(10):  # `hang` never answers: ten timeouts, all for one user
        await post_hook(client, "hang@contoso.com", f"Hang#{i}")
    assert _metric(client, "gateway_source_circuit_state", source="entra") == 0
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "VERIFIED"
    entra.emulator.set_fault(mode="http_500")  # a real outage, seen by three users, opens it
    for i, user in enumerate(["alice@contoso.com", "zoë@contoso.com", "kate@contoso.com"] * 2):
        await post_hook(client, user, f"Any#{i}")
    assert _metric(client, "gateway_source_circuit_state", source="entra") == 2


LOOK_ALIKES = [
    ("straße@contoso.com", "strasse@contoso.com"),  # ß case-folds to ss
    ("eﬀie@contoso.com", "effie@contoso.com"),  # ligature: NFKC
    ("kate@contoso.com", "\u212aate@contoso.com"),  # Kelvin sign lower-cases to k
    ("kate@contoso.com", "kate\uff20contoso.com"),  # fullwidth @
    ("iris@contoso.com", "\u0131ris@contoso.com"),  # dotless i
]


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
async def test_no_verdict_crosses_between_look_alike_usernames(
    make_gateway: GatewayFactory,
    entra: RunningEmulator,
    cache_config: dict[str, Any],
    first: str,
    second: str,
) -> None:
    password = USERS[first]
    for direction, (a, b) in enumerate(((first, second), (second, first))):
        cache = {**cache_config}
        if "key_prefix" in cache:  # a fresh shared cache for each direction
            cache["key_prefix"] += f"d{direction}"
        client = await make_gateway(extra={"cache": cache})
        for secret in (password, "Wrong#Pass-0"):
            await post_hook(client, a, secret)  # a verified or a denied verdict, now cached
            before = _tokens(entra)
            _, body = await post_hook(client, b, secret)
            routed = "@" in b
            # The other username is asked for itself (or has no route): never the cached answer.
            assert _tokens(entra) == before + (1 if routed else 0), (a, b)
            if not routed:
                assert credential(body) == "UNVERIFIED"


async def test_the_concurrency_cap_answers_source_busy_and_keeps_the_breaker_closed(
    make_gateway: GatewayFactory, entra: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"per_source": {"max_concurrency": 2}}
    client = await make_gateway(extra={"rate_limits": limits})
    entra.emulator.set_fault(mode="none", latency_ms=400)
    users = ["alice@contoso.com", "zoë@contoso.com", "kate@contoso.com", "iris@contoso.com"]
    users += ["straße@contoso.com", "eﬀie@contoso.com"]
    replies = await asyncio.gather(*(post_hook(client, u, USERS[u]) for u in users))
    answers = sorted(credential(body) for _, body in replies)
    assert answers == ["UNVERIFIED"] * 4 + ["VERIFIED"] * 2
    assert sorted(_reasons(caplog)).count("source_busy") == 4
    assert _metric(client, "gateway_rate_limited_total", limit="busy") == 4
    assert _metric(client, "gateway_upstream_errors_total", source="entra", code="timeout") == 0
    assert _metric(client, "gateway_source_circuit_state", source="entra") == 0
    # A busy refusal never reached the directory: it gives the attempt back.
    for user in users:
        _, body = await post_hook(client, user, USERS[user])
        assert credential(body) == "VERIFIED"


async def test_verified_upstream_answers_with_a_code_count_as_upstream_errors(
    make_gateway: GatewayFactory,
) -> None:
    client = await make_gateway()
    _, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
    assert credential(body) == "VERIFIED"  # MFA required: the password was right
    code = "aadsts_50076"
    assert _metric(client, "gateway_upstream_errors_total", source="entra", code=code) == 1


async def test_a_cool_down_refusal_is_counted_as_cooldown(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await make_gateway()
    await post_hook(client, "busy@contoso.com", USERS["busy@contoso.com"])  # 429, Retry-After 30
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "UNVERIFIED"
    assert _metric(client, "gateway_rate_limited_total", limit="cooldown") == 1


@pytest.mark.parametrize("failure", ["kill", "sigstop"])
async def test_limits_hold_per_replica_while_redis_is_away(
    make_gateway: GatewayFactory, entra: RunningEmulator, failure: str
) -> None:
    server = RedisServer()
    server.start()
    try:
        cache = {**_redis_cache(server), "redis_timeout_seconds": 0.1}
        client = await make_gateway(extra={"cache": cache})
        _, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
        assert credential(body) == "VERIFIED"
        if failure == "kill":
            server.stop()
        else:
            server.pause()
        replies = await asyncio.gather(*(post_hook(client, ALICE, f"Wrong#{i}") for i in range(10)))
        assert all(credential(body) == "UNVERIFIED" for _, body in replies)
        # failures 5 // fallback_replicas 2: each replica allows 2 while Redis is away.
        assert entra.emulator.token_requests_by_user[ALICE] == 2
    finally:
        server.resume()
        server.stop()


async def test_redis_coming_back_is_one_clean_transition(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer()
    server.start()
    try:
        client = await make_gateway(extra={"cache": _redis_cache(server)})
        registry = client.server.app[METRICS].registry
        await post_hook(client, ALICE, USERS[ALICE])
        server.stop()
        await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
        server.start()
        for _ in range(50):
            if registry.get_sample_value("gateway_redis_up") == 1:
                break
            await asyncio.sleep(0.1)
        for i in range(30):  # every pooled connection died with the old server
            await post_hook(client, f"user{i}@contoso.com", f"Any#{i}", ip=f"192.0.2.{i}")
            await asyncio.sleep(0.05)
        downs = [r for r in caplog.records if r.getMessage().startswith("redis unavailable")]
        backs = [r for r in caplog.records if r.getMessage().startswith("redis is back")]
        assert (len(downs), len(backs)) == (1, 1)
        assert all(r.levelno == logging.ERROR for r in downs)
        assert registry.get_sample_value("gateway_redis_up") == 1
    finally:
        server.stop()


async def test_the_breaker_logs_which_source_opened_and_closed(
    make_gateway: GatewayFactory, entra: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = {"circuit_breaker": {"failures": 3, "distinct_users": 3, "open_seconds": 0.3}}
    client = await make_gateway(extra={"rate_limits": breaker})
    entra.emulator.set_fault(mode="http_500")
    for user in ["alice@contoso.com", "zoë@contoso.com", "kate@contoso.com"]:
        await post_hook(client, user, USERS[user])
    entra.emulator.set_fault(mode="none")
    await asyncio.sleep(0.35)
    _, body = await post_hook(client, "iris@contoso.com", USERS["iris@contoso.com"])
    assert credential(body) == "VERIFIED"
    lines = [(r.getMessage().split(":")[0], r.__dict__.get("source")) for r in caplog.records]
    assert ("circuit opened", "entra") in lines
    assert ("circuit closed", "entra") in lines
