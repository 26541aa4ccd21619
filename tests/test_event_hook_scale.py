"""Big and cut event deliveries through `gateway serve`'s event hook, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.app import create_app
from gateway.config import parse_config
from gateway.event_hook import EVENT_HOOK
from gateway.ledger import UserRecord, UserState, async_ledger_url, open_ledger
from gateway.serve_ledger import SERVE_LEDGER
from tests.conftest import SecretScan, gateway_yaml
from tests.ledger.conftest import create_database, database_url, drop_database
from tests.migrate.event_envelopes import envelope, event, okta_id

EVENTS_PATH = "/okta/events"
EVENT_SECRET = "Basic ZXZlbnRzOnNjYWxlLWV2ZW50LXNlY3JldC03Nw=="
IMPORT = "user.import.password"
OKTA_TIMEOUT = 3.0  # Okta's own limit: a generous bound for one answer on a loaded machine
# Events whose SUCCESS is recorded while the user is not marked migrated (never allowed).
UNMARKED_SQL = (
    "SELECT count(*) FROM ledger_events e WHERE e.outcome = 'SUCCESS' AND NOT EXISTS "
    "(SELECT 1 FROM ledger_users u WHERE u.okta_id = e.okta_user_id AND u.state = 'migrated')"
)

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A database of this module on the machine's PostgreSQL, dropped at the end."""
    name = create_database()
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_sql(url, "TRUNCATE ledger_users, ledger_events, ledger_runs CASCADE", ensure=True))
    return url


async def _sql(url: str, statement: str, *, ensure: bool = False) -> int:
    """One scalar from the ledger's database (`ensure`: create the schema first)."""
    if ensure:
        await (await open_ledger(url)).close()
    engine = create_async_engine(async_ledger_url(url))
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return int(result.scalar() or 0) if result.returns_rows else 0
    finally:
        await engine.dispose()


@pytest.fixture
def secrets_scanned(secret_scan: SecretScan) -> None:
    secret_scan.secrets.add(EVENT_SECRET)


def _slim_import(index: int) -> dict[str, Any]:
    """An import SUCCESS with only the fields the gateway reads (about 280 bytes)."""
    full = event(IMPORT, okta_id(index), f"u{index}@contoso.com")
    user = {"id": okta_id(index), "type": "User", "alternateId": f"u{index}@contoso.com"}
    return {key: full[key] for key in ("uuid", "published", "eventType")} | {
        "outcome": {"result": "SUCCESS"},
        "target": [user],
    }


async def _create_users(url: str, count: int) -> None:
    """The users `migrate import` would have put in Okta with the hook."""
    ledger = await open_ledger(url)
    try:
        await ledger.record_users(
            [
                UserRecord("entra", f"u{i}@contoso.com", UserState.ACTIVATED, okta_id=okta_id(i))
                for i in range(count)
            ]
        )
    finally:
        await ledger.close()


async def _start(aiohttp_client: Any, url: str, **event_hook: Any) -> Client:
    hook = {"auth": {"secrets": [EVENT_SECRET]}, **event_hook}
    config = gateway_yaml(
        "http://127.0.0.1:9", extra={"migration": {"ledger": url, "event_hook": hook}}
    )
    app = create_app(parse_config(config, env={}))
    client: Client = await aiohttp_client(app)
    async with asyncio.timeout(30):
        await app[SERVE_LEDGER].wait_open()
    return client


