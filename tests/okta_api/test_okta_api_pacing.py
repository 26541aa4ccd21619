"""Pacing from X-Rate-Limit-* headers, 429 waits on Okta's clock, concurrency 429s."""

from __future__ import annotations

import asyncio

from emulators.okta import OktaOrg, RunningOktaEmulator, start_okta_emulator
from gateway.okta_api import SYSTEM_CLOCK, OktaApiClient
from tests.okta_api.conftest import ClientFactory, VirtualClock, profile_of

LIMIT = 120  # per minute, on the create/list bucket


async def test_a_long_import_runs_at_the_bucket_rate_without_429s(
    client: OktaApiClient, okta: RunningOktaEmulator, clock: VirtualClock
) -> None:
    okta.emulator.set_limits({"users_collection": LIMIT})
    users = 400  # more than three windows' worth
    start = clock.now
    await asyncio.gather(
        *(client.create_user(profile_of(f"u{i}@contoso.com")) for i in range(users))
    )
    elapsed = clock.now - start  # virtual seconds
    stats = okta.emulator.stats()
    assert stats["users"] == users
    assert stats["http_429_total"] <= users // 100  # at most 1% of requests
    assert client.stats.requests == users + client.stats.retries
    # It spread the calls instead of bursting: never faster than the limit...
    assert elapsed >= (users // LIMIT) * 60
    # ... and not much slower either.
    assert users / elapsed * 60 >= 0.9 * LIMIT
    assert client.stats.pacing_wait_seconds > 0


async def test_a_short_run_is_not_slowed_down(client: OktaApiClient, clock: VirtualClock) -> None:
    start = clock.now
    for i in range(20):
        await client.create_user(profile_of(f"u{i}@contoso.com"))
    assert clock.now == start  # 20 calls out of a 600/min bucket: no waiting at all
    assert client.stats.wait_seconds == 0


async def test_429_waits_reset_minus_date_on_the_servers_clock(
    make_client: ClientFactory, clock: VirtualClock
) -> None:
    # Okta's clock runs 5,000 s ahead of ours: only its Date makes Reset meaningful.
    server_clock = lambda: clock.now + 5000  # noqa: E731
    running = await start_okta_emulator(OktaOrg(), clock=server_clock)
    try:
        client = await make_client(url=running.url)
        running.emulator.set_fault("http_429", rate=0.5, retry_after=7, buckets=["user_get"])
        await client.get_user("a@contoso.com")  # not struck
        start = clock.now
        assert await client.get_user("b@contoso.com") is None  # struck once, then retried
        assert 8 <= clock.now - start < 9  # Reset - Date + 1 = 7 + 1
        assert (client.stats.rate_limited, client.stats.retries) == (1, 1)
        assert running.emulator.requests_by_endpoint["GET /api/v1/users/{id}"] == 3
    finally:
        await running.close()


async def test_a_bucket_emptied_by_another_client_costs_one_429_not_one_per_request(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    okta.emulator.set_limits({"user_get": 10})
    await client.get_user("first@contoso.com")
    for _ in range(9):  # another application of the org spends the rest of the window
        okta.emulator.limiter.hit("user_get")
    results = await asyncio.gather(*(client.get_user(f"n{i}@contoso.com") for i in range(5)))
    assert results == [None] * 5
    assert client.stats.rate_limited == 1  # the 429's Reset held the bucket for the others
    assert okta.emulator.stats()["rate_limited_by_bucket"] == {"user_get": 1}


async def test_concurrency_429s_back_off_and_succeed(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    # Real time here: the emulator holds requests for real milliseconds.
    okta.emulator.set_limits({}, concurrency_limit=2)
    okta.emulator.set_fault("none", latency_ms=200)
    client = await make_client(clock=SYSTEM_CLOCK, max_concurrency=6)
    results = await asyncio.gather(*(client.get_user(f"n{i}@contoso.com") for i in range(6)))
    assert results == [None] * 6
    assert client.stats.concurrency_limited >= 1
    assert client.stats.concurrency_limited == okta.emulator.concurrency_rejections
    assert okta.emulator.peak_in_flight <= 2
