"""The migration ledger: who was imported, hooked, activated and migrated, per source, and when.

SQLAlchemy 2 (async): SQLite through aiosqlite by default, PostgreSQL through asyncpg for several
replicas; the schema is versioned with Alembic and upgraded by `open_ledger`. It never holds a
password or a password hash. This package knows nothing of aiohttp: the commands, the event hook
and the status page use it through `Ledger` and `DecisionRecorder`.
"""

from gateway.ledger.models import (
    PENDING_STATES,
    Decision,
    LedgerUser,
    OktaEvent,
    Run,
    RunCommand,
    SourceProgress,
    UserRecord,
    UserState,
)
from gateway.ledger.recorder import DecisionRecorder, DecisionSink
from gateway.ledger.store import Ledger, LedgerError, open_ledger
from gateway.ledger.upgrade import LedgerSchemaError, head_revision
from gateway.ledger.url import LedgerUrlError, async_ledger_url, default_ledger_url, display_url

__all__ = [
    "PENDING_STATES",
    "Decision",
    "DecisionRecorder",
    "DecisionSink",
    "Ledger",
    "LedgerError",
    "LedgerSchemaError",
    "LedgerUrlError",
    "LedgerUser",
    "OktaEvent",
    "Run",
    "RunCommand",
    "SourceProgress",
    "UserRecord",
    "UserState",
    "async_ledger_url",
    "default_ledger_url",
    "display_url",
    "head_revision",
    "open_ledger",
]
