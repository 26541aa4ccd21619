"""Rate limits per bucket, the concurrency limit, and injected faults."""

from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime

import aiohttp
import pytest

from emulators.okta import RunningOktaEmulator
from tests.emulators.okta.conftest import Answer, FakeClock, OktaApi, assert_okta_error


def rate_headers(answer: Answer) -> tuple[int, int, int]:
    """(Limit, Remaining, Reset) as integers."""
    return (
        int(answer.headers["X-Rate-Limit-Limit"]),
        int(answer.headers["X-Rate-Limit-Remaining"]),
        int(answer.headers["X-Rate-Limit-Reset"]),
    )


async def test_every_api_response_carries_rate_limit_headers(api: OktaApi) -> None:
    answers = [
        await api.create("a@example.com"),
        await api.call("GET", "/api/v1/users/nobody@example.com"),  # 404
        await api.call("GET", "/api/v1/users", auth="SSWS wrong"),  # 401
        await api.call("GET", "/api/v1/inlineHooks"),
    ]
    for answer in answers:
        limit, remaining, reset = rate_headers(answer)
        assert limit > 0 and 0 <= remaining < limit and reset > 0
        assert answer.headers["X-Okta-Request-Id"]


async def test_remaining_counts_down_and_reset_is_window_end_in_epoch_seconds(
    api: OktaApi, clock: FakeClock
) -> None:
    first = await api.call("GET", "/api/v1/users")
    second = await api.call("GET", "/api/v1/users")
    assert rate_headers(first) == (600, 599, int(clock.now) + 60)
    assert rate_headers(second) == (600, 598, int(clock.now) + 60)
    # Date comes from the same clock, so Reset - Date + 1 is the wait Okta's SDKs compute.
    assert parsedate_to_datetime(second.headers["Date"]).timestamp() == int(clock.now)


async def test_limit_exceeded_is_429_e0000047_until_the_window_resets(
    api: OktaApi, okta: RunningOktaEmulator, clock: FakeClock
) -> None:
    okta.emulator.set_limits({"users_collection": 3})
    for _ in range(3):
        assert (await api.call("GET", "/api/v1/users")).status == 200
    clock.advance(30)
    refused = await api.call("GET", "/api/v1/users")
    body = assert_okta_error(refused, 429, "E0000047")
    assert body["errorSummary"] == "API call exceeded rate limit due to too many requests."
    assert rate_headers(refused) == (3, 0, int(clock.now) - 30 + 60)
    clock.advance(30)  # the window opened 60 s ago: a new one starts
    recovered = await api.call("GET", "/api/v1/users")
    assert recovered.status == 200
    assert rate_headers(recovered)[:2] == (3, 2)
    stats = await api.stats()
    assert stats["rate_limited_by_bucket"] == {"users_collection": 1}
    assert stats["responses_by_status"]["429"] == 1


async def test_buckets_are_separate(api: OktaApi, okta: RunningOktaEmulator) -> None:
    okta.emulator.set_limits({"users_collection": 1})
    user = (await api.create("a@example.com")).body
    assert (await api.call("GET", "/api/v1/users")).status == 429
    one = await api.call("GET", f"/api/v1/users/{user['id']}")  # user_get bucket
    assert one.status == 200
    assert rate_headers(one)[0] == 2000


async def test_limits_can_be_changed_through_the_control_plane(api: OktaApi) -> None:
    answer = await api.call("PUT", "/_emulator/limits", json={"limits": {"users_collection": 1200}})
    assert answer.status == 200
    assert answer.body["limits"]["users_collection"] == 1200
    assert answer.body["concurrency_limit"] == 75
    listed = await api.call("GET", "/api/v1/users")
    assert rate_headers(listed)[0] == 1200
    bad = await api.call("PUT", "/_emulator/limits", json={"limits": {"nope": 1}})
    assert bad.status == 400


async def test_concurrency_limit_answers_429_with_zero_limit(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    okta.emulator.set_limits({}, concurrency_limit=2)
    okta.emulator.set_fault("none", latency_ms=500)  # all six arrive while two are held
    answers = await asyncio.gather(*(api.call("GET", "/api/v1/users") for _ in range(6)))
    refused = [a for a in answers if a.status == 429]
    assert len(refused) == 4
    for answer in refused:
        assert_okta_error(answer, 429, "E0000047")
        assert rate_headers(answer)[:2] == (0, 0)
    stats = await api.stats()
    assert stats["concurrency_rejections"] == 4
    assert stats["peak_in_flight"] == 2


@pytest.mark.parametrize(("mode", "status"), [("http_500", 500), ("http_503", 503)])
async def test_injected_fault_hits_exactly_the_given_share_of_requests(
    api: OktaApi, okta: RunningOktaEmulator, mode: str, status: int
) -> None:
    okta.emulator.set_fault(mode, rate=0.25)  # type: ignore[arg-type]
    answers = [await api.call("GET", "/api/v1/users") for _ in range(8)]
    assert [a.status for a in answers].count(status) == 2
    assert (await api.stats())["faults_injected"] == {mode: 2}
    if status == 500:
        assert_okta_error(next(a for a in answers if a.status == 500), 500, "E0000009")


async def test_injected_429_names_a_near_reset_and_spares_other_buckets(
    api: OktaApi, okta: RunningOktaEmulator, clock: FakeClock
) -> None:
    await api.call(
        "PUT",
        "/_emulator/fault",
        json={"mode": "http_429", "retry_after": 2, "buckets": ["users_collection"]},
    )
    refused = await api.call("GET", "/api/v1/users")
    assert_okta_error(refused, 429, "E0000047")
    assert rate_headers(refused) == (600, 0, int(clock.now) + 2)
    assert (await api.call("GET", "/api/v1/inlineHooks")).status == 200
    await api.call("PUT", "/_emulator/fault", json={"mode": "none"})
    assert (await api.call("GET", "/api/v1/users")).status == 200


async def test_hang_holds_the_request_until_the_client_gives_up(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    okta.emulator.set_fault("hang")
    with pytest.raises(asyncio.TimeoutError):
        async with api.session.get(
            f"{api.base}/api/v1/users",
            headers={"Authorization": api.auth},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pass
    okta.emulator.set_fault("none")
    assert (await api.call("GET", "/api/v1/users")).status == 200


async def test_control_plane_is_not_rate_limited_or_authenticated(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    okta.emulator.set_fault("http_500")
    for _ in range(3):
        assert (await api.call("GET", "/_emulator/stats", auth="")).status == 200
    assert "X-Rate-Limit-Limit" not in (await api.call("GET", "/_emulator/fault")).headers


async def test_reset_zeroes_counters_and_a_full_reset_restores_the_org(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    await api.create("a@example.com")
    await api.call("POST", "/_emulator/reset")
    stats = await api.stats()
    assert stats["requests_total"] == 0
    assert stats["users"] == 1
    await api.call("POST", "/_emulator/reset", json={"users": True})
    assert (await api.stats())["users"] == 0
