"""Replicas starting together: the schema migration runs exactly once, and everyone gets a ledger."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger import UserState, head_revision, open_ledger
from tests.ledger.conftest import create_database, database_url, drop_database

# A replica: import everything, say so, wait for the start signal, open the ledger, report.
REPLICA = """
import asyncio, json, sys
from gateway.ledger import UserState, open_ledger

async def main() -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    ledger = await open_ledger(sys.argv[1])
    await ledger.record_user("entra", sys.argv[2], UserState.LISTED)
    print(json.dumps(list(ledger.applied_revisions)), flush=True)
    await ledger.close()

asyncio.run(main())
"""


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """An empty database of its own: no tables yet, as on a first deployment."""
    name = create_database()
    try:
        yield database_url(name)
    finally:
        drop_database(name)


def _race_processes(url: str, count: int) -> list[list[str]]:
    """Start `count` replica processes, release them at once; what each one migrated."""
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, url, f"replica{i}@contoso.com"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    try:
        for replica in replicas:
            assert replica.stdout is not None
            assert replica.stdout.readline().strip() == "ready"
        for replica in replicas:
            assert replica.stdin is not None
            replica.stdin.write("go\n")
            replica.stdin.flush()
        results = []
        for replica in replicas:
            out, err = replica.communicate(timeout=60)
            assert replica.returncode == 0, err.strip().splitlines()[-1:]
            results.append(json.loads(out))
        return results
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.kill()
                replica.wait()


async def _count_rows(url: str) -> int:
    ledger = await open_ledger(url)
    try:
        progress = await ledger.progress()
        return progress["entra"].states[UserState.LISTED]
    finally:
        await ledger.close()


def test_replica_processes_starting_together_migrate_once(fresh_postgres: str) -> None:
    results = _race_processes(fresh_postgres, 3)
    assert sorted(results) == [[], [], [head_revision()]]
    assert asyncio.run(_count_rows(fresh_postgres)) == 3


def test_replica_processes_on_one_sqlite_file_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    results = _race_processes(url, 3)
    assert sorted(results) == [[], [], [head_revision()]]
    assert asyncio.run(_count_rows(url)) == 3


async def _open_many(url: str, count: int) -> list[tuple[str, ...]]:
    ledgers = await asyncio.gather(*(open_ledger(url) for _ in range(count)))
    try:
        await asyncio.gather(
            *(
                ledger.record_user("entra", f"i{i}@contoso.com", UserState.LISTED)
                for i, ledger in enumerate(ledgers)
            )
        )
        return [ledger.applied_revisions for ledger in ledgers]
    finally:
        await asyncio.gather(*(ledger.close() for ledger in ledgers))


def test_instances_opening_one_postgres_ledger_at_once_migrate_once(fresh_postgres: str) -> None:
    applied = asyncio.run(_open_many(fresh_postgres, 8))
    assert sorted(applied) == [()] * 7 + [(head_revision(),)]
