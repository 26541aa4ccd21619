"""gateway_okta_api_requests_total: every attempt, by client operation and status class."""

from __future__ import annotations

import pytest

from emulators.okta import RunningOktaEmulator
from gateway.metrics import GatewayMetrics
from gateway.okta_api import OktaApiError
from gateway.okta_api.operations import (
    OPERATIONS,
    STATUSES,
    RequestTally,
    operation_of,
    status_of,
)
from tests.okta_api.conftest import ClientFactory, profile_of

NAME = "gateway_okta_api_requests_total"


def _count(metrics: GatewayMetrics, operation: str, status: str) -> float | None:
    return metrics.registry.get_sample_value(NAME, {"operation": operation, "status": status})


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/api/v1/users", "create_user"),
        ("GET", "/api/v1/users", "list_users"),
        ("GET", "/api/v1/users/someone%40contoso.com", "get_user"),
        ("POST", "/api/v1/users/00u1", "update_user"),
        ("POST", "/api/v1/users/00u1/lifecycle/reset_password", "reset_password"),
        ("POST", "/api/v1/users/00u1/lifecycle/expire_password", "expire_password"),
        ("POST", "/api/v1/users/00u1/lifecycle/deactivate", "deactivate"),
        ("GET", "/api/v1/logs", "list_log_events"),
        ("POST", "/oauth2/v1/token", "fetch_token"),
        ("PUT", "/api/v1/eventHooks/who1", "update_event_hook"),
        ("GET", "/api/v1/apps", "other"),
    ],
)
def test_operations_are_named_after_the_client_methods(
    method: str, path: str, operation: str
) -> None:
    assert operation_of(method, path) == operation
    assert operation in OPERATIONS


@pytest.mark.parametrize(
    ("status", "label"),
    [(200, "2xx"), (204, "2xx"), (404, "4xx"), (429, "429"), (503, "5xx"), (302, "error")],
)
def test_status_classes(status: int, label: str) -> None:
    assert status_of(status) == label
    assert status_of(None) == "error"


def test_every_series_is_exported_at_zero_from_the_start() -> None:
    metrics = GatewayMetrics()
    for operation in OPERATIONS:
        for status in STATUSES:
            assert _count(metrics, operation, status) == 0.0


async def test_the_client_counts_every_attempt_retries_included(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    metrics = GatewayMetrics()
    client = await make_client(on_request=metrics.count_okta_request)
    okta.emulator.set_fault("http_429", rate=0.5, buckets=["users_collection"])
    await client.create_user(profile_of("a@contoso.com"))  # credit 0.5: answered
    await client.create_user(profile_of("b@contoso.com"))  # 429, then answered
    assert await client.get_user("nobody@contoso.com") is None  # 404
    assert _count(metrics, "create_user", "2xx") == 2
    assert _count(metrics, "create_user", "429") == 1
    assert _count(metrics, "get_user", "4xx") == 1
    assert _count(metrics, "list_users", "2xx") == 0


async def test_server_errors_and_unreachable_orgs_are_counted(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    tally = RequestTally()
    client = await make_client(on_request=tally, max_retries=1)
    okta.emulator.set_fault("http_500", rate=1.0, buckets=["user_get"])
    with pytest.raises(OktaApiError):
        await client.get_user("a@contoso.com")
    assert tally.counts == {("get_user", "5xx"): 2}
    dead = await make_client(on_request=tally, url="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(OktaApiError):
        await dead.get_user("a@contoso.com")
    assert tally.counts[("get_user", "error")] == 1
    assert tally.summary() == "okta api requests: get_user 5xx=2 error=1"


async def test_lifecycle_actions_of_finish_reach_okta(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    tally = RequestTally()
    client = await make_client(on_request=tally)
    first = await client.create_user(profile_of("a@contoso.com"))
    second = await client.create_user(profile_of("b@contoso.com"))
    assert await client.reset_password(first["id"], send_email=True) == {}
    expired = await client.expire_password(second["id"])
    assert expired["status"] == "PASSWORD_EXPIRED"
    assert okta.emulator.stats()["password_reset_emails_total"] == 1
    assert tally.counts[("reset_password", "2xx")] == 1
    assert tally.counts[("expire_password", "2xx")] == 1


async def test_the_system_log_is_read_until_caught_up(
    make_client: ClientFactory, okta: RunningOktaEmulator
) -> None:
    client = await make_client()
    for i in range(5):
        await client.create_user(profile_of(f"u{i}@contoso.com"))
    events = [
        event
        async for event in client.list_log_events(
            filter='eventType eq "user.lifecycle.create"', limit=2
        )
    ]
    assert [e["eventType"] for e in events] == ["user.lifecycle.create"] * 5
    assert len({e["uuid"] for e in events}) == 5
