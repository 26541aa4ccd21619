"""Exact metric deltas for each kind of hook request, read from the app's own registry."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from emulators.demo import okta_payload
from emulators.entra import RunningEmulator
from gateway.app import METRICS
from gateway.runtime import RUNTIME
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, GatewayFactory, credential, post_hook

ALICE = "alice@contoso.com"
# Counted series: every counter and histogram count. Buckets, gauges and `_created` timestamps
# are checked separately where they matter.
COUNTED_SUFFIXES = ("_total", "_count")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _registry(client: TestClient[Any, Any]) -> CollectorRegistry:
    registry: CollectorRegistry = client.server.app[METRICS].registry
    return registry


def _counted(registry: CollectorRegistry) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.endswith(COUNTED_SUFFIXES)
    }


def _delta(before: Samples, after: Samples) -> dict[str, float]:
    """Changed series as `name{k=v,...}` -> increase."""
    changed = {}
    for key, value in after.items():
        diff = value - before.get(key, 0.0)
        if diff:
            name, labels = key
            changed[name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"] = diff
    return changed


def _hook_body(username: str, password: str) -> dict[str, Any]:
    payload: dict[str, Any] = okta_payload(username, password)
    return payload


async def test_verified_request_counts_hook_verification_and_latency(
    make_gateway: GatewayFactory,
) -> None:
    client = await make_gateway()
    registry = _registry(client)
    before = _counted(registry)
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(body)) == (200, "VERIFIED")
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=verified}": 1,
        "gateway_verifications_total{result=verified,source=entra}": 1,
        "gateway_verification_duration_seconds_count{source=entra}": 1,
        "gateway_cache_requests_total{cache=verdict,result=miss}": 1,
    }
    inf = registry.get_sample_value(
        "gateway_verification_duration_seconds_bucket", {"source": "entra", "le": "+Inf"}
    )
    assert inf == 1
    last = registry.get_sample_value(
        "gateway_source_last_success_timestamp_seconds", {"source": "entra"}
    )
    assert last is not None and last > 0
    assert registry.get_sample_value("gateway_inflight_requests") == 0


async def test_wrong_password_counts_denied_and_its_code(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    registry = _registry(client)
    before = _counted(registry)
    status, body = await post_hook(client, ALICE, "not-" + USERS[ALICE])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=unverified}": 1,
        "gateway_verifications_total{result=denied,source=entra}": 1,
        "gateway_verification_duration_seconds_count{source=entra}": 1,
        "gateway_upstream_errors_total{code=aadsts_50126,source=entra}": 1,
        "gateway_cache_requests_total{cache=verdict,result=miss}": 1,
    }
    last = registry.get_sample_value(
        "gateway_source_last_success_timestamp_seconds", {"source": "entra"}
    )
    assert last == 0


async def test_upstream_500_counts_unavailable_and_http_5xx(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await make_gateway()
    registry = _registry(client)
    entra.emulator.set_fault(mode="http_500")
    before = _counted(registry)
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=unverified}": 1,
        "gateway_verifications_total{result=unavailable,source=entra}": 1,
        "gateway_verification_duration_seconds_count{source=entra}": 1,
        "gateway_upstream_errors_total{code=http_5xx,source=entra}": 1,
        "gateway_cache_requests_total{cache=verdict,result=miss}": 1,
    }
    assert registry.get_sample_value("gateway_inflight_requests") == 0


async def test_bad_request_counts_only_bad_request(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    registry = _registry(client)
    before = _counted(registry)
    response = await client.post(
        HOOK_PATH,
        data=b'{"eventType": "not json',
        headers={"Authorization": HOOK_SECRET, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=bad_request}": 1
    }


async def test_missing_auth_counts_unauthorized_and_its_reason(
    make_gateway: GatewayFactory,
) -> None:
    client = await make_gateway()
    registry = _registry(client)
    before = _counted(registry)
    response = await client.post(HOOK_PATH, json=_hook_body(ALICE, USERS[ALICE]))
    assert response.status == 401
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=unauthorized}": 1,
        "gateway_hook_auth_failures_total{reason=missing}": 1,
    }


async def test_wrong_auth_counts_unauthorized_and_its_reason(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    registry = _registry(client)
    before = _counted(registry)
    response = await client.post(
        HOOK_PATH,
        json=_hook_body(ALICE, USERS[ALICE]),
        headers={"Authorization": HOOK_SECRET + "x"},
    )
    assert response.status == 401
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=unauthorized}": 1,
        "gateway_hook_auth_failures_total{reason=bad_secret}": 1,
    }


async def test_oversized_body_counts_only_too_large(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    registry = _registry(client)
    limit = client.server.app[RUNTIME].current.config.server.max_body_bytes
    before = _counted(registry)
    response = await client.post(
        HOOK_PATH,
        data=b"{" + b" " * limit + b"}",
        headers={"Authorization": HOOK_SECRET, "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=too_large}": 1
    }


async def test_each_outcome_counts_once_in_a_mixed_sequence(make_gateway: GatewayFactory) -> None:
    """The repeat of a verified pair is a verdict-cache hit: no upstream call, no verification."""
    client = await make_gateway()
    registry = _registry(client)
    before = _counted(registry)
    for password in (USERS[ALICE], "wrong-password-1", USERS[ALICE], "wrong-password-2"):
        await post_hook(client, ALICE, password)
    await client.post(HOOK_PATH, json=_hook_body(ALICE, USERS[ALICE]))
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=verified}": 2,
        "gateway_hook_requests_total{outcome=unverified}": 2,
        "gateway_hook_requests_total{outcome=unauthorized}": 1,
        "gateway_hook_auth_failures_total{reason=missing}": 1,
        "gateway_cache_requests_total{cache=verdict,result=miss}": 3,
        "gateway_cache_requests_total{cache=verdict,result=hit}": 1,
        "gateway_verifications_total{result=verified,source=entra}": 1,
        "gateway_verifications_total{result=denied,source=entra}": 2,
        "gateway_verification_duration_seconds_count{source=entra}": 3,
        "gateway_upstream_errors_total{code=aadsts_50126,source=entra}": 2,
    }


async def test_rate_limited_requests_count_the_limit_and_no_verification(
    make_gateway: GatewayFactory,
) -> None:
    limits = {"per_username": {"failures": 1, "window_seconds": 60}}
    client = await make_gateway(extra={"rate_limits": limits})
    registry = _registry(client)
    await post_hook(client, ALICE, "not-" + USERS[ALICE])
    before = _counted(registry)
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=unverified}": 1,
        "gateway_rate_limited_total{limit=username}": 1,
        "gateway_cache_requests_total{cache=verdict,result=miss}": 1,
    }


async def test_source_rate_cap_counts_source_limit_and_unavailable(
    make_gateway: GatewayFactory,
) -> None:
    limits = {"per_source": {"rate_per_second": 0.01, "burst": 1}}
    client = await make_gateway(extra={"rate_limits": limits})
    registry = _registry(client)
    await post_hook(client, ALICE, USERS[ALICE])
    before = _counted(registry)
    status, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert _delta(before, _counted(registry)) == {
        "gateway_hook_requests_total{outcome=unverified}": 1,
        "gateway_rate_limited_total{limit=source}": 1,
        "gateway_verifications_total{result=unavailable,source=entra}": 1,
        "gateway_cache_requests_total{cache=verdict,result=miss}": 1,
    }
