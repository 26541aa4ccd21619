"""Redis as shared state: replicas share limits, a Redis crash is survived, nothing clear is stored."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from emulators.demo import okta_payload
from emulators.entra import RunningEmulator
from gateway.app import METRICS
from tests.conftest import (
    CACHE_SECRET,
    HOOK_PATH,
    HOOK_SECRET,
    USERS,
    GatewayFactory,
    credential,
    gateway_yaml,
    post_hook,
)
from tests.redis_server import RedisServer, free_port

ALICE = "alice@contoso.com"


def _redis_cache(server: RedisServer) -> dict[str, Any]:
    return {
        "backend": "redis",
        "url": server.url,
        "key_prefix": f"t{uuid.uuid4().hex[:8]}",
        "hmac_secret": CACHE_SECRET,
    }


async def test_redis_holds_no_clear_username_or_password(
    make_gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    cache = _redis_cache(redis_server)
    client = await make_gateway(extra={"cache": cache})
    for username, password in USERS.items():
        await post_hook(client, username, password)
        await post_hook(client, username, password + "-wrong")
    stored = [item for item in redis_server.keys_and_values() if cache["key_prefix"] in item]
    assert len(stored) > 10  # verdicts and failure counters were written
    text = "\n".join(redis_server.keys_and_values())
    for username, password in USERS.items():
        assert username not in text
        assert password not in text


async def test_redis_crash_is_survived_and_recovered_from(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    server = RedisServer()
    server.start()
    try:
        client = await make_gateway(extra={"cache": _redis_cache(server)})
        registry = client.server.app[METRICS].registry
        assert registry.get_sample_value("gateway_redis_up") == 1
        _, body = await post_hook(client, ALICE, USERS[ALICE])
        assert credential(body) == "VERIFIED"

        server.stop()
        for password, expected in ((USERS[ALICE], "VERIFIED"), ("Wrong#Pass-1", "UNVERIFIED")):
            status, body = await post_hook(client, ALICE, password)
            assert (status, credential(body)) == (200, expected)
        _, body = await post_hook(client, "zoë@contoso.com", USERS["zoë@contoso.com"])
        assert credential(body) == "VERIFIED"
        assert registry.get_sample_value("gateway_redis_up") == 0
        ready = await (await client.get("/readyz")).json()
        assert ready["cache"] == {"backend": "memory (redis unavailable)", "redis_up": False}

        server.start()
        for _ in range(50):
            if registry.get_sample_value("gateway_redis_up") == 1:
                break
            await asyncio.sleep(0.1)
        assert registry.get_sample_value("gateway_redis_up") == 1
        _, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
        assert credential(body) == "VERIFIED"
        assert server.keys_and_values()  # writes go to Redis again
    finally:
        server.stop()


class _GatewayProcess:
    """`gateway serve` in a subprocess: a real second replica."""

    def __init__(self, config_path: Path, port: int) -> None:
        self.config_path = config_path
        self.url = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "-c", str(self.config_path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            for _ in range(600):  # 30 s: start-up is slow on a loaded two-core CI machine
                try:
                    async with http.get(self.url + "/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("gateway process did not become ready")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


@pytest.fixture
async def two_replicas(
    entra: RunningEmulator, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[list[_GatewayProcess]]:
    """Two gateway processes sharing one Redis."""
    replicas = []
    # Four processes share two cores here; a loaded replica must not mistake that for Redis
    # trouble (the fallback would then apply its own, smaller share of each limit).
    cache = {**_redis_cache(redis_server), "redis_timeout_seconds": 1.0}
    for i in range(2):
        port = free_port()
        config = yaml.safe_load(gateway_yaml(entra.url, extra={"cache": cache}))
        config["server"]["port"] = port
        config["logging"]["level"] = "warning"
        path = tmp_path / f"replica{i}.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        replicas.append(_GatewayProcess(path, port))
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        yield replicas
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))


async def _hook(url: str, username: str, password: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + HOOK_PATH,
            json=okta_payload(username, password),
            headers={"Authorization": HOOK_SECRET},
        ) as response,
    ):
        assert response.status == 200
        return credential(await response.json())


async def test_two_gateway_processes_enforce_one_username_limit(
    two_replicas: list[_GatewayProcess], entra: RunningEmulator
) -> None:
    first, second = two_replicas
    for attempt in range(5):  # default limit: 5 failures per 15 minutes, spread over replicas
        replica = first if attempt % 2 == 0 else second
        assert await _hook(replica.url, ALICE, f"Wrong#Pass-{attempt}") == "UNVERIFIED"
    assert entra.emulator.token_requests_by_user[ALICE] == 5
    for replica in (first, second):
        assert await _hook(replica.url, ALICE, USERS[ALICE]) == "UNVERIFIED"
    assert entra.emulator.token_requests_by_user[ALICE] == 5
    assert await _hook(second.url, "bob@contoso.com", USERS["bob@contoso.com"]) == "VERIFIED"


@pytest.mark.parametrize("attempts", [20, 100])
async def test_concurrent_wrong_passwords_split_across_two_replicas_reach_the_directory_five_times(
    two_replicas: list[_GatewayProcess], entra: RunningEmulator, attempts: int
) -> None:
    entra.emulator.set_fault(mode="none", latency_ms=200)
    async with aiohttp.ClientSession() as http:

        async def wrong(i: int) -> int:
            payload = okta_payload(ALICE, f"Wrong#Pass-{i}")
            payload["data"]["context"]["request"]["ipAddress"] = f"198.51.100.{i % 200}"
            url = two_replicas[i % 2].url + HOOK_PATH
            headers = {"Authorization": HOOK_SECRET}
            async with http.post(url, json=payload, headers=headers) as response:
                assert credential(await response.json()) == "UNVERIFIED"
                return response.status

        statuses = await asyncio.gather(*(wrong(i) for i in range(attempts)))
    assert set(statuses) == {200}
    assert entra.emulator.token_requests_by_user[ALICE] == 5


async def test_replicas_share_the_verdict_cache(
    two_replicas: list[_GatewayProcess], entra: RunningEmulator
) -> None:
    first, second = two_replicas
    assert await _hook(first.url, ALICE, USERS[ALICE]) == "VERIFIED"
    assert await _hook(second.url, ALICE, USERS[ALICE]) == "VERIFIED"
    assert entra.emulator.token_requests_by_user[ALICE] == 1


async def test_redis_traffic_is_recorded_for_the_session_scan(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    from tests.conftest import redis_traffic_leaks
    from tests.redis_server import MONITORED

    marker = f"scan-probe-{uuid.uuid4().hex}"
    client = aioredis.Redis(port=redis_server.port)
    try:
        await client.set(marker, "1", ex=5)
    finally:
        await client.aclose()
    for _ in range(50):
        if any(marker in line for line in MONITORED):
            break
        await asyncio.sleep(0.05)
    from tests.redis_server import MONITOR_ENDS

    assert any(marker in line for line in MONITORED), (MONITOR_ENDS, len(MONITORED))
    assert redis_traffic_leaks() == []


async def test_a_hung_redis_cannot_push_the_answer_past_the_budget(
    make_gateway: GatewayFactory,
) -> None:
    server = RedisServer()
    server.start()
    try:
        cache = {**_redis_cache(server), "redis_timeout_seconds": 3}
        client = await make_gateway(extra={"cache": cache}, budget=0.5)
        _, body = await post_hook(client, ALICE, USERS[ALICE])
        assert credential(body) == "VERIFIED"
        server.pause()
        started = asyncio.get_running_loop().time()
        status, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
        elapsed = asyncio.get_running_loop().time() - started
        assert (status, credential(body)) == (200, "UNVERIFIED")
        assert elapsed < 1.5  # budget 0.5 s; Redis would have held it for 3 s
    finally:
        server.resume()
        server.stop()


async def test_a_verified_hook_call_costs_four_redis_round_trips(
    make_gateway: GatewayFactory, redis_server: RedisServer
) -> None:
    from tests.redis_server import MONITORED

    cache = _redis_cache(redis_server)
    client = await make_gateway(extra={"cache": cache})
    _, body = await post_hook(client, "zoë@contoso.com", USERS["zoë@contoso.com"])
    assert credential(body) == "VERIFIED"  # the first call also loads the script (NOSCRIPT)
    await asyncio.sleep(0.2)
    before = len(MONITORED)
    _, body = await post_hook(client, ALICE, USERS[ALICE])
    assert credential(body) == "VERIFIED"
    for _ in range(50):  # MONITOR lags a little behind the commands
        sent = [c for c in MONITORED[before:] if cache["key_prefix"] in c]
        if len(sent) >= 5:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    sent = [
        c.split()[0].upper()
        for c in MONITORED[before:]
        if cache["key_prefix"] in c and not c.startswith("lua ")
    ]
    # Read the cached verdicts; reserve the attempt (one script); store the verdict; give the
    # attempt back, since a right password spends no budget (two ZREMs in one pipeline).
    assert [c.replace("PSETEX", "SETEX") for c in sent] == [
        "MGET",
        "EVALSHA",
        "SETEX",
        "ZREM",
        "ZREM",
    ], sent


# Limits that survive Redis: two replicas in one process (each app has its own state, pool and
# probe, as two processes would), one real Redis killed and restarted empty on the same port.
async def _replicas(make_gateway: GatewayFactory, server: RedisServer) -> list[Any]:
    # Generous: a loaded machine must not pass for a Redis outage (it would start the shares).
    cache = {**_redis_cache(server), "redis_timeout_seconds": 1.0}
    return [await make_gateway(extra={"cache": cache}) for _ in range(2)]


async def _wrong_passwords(
    entra: RunningEmulator, replicas: list[Any], count: int, first: int
) -> list[int]:
    """Send `count` wrong passwords round-robin; how many reached the directory per replica."""
    reached = [0] * len(replicas)
    for i in range(count):
        before = entra.emulator.token_requests_by_user[ALICE]
        _, body = await post_hook(replicas[i % len(replicas)], ALICE, f"Wrong#Pass-{first + i}")
        assert credential(body) == "UNVERIFIED"
        reached[i % len(replicas)] += entra.emulator.token_requests_by_user[ALICE] - before
    return reached


async def _redis_seen_up(replicas: list[Any], up: bool) -> None:
    """Wait (generous deadline) until every replica's health says Redis is up, or down."""
    for _ in range(300):
        if all(
            r.server.app[METRICS].registry.get_sample_value("gateway_redis_up") == int(up)
            for r in replicas
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"replicas did not see redis {'up' if up else 'down'}")


