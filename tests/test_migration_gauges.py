"""gateway_migration_users: the ledger's numbers on /metrics, refreshed in the background."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulators.entra import RunningEmulator
from gateway.app import METRICS, create_app
from gateway.config import parse_config
from gateway.ledger import Decision, UserState, open_ledger
from gateway.metrics import GatewayMetrics
from gateway.migration_gauges import GAUGE_INTERVAL, refresh_gauges
from tests.conftest import gateway_yaml

NAME = "gateway_migration_users"


def _gauge(metrics: GatewayMetrics, source: str, state: str) -> float | None:
    return metrics.registry.get_sample_value(NAME, {"source": source, "state": state})


async def _seed(url: str) -> None:
    """entra: 2 migrated (1 native), 1 verified not confirmed, 2 pending, 1 finished."""
    ledger = await open_ledger(url)
    now = datetime.now(UTC)
    try:
        for login in ("p1@contoso.com", "p2@contoso.com", "v@contoso.com", "f@contoso.com"):
            await ledger.record_user("entra", login, UserState.ACTIVATED, okta_id=f"id-{login}")
        # `migrate finish` deactivated f; its reset of p2 failed (still pending).
        for login, reason in (("f", "finish_deactivate"), ("p2", "finish_reset_password_failed")):
            await ledger.record_user(
                "entra", f"{login}@contoso.com", UserState.ACTIVATED, reason=reason
            )
        await ledger.record_decisions([Decision("entra", "v@contoso.com", "verified", now)])
        for i in range(2):
            await ledger.record_user(
                "entra", f"m{i}@contoso.com", UserState.MIGRATED, native=i == 0, migrated_at=now
            )
    finally:
        await ledger.close()


async def _wait_for(check: Any) -> None:
    """Poll (for up to 10 s) until `check()` holds; the refresh task runs every 50 ms here."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the gauges never showed the ledger's numbers")


async def test_refresh_sets_the_five_states_per_source(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    await _seed(url)
    metrics = GatewayMetrics()
    ledger = await open_ledger(url)
    try:
        shown = await refresh_gauges(ledger, metrics, ["entra", "ldap"])
    finally:
        await ledger.close()
    assert shown == {"entra", "ldap"}
    values = {s: _gauge(metrics, "entra", s) for s in ("imported", "migrated")}
    assert values == {"imported": 6.0, "migrated": 2.0}
    assert _gauge(metrics, "entra", "verified_unconfirmed") == 1.0
    assert _gauge(metrics, "entra", "pending") == 2.0
    assert _gauge(metrics, "entra", "finished") == 1.0
    assert _gauge(metrics, "ldap", "finished") == 0.0
    assert _gauge(metrics, "ldap", "imported") == 0.0  # configured, nobody imported yet


async def test_serve_refreshes_the_gauges_from_the_ledger(
    aiohttp_client: Any, entra: RunningEmulator, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    await _seed(url)
    extra = {"migration": {"ledger": url, "sources": {"entra": {}}}}
    app = create_app(parse_config(gateway_yaml(entra.url, extra=extra), env={}))
    app[GAUGE_INTERVAL] = 0.05
    client = await aiohttp_client(app)
    metrics = app[METRICS]
    await _wait_for(lambda: _gauge(metrics, "entra", "pending") == 2.0)
    ledger = await open_ledger(url)
    try:
        await ledger.mark_migrated(source="entra", login="p1@contoso.com")
    finally:
        await ledger.close()
    await _wait_for(lambda: _gauge(metrics, "entra", "pending") == 1.0)
    assert _gauge(metrics, "entra", "migrated") == 3.0
    text = await (await client.get("/metrics")).text()
    assert 'gateway_migration_users{source="entra",state="imported"} 6.0' in text
    assert 'gateway_migration_users{source="entra",state="finished"} 1.0' in text


async def test_without_a_ledger_there_are_no_migration_series(
    aiohttp_client: Any, entra: RunningEmulator
) -> None:
    app = create_app(parse_config(gateway_yaml(entra.url), env={}))
    client = await aiohttp_client(app)
    text = await (await client.get("/metrics")).text()
    assert "gateway_migration_users{" not in text
    assert 'gateway_okta_api_requests_total{operation="list_users",status="2xx"} 0.0' in text
