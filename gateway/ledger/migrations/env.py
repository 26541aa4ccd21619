"""Alembic environment: migrate the connection that `gateway.ledger.upgrade` hands over.

The ledger upgrades itself on start, inside a transaction it has already begun (and, on
PostgreSQL, under an advisory lock), so this environment never opens connections of its own and
has no offline (`--sql`) mode.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy.engine import Connection

from gateway.ledger.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the ledger's migrations run from gateway.ledger.upgrade (open_ledger), not from the "
        "alembic command line"
    )
applied: list[str] = config.attributes.setdefault("applied", [])


def _note_applied(
    ctx: MigrationContext,
    step: MigrationInfo,
    heads: Collection[Any],
    run_args: Mapping[str, Any],
) -> None:
    """Keep the revisions this run applied, so callers (and tests) can tell who migrated."""
    applied.append(str(step.up_revision_id))


context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=config.attributes["version_table"],
    # SQLite cannot ALTER most things: later migrations copy-and-move tables in batch mode.
    render_as_batch=connection.dialect.name == "sqlite",
    on_version_apply=_note_applied,
)
with context.begin_transaction():
    context.run_migrations()
