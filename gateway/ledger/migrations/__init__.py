"""Alembic migrations of the ledger schema (run by `gateway.ledger.upgrade`, no alembic.ini)."""