async def _deliver(client: Client, body: bytes) -> tuple[int, float]:
    """POST a delivery; its status and how long the answer took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    headers = {"Content-Type": "application/json", "Authorization": EVENT_SECRET}
    response = await client.post(EVENTS_PATH, data=io.BytesIO(body), headers=headers)
    await response.read()
    return response.status, loop.time() - started


@pytest.fixture
async def settled() -> AsyncIterator[list[Client]]:
    """Clients whose deliveries still committing in the background are awaited at the end."""
    clients: list[Client] = []
    yield clients
    for client in clients:
        await client.app[EVENT_HOOK].drain(30)


async def test_fourteen_thousand_events_twice_are_answered_in_time_and_every_user_marked(
    aiohttp_client: Any, ledger_url: str, secrets_scanned: None, settled: list[Client]
) -> None:
    count = 14_000
    await _create_users(ledger_url, count)
    body = json.dumps(envelope([_slim_import(i) for i in range(count)])).encode()
    assert len(body) < 4 * 1024 * 1024  # under the default max_body_bytes
    client = await _start(aiohttp_client, ledger_url)
    settled.append(client)
    answers = [await _deliver(client, body) for _ in range(2)]  # Okta's delivery and its retry
    print(f"\n{ledger_url.split(':')[0]}: 14000 events twice: {answers}")  # the report's figures
    assert all(seconds < OKTA_TIMEOUT for _, seconds in answers), answers
    assert 200 in [status for status, _ in answers], answers
    await client.app[EVENT_HOOK].drain(30)
    migrated = "SELECT count(*) FROM ledger_users WHERE state = 'migrated'"
    assert await _sql(ledger_url, migrated) == count
    assert await _sql(ledger_url, "SELECT count(*) FROM ledger_events") == count
    assert await _sql(ledger_url, UNMARKED_SQL) == 0


async def test_a_delivery_cut_by_a_locked_ledger_leaves_no_success_unmarked_and_the_retry_completes(
    aiohttp_client: Any, tmp_path: Path, secrets_scanned: None, settled: list[Client]
) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    count, chunk = 1200, 400
    await _create_users(url, count)
    client = await _start(aiohttp_client, url, chunk_events=chunk, budget_seconds=1.0)
    settled.append(client)
    body = json.dumps(envelope([_slim_import(i) for i in range(count)])).encode()
    # Another writer (a migrate command, say) holds the database past the answer's deadline.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        status, seconds = await _deliver(client, body)
        assert (status, seconds < OKTA_TIMEOUT) == (503, True)  # Okta retries once
        assert await _sql(url, "SELECT count(*) FROM ledger_events") == 0
        # Okta's retry, while the ledger is still locked: it waits for the first attempt's
        # work (the same eventId), answers 503 in time again, and starts nothing twice.
        status, seconds = await _deliver(client, body)
        assert (status, seconds < OKTA_TIMEOUT) == (503, True)
        assert len(client.app[EVENT_HOOK].applying) == 1
    finally:
        blocker.rollback()
        blocker.close()
    # The delivery answered 503 goes on once the lock is gone, one transaction per chunk.
    await client.app[EVENT_HOOK].drain(30)
    assert await _sql(url, "SELECT count(*) FROM ledger_events") == count
    assert await _sql(url, UNMARKED_SQL) == 0
    assert await _sql(url, "SELECT count(*) FROM ledger_users WHERE state = 'migrated'") == count
    status, seconds = await _deliver(client, body)  # a late redelivery: nothing left to do
    assert (status, seconds < OKTA_TIMEOUT) == (200, True)
    assert await _sql(url, "SELECT count(*) FROM ledger_events") == count


async def test_no_chunk_ever_commits_a_success_without_its_mark(
    aiohttp_client: Any, tmp_path: Path, secrets_scanned: None, settled: list[Client]
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    count, chunk = 3000, 100
    await _create_users(url, count)
    client = await _start(aiohttp_client, url, chunk_events=chunk)
    settled.append(client)
    body = json.dumps(envelope([_slim_import(i) for i in range(count)])).encode()
    delivery = asyncio.create_task(_deliver(client, body))
    # Read the ledger from another connection while the chunks commit, many times over.
    seen: set[int] = set()
    while not delivery.done():
        recorded = await _sql(url, "SELECT count(*) FROM ledger_events")
        seen.add(recorded)
        assert await _sql(url, UNMARKED_SQL) == 0, recorded
    assert (await delivery)[0] == 200
    assert len(seen) > 1  # the reads did fall between chunks
