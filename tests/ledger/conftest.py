"""Ledger fixtures: every test runs on SQLite (a file in tmp_path) and on the real PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (`LEDGER_TEST_POSTGRES` overrides the maintenance
URL); the session creates a database of its own and drops it at the end. A server that does not
answer fails the PostgreSQL tests with the command that starts it: they are never skipped.
After each test the whole database is dumped and searched for the test passwords.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.ledger import Ledger, async_ledger_url, open_ledger
from tests.conftest import SecretScan

MAINTENANCE_URL = os.environ.get(
    "LEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START_POSTGRES = (
    "PostgreSQL is not answering at {url} ({error}): start it with `make services`, or on "
    "Debian `pg_ctlcluster 15 main start` (`pg_lsclusters` shows the version), or point "
    "LEDGER_TEST_POSTGRES at a server"
)
LEDGER_TABLES = ("ledger_users", "ledger_events", "ledger_runs")


class Clock:
    """A clock the test advances (the ledger's `clock`), starting at a fixed UTC time."""

    def __init__(self) -> None:
        """Start at 2025-03-01 09:00 UTC."""
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        """The current test time."""
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move time forward; the new time."""
        self.now += timedelta(**delta)
        return self.now


async def _run_autocommit(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE need that)."""
    engine = create_async_engine(async_ledger_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(10), engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


def database_url(name: str) -> str:
    """The URL of database `name` on the test server."""
    return make_url(MAINTENANCE_URL).set(database=name).render_as_string(hide_password=False)


def create_database() -> str:
    """Create a fresh database on the test server; its name. Fails (one line) if unreachable."""
    name = f"ledger_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_run_autocommit(MAINTENANCE_URL, f'CREATE DATABASE "{name}"'))
    except Exception as err:  # noqa: BLE001 - any failure means "not up"
        problem = type(err).__name__
    else:
        return name
    # Outside the except block, so the report is this one line, not a chained traceback.
    url = make_url(MAINTENANCE_URL).render_as_string(hide_password=True)
    pytest.fail(START_POSTGRES.format(url=url, error=problem), pytrace=False)


def drop_database(name: str) -> None:
    """Drop a database created by `create_database` (closing any connection left to it)."""
    asyncio.run(_run_autocommit(MAINTENANCE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session on the real PostgreSQL, dropped at the end."""
    name = create_database()
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@dataclass(frozen=True)
class LedgerDatabase:
    """Where a test's ledger lives: its URL, and the SQLite file when it is one."""

    dialect: str
    url: str
    path: Path | None = None


async def _truncate(url: str) -> None:
    """Empty the session's PostgreSQL ledger, so each test starts from nothing."""
    engine = create_async_engine(async_ledger_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(f"TRUNCATE {', '.join(LEDGER_TABLES)} RESTART IDENTITY CASCADE")
            )
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerDatabase:
    """The ledger's database for this test: a SQLite file, or the session's PostgreSQL one."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        return LedgerDatabase("sqlite", f"sqlite:///{path}", path)
    return LedgerDatabase("postgresql", request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> Clock:
    """The injected time of the ledger under test."""
    return Clock()


@pytest.fixture
def test_secrets(secret_scan: SecretScan) -> set[str]:
    """Every test password and secret, and common hash encodings of each."""
    return secrets_and_hashes(secret_scan.secrets)


def secrets_and_hashes(secrets: set[str]) -> set[str]:
    """The secrets plus their SHA-1/SHA-256 digests in hex and base64 (what an export holds)."""
    found = set(secrets)
    for secret in secrets:
        for algorithm in ("sha1", "sha256"):
            digest = hashlib.new(algorithm, secret.encode()).digest()
            found.add(digest.hex())
            found.add(base64.b64encode(digest).decode())
    return found


@pytest.fixture
async def ledger(
    ledger_db: LedgerDatabase, clock: Clock, test_secrets: set[str]
) -> AsyncIterator[Ledger]:
    """An open ledger on each database; afterwards, the whole database holds no test password."""
    opened = await open_ledger(ledger_db.url, clock=clock)
    if ledger_db.dialect == "postgresql":
        await _truncate(ledger_db.url)
    try:
        yield opened
    finally:
        await opened.close()
    dump = await dump_database(ledger_db)
    leaked = [s for s in test_secrets if s in dump]
    if leaked:  # counted, never shown: the test output is a log too
        pytest.fail(f"{len(leaked)} test secret(s) found in the ledger database", pytrace=False)


async def dump_database(db: LedgerDatabase) -> str:
    """Every table's schema and rows as text (SQLite: also the raw bytes of its files)."""
    if db.path is not None:
        return _dump_sqlite(db.path)
    engine = create_async_engine(async_ledger_url(db.url))
    parts: list[str] = []
    try:
        async with engine.connect() as connection:
            tables = (
                await connection.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'public' ORDER BY table_name"
                    )
                )
            ).scalars()
            for table in list(tables):
                parts.append(table)
                rows = await connection.execute(text(f'SELECT t::text FROM "{table}" t'))
                parts.extend(rows.scalars())
            columns = await connection.execute(
                text(
                    "SELECT table_name || '.' || column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public'"
                )
            )
            parts.extend(columns.scalars())
    finally:
        await engine.dispose()
    return "\n".join(parts)


def _dump_sqlite(path: Path) -> str:
    """SQLite's own SQL dump, plus the database and WAL files' raw bytes (deleted rows too)."""
    connection = sqlite3.connect(path)
    try:
        dumped = "\n".join(connection.iterdump())
    finally:
        connection.close()
    raw = [
        Path(f"{path}{suffix}").read_bytes().decode("utf-8", "replace")
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    ]
    return "\n".join([dumped, *raw])
