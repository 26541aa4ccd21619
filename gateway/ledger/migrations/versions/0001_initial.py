"""The first ledger schema: runs, users, events.

Revision ID: 0001
Revises:
Create Date: 2025-12-01

Frozen copy of the schema at this revision (not an import of `schema.py`, which moves on).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)
_NOT_SIGNED_IN = "state IN ('created', 'hooked', 'activated') AND verified_at IS NULL"


def upgrade() -> None:
    """Create the three tables and the indexes the commands and progress reports need."""
    op.create_table(
        "ledger_runs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("source", sa.String(128)),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME),
        sa.Column(
            "counts", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_runs"),
    )
    op.create_table(
        "ledger_users",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("login", sa.Text(), nullable=False),
        sa.Column("okta_id", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("native", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("created_run_id", _ID),
        sa.Column("last_run_id", _ID),
        sa.Column("imported_at", _TIME),
        sa.Column("hooked_at", _TIME),
        sa.Column("activated_at", _TIME),
        sa.Column("attributes_synced_at", _TIME),
        sa.Column("verified_at", _TIME),
        sa.Column("migrated_at", _TIME),
        sa.Column("rolled_back_at", _TIME),
        sa.Column("last_decision", sa.String(16)),
        sa.Column("last_decision_at", _TIME),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_users"),
        sa.UniqueConstraint("source", "login", name="uq_ledger_users_source_login"),
        sa.ForeignKeyConstraint(
            ["created_run_id"],
            ["ledger_runs.id"],
            name="fk_ledger_users_created_run_id_ledger_runs",
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"], ["ledger_runs.id"], name="fk_ledger_users_last_run_id_ledger_runs"
        ),
    )
    op.create_index(
        "ix_ledger_users_source_state_login", "ledger_users", ["source", "state", "login"]
    )
    op.create_index("ix_ledger_users_okta_id", "ledger_users", ["okta_id"])
    op.create_index("ix_ledger_users_created_run_id_id", "ledger_users", ["created_run_id", "id"])
    op.create_index("ix_ledger_users_source_migrated_at", "ledger_users", ["source", "migrated_at"])
    op.create_index("ix_ledger_users_source_verified_at", "ledger_users", ["source", "verified_at"])
    op.create_index(
        "ix_ledger_users_not_signed_in",
        "ledger_users",
        ["source", "login"],
        sqlite_where=sa.text(_NOT_SIGNED_IN),
        postgresql_where=sa.text(_NOT_SIGNED_IN),
    )
    op.create_table(
        "ledger_events",
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("okta_user_id", sa.String(64)),
        sa.Column("published_at", _TIME),
        sa.Column("received_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_ledger_events"),
    )
    op.create_index("ix_ledger_events_type_published_at", "ledger_events", ["type", "published_at"])


def downgrade() -> None:
    """Drop everything the upgrade created (the ledger's history goes with it)."""
    op.drop_table("ledger_events")
    op.drop_table("ledger_users")
    op.drop_table("ledger_runs")
