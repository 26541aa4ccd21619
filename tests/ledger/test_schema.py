"""The schema: built by the Alembic migrations, equal to schema.py, upgraded once, no aiohttp."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.ledger import (
    PENDING_STATES,
    Ledger,
    LedgerError,
    LedgerSchemaError,
    UserState,
    async_ledger_url,
    head_revision,
    open_ledger,
)
from gateway.ledger.schema import NOT_SIGNED_IN_SQL, metadata
from gateway.ledger.upgrade import VERSION_TABLE
from tests.ledger.conftest import Clock, LedgerDatabase


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return list(compare_metadata(context, metadata))


async def _scalar(url: str, query: str) -> Any:
    engine = create_async_engine(async_ledger_url(url))
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(query))).scalar()
    finally:
        await engine.dispose()


async def test_migrations_build_exactly_the_schema_of_schema_py(
    ledger: Ledger, ledger_db: LedgerDatabase
) -> None:
    engine = create_async_engine(async_ledger_url(ledger_db.url))
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


async def test_schema_is_at_head_in_the_ledgers_own_version_table(
    ledger: Ledger, ledger_db: LedgerDatabase
) -> None:
    version = await _scalar(ledger_db.url, f"SELECT version_num FROM {VERSION_TABLE}")
    assert version == head_revision()


async def test_first_open_migrates_and_a_second_open_does_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    first = await open_ledger(url)
    await first.close()
    second = await open_ledger(url)
    await second.close()
    assert first.applied_revisions == (head_revision(),)
    assert second.applied_revisions == ()


async def test_reopening_keeps_what_was_recorded(ledger_db: LedgerDatabase, clock: Clock) -> None:
    ledger = await open_ledger(ledger_db.url, clock=clock)
    try:
        await ledger.record_user("entra", "keep@contoso.com", UserState.LISTED)
    finally:
        await ledger.close()
    reopened = await open_ledger(ledger_db.url, clock=clock)
    try:
        user = await reopened.get_user("entra", "keep@contoso.com")
        assert user is not None
        assert user.state is UserState.LISTED
        assert reopened.applied_revisions == ()
    finally:
        await reopened.close()


async def test_a_schema_newer_than_the_code_is_refused_with_what_to_do(
    ledger: Ledger, ledger_db: LedgerDatabase
) -> None:
    engine = create_async_engine(async_ledger_url(ledger_db.url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        with pytest.raises(LedgerSchemaError, match="run the newest gateway version"):
            await open_ledger(ledger_db.url)
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                text(f"UPDATE {VERSION_TABLE} SET version_num = :head"), {"head": head_revision()}
            )
        await engine.dispose()


async def test_missing_sqlite_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"directory .*/absent does not exist"):
        await open_ledger(f"sqlite:///{tmp_path / 'absent' / 'ledger.db'}")


async def test_unreachable_postgres_is_a_ledger_error_without_the_password() -> None:
    with pytest.raises(LedgerError) as caught:
        await open_ledger("postgresql://gw:db-s3cret@127.0.0.1:1/ledger")
    assert "127.0.0.1:1/ledger" in str(caught.value)
    assert "db-s3cret" not in str(caught.value)


def test_ledger_imports_no_web_layer(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from gateway.ledger import open_ledger\n"
        "async def main():\n"
        f"    ledger = await open_ledger('sqlite:///{tmp_path / 'l.db'}')\n"
        "    await ledger.close()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'prometheus_client')"
        " or m in ('gateway.app', 'gateway.service', 'gateway.config')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_not_signed_in_predicate_names_exactly_the_pending_states() -> None:
    named = set(re.findall(r"'([a-z_]+)'", NOT_SIGNED_IN_SQL))
    assert named == {str(state) for state in PENDING_STATES}


@pytest.mark.parametrize(
    "pending_only",
    [
        "",
        # The stragglers (not_signed_in without `finished`): not the users finish acted on.
        "AND (reason IS NULL OR reason NOT IN ('finish_deactivate', 'finish_expire_password', "
        "'finish_reset_password')) ",
    ],
    ids=["with_finished", "pending_only"],
)
async def test_not_signed_in_is_answered_from_its_partial_index(
    ledger: Ledger, ledger_db: LedgerDatabase, pending_only: str
) -> None:
    query = (
        "SELECT * FROM ledger_users WHERE source = 'entra' AND "
        "state IN ('created', 'hooked', 'activated') AND verified_at IS NULL "
        f"{pending_only}AND login > 'a' ORDER BY login LIMIT 100"
    )
    engine = create_async_engine(async_ledger_url(ledger_db.url))
    try:
        async with engine.connect() as connection:
            if ledger_db.dialect == "postgresql":
                # An empty table makes a sequential scan cheapest; the question is whether the
                # planner can use the index at all.
                await connection.execute(text("SET enable_seqscan = off"))
                plan = (await connection.execute(text(f"EXPLAIN {query}"))).scalars().all()
            else:
                rows = await connection.execute(text(f"EXPLAIN QUERY PLAN {query}"))
                plan = [row[-1] for row in rows]
    finally:
        await engine.dispose()
    assert "ix_ledger_users_not_signed_in" in "\n".join(plan)
