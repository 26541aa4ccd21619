"""The migration ledger: who was imported, hooked, activated and migrated, per source, and when.

SQLAlchemy 2 (async): SQLite through aiosqlite by default, PostgreSQL through asyncpg for several
replicas; the schema is versioned with Alembic and upgraded by `open_ledger`. It never holds a
password or a password hash. This package knows nothing of aiohttp: the commands, the event hook
and the status page use it through `Ledger` and `DecisionRecorder`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from gateway.ledger.models import (
    FINISH_REASONS,
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

if TYPE_CHECKING:
    from gateway.ledger.store import Ledger, LedgerError, LedgerTransaction, open_ledger
    from gateway.ledger.upgrade import LedgerSchemaError, head_revision
    from gateway.ledger.url import (
        LedgerUrlError,
        async_ledger_url,
        configured_ledger_url,
        default_ledger_url,
        display_url,
    )

# SQLAlchemy and Alembic (tens of MB, about a second to import) load on first use of these, so
# a gateway that never opens the ledger never pays for them; the values and the recorder above
# are plain Python.
_LAZY = {
    "Ledger": "store",
    "LedgerError": "store",
    "LedgerTransaction": "store",
    "open_ledger": "store",
    "LedgerSchemaError": "upgrade",
    "head_revision": "upgrade",
    "LedgerUrlError": "url",
    "async_ledger_url": "url",
    "default_ledger_url": "url",
    "configured_ledger_url": "url",
    "display_url": "url",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"gateway.ledger.{module}"), name)


__all__ = [
    "FINISH_REASONS",
    "PENDING_STATES",
    "Decision",
    "DecisionRecorder",
    "DecisionSink",
    "Ledger",
    "LedgerError",
    "LedgerSchemaError",
    "LedgerTransaction",
    "LedgerUrlError",
    "LedgerUser",
    "OktaEvent",
    "Run",
    "RunCommand",
    "SourceProgress",
    "UserRecord",
    "UserState",
    "async_ledger_url",
    "configured_ledger_url",
    "default_ledger_url",
    "display_url",
    "head_revision",
    "open_ledger",
]
