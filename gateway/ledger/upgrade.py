"""Bring a ledger database to the newest schema on start ("upgraded on start").

Alembic is configured here in code (no alembic.ini at run time) and runs inside one transaction
the ledger begins itself:

- PostgreSQL: the transaction first takes a transaction-scoped advisory lock, so replicas started
  together migrate one after the other; the second finds the schema current and does nothing.
  DDL is transactional there, so a crash mid-way leaves the previous revision intact.
- SQLite: the transaction is `BEGIN IMMEDIATE` (see `store._sqlite_begin`), which holds the
  database's write lock for the same effect; the driver's own transaction handling is off, so
  the DDL runs inside that transaction too.

A new revision is a module in `migrations/versions/` (frozen once released);
`alembic.command.revision(alembic_config(), "message", rev_id="0002")` writes its skeleton.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
# Our own version table, so the ledger can share a PostgreSQL database with another
# Alembic-managed application.
VERSION_TABLE = "ledger_alembic_version"
# pg_advisory_xact_lock takes one bigint: a fixed key derived from a name no one else uses.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"okta-password-gateway:ledger-schema-upgrade").digest()[:8],
    "big",
    signed=True,
)


class LedgerSchemaError(RuntimeError):
    """The database's schema is not one this gateway can upgrade (e.g. newer than its code)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the ledger's migrations, optionally bound to a connection."""
    config = Config()
    # ConfigParser interpolates `%`: a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["version_table"] = VERSION_TABLE
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise LedgerSchemaError(f"no ledger migrations found in {MIGRATIONS}")
    return head


def _upgrade_sync(connection: Connection) -> tuple[str, ...]:
    """Run Alembic's upgrade to head on `connection`; the revisions it applied, oldest first."""
    config = alembic_config(connection)
    try:
        command.upgrade(config, "head")
    except CommandError as err:
        # Typically a database migrated by a newer gateway, then this older one started on it.
        raise LedgerSchemaError(
            f"the ledger database's schema cannot be upgraded by this gateway (its newest "
            f"revision is {head_revision()}): {err}; run the newest gateway version against it"
        ) from err
    applied: list[str] = config.attributes.get("applied", [])
    return tuple(applied)


async def upgrade(engine: AsyncEngine) -> tuple[str, ...]:
    """Upgrade the ledger schema to head, once across replicas; the revisions this call applied."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: two replicas never both create the tables.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        return await connection.run_sync(_upgrade_sync)
