"""What is retried and what is not: 5xx on reads, lost create answers, the retry budget."""

from __future__ import annotations

import pytest

from emulators.okta import RunningOktaEmulator
from gateway.okta_api import OktaApiClient, OktaApiError, RetryBudget
from tests.okta_api.conftest import ClientFactory, FaultProxy, profile_of

CREATE = "POST /api/v1/users"
LOOKUP = "GET /api/v1/users/{id}"


@pytest.mark.parametrize("mode", ["http_500", "http_503", "http_504"])
async def test_a_read_is_retried_after_a_server_error(
    client: OktaApiClient, okta: RunningOktaEmulator, mode: str
) -> None:
    await client.create_user(profile_of("a@contoso.com"))
    okta.emulator.set_fault(mode, rate=0.5, buckets=["user_get"])  # type: ignore[arg-type]
    await client.get_user("a@contoso.com")  # credit 0.5: passes
    user = await client.get_user("a@contoso.com")  # struck once, retried
    assert user is not None and user["profile"]["login"] == "a@contoso.com"
    assert (client.stats.server_errors, client.stats.retries) == (1, 1)


async def test_a_create_refused_before_it_ran_is_sent_again_after_a_lookup(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    okta.emulator.set_fault("http_503", rate=0.5, buckets=["users_collection"])
    _ = [u async for u in client.list_users()]  # credit 0.5 on the bucket: passes
    user = await client.create_user(profile_of("a@contoso.com"))  # 503, lookup: none, again
    assert user["status"] == "ACTIVE"
    counts = okta.emulator.requests_by_endpoint
    assert (counts[CREATE], counts[LOOKUP]) == (2, 1)
    assert okta.emulator.stats()["users"] == 1


@pytest.mark.parametrize("action", ["lose", "drop"])
async def test_a_create_whose_answer_was_lost_is_found_not_sent_again(
    make_client: ClientFactory, okta: RunningOktaEmulator, proxy: FaultProxy, action: str
) -> None:
    client = await make_client(url=proxy.url)
    proxy.lose_next("POST", "/api/v1/users", action)  # type: ignore[arg-type]
    user = await client.create_user(profile_of("a@contoso.com"), group_ids=[])
    assert user["profile"]["login"] == "a@contoso.com"
    assert okta.emulator.requests_by_endpoint[CREATE] == 1  # never sent twice
    assert okta.emulator.stats()["users"] == 1
    assert client.stats.recovered == 1


async def test_a_create_that_timed_out_is_found_not_sent_again(
    make_client: ClientFactory, okta: RunningOktaEmulator, proxy: FaultProxy
) -> None:
    client = await make_client(url=proxy.url, timeout_seconds=0.5)
    proxy.lose_next("POST", "/api/v1/users", "hang")
    user = await client.create_user(profile_of("a@contoso.com"))
    assert user["status"] == "ACTIVE"
    assert okta.emulator.requests_by_endpoint[CREATE] == 1
    assert (client.stats.timeouts, client.stats.recovered) == (1, 1)


async def test_a_lost_create_whose_lookup_fails_is_reported_as_unknown_not_resent(
    make_client: ClientFactory, okta: RunningOktaEmulator, proxy: FaultProxy
) -> None:
    client = await make_client(url=proxy.url, retry_budget=RetryBudget(ratio=0.2, reserve=1))
    proxy.lose_next("POST", "/api/v1/users")
    okta.emulator.set_fault("http_500", buckets=["user_get"])
    with pytest.raises(OktaApiError) as caught:
        await client.create_user(profile_of("a@contoso.com"))
    error = caught.value
    assert (error.operation, error.status, error.outcome_unknown) == (CREATE, 502, True)
    assert isinstance(error.__cause__, OktaApiError)  # the failed lookup, kept for debugging
    assert okta.emulator.requests_by_endpoint[CREATE] == 1


async def test_a_create_of_an_existing_login_is_a_plain_error(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    await client.create_user(profile_of("a@contoso.com"))
    with pytest.raises(OktaApiError) as caught:
        await client.create_user(profile_of("a@contoso.com"))
    assert caught.value.code == "E0000001"
    assert client.stats.recovered == 0  # no earlier attempt was lost: not "found"


async def test_an_activate_whose_answer_was_lost_is_done_on_the_retry(
    make_client: ClientFactory, okta: RunningOktaEmulator, proxy: FaultProxy
) -> None:
    client = await make_client(url=proxy.url)
    staged = await client.create_user(profile_of("a@contoso.com"), activate=False)
    proxy.lose_next("POST", f"/api/v1/users/{staged['id']}/lifecycle/activate")
    await client.activate(staged["id"])  # retried: 403 E0000016 means the lost one worked
    assert okta.emulator.users[staged["id"]].status == "ACTIVE"
    assert okta.emulator.stats()["activation_emails_total"] == 0


async def test_activating_an_active_user_is_still_an_error(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    user = await client.create_user(profile_of("a@contoso.com"))
    with pytest.raises(OktaApiError) as caught:
        await client.activate(user["id"])
    assert (caught.value.status, caught.value.code) == (403, "E0000016")


async def test_a_delete_whose_answer_was_lost_is_done_on_the_retry(
    make_client: ClientFactory, okta: RunningOktaEmulator, proxy: FaultProxy
) -> None:
    client = await make_client(url=proxy.url)
    user = await client.create_user(profile_of("a@contoso.com"))
    await client.deactivate(user["id"])
    proxy.lose_next("DELETE", f"/api/v1/users/{user['id']}")
    await client.delete_user(user["id"])  # retried: 404 means the lost one deleted it
    assert okta.emulator.stats()["users"] == 0


async def test_a_hook_create_is_not_retried_after_a_server_error(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    okta.emulator.set_fault("http_500", buckets=["hooks"])
    with pytest.raises(OktaApiError) as caught:
        await client.create_inline_hook({"name": "x"})
    assert caught.value.outcome_unknown
    assert caught.value.one_line().endswith("[the request may have been carried out]")
    assert okta.emulator.requests_by_endpoint["POST /api/v1/inlineHooks"] == 1


async def test_an_outage_does_not_multiply_traffic_once_the_budget_is_spent(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    client = await make_client(retry_budget=RetryBudget(ratio=0.0, reserve=2))
    okta.emulator.set_fault("http_503")
    with pytest.raises(OktaApiError) as first:
        await client.get_user("a@contoso.com")
    assert first.value.gave_up == "retry_budget"
    assert first.value.one_line() == (
        "GET /api/v1/users/{id} -> 503 http_503: Service Unavailable "
        "[3 attempts; retry budget exhausted, not retried: Okta is failing many calls; "
        "the request may have been carried out]"
    )
    for _ in range(5):  # every further call: one request, no retries
        with pytest.raises(OktaApiError):
            await client.get_user("a@contoso.com")
    assert okta.emulator.requests_by_endpoint[LOOKUP] == 3 + 5
    assert client.stats.retries_refused == 6


async def test_a_call_gives_up_after_max_retries(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    client = await make_client(max_retries=2)
    okta.emulator.set_fault("http_429", retry_after=3)
    with pytest.raises(OktaApiError) as caught:
        await client.get_user("a@contoso.com")
    assert (caught.value.status, caught.value.gave_up, caught.value.attempts) == (
        429,
        "max_retries",
        3,
    )
    assert okta.emulator.requests_by_endpoint[LOOKUP] == 3


async def test_a_refused_connection_is_retried_for_any_call(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    client = await make_client(url="http://127.0.0.1:9", max_retries=1)  # nothing listens
    with pytest.raises(OktaApiError) as caught:
        await client.create_user(profile_of("a@contoso.com"))
    error = caught.value
    assert (error.status, error.code, error.attempts) == (None, "network", 2)
    assert not error.outcome_unknown  # nothing reached Okta
