"""`gateway migrate import` with its ledger on the real PostgreSQL (127.0.0.1:5432).

The database is a fresh `ledger_test_<random>` made and dropped as tests/ledger does; a server
that does not answer fails the test with one line (never a skip).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from emulators.entra import EmulatedDirectory, EmulatedUser, RunningEmulator, start_emulator
from emulators.okta import RunningOktaEmulator
from gateway.ledger import RunCommand, UserState, open_ledger
from tests.ledger.conftest import create_database, database_url, drop_database
from tests.migrate.test_import import _config, _migrate
from tests.migrate.test_import import okta as okta  # the fixture, re-exported for pytest

USERS = 300


@pytest.fixture
async def small_tenant() -> AsyncIterator[RunningEmulator]:
    """USERS generated users, one disabled user and one without a route (as in test_import)."""
    base = EmulatedDirectory(
        users=[
            EmulatedUser(username="off@contoso.com", password="x", account_enabled=False),
            EmulatedUser(username="nomail@elsewhere.org", password="x"),
        ],
        managed_domains=["contoso.com", "elsewhere.org"],
    )
    running = await start_emulator(EmulatedDirectory.with_generated_users(USERS, base=base))
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def postgres_ledger() -> Iterator[str]:
    """A fresh database on the test PostgreSQL for this test's ledger, dropped afterwards."""
    name = create_database()  # fails (one line) when PostgreSQL does not answer
    try:
        yield database_url(name)
    finally:
        drop_database(name)


async def test_import_with_the_ledger_on_postgresql(
    small_tenant: RunningEmulator, okta: RunningOktaEmulator, postgres_ledger: str, tmp_path: Path
) -> None:
    config = _config(tmp_path / "c.yaml", small_tenant, okta, postgres_ledger)
    code, out, err = await _migrate(config)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"import: listed={USERS + 1} created={USERS} native=0 existing=0 skipped=1 failed=0"
    )
    assert okta.emulator.stats()["users_by_status"] == {"ACTIVE": USERS}

    code, out, err = await _migrate(config)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"import: listed={USERS + 1} created=0 native=0 existing={USERS} skipped=1 failed=0"
    )
    assert okta.emulator.stats()["users"] == USERS

    ledger = await open_ledger(postgres_ledger)
    try:
        progress = (await ledger.progress())["entra"]
        activated = [u async for u in ledger.users_in_state("entra", UserState.ACTIVATED)]
        skipped = await ledger.get_user("entra", "nomail@elsewhere.org")
        first = await ledger.get_run(1)
    finally:
        await ledger.close()
    assert sum(progress.states.values()) == USERS + 1
    assert progress.states[UserState.SKIPPED] == 1
    assert len(activated) == USERS
    assert all(user.okta_id for user in activated)
    assert skipped is not None
    assert skipped.reason == "no_route"
    assert first is not None
    assert first.command == RunCommand.IMPORT
    assert first.finished_at is not None
    assert first.counts["created"] == USERS
