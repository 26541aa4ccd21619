"""The ledger never holds a password or a password hash: not in its schema, not in its data."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url as parse_url
from sqlalchemy.ext.asyncio import create_async_engine

from emulators.demo import okta_payload
from gateway.ledger import (
    Decision,
    DecisionRecorder,
    Ledger,
    OktaEvent,
    RunCommand,
    UserState,
    async_ledger_url,
    open_ledger,
)
from gateway.ledger.schema import metadata
from tests.conftest import USERS
from tests.ledger.conftest import Clock, LedgerDatabase, dump_database, secrets_and_hashes

SUSPICIOUS = re.compile(r"pass|pwd|hash|secret|credential|salt|digest", re.IGNORECASE)


def _column_names(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    return [
        f"{table}.{column['name']}"
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
    ]


def test_schema_py_has_no_column_for_a_password() -> None:
    names = [f"{t.name}.{c.name}" for t in metadata.sorted_tables for c in t.columns]
    assert names
    assert [n for n in names if SUSPICIOUS.search(n)] == []


async def test_migrated_database_has_no_column_for_a_password(
    ledger: Ledger, ledger_db: LedgerDatabase
) -> None:
    engine = create_async_engine(async_ledger_url(ledger_db.url))
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(_column_names)
    finally:
        await engine.dispose()
    assert "ledger_users.login" in names
    assert [n for n in names if SUSPICIOUS.search(n)] == []


async def _a_migration(ledger: Ledger, clock: Clock) -> None:
    """Import, hook decisions, events, migration, rollback: the test users through every path.

    The hook's decisions are derived from Okta's real hook payload, which carries the password
    next to the username, the way the gateway's hook will hand them to the recorder.
    """
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    now = clock()
    for i, login in enumerate(USERS):
        await ledger.record_user(
            "entra",
            login,
            UserState.ACTIVATED,
            okta_id=f"00u{i}",
            run_id=run_id,
            imported_at=now,
            hooked_at=now,
            activated_at=now,
        )
    await ledger.finish_run(run_id, {"listed": len(USERS), "created": len(USERS)})
    recorder = DecisionRecorder(ledger, batch_size=4, flush_seconds=0.01)
    recorder.start()
    for i, (login, password) in enumerate(USERS.items()):
        for typed in (password, password + "-wrong"):
            payload = okta_payload(login, typed)
            credential = payload["data"]["context"]["credential"]
            result = "verified" if typed == password else "denied"
            recorder.put(Decision("entra", credential["username"], result, clock(), f"00u{i}"))
    await recorder.close()
    assert recorder.recorded == 2 * len(USERS)
    await ledger.record_events(
        [
            OktaEvent(f"evt-{i}", "user.import.password", "SUCCESS", f"00u{i}", clock())
            for i in range(len(USERS))
        ]
    )
    for i in range(0, len(USERS), 2):
        await ledger.mark_migrated(okta_id=f"00u{i}", at=clock())
    rollback = await ledger.start_run(RunCommand.ROLLBACK, source="entra")
    async for user in ledger.created_by_run(run_id):
        await ledger.mark_rolled_back(user.source, user.login, run_id=rollback)


async def test_a_full_dump_after_a_migration_holds_no_password(
    ledger: Ledger, ledger_db: LedgerDatabase, clock: Clock, test_secrets: set[str]
) -> None:
    await _a_migration(ledger, clock)
    await ledger.close()
    dump = await dump_database(ledger_db)
    if ledger_db.dialect == "postgresql":
        dump += await _pg_dump(ledger_db.url)
    assert all(login in dump for login in USERS)  # the dump does see the data
    leaked = [s for s in test_secrets if s in dump]
    if leaked:  # counted, never shown: the test output is a log too
        pytest.fail(f"{len(leaked)} test secret(s) in the ledger database", pytrace=False)


async def _pg_dump(url: str) -> str:
    """PostgreSQL's own full dump of the database (schema and data)."""
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump not found: install postgresql-client (it comes with postgresql)"
    parsed = parse_url(url)
    process = await asyncio.create_subprocess_exec(
        pg_dump,
        "--host",
        str(parsed.host),
        "--port",
        str(parsed.port or 5432),
        "--username",
        str(parsed.username),
        "--no-password",
        str(parsed.database),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **({"PGPASSWORD": parsed.password} if parsed.password else {})},
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")[-500:]
    return out.decode()


async def test_the_dump_scan_finds_a_planted_password_and_hash(
    tmp_path: Path, clock: Clock
) -> None:
    planted, hashed = "Planted#Pass-4242", "Hashed#Pass-4242"
    db = LedgerDatabase("sqlite", f"sqlite:///{tmp_path / 'planted.db'}", tmp_path / "planted.db")
    ledger = await open_ledger(db.url, clock=clock)
    try:
        await ledger.record_user("entra", "p@contoso.com", UserState.FAILED, reason=planted)
        digest = hashlib.sha256(hashed.encode()).hexdigest()
        await ledger.record_user("entra", "h@contoso.com", UserState.FAILED, reason=digest)
    finally:
        await ledger.close()
    dump = await dump_database(db)
    found = {s for s in secrets_and_hashes({planted, hashed}) if s in dump}
    assert planted in found
    assert hashlib.sha256(hashed.encode()).hexdigest() in found
