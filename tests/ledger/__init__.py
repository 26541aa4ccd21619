"""Tests of gateway/ledger: every operation on SQLite and on PostgreSQL."""
