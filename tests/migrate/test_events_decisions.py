"""The password hook's VERIFIED decisions reach the ledger off the hot path, and never block it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from emulators.demo import okta_payload
from emulators.entra import RunningEmulator
from gateway.app import create_app
from gateway.config import parse_config
from gateway.ledger import LedgerUser, UserState, open_ledger
from gateway.okta import parse_password_import
from gateway.serve_ledger import SERVE_LEDGER
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, credential, gateway_yaml
from tests.migrate.event_envelopes import envelope, event, okta_id
from tests.redis_server import free_port

EVENT_SECRET = "Basic ZXZlbnRzOmV2ZW50LWhvb2stc2VjcmV0LTc3"
ALICE = "alice@contoso.com"

Client = TestClient[Any, Any]


def _yaml(authority: str, ledger: str) -> str:
    migration = {"ledger": ledger, "event_hook": {"auth": {"secrets": [EVENT_SECRET]}}}
    return gateway_yaml(authority, extra={"migration": migration})


async def _hook(
    client: Client, username: str, password: str, user_id: str | None = None
) -> tuple[str, float]:
    payload = okta_payload(username, password)
    if user_id is not None:
        payload["data"]["context"]["user"] = {"id": user_id}
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client.post(HOOK_PATH, json=payload, headers={"Authorization": HOOK_SECRET})
    assert response.status == 200
    return credential(await response.json()), loop.time() - started


async def _until_verified(ledger_url: str, login: str) -> LedgerUser:
    ledger = await open_ledger(ledger_url)
    try:
        async with asyncio.timeout(10):  # the recorder writes every second
            while True:
                user = await ledger.get_user("entra", login)
                if user is not None and user.verified_at is not None:
                    return user
                await asyncio.sleep(0.05)
    finally:
        await ledger.close()


async def test_a_verified_hook_call_reaches_the_ledger_within_the_flush_interval(
    aiohttp_client: Any, entra: RunningEmulator, tmp_path: Path, secret_scan: Any
) -> None:
    secret_scan.secrets.add(EVENT_SECRET)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    app = create_app(parse_config(_yaml(entra.url, ledger_url), env={}))
    client: Client = await aiohttp_client(app)
    async with asyncio.timeout(30):
        await app[SERVE_LEDGER].wait_open()

    assert (await _hook(client, ALICE, USERS[ALICE], okta_id(7)))[0] == "VERIFIED"
    assert (await _hook(client, "bob@contoso.com", "wrong-password-1"))[0] == "UNVERIFIED"
    user = await _until_verified(ledger_url, ALICE)
    assert (user.state, user.okta_id, user.last_decision) == (
        UserState.ACTIVATED,
        okta_id(7),
        "verified",
    )
    recorder = app[SERVE_LEDGER].recorder
    assert recorder.recorded == 1  # the UNVERIFIED answer is not a decision the ledger keeps

    # Okta's import event then finds the user by the id the hook carried.
    response = await client.post(
        "/okta/events",
        data=json.dumps(envelope([event("user.import.password", okta_id(7), ALICE)])).encode(),
        headers={"Authorization": EVENT_SECRET, "Content-Type": "application/json"},
    )
    assert response.status == 200
    ledger = await open_ledger(ledger_url)
    try:
        migrated = await ledger.get_user("entra", ALICE)
    finally:
        await ledger.close()
    assert migrated is not None and migrated.state is UserState.MIGRATED


async def test_the_hook_answers_within_budget_while_the_ledger_is_down(
    aiohttp_client: Any, entra: RunningEmulator, secret_scan: Any
) -> None:
    secret_scan.secrets.add(EVENT_SECRET)
    closed = f"postgresql://gw@127.0.0.1:{free_port()}/ledger"  # nothing listens there
    app = create_app(parse_config(_yaml(entra.url, closed), env={}))
    client: Client = await aiohttp_client(app)
    answers = await asyncio.gather(
        *(_hook(client, ALICE, USERS[ALICE], okta_id(7)) for _ in range(20))
    )
    assert {result for result, _ in answers} == {"VERIFIED"}
    assert max(seconds for _, seconds in answers) < 2.5  # the hook's budget
    handle = app[SERVE_LEDGER]
    assert handle.ledger is None
    assert (handle.recorder.queued, handle.recorder.dropped) == (20, 0)


async def test_a_gateway_without_migration_has_no_ledger(
    aiohttp_client: Any, entra: RunningEmulator
) -> None:
    app = create_app(parse_config(gateway_yaml(entra.url), env={}))
    client: Client = await aiohttp_client(app)
    assert (await _hook(client, ALICE, USERS[ALICE]))[0] == "VERIFIED"
    assert SERVE_LEDGER not in app
    assert (await client.post("/okta/events", json={})).status == 404


def test_the_hook_payloads_user_id_is_read_when_it_looks_like_one() -> None:
    payload = okta_payload(ALICE, "pw-not-checked-here")
    assert parse_password_import(json.dumps(payload).encode()).okta_user_id is None
    payload["data"]["context"]["user"] = {"id": okta_id(3)}
    assert parse_password_import(json.dumps(payload).encode()).okta_user_id == okta_id(3)
    for odd in ({"id": "../x"}, {"id": 7}, {"id": "x" * 65}, "00u1", None):
        payload["data"]["context"]["user"] = odd
        # Not Okta's documented payload: ignored, never a 400 that would fail a sign-in.
        assert parse_password_import(json.dumps(payload).encode()).okta_user_id is None
