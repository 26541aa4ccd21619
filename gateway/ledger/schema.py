"""The ledger's tables, as SQLAlchemy Core metadata (the queries use it; migrations copy it).

Tables (every time is UTC):

- `ledger_runs`: one row per command run (import, prepare, sync-attributes, rollback, ...):
  `command`, `source`, `dry_run`, `started_at`, `finished_at`, `counts` (the run's last line as
  JSON).
- `ledger_users`: one row per (source, login): what was done with that user in Okta and when.
  Unique per source rather than per login, because two sources may list the same login and the
  second one's `existing` must not overwrite the first one's `activated`.
- `ledger_events`: Okta event hook events by their `uuid` (the primary key is the dedup: Okta may
  deliver an event twice).

No column holds a password or a password hash (tests/ledger/test_no_passwords.py checks names and
contents). A change here needs a new migration in `migrations/versions/`; the schema test compares
the migrated database with this metadata on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Named constraints and indexes, so a later migration can drop or alter them by name on both
# databases (SQLite's batch mode needs names to find them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# 64-bit ids on PostgreSQL; SQLite makes only an INTEGER primary key its auto-incrementing rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")
Counts = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both databases.

    PostgreSQL stores `timestamptz`; SQLite has no time zones and SQLAlchemy writes naive text
    there, which still sorts and compares correctly because every value is converted to UTC first.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive times (their zone is a guess); store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Give back an aware UTC datetime whatever the database returned."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


runs = Table(
    "ledger_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("command", String(32), nullable=False),
    Column("source", String(128)),
    Column("dry_run", Boolean, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("counts", Counts, nullable=False),
)

# Users in Okta with the hook (models.PENDING_STATES) who never signed in: the predicate of the
# partial index below. Queries must repeat it literally: both databases use a partial index only
# when the query's WHERE implies its predicate, which bound parameters would not.
NOT_SIGNED_IN_SQL = "state IN ('created', 'hooked', 'activated') AND verified_at IS NULL"

users = Table(
    "ledger_users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False),
    Column("login", Text, nullable=False),
    Column("okta_id", String(64)),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("native", Boolean, nullable=False, server_default=text("false")),
    Column("created_run_id", Id, ForeignKey("ledger_runs.id")),
    Column("last_run_id", Id, ForeignKey("ledger_runs.id")),
    Column("imported_at", UtcDateTime),
    Column("hooked_at", UtcDateTime),
    Column("activated_at", UtcDateTime),
    Column("attributes_synced_at", UtcDateTime),
    Column("verified_at", UtcDateTime),
    Column("migrated_at", UtcDateTime),
    Column("rolled_back_at", UtcDateTime),
    Column("last_decision", String(16)),
    Column("last_decision_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    # The upsert key (record_users, record_decisions) and lookups by login within a source.
    UniqueConstraint("source", "login"),
    # users_in_state: keyset pages by login within (source, state); progress: counts per state.
    Index(None, "source", "state", "login"),
    # Events and reconciliation find users by Okta id.
    Index(None, "okta_id"),
    # rollback: the users one run created, paged by id.
    Index(None, "created_run_id", "id"),
    # Daily migrated counts, "migrated in the last 24 h", the 7-day rate.
    Index(None, "source", "migrated_at"),
    # Last verification per source (ready_to_retire).
    Index(None, "source", "verified_at"),
    # Who has not signed in yet, paged by login: a partial index that only holds those users, so
    # the query stays cheap when they are a few hundred out of a million.
    Index(
        "ix_ledger_users_not_signed_in",
        "source",
        "login",
        sqlite_where=text(NOT_SIGNED_IN_SQL),
        postgresql_where=text(NOT_SIGNED_IN_SQL),
    ),
)

events = Table(
    "ledger_events",
    metadata,
    Column("uuid", String(64), primary_key=True),
    Column("type", String(128), nullable=False),
    Column("outcome", String(32)),
    Column("okta_user_id", String(64)),
    Column("published_at", UtcDateTime),
    Column("received_at", UtcDateTime, nullable=False),
    # The last event seen per type (System Log backfill starts there) and counts per type.
    Index(None, "type", "published_at"),
)
