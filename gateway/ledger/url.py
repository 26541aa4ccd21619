"""Where the ledger lives: the default location and the async driver for a configured URL.

`migration.ledger` is written as an ordinary SQLAlchemy URL (`sqlite:////abs/path.db`,
`postgresql://user@host/db`), the way an operator knows it from other tools; the ledger itself
runs on asyncio, so the URL is translated to the async driver of its database here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from plugins.extras import missing_extra

LEDGER_FILE = "ledger.db"

# Every spelling of the two supported databases, mapped to the async driver the ledger runs on.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",  # Heroku-style spelling that SQLAlchemy no longer accepts
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+pg8000": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class LedgerUrlError(ValueError):
    """`migration.ledger` names no database the ledger can use; the message says what to write."""


def configured_ledger_url(configured: str | None) -> str:
    """`migration.ledger`, or the default for this process (environment, working directory)."""
    return configured or default_ledger_url(os.environ, Path.cwd())


def default_ledger_url(environ: Mapping[str, str], cwd: Path) -> str:
    """The ledger used when `migration.ledger` is not set: `ledger.db` in the state directory.

    systemd's `StateDirectory=` exports `$STATE_DIRECTORY` (several directories separated by
    colons when several are configured; the first is ours); without it the working directory is
    used, as for a one-shot `gateway migrate` run by hand.
    """
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    directory = Path(state) if state else cwd
    if not directory.is_absolute():
        directory = cwd / directory
    return f"sqlite:///{directory / LEDGER_FILE}"


def async_ledger_url(url: str | URL) -> URL:
    """The URL with its async driver: `sqlite+aiosqlite` or `postgresql+asyncpg`.

    Raises `LedgerUrlError` for other databases, an in-memory SQLite database (each connection
    would see a different, empty ledger, and nothing would survive a restart), or a URL that does
    not parse.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise LedgerUrlError(
            "migration.ledger: not a database URL; write sqlite:////abs/path/ledger.db "
            "or postgresql://user@host:5432/dbname"
        ) from err
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise LedgerUrlError(
            f"migration.ledger: {parsed.drivername!r} is not supported; "
            "use sqlite:////abs/path/ledger.db or postgresql://user@host:5432/dbname"
        )
    parsed = parsed.set(drivername=driver)
    if driver.startswith("sqlite"):
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise LedgerUrlError(
                "migration.ledger: an in-memory SQLite database loses the ledger on exit; "
                "give a file, e.g. sqlite:////var/lib/okta-password-gateway/ledger.db"
            )
        return parsed
    # libpq's `sslmode=...` (what operators copy from psql) is called `ssl` by asyncpg.
    if "sslmode" in parsed.query and "ssl" not in parsed.query:
        sslmode = parsed.query["sslmode"]
        parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": sslmode})
    return parsed


def ledger_extra_problem(url: str) -> str | None:
    """The sentence naming the pip line when the URL's driver is an extra that is not installed.

    A URL that does not parse is left to `async_ledger_url`, which explains it when the ledger
    is opened.
    """
    try:
        driver = async_ledger_url(url).drivername
    except LedgerUrlError:
        return None
    if driver == "postgresql+asyncpg":
        return missing_extra("postgres", "a PostgreSQL ledger")
    return None


def display_url(url: URL) -> str:
    """The URL for logs and error messages, with any database password masked."""
    return url.render_as_string(hide_password=True)
