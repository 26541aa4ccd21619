"""Where the ledger lives: the default location and the translation to async drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ledger import LedgerUrlError, async_ledger_url, default_ledger_url, display_url


def test_default_is_ledger_db_in_state_directory() -> None:
    url = default_ledger_url({"STATE_DIRECTORY": "/var/lib/okta-password-gateway"}, Path("/srv"))
    assert url == "sqlite:////var/lib/okta-password-gateway/ledger.db"


def test_default_takes_the_first_of_several_state_directories() -> None:
    url = default_ledger_url({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, Path("/srv"))
    assert url == "sqlite:////var/lib/a/ledger.db"


def test_default_without_state_directory_is_the_working_directory() -> None:
    assert default_ledger_url({}, Path("/srv/gw")) == "sqlite:////srv/gw/ledger.db"
    assert default_ledger_url({"STATE_DIRECTORY": ""}, Path("/srv/gw")) == (
        "sqlite:////srv/gw/ledger.db"
    )


def test_default_url_is_absolute_even_for_a_relative_state_directory() -> None:
    url = default_ledger_url({"STATE_DIRECTORY": "state"}, Path("/srv/gw"))
    assert url == "sqlite:////srv/gw/state/ledger.db"
    assert async_ledger_url(url).database == "/srv/gw/state/ledger.db"


@pytest.mark.parametrize(
    ("configured", "driver"),
    [
        ("sqlite:////var/lib/gw/ledger.db", "sqlite+aiosqlite"),
        ("sqlite+pysqlite:////var/lib/gw/ledger.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:////var/lib/gw/ledger.db", "sqlite+aiosqlite"),
        ("postgresql://gw@db:5432/ledger", "postgresql+asyncpg"),
        ("postgres://gw@db:5432/ledger", "postgresql+asyncpg"),
        ("postgresql+psycopg2://gw@db/ledger", "postgresql+asyncpg"),
        ("postgresql+psycopg://gw@db/ledger", "postgresql+asyncpg"),
        ("postgresql+asyncpg://gw@db/ledger", "postgresql+asyncpg"),
    ],
)
def test_sync_urls_get_the_async_driver(configured: str, driver: str) -> None:
    url = async_ledger_url(configured)
    assert url.drivername == driver


def test_four_slashes_are_an_absolute_sqlite_path() -> None:
    assert async_ledger_url("sqlite:////var/lib/gw/ledger.db").database == "/var/lib/gw/ledger.db"


def test_postgres_url_keeps_host_port_user_and_database() -> None:
    url = async_ledger_url("postgresql://gw:s3cret@db.internal:6432/ledger")
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.internal",
        6432,
        "gw",
        "s3cret",
        "ledger",
    )


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    url = async_ledger_url("postgresql://gw@db/ledger?sslmode=require")
    assert dict(url.query) == {"ssl": "require"}


def test_display_url_masks_the_database_password() -> None:
    shown = display_url(async_ledger_url("postgresql://gw:s3cret@db/ledger"))
    assert "s3cret" not in shown
    assert "db/ledger" in shown


@pytest.mark.parametrize(
    "configured",
    ["mysql://gw@db/ledger", "oracle://gw@db/ledger", "mssql+pyodbc://gw@db/ledger"],
)
def test_other_databases_are_refused_with_what_to_write(configured: str) -> None:
    with pytest.raises(LedgerUrlError, match=r"migration\.ledger: .* use sqlite:////"):
        async_ledger_url(configured)


@pytest.mark.parametrize("configured", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(configured: str) -> None:
    with pytest.raises(LedgerUrlError, match="in-memory"):
        async_ledger_url(configured)


def test_garbage_is_refused_with_an_example() -> None:
    with pytest.raises(LedgerUrlError, match="not a database URL"):
        async_ledger_url("ledger.db")
