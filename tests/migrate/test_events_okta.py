"""Event-driven prepare and sync on activate, against the Okta (and Entra) emulators.

The first test has the Okta emulator deliver the events of real app assignments to the running
gateway; the others build each delivery from the emulator's users, as Okta would send it (both
orders of the targets, redeliveries), and POST it to the gateway's event hook.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient

from emulators.entra import EmulatedDirectory, RunningEmulator, start_emulator
from emulators.okta import (
    DEFAULT_API_TOKEN,
    OktaOrg,
    RunningOktaEmulator,
    start_okta_emulator,
)
from gateway import event_hook
from gateway.app import METRICS, create_app
from gateway.config import parse_config
from gateway.event_hook import EVENT_HOOK
from gateway.ledger import UserState, open_ledger
from gateway.serve_ledger import SERVE_LEDGER
from tests.conftest import HOOK_SECRET
from tests.migrate.event_envelopes import envelope, event
from tests.migrate.test_import import _config as import_config
from tests.migrate.test_import import _migrate
from tests.migrate.test_import import okta as okta  # the fixture, re-exported for pytest

EVENT_SECRET = "Basic ZXZlbnRzOmV2ZW50LWhvb2stc2VjcmV0LTU1"
AUTH = {"Authorization": EVENT_SECRET, "Content-Type": "application/json"}
APP_ID = "0oa1office365emul"
ASSIGNED = 50
NOT_ASSIGNED = 5  # STAGED too, but assigned to another app (or not at all): left alone
ADD = "application.user_membership.add"

Client = TestClient[Any, Any]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_hook, "ACTION_BACKOFF_SECONDS", 0.05)


@pytest.fixture
def event_secret_scanned(secret_scan: Any) -> None:
    secret_scan.secrets.add(EVENT_SECRET)


@pytest.fixture
async def staged_org() -> AsyncIterator[RunningOktaEmulator]:
    running = await start_okta_emulator(
        OktaOrg.with_staged_users(ASSIGNED + NOT_ASSIGNED, "contoso.com")
    )
    running.emulator.set_limits({bucket: None for bucket in running.emulator.limiter.limits})
    try:
        yield running
    finally:
        await running.close()


def _gateway_yaml(okta_url: str, ledger: str, **migration: Any) -> str:
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "okta": {
            "auth": {"secrets": [HOOK_SECRET]},
            "org_url": okta_url,
            "api": {"token": DEFAULT_API_TOKEN},
        },
        "sources": [
            {
                "name": "entra",
                "type": "azure_ad",
                "tenant_id": "11111111-2222-3333-4444-555555555555",
                "client_id": "66666666-7777-8888-9999-000000000000",
                "client_secret": "not-used-by-prepare",
                "authority": "http://127.0.0.1:9",  # prepare never calls Entra
            }
        ],
        "routes": [{"match": {"domains": ["contoso.com"]}, "sources": ["entra"]}],
        "migration": {
            "ledger": ledger,
            "event_hook": {"auth": {"secrets": [EVENT_SECRET]}},
            **migration,
        },
    }
    return yaml.safe_dump(data)


async def _started(aiohttp_client: Any, text: str) -> Client:
    app = create_app(parse_config(text, env={}))
    client: Client = await aiohttp_client(app)
    async with asyncio.timeout(30):
        await app[SERVE_LEDGER].wait_open()
    return client


async def _deliver(client: Client, events: list[dict[str, Any]]) -> None:
    response = await client.post(
        "/okta/events", data=json.dumps(envelope(events)).encode(), headers=AUTH
    )
    assert response.status == 200, await response.text()


async def _idle(client: Client) -> None:
    actions = client.app[EVENT_HOOK].actions
    assert actions is not None
    async with asyncio.timeout(60):
        await actions.idle()


async def test_app_assignments_in_okta_prepare_the_staged_users_through_delivered_events(
    aiohttp_server: Any, staged_org: RunningOktaEmulator, tmp_path: Path,
    event_secret_scanned: None,
) -> None:  # fmt: skip
    from gateway.okta_api import OktaApiClient, SswsToken, event_hook_body

    text = _gateway_yaml(
        staged_org.url, f"sqlite:///{tmp_path / 'l.db'}", prepare_on=[ADD], prepare_app_id=APP_ID
    )
    app = create_app(parse_config(text, env={}))
    server = await aiohttp_server(app)
    async with asyncio.timeout(30):
        await app[SERVE_LEDGER].wait_open()
    async with OktaApiClient(staged_org.url, SswsToken(DEFAULT_API_TOKEN)) as okta:
        hook = await okta.create_event_hook(
            event_hook_body(
                "gateway",
                str(server.make_url("/okta/events")),
                [ADD],
                auth_header="Authorization",
                auth_value=EVENT_SECRET,
            )
        )
        assert (await okta.verify_event_hook(hook["id"]))["verificationStatus"] == "VERIFIED"
    users = sorted(staged_org.emulator.users.values(), key=lambda u: u.seq)
    assigned, others = users[:ASSIGNED], users[ASSIGNED:]
    async with aiohttp.ClientSession() as http:
        for user, app_id in [(u, APP_ID) for u in assigned] + [
            (u, "0oa1someotherapp0") for u in others
        ]:
            url = f"{staged_org.url}/_emulator/apps/{app_id}/users/{user.id}"
            async with http.post(url, json={}) as response:
                assert response.status == 200, await response.text()
    flushed = await staged_org.emulator.flush_events(max_wait=30)
    assert flushed["pending"] == 0 and flushed["failed"] == 0, flushed
    actions = app[EVENT_HOOK].actions
    assert actions is not None
    async with asyncio.timeout(60):
        await actions.idle()
    stats = staged_org.emulator.stats()
    assert stats["activation_emails_total"] == 0
    assert stats["users_by_status"] == {"ACTIVE": ASSIGNED, "STAGED": NOT_ASSIGNED}
    assert {u.id for u in users if u.status.value == "ACTIVE"} == {u.id for u in assigned}
    counted = {
        outcome: app[METRICS].registry.get_sample_value(
            "gateway_okta_events_total", {"type": ADD, "outcome": outcome}
        )
        for outcome in ("recorded", "ignored")
    }
    assert counted == {"recorded": ASSIGNED, "ignored": NOT_ASSIGNED}  # other apps: not acted on


async def test_assignment_events_prepare_each_staged_user_once_without_email(
    aiohttp_client: Any, staged_org: RunningOktaEmulator, tmp_path: Path,
    event_secret_scanned: None,
) -> None:  # fmt: skip
    ledger_url = f"sqlite:///{tmp_path / 'l.db'}"
    text = _gateway_yaml(staged_org.url, ledger_url, prepare_on=[ADD], prepare_app_id=APP_ID)
    client = await _started(aiohttp_client, text)
    users = sorted(staged_org.emulator.users.values(), key=lambda u: u.seq)
    assigned, others = users[:ASSIGNED], users[ASSIGNED:]
    events = [event(ADD, u.id, u.login, app_id=APP_ID, user_first=i % 2 == 0)
              for i, u in enumerate(assigned)]  # fmt: skip
    events += [event(ADD, u.id, u.login, app_id="0oa1someotherapp0") for u in others]
    for start in range(0, len(events), 20):  # Okta batches events close in time
        await _deliver(client, events[start : start + 20])
    await _idle(client)

    stats = staged_org.emulator.stats()
    assert stats["activation_emails_total"] == 0
    assert stats["users_by_status"] == {"ACTIVE": ASSIGNED, "STAGED": NOT_ASSIGNED}
    assert {u.id for u in users if u.status.value == "ACTIVE"} == {u.id for u in assigned}
    assert stats["users_by_provider"] == {"IMPORT": ASSIGNED, "OKTA": NOT_ASSIGNED}
    metrics = client.app[METRICS].registry
    assert (
        metrics.get_sample_value("gateway_okta_events_total", {"type": ADD, "outcome": "recorded"})
        == ASSIGNED
    )
    # The background actions' Okta calls are counted by the serving gateway.
    assert (
        metrics.get_sample_value(
            "gateway_okta_api_requests_total", {"operation": "activate", "status": "2xx"}
        )
        == ASSIGNED
    )
    ledger = await open_ledger(ledger_url)
    try:
        prepared = [await ledger.get_user("entra", u.login) for u in assigned]
        assert all(
            p is not None and p.state is UserState.ACTIVATED and p.hooked_at and p.activated_at
            for p in prepared
        )
        before = [await ledger.get_user("entra", u.login) for u in assigned]

        # A redelivery changes nothing: no Okta call, no ledger change.
        requests = stats["requests_total"]
        for start in range(0, len(events), 20):
            await _deliver(client, events[start : start + 20])
        await _idle(client)
        assert staged_org.emulator.stats()["requests_total"] == requests
        assert [await ledger.get_user("entra", u.login) for u in assigned] == before
    finally:
        await ledger.close()
    assert metrics.get_sample_value(
        "gateway_okta_events_total", {"type": ADD, "outcome": "duplicate"}
    ) == len(events)


@pytest.fixture
async def small_tenant() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(EmulatedDirectory.with_generated_users(5))
    try:
        yield running
    finally:
        await running.close()


async def test_activation_syncs_attributes_in_the_background_retrying_okta_5xx(
    aiohttp_client: Any, small_tenant: RunningEmulator, okta: RunningOktaEmulator,
    tmp_path: Path, event_secret_scanned: None,
) -> None:  # fmt: skip
    ledger_url = f"sqlite:///{tmp_path / 'l.db'}"
    config_path = import_config(tmp_path / "c.yaml", small_tenant, okta, ledger_url)
    code, _, err = await _migrate(config_path)
    assert code == 0, err
    login = "user1@contoso.com"
    directory = small_tenant.emulator.directory
    user = directory.find(login)
    assert user is not None
    directory.put_user(user.model_copy(update={"department": "Legal"}))
    (okta_user,) = [u for u in okta.emulator.users.values() if u.login == login]

    data = yaml.safe_load(config_path.read_text())
    data["migration"]["event_hook"] = {"auth": {"secrets": [EVENT_SECRET]}}
    data["migration"]["sync_on_activate"] = True
    client = await _started(aiohttp_client, yaml.safe_dump(data))
    # Okta answers 500 to every read of a user until the test lifts the fault.
    okta.emulator.set_fault("http_500", rate=1.0, buckets=["user_get"])
    await _deliver(client, [event("user.lifecycle.activate", okta_user.id, login)])
    async with asyncio.timeout(30):
        # The client tries 3 times per attempt: a 4th fault means the action itself retried.
        while okta.emulator.stats()["faults_injected"].get("http_500", 0) < 4:  # noqa: ASYNC110 - a counter, no event
            await asyncio.sleep(0.02)
    assert okta_user.profile.get("department") != "Legal"
    okta.emulator.set_fault("none")
    await _idle(client)

    assert okta_user.profile["department"] == "Legal"
    actions = client.app[EVENT_HOOK].actions
    assert actions is not None and actions.done == {"sync:updated": 1}
    ledger = await open_ledger(ledger_url)
    try:
        synced = await ledger.get_user("entra", login)
        others = await ledger.get_user("entra", "user2@contoso.com")
    finally:
        await ledger.close()
    assert synced is not None and synced.attributes_synced_at is not None
    assert others is not None and others.attributes_synced_at is None
