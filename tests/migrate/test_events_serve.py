"""Event deliveries to real `gateway serve` processes: a SIGKILL mid-stream, two replicas on PostgreSQL.

Okta delivers at least once, retries a delivery that got no answer, and may deliver an event
twice: whatever happens to the process, every event answered 200 is in the ledger exactly once.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from emulators.entra import RunningEmulator
from gateway.ledger import UserRecord, UserState, async_ledger_url, open_ledger
from gateway.ledger.schema import events as events_table
from gateway.ledger.schema import users as users_table
from tests.conftest import gateway_yaml
from tests.ledger.conftest import create_database, database_url, drop_database
from tests.migrate.event_envelopes import PUBLISHED, envelope, event, okta_id
from tests.redis_server import free_port
from tests.serve_process import ServeProcess

EVENT_SECRET = "Basic ZXZlbnRzOmV2ZW50LWhvb2stc2VjcmV0LTY2"
HEADERS = {"Authorization": EVENT_SECRET, "Content-Type": "application/json"}
IMPORT = "user.import.password"


@pytest.fixture(autouse=True)
def event_secret_scanned(secret_scan: Any) -> None:
    secret_scan.secrets.add(EVENT_SECRET)


def _serve(tmp_path: Path, name: str, entra: RunningEmulator, ledger: str) -> ServeProcess:
    port = free_port()
    text = gateway_yaml(
        entra.url,
        extra={
            "server": {"host": "127.0.0.1", "port": port},
            "logging": {"level": "info", "format": "json"},
            "migration": {"ledger": ledger, "event_hook": {"auth": {"secrets": [EVENT_SECRET]}}},
        },
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return ServeProcess(path, f"http://127.0.0.1:{port}")


def _events(count: int, *, every_other_type: int = 5) -> list[dict[str, Any]]:
    """Mostly import SUCCESS events, each for its own user; every fifth another type."""
    return [
        event(IMPORT, okta_id(i), f"u{i}@contoso.com")
        if i % every_other_type
        else event("user.lifecycle.create", okta_id(i), f"u{i}@contoso.com")
        for i in range(count)
    ]


def _batches(
    items: list[dict[str, Any]], size: int, twice: float, rng: random.Random
) -> list[list[dict[str, Any]]]:
    """The events in delivery batches, a `twice` share of them delivered a second time."""
    sequence = items + rng.sample(items, int(len(items) * twice))
    rng.shuffle(sequence)
    return [sequence[i : i + size] for i in range(0, len(sequence), size)]


async def _post(http: aiohttp.ClientSession, url: str, batch: list[dict[str, Any]]) -> int | None:
    """The status, or None when the process gave no answer."""
    try:
        async with http.post(
            url + "/okta/events", data=json.dumps(envelope(batch)).encode(), headers=HEADERS
        ) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _ledger_uuids(url: str) -> tuple[list[str], int]:
    engine = create_async_engine(async_ledger_url(url))
    try:
        async with engine.connect() as connection:
            uuids = list((await connection.execute(select(events_table.c.uuid))).scalars())
            users = (
                await connection.execute(select(func.count()).select_from(users_table))
            ).scalar_one()
    finally:
        await engine.dispose()
    return uuids, users


async def _ledger_open(process: ServeProcess) -> None:
    async with asyncio.timeout(30):
        while not process.lines("migration ledger open"):  # noqa: ASYNC110 - a log file
            await asyncio.sleep(0.05)


async def test_sigkill_mid_stream_loses_no_answered_event_and_duplicates_none(
    entra: RunningEmulator, tmp_path: Path
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    items = _events(10_000)
    batches = _batches(items, 200, twice=0.2, rng=random.Random(7))
    first = _serve(tmp_path, "gw", entra, ledger_url)
    await first.start()
    await _ledger_open(first)
    answered: list[list[dict[str, Any]]] = []
    unanswered: list[list[dict[str, Any]]] = []
    pending = list(enumerate(batches))
    kill_after = len(batches) // 2
    timeout = aiohttp.ClientTimeout(total=20)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def worker() -> None:
                while pending:
                    _, batch = pending.pop(0)
                    status = await _post(http, first.url, batch)
                    if status == 200:
                        answered.append(batch)
                        if len(answered) == kill_after:
                            first.send(signal.SIGKILL)  # other batches are in flight now
                    else:
                        assert status is None, status
                        unanswered.append(batch)

            await asyncio.gather(*(worker() for _ in range(4)))
            assert await first.wait() == -signal.SIGKILL
            assert kill_after <= len(answered) < len(batches) and unanswered
            # Everything answered so far is in the ledger, once.
            uuids, _ = await _ledger_uuids(ledger_url)
            assert len(uuids) == len(set(uuids))
            assert {e["uuid"] for b in answered for e in b} <= set(uuids)

            second = _serve(tmp_path, "gw", entra, ledger_url)
            await second.start()
            try:
                # Ready means the password hook can answer; the ledger opens beside it (until
                # then deliveries get a 503, which Okta retries).
                await _ledger_open(second)
                for batch in unanswered:  # Okta's retry of what got no answer
                    assert await _post(http, second.url, batch) == 200
            finally:
                second.send(signal.SIGTERM)
                assert await second.wait() == 0
    finally:
        await first.stop()

    uuids, users = await _ledger_uuids(ledger_url)
    assert sorted(uuids) == sorted(e["uuid"] for e in items)  # each exactly once
    ledger = await open_ledger(ledger_url)
    try:
        progress = (await ledger.progress())["entra"]
    finally:
        await ledger.close()
    imports = sum(1 for e in items if e["eventType"] == IMPORT)
    # Marks interrupted by the kill were applied when their events came again.
    assert progress.migrated == imports == users


@pytest.fixture
def postgres_ledger() -> Iterator[str]:
    name = create_database()  # fails (one line) when PostgreSQL does not answer
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture
async def replicas(
    entra: RunningEmulator, tmp_path: Path, postgres_ledger: str
) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    pair = (
        _serve(tmp_path, "a", entra, postgres_ledger),
        _serve(tmp_path, "b", entra, postgres_ledger),
    )
    try:
        await asyncio.gather(*(p.start() for p in pair))
        await asyncio.gather(*(_ledger_open(p) for p in pair))
        yield pair
    finally:
        for process in pair:
            await process.stop()


async def test_two_replicas_on_postgresql_record_each_event_once(
    replicas: tuple[ServeProcess, ServeProcess], postgres_ledger: str
) -> None:
    count = 2000
    items = _events(count)
    # Half the users were imported by this tool (the ledger knows their Okta id).
    ledger = await open_ledger(postgres_ledger)
    try:
        await ledger.record_users(
            [
                UserRecord("entra", f"u{i}@contoso.com", UserState.ACTIVATED, okta_id=okta_id(i))
                for i in range(0, count, 2)
            ]
        )
    finally:
        await ledger.close()
    rng = random.Random(11)
    batches = _batches(items, 100, twice=0.2, rng=rng)
    a, b = replicas
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        slots = asyncio.Semaphore(4)

        async def deliver(batch: list[dict[str, Any]]) -> list[int | None]:
            async with slots:
                # Half the batches reach both replicas at once (Okta's retry racing the first).
                targets = [a, b] if rng.random() < 0.5 else [rng.choice([a, b])]
                return list(await asyncio.gather(*(_post(http, p.url, batch) for p in targets)))

        statuses = await asyncio.gather(*(deliver(batch) for batch in batches))
    assert {s for pair in statuses for s in pair} == {200}

    uuids, users = await _ledger_uuids(postgres_ledger)
    assert sorted(uuids) == sorted(e["uuid"] for e in items)
    ledger = await open_ledger(postgres_ledger)
    try:
        progress = (await ledger.progress())["entra"]
        sample = await ledger.get_user("entra", "u1@contoso.com")
    finally:
        await ledger.close()
    imports = sum(1 for e in items if e["eventType"] == IMPORT)
    assert progress.migrated == imports
    # Known users without an import event (every tenth) stay activated; the unknown ones with
    # one were recorded under the route's source.
    assert progress.states == {UserState.MIGRATED: imports, UserState.ACTIVATED: count // 10}
    assert users == count // 2 + sum(1 for i in range(1, count, 2) if i % 5)
    assert sample is not None and sample.migrated_at == datetime.fromisoformat(PUBLISHED)
    assert sample.okta_id == okta_id(1)
    for process in replicas:
        lines = process.lines("event_hook")
        assert lines and all(line["status"] == 200 for line in lines)