def _failure_sets(server: RedisServer) -> list[int]:
    """How many reservations each per-user failure window in Redis holds."""
    import redis

    client = redis.Redis(port=server.port)
    try:
        return [int(client.zcard(key)) for key in client.scan_iter(match="*:fail-user:*")]
    finally:
        client.close()


async def test_a_redis_restarted_empty_lets_no_wrong_password_past_the_username_limit(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    server = RedisServer()
    server.start()
    try:
        replicas = await _replicas(make_gateway, server)
        before = await _wrong_passwords(entra, replicas, 5, 0)
        server.stop()
        during = await _wrong_passwords(entra, replicas, 20, 100)
        server.start()  # same port, no persistence: every set and the epoch key are gone
        await _redis_seen_up(replicas, True)
        after = await _wrong_passwords(entra, replicas, 20, 200)
        assert (sum(before), sum(during), sum(after)) == (5, 0, 0), (before, during, after)
        assert _failure_sets(server) == [5]  # the replicas rebuilt the set
    finally:
        server.stop()


async def test_concurrent_wrong_passwords_right_after_an_empty_restart_reach_nothing(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    # The epoch is found gone by many admits at once on both replicas: each replica rebuilds
    # once, and no admit slips in before its replica's reservations are back.
    server = RedisServer()
    server.start()
    try:
        replicas = await _replicas(make_gateway, server)
        assert sum(await _wrong_passwords(entra, replicas, 5, 0)) == 5
        server.stop()
        server.start()  # same port, empty, and no call saw the outage
        before = entra.emulator.token_requests_by_user[ALICE]
        answers = await asyncio.gather(
            *(post_hook(replicas[i % 2], ALICE, f"Wrong#Pass-{100 + i}") for i in range(20))
        )
        assert {credential(body) for _, body in answers} == {"UNVERIFIED"}
        assert entra.emulator.token_requests_by_user[ALICE] - before == 0
        assert _failure_sets(server) == [5]
    finally:
        server.stop()


async def test_an_outage_gives_each_replica_a_share_of_what_redis_had_left(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    server = RedisServer()
    server.start()
    try:
        replicas = await _replicas(make_gateway, server)
        assert await _wrong_passwords(entra, replicas, 3, 0) == [2, 1]  # f = 3 and 2
        server.stop()
        during = await _wrong_passwords(entra, replicas, 20, 100)
        # (5 - 3) // 2 = 1 and (5 - 2) // 2 = 1: the fleet stays within 5.
        assert during == [1, 1]
    finally:
        server.stop()


async def test_redis_back_with_its_data_counts_each_reservation_once(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    server = RedisServer()
    server.start()
    try:
        replicas = await _replicas(make_gateway, server)
        await _wrong_passwords(entra, replicas, 3, 0)
        server.pause()  # a network blip: connections stall, the data stays
        during = await _wrong_passwords(entra, replicas, 4, 100)
        await _redis_seen_up(replicas, False)
        server.resume()
        await _redis_seen_up(replicas, True)
        # 3 already there, written back idempotently, plus the 2 made during the blip.
        assert (sum(during), _failure_sets(server)) == (2, [5])
        assert sum(await _wrong_passwords(entra, replicas, 6, 200)) == 0
    finally:
        server.resume()
        server.stop()


async def test_a_redis_restart_no_call_noticed_is_found_by_the_epoch_on_the_next_admit(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    server = RedisServer()
    server.start()
    try:
        replicas = await _replicas(make_gateway, server)
        replica = replicas[0]
        await _wrong_passwords(entra, [replica], 3, 0)
        server.stop()
        server.start()  # nothing was sent meanwhile: the replica never saw Redis down
        reached = await _wrong_passwords(entra, [replica], 10, 100)
        assert (reached, _failure_sets(server)) == ([2], [5])
        registry = replica.server.app[METRICS].registry
        assert registry.get_sample_value("gateway_redis_up") == 1
    finally:
        server.stop()


async def test_a_released_attempt_is_not_written_back_after_redis_restarts_empty(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    server = RedisServer()
    server.start()
    try:
        (replica, _) = await _replicas(make_gateway, server)
        await _wrong_passwords(entra, [replica], 2, 0)
        _, body = await post_hook(replica, ALICE, USERS[ALICE])
        assert credential(body) == "VERIFIED"  # reserved, then given back: it spends nothing
        assert _failure_sets(server) == [2]  # and a verified sign-in does not reset the count
        server.stop()
        server.start()
        assert await _wrong_passwords(entra, [replica], 1, 100) == [1]
        assert _failure_sets(server) == [3]
    finally:
        server.stop()


async def test_a_second_outage_in_the_same_window_hands_out_no_second_share(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    server = RedisServer()
    server.start()
    try:
        replicas = await _replicas(make_gateway, server)
        await _wrong_passwords(entra, replicas, 3, 0)
        server.stop()
        assert await _wrong_passwords(entra, replicas, 20, 100) == [1, 1]
        server.start()
        await _redis_seen_up(replicas, True)  # both wrote their reservations back: 5 in Redis
        server.stop()  # no attempt for this user in between: no replica has seen the 5
        assert await _wrong_passwords(entra, replicas, 20, 200) == [0, 0]
    finally:
        server.stop()
