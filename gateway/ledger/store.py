"""The migration ledger: what the migrate commands and the event hook did, per user, and when.

One `Ledger` per process, opened with `open_ledger(url)` (which upgrades the schema) and closed
with `await ledger.close()`. Every method is one short transaction, so replicas sharing a
PostgreSQL ledger, or a command running next to the gateway on one SQLite file, interleave safely;
writes that can race (the same user from two replicas, an event delivered twice at once) are
single `INSERT ... ON CONFLICT` statements, atomic on both databases.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    bindparam,
    case,
    event,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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
from gateway.ledger.schema import NOT_SIGNED_IN_SQL, UtcDateTime, events, runs, users
from gateway.ledger.upgrade import upgrade
from gateway.ledger.url import async_ledger_url, display_url

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# A later run seeing one of our own users again (`existing`, `listed`, `skipped`) is not news:
# it must not demote a user this tool put in Okta.
_WEAK_STATES = (UserState.LISTED, UserState.EXISTING, UserState.SKIPPED)
_PENDING = tuple(sorted(PENDING_STATES))
_FINISH_REASONS = tuple(sorted(FINISH_REASONS))
# SQLite allows 32,766 bound parameters per statement; events have six columns.
_EVENT_CHUNK = 500
_READ_OPTION = "ledger_read"


# record_decisions' upsert on SQLite (see Ledger._upsert_verified_sqlite); parameters: source,
# login, okta_id, state, decision time, now.
_SQLITE_UPSERT_VERIFIED = (
    "INSERT INTO ledger_users (source, login, okta_id, state, native, last_decision, "
    "last_decision_at, verified_at, updated_at) "
    "VALUES (?, ?, ?, ?, 0, 'verified', ?5, ?5, ?6) "
    "ON CONFLICT (source, login) DO UPDATE SET "
    "last_decision = excluded.last_decision, last_decision_at = excluded.last_decision_at, "
    "verified_at = excluded.verified_at, okta_id = coalesce(ledger_users.okta_id, "
    "excluded.okta_id), updated_at = excluded.updated_at "
    "WHERE ledger_users.last_decision_at IS NULL "
    "OR ledger_users.last_decision_at <= excluded.last_decision_at"
)


_EVENT_COLUMNS = ("uuid", "type", "outcome", "okta_user_id", "published_at", "received_at")
_SQLITE_INSERT_EVENTS = (
    "INSERT INTO ledger_events (uuid, type, outcome, okta_user_id, published_at, received_at) "
    "VALUES {rows} "
    "ON CONFLICT (uuid) DO NOTHING RETURNING uuid"
)


async def _insert_events_sqlite(
    connection: AsyncConnection, values: Sequence[Mapping[str, Any]]
) -> set[str]:
    """Record events on SQLite with multi-row INSERTs of plain values; the uuids inserted.

    The driver takes no RETURNING with executemany, and SQLAlchemy's per-row processing of the
    Core statement was half of a large delivery's time in the gateway's process.
    """
    inserted: set[str] = set()
    for start in range(0, len(values), _EVENT_CHUNK):
        part = values[start : start + _EVENT_CHUNK]
        params: list[Any] = []
        for row in part:
            params.extend(
                _sqlite_time(row[name]) if name.endswith("_at") and row[name] else row[name]
                for name in _EVENT_COLUMNS
            )
        sql = _SQLITE_INSERT_EVENTS.format(rows=", ".join(["(?, ?, ?, ?, ?, ?)"] * len(part)))
        result = await connection.exec_driver_sql(sql, tuple(params))
        inserted.update(result.scalars())
    return inserted


# LedgerTransaction.mark_rows_migrated on SQLite; parameters: migrated_at, now, row id.
_SQLITE_MARK_ROW_MIGRATED = (
    "UPDATE ledger_users SET state = 'migrated', migrated_at = ?, updated_at = ? "
    "WHERE id = ? AND state IN ('created', 'hooked', 'activated')"
)


def _sqlite_time(moment: datetime) -> str:
    """An aware time as SQLAlchemy's SQLite DATETIME stores it: naive UTC text, microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class LedgerError(RuntimeError):
    """The ledger cannot be opened or used; the message names the database (password masked)."""


def _utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: our own transactions, WAL, and waiting (not failing) on a busy database."""
    # The sqlite3 module would COMMIT before DDL and BEGIN lazily; the ledger emits BEGIN itself
    # (`_sqlite_begin`) so migrations are atomic and writers take the lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL needs a lock another process may hold.
    cursor.execute("PRAGMA busy_timeout = 30000")
    # WAL: readers (status, the progress page) never block the writer (import, events).
    cursor.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode survives a process crash (a killed gateway keeps every committed event);
    # only a power cut may lose the last commits, which `status --refresh` reconciles.
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Begin a transaction: IMMEDIATE for writes, so concurrent writers queue on busy_timeout.

    A deferred transaction that reads and then writes fails with "database is locked" at once
    when another writer got in between, whatever the timeout; taking the write lock at BEGIN
    makes writers wait for each other instead.
    """
    read_only = connection.get_execution_options().get(_READ_OPTION, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _create_engine(url: URL) -> AsyncEngine:
    """An async engine for the ledger's database, tuned per dialect.

    `hide_parameters`: bound values are logins and Okta ids; SQLAlchemy would otherwise put them
    in its SQL log lines and in the text of every database error, which reach the gateway's logs.
    """
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        parent = Path(database).parent
        if not parent.is_dir():
            raise LedgerError(
                f"migration.ledger: directory {parent} does not exist; create it or fix the path"
            )
        engine = create_async_engine(url, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # Replicas keep connections for hours: a restarted or failed-over server must not surface as
    # errors on the first queries afterwards.
    return create_async_engine(
        url, hide_parameters=True, pool_pre_ping=True, pool_size=5, max_overflow=10
    )


async def open_ledger(url: str | URL, *, clock: Clock = _utcnow) -> Ledger:
    """Open the ledger at `url` (sync or async SQLAlchemy URL) and upgrade its schema to head.

    Raises `LedgerUrlError` for a URL naming no usable database, `LedgerError` when the database
    cannot be reached or migrated. `clock` stamps every time the caller does not give.
    """
    async_url = async_ledger_url(url)
    engine = _create_engine(async_url)
    try:
        applied = await upgrade(engine)
    except (SQLAlchemyError, OSError) as err:
        await engine.dispose()
        raise LedgerError(
            f"ledger {display_url(async_url)}: cannot open: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}"
        ) from err
    except BaseException:
        await engine.dispose()
        raise
    if applied:
        logger.info(
            "ledger schema upgraded",
            extra={"ledger": display_url(async_url), "revisions": list(applied)},
        )
    return Ledger(engine, async_url, applied_revisions=applied, clock=clock)


def _one_of(column: ColumnElement[Any], states: Iterable[UserState]) -> ColumnElement[bool]:
    """`column IN (...)` with one plain bound value per state.

    `in_()` with a list renders an "expanding" parameter, which executemany cannot take.
    """
    return column.in_([literal(str(state)) for state in states])


def _user(row: Row[Any]) -> LedgerUser:
    """A `ledger_users` row as a `LedgerUser`."""
    m = row._mapping  # Row's public mapping view (the underscore only avoids column names)
    return LedgerUser(
        id=m["id"],
        source=m["source"],
        login=m["login"],
        okta_id=m["okta_id"],
        state=UserState(m["state"]),
        reason=m["reason"],
        native=bool(m["native"]),
        created_run_id=m["created_run_id"],
        last_run_id=m["last_run_id"],
        imported_at=m["imported_at"],
        hooked_at=m["hooked_at"],
        activated_at=m["activated_at"],
        attributes_synced_at=m["attributes_synced_at"],
        verified_at=m["verified_at"],
        migrated_at=m["migrated_at"],
        rolled_back_at=m["rolled_back_at"],
        last_decision=m["last_decision"],
        last_decision_at=m["last_decision_at"],
        updated_at=m["updated_at"],
    )


def _run(row: Row[Any]) -> Run:
    """A `ledger_runs` row as a `Run`."""
    m = row._mapping
    return Run(
        id=m["id"],
        command=m["command"],
        source=m["source"],
        dry_run=bool(m["dry_run"]),
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        counts=dict(m["counts"]),
    )


@dataclass(slots=True)
class _Tally:
    """Progress of one source while the grouped counts are folded."""

    states: dict[UserState, int]
    migrated: int = 0
    native: int = 0
    verified_unconfirmed: int = 0
    pending: int = 0
    finished: int = 0
    last_verified_at: datetime | None = None
    last_migrated_at: datetime | None = None


def _finished(reason: ColumnElement[Any]) -> ColumnElement[bool]:
    """`reason` is one `migrate finish` records for a user it acted on (`FINISH_REASONS`)."""
    return reason.in_([literal(value) for value in _FINISH_REASONS])


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two optional times."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


async def _users_where(
    connection: AsyncConnection,
    column: ColumnElement[Any],
    values: Iterable[str],
    condition: ColumnElement[bool] | None = None,
) -> dict[str, list[LedgerUser]]:
    """The rows whose `column` (okta_id or login) is one of `values`, keyed by that value."""
    wanted = sorted(set(values))
    found: dict[str, list[LedgerUser]] = {}
    for start in range(0, len(wanted), _EVENT_CHUNK):
        statement = select(users).where(column.in_(wanted[start : start + _EVENT_CHUNK]))
        if condition is not None:
            statement = statement.where(condition)
        statement = statement.order_by(users.c.id)
        for row in (await connection.execute(statement)).all():
            user = _user(row)
            key = user.okta_id if column is users.c.okta_id else user.login
            found.setdefault(str(key), []).append(user)
    return found


class Ledger:
    """The migration ledger on one database; every method is one transaction."""

    def __init__(
        self,
        engine: AsyncEngine,
        url: URL,
        *,
        applied_revisions: tuple[str, ...] = (),
        clock: Clock = _utcnow,
    ) -> None:
        """Use `open_ledger`, which upgrades the schema first."""
        self._engine = engine
        # Same pool; the option makes SQLite begin a deferred (read) transaction.
        self._reader = engine.execution_options(**{_READ_OPTION: True})
        self._clock = clock
        self.url = display_url(url)  # password masked: safe for logs and reports
        self.dialect = url.get_backend_name()  # "sqlite" or "postgresql"
        self.applied_revisions = applied_revisions  # what this open migrated (usually nothing)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on success."""
        async with self._engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction, rolled back at the end."""
        async with self._reader.connect() as connection:
            yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[LedgerTransaction]:
        """One write transaction for several steps that must commit together (or not at all)."""
        async with self._write() as connection:
            yield LedgerTransaction(self, connection)

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT, which has ON CONFLICT on both databases."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # Runs

    async def start_run(
        self,
        command: RunCommand | str,
        *,
        source: str | None = None,
        dry_run: bool = False,
        at: datetime | None = None,
    ) -> int:
        """Record the start of a command run; its id (what `rollback --run` takes)."""
        statement = (
            runs.insert()
            .values(
                command=str(command),
                source=source,
                dry_run=dry_run,
                started_at=at or self._clock(),
                counts={},
            )
            .returning(runs.c.id)
        )
        async with self._write() as connection:
            run_id: int = (await connection.execute(statement)).scalar_one()
        return run_id

    async def finish_run(
        self, run_id: int, counts: Mapping[str, int], *, at: datetime | None = None
    ) -> None:
        """Record the end of a run with the counts of its last line."""
        statement = (
            update(runs)
            .where(runs.c.id == run_id)
            .values(finished_at=at or self._clock(), counts=dict(counts))
        )
        async with self._write() as connection:
            if (await connection.execute(statement)).rowcount != 1:
                raise LedgerError(f"ledger: no run {run_id}")

    async def get_run(self, run_id: int) -> Run | None:
        """The run with this id, or None."""
        async with self._read() as connection:
            row = (await connection.execute(select(runs).where(runs.c.id == run_id))).first()
        return None if row is None else _run(row)

    # Users

    async def record_user(
        self,
        source: str,
        login: str,
        state: UserState,
        *,
        okta_id: str | None = None,
        reason: str | None = None,
        run_id: int | None = None,
        native: bool = False,
        imported_at: datetime | None = None,
        hooked_at: datetime | None = None,
        activated_at: datetime | None = None,
        migrated_at: datetime | None = None,
    ) -> None:
        """Upsert one user by (source, login); see `record_users`."""
        await self.record_users(
            [
                UserRecord(
                    source=source,
                    login=login,
                    state=state,
                    okta_id=okta_id,
                    reason=reason,
                    run_id=run_id,
                    native=native,
                    imported_at=imported_at,
                    hooked_at=hooked_at,
                    activated_at=activated_at,
                    migrated_at=migrated_at,
                )
            ]
        )

    async def record_users(self, records: Sequence[UserRecord]) -> None:
        """Upsert users by (source, login) in one transaction; see `LedgerTransaction`."""
        if records:
            async with self.transaction() as transaction:
                await transaction.record_users(records)

    async def _upsert_users(
        self, connection: AsyncConnection, records: Sequence[UserRecord]
    ) -> None:
        """Upsert users by (source, login); idempotent.

        - A new (source, login) is inserted; recording the same thing again changes nothing but
          `updated_at`.
        - `migrated` is final here, and `listed`/`existing`/`skipped` do not replace a state in
          which this tool has put the user in Okta (created, hooked, activated).
        - Step times (imported, hooked, activated, migrated) and the creating run keep their
          first value, so a re-run does not move them; a rolled-back user starts over.
        - `okta_id` and `last_run_id` take the newest value given.
        """
        if not records:
            return
        for record in records:
            if record.state is UserState.MIGRATED and record.migrated_at is None:
                raise ValueError("a user recorded as migrated needs migrated_at")
        now = self._clock()
        # Rows in key order: two replicas upserting overlapping batches then lock them in the
        # same order, which PostgreSQL would otherwise answer with a deadlock. The sort is stable,
        # so two records of one user still apply in the order given.
        records = sorted(records, key=lambda r: (r.source, r.login))
        rows = [
            {
                "source": r.source,
                "login": r.login,
                "state": str(r.state),
                "okta_id": r.okta_id,
                "reason": r.reason,
                "native": r.native,
                "created_run_id": r.run_id if r.imported_at is not None else None,
                "last_run_id": r.run_id,
                "imported_at": r.imported_at,
                "hooked_at": r.hooked_at,
                "activated_at": r.activated_at,
                "migrated_at": r.migrated_at,
                "updated_at": now,
            }
            for r in records
        ]
        insert = self._insert(users)
        new = insert.excluded
        old = users.c
        keep = or_(
            old.state == UserState.MIGRATED,
            and_(_one_of(new.state, _WEAK_STATES), _one_of(old.state, _PENDING)),
        )
        reborn = and_(old.state == UserState.ROLLED_BACK, new.state != UserState.ROLLED_BACK)

        def first(name: str) -> ColumnElement[Any]:
            """The column's first value, or the new one after a rollback."""
            return case((reborn, new[name]), else_=func.coalesce(old[name], new[name]))

        statement = insert.on_conflict_do_update(
            index_elements=[users.c.source, users.c.login],
            set_={
                "state": case((keep, old.state), else_=new.state),
                "reason": case((keep, old.reason), else_=new.reason),
                "okta_id": func.coalesce(new.okta_id, old.okta_id),
                "native": case((reborn, new.native), else_=or_(old.native, new.native)),
                "created_run_id": first("created_run_id"),
                "last_run_id": func.coalesce(new.last_run_id, old.last_run_id),
                "imported_at": first("imported_at"),
                "hooked_at": first("hooked_at"),
                "activated_at": first("activated_at"),
                "migrated_at": first("migrated_at"),
                # A new life in Okta has not been verified yet.
                "verified_at": case((reborn, None), else_=old.verified_at),
                "updated_at": new.updated_at,
            },
        )
        await connection.execute(statement, rows)

    async def get_user(self, source: str, login: str) -> LedgerUser | None:
        """The user recorded for (source, login), or None."""
        statement = select(users).where(users.c.source == source, users.c.login == login)
        async with self._read() as connection:
            row = (await connection.execute(statement)).first()
        return None if row is None else _user(row)

    async def users_by_okta_id(self, okta_id: str) -> list[LedgerUser]:
        """Every row recorded with this Okta user id (one per source that saw the user)."""
        statement = select(users).where(users.c.okta_id == okta_id).order_by(users.c.id)
        async with self._read() as connection:
            rows = (await connection.execute(statement)).all()
        return [_user(row) for row in rows]

    async def users_by_okta_ids(self, okta_ids: Iterable[str]) -> dict[str, list[LedgerUser]]:
        """The rows recorded with each of these Okta user ids, in one read (an event delivery).

        Ids nobody is recorded with are absent from the answer.
        """
        async with self._read() as connection:
            return await _users_where(connection, users.c.okta_id, okta_ids)

    async def users_by_logins(self, logins: Iterable[str]) -> dict[str, list[LedgerUser]]:
        """Every source's row for each of these logins, in one read (an event delivery)."""
        async with self._read() as connection:
            return await _users_where(connection, users.c.login, logins)

    async def users_in_state(
        self, source: str, states: UserState | Iterable[UserState], *, page_size: int = 500
    ) -> AsyncIterator[LedgerUser]:
        """Stream the users of `source` in `states`, one page per transaction (flat memory).

        Pages are keyed by login (not offsets), so changing the state of a yielded user while
        iterating (resuming an import, say) neither skips nor repeats anyone.
        """
        wanted = [states] if isinstance(states, UserState) else sorted(set(states))
        for state in wanted:
            after: str | None = None
            while True:
                statement = select(users).where(users.c.source == source, users.c.state == state)
                if after is not None:
                    statement = statement.where(users.c.login > after)
                statement = statement.order_by(users.c.login).limit(page_size)
                async with self._read() as connection:
                    rows = (await connection.execute(statement)).all()
                for row in rows:
                    yield _user(row)
                if len(rows) < page_size:
                    break
                after = rows[-1].login

    async def created_by_run(
        self, run_id: int, *, page_size: int = 500
    ) -> AsyncIterator[LedgerUser]:
        """Stream the users that run created in Okta (rollback's candidates), in pages."""
        after = 0
        while True:
            statement = (
                select(users)
                .where(users.c.created_run_id == run_id, users.c.id > after)
                .order_by(users.c.id)
                .limit(page_size)
            )
            async with self._read() as connection:
                rows = (await connection.execute(statement)).all()
            for row in rows:
                yield _user(row)
            if len(rows) < page_size:
                return
            after = rows[-1].id

    async def mark_migrated(
        self,
        *,
        at: datetime | None = None,
        okta_id: str | None = None,
        source: str | None = None,
        login: str | None = None,
    ) -> int:
        """Mark a user migrated (Okta holds the password now); how many rows say so afterwards.

        Finds the user by `okta_id` among users this tool put in Okta (created, hooked,
        activated) or already migrated; failing that, by (`source`, `login`), recording the
        user under that source if the ledger has never seen it. The first migration time is
        kept, so a redelivered event changes nothing. 0 when neither finds anyone.
        """
        if okta_id is None and (source is None or login is None):
            raise ValueError("mark_migrated needs okta_id, or source and login")
        at = at or self._clock()
        now = self._clock()
        found = users.c.okta_id == okta_id if okta_id is not None else users.c.login == login
        if okta_id is None:
            found = and_(found, users.c.source == source)
        statement = (
            update(users)
            .where(found, users.c.state.in_((*_PENDING, UserState.MIGRATED)))
            .values(
                state=UserState.MIGRATED,
                migrated_at=func.coalesce(users.c.migrated_at, at),
                okta_id=func.coalesce(users.c.okta_id, okta_id),
                updated_at=now,
            )
        )
        async with self._write() as connection:
            marked = (await connection.execute(statement)).rowcount
        if marked or source is None or login is None:
            return marked
        await self.record_user(source, login, UserState.MIGRATED, okta_id=okta_id, migrated_at=at)
        return 1

    async def mark_rolled_back(
        self, source: str, login: str, *, run_id: int | None = None, at: datetime | None = None
    ) -> bool:
        """Record that rollback deleted this user from Okta; False if migrated or unknown."""
        at = at or self._clock()
        statement = (
            update(users)
            .where(
                users.c.source == source,
                users.c.login == login,
                users.c.state != UserState.MIGRATED,
            )
            .values(
                state=UserState.ROLLED_BACK,
                rolled_back_at=at,
                last_run_id=func.coalesce(run_id, users.c.last_run_id),
                updated_at=self._clock(),
            )
        )
        async with self._write() as connection:
            return bool((await connection.execute(statement)).rowcount)

    async def mark_attributes_synced(
        self, source: str, login: str, *, at: datetime | None = None
    ) -> bool:
        """Record an attribute sync of this user (sync-attributes, sync on activate)."""
        at = at or self._clock()
        statement = (
            update(users)
            .where(users.c.source == source, users.c.login == login)
            .values(attributes_synced_at=at, updated_at=self._clock())
        )
        async with self._write() as connection:
            return bool((await connection.execute(statement)).rowcount)

    async def record_decisions(self, decisions: Sequence[Decision]) -> None:
        """Record a batch of hook decisions (from `DecisionRecorder`) in one transaction.

        Each sets the user's last decision unless a later one is already recorded; a VERIFIED one
        also sets `verified_at` ("verified, not yet confirmed" until an event or reconciliation
        marks the user migrated). A VERIFIED user the ledger has never seen (imported by
        something else) is recorded as `activated` under the deciding source; other decisions
        about unknown users are not kept.

        VERIFIED decisions, nearly all of what the hook hands over, are one upsert statement per
        batch (`INSERT ... ON CONFLICT DO UPDATE ... WHERE`): this runs in the gateway's process,
        beside the hook, and every statement per row costs CPU there.
        """
        if not decisions:
            return
        now = self._clock()
        # Key order, stable: see record_users (deadlocks between replicas). At most one row per
        # key and statement (an upsert may not touch a row twice): the latest VERIFIED decision,
        # written first, then the latest other one, which wins only if it is later.
        newest: dict[tuple[bool, str, str], Decision] = {}
        for decision in sorted(decisions, key=lambda d: (d.source, d.login, d.at)):
            newest[(decision.result == "verified", decision.source, decision.login)] = decision
        verified = [d for (is_verified, *_), d in newest.items() if is_verified]
        others = [d for (is_verified, *_), d in newest.items() if not is_verified]
        async with self._write() as connection:
            if verified and self.dialect == "sqlite":
                await self._upsert_verified_sqlite(connection, verified, now)
            elif verified:
                insert = self._insert(users)
                upsert = insert.on_conflict_do_update(
                    index_elements=[users.c.source, users.c.login],
                    set_={
                        "last_decision": insert.excluded.last_decision,
                        "last_decision_at": insert.excluded.last_decision_at,
                        "verified_at": insert.excluded.verified_at,
                        "okta_id": func.coalesce(users.c.okta_id, insert.excluded.okta_id),
                        "updated_at": insert.excluded.updated_at,
                    },
                    where=or_(
                        users.c.last_decision_at.is_(None),
                        users.c.last_decision_at <= insert.excluded.last_decision_at,
                    ),
                )
                await connection.execute(
                    upsert,
                    [
                        {
                            "source": d.source,
                            "login": d.login,
                            "okta_id": d.okta_id,
                            "state": UserState.ACTIVATED,
                            "native": False,
                            "last_decision": d.result,
                            "last_decision_at": d.at,
                            "verified_at": d.at,
                            "updated_at": now,
                        }
                        for d in verified
                    ],
                )
            if others:
                at = bindparam("d_at", type_=UtcDateTime)
                latest = (
                    update(users)
                    .where(
                        users.c.source == bindparam("d_source"),
                        users.c.login == bindparam("d_login"),
                        or_(users.c.last_decision_at.is_(None), users.c.last_decision_at <= at),
                    )
                    .values(
                        last_decision=bindparam("d_result", type_=users.c.last_decision.type),
                        last_decision_at=at,
                        okta_id=func.coalesce(
                            users.c.okta_id, bindparam("d_okta_id", type_=users.c.okta_id.type)
                        ),
                        updated_at=bindparam("d_now", type_=UtcDateTime),
                    )
                )
                await connection.execute(
                    latest,
                    [
                        {
                            "d_source": d.source,
                            "d_login": d.login,
                            "d_result": d.result,
                            "d_at": d.at,
                            "d_okta_id": d.okta_id,
                            "d_now": now,
                        }
                        for d in others
                    ],
                )

    async def _upsert_verified_sqlite(
        self, connection: AsyncConnection, verified: Sequence[Decision], now: datetime
    ) -> None:
        """`record_decisions`' upsert on SQLite as one prepared statement over plain tuples.

        The same statement as the Core one for PostgreSQL, without SQLAlchemy's per-row
        parameter processing, which cost about half the CPU of a recorded decision in the
        gateway's process. Times are written in the text form SQLAlchemy's SQLite DATETIME
        writes and reads (UTC, naive).
        """
        stamp = _sqlite_time(now)
        await connection.exec_driver_sql(
            _SQLITE_UPSERT_VERIFIED,
            [
                (
                    d.source,
                    d.login,
                    d.okta_id,
                    UserState.ACTIVATED.value,
                    _sqlite_time(d.at),
                    stamp,
                )
                for d in verified
            ],
        )

    # Events

    async def record_event(
        self,
        uuid: str,
        type: str,
        *,
        outcome: str | None = None,
        okta_user_id: str | None = None,
        published_at: datetime | None = None,
    ) -> bool:
        """Record one Okta event; False when its uuid was recorded before (a redelivery)."""
        (new,) = await self.record_events(
            [OktaEvent(uuid, type, outcome, okta_user_id, published_at)]
        )
        return new

    async def record_events(self, batch: Sequence[OktaEvent]) -> list[bool]:
        """Record events in one transaction; per event, True if seen for the first time.

        See `LedgerTransaction.record_events`.
        """
        async with self.transaction() as transaction:
            return await transaction.record_events(batch)

    async def _insert_events(
        self, connection: AsyncConnection, batch: Sequence[OktaEvent]
    ) -> list[bool]:
        """`INSERT ... ON CONFLICT DO NOTHING RETURNING uuid` over the batch (executemany)."""
        received = self._clock()
        rows: dict[str, dict[str, Any]] = {}
        for item in batch:
            rows.setdefault(
                item.uuid,
                {
                    "uuid": item.uuid,
                    "type": item.type,
                    "outcome": item.outcome,
                    "okta_user_id": item.okta_user_id,
                    "published_at": item.published_at,
                    "received_at": received,
                },
            )
        if not rows:
            return []
        # In uuid order: two replicas inserting overlapping deliveries then wait for each other
        # in one direction only; in delivery order PostgreSQL can find them deadlocked.
        values = [rows[uuid] for uuid in sorted(rows)]
        # One statement executed over many rows: SQLAlchemy batches it into multi-row INSERTs
        # ("insertmanyvalues") with a cached compilation, where `.values(list)` compiled a new
        # statement per chunk, which was most of a big delivery's time.
        if self.dialect == "sqlite":
            inserted = await _insert_events_sqlite(connection, values)
        else:
            statement = (
                self._insert(events)
                .on_conflict_do_nothing(index_elements=[events.c.uuid])
                .returning(events.c.uuid)
            )
            inserted = set((await connection.execute(statement, values)).scalars())
        answers = []
        for item in batch:
            answers.append(item.uuid in inserted)
            inserted.discard(item.uuid)
        return answers

    async def event_counts(self) -> dict[tuple[str, str | None], int]:
        """How many distinct events were recorded, per (type, outcome)."""
        statement = select(events.c.type, events.c.outcome, func.count()).group_by(
            events.c.type, events.c.outcome
        )
        async with self._read() as connection:
            rows = (await connection.execute(statement)).all()
        return {(kind, outcome): count for kind, outcome, count in rows}

    async def last_event_at(self, type: str) -> datetime | None:
        """When the newest recorded event of this type was published (System Log backfill)."""
        statement = select(func.max(events.c.published_at)).where(events.c.type == type)
        async with self._read() as connection:
            value: datetime | None = (await connection.execute(statement)).scalar_one()
        return value

    # Progress

    async def progress(self) -> dict[str, SourceProgress]:
        """Counts per source and state, with the migrated/verified/pending/finished split.

        One query. A never-verified user `migrate finish` acted on (its `reason` is one of
        `FINISH_REASONS`; not a `_failed` one) is `finished`, not `pending`; once verified it is
        `verified_unconfirmed`, once migrated `migrated`, like everyone else.
        """
        verified = users.c.verified_at.is_not(None).label("verified")
        statement = select(
            users.c.source,
            users.c.state,
            verified,
            users.c.native,
            func.count().label("users"),
            func.count(case((_finished(users.c.reason), 1))).label("finished"),
            func.max(users.c.verified_at).label("last_verified_at"),
            func.max(users.c.migrated_at).label("last_migrated_at"),
        ).group_by(users.c.source, users.c.state, verified, users.c.native)
        async with self._read() as connection:
            rows = (await connection.execute(statement)).all()
        tallies: dict[str, _Tally] = {}
        for row in rows:
            tally = tallies.setdefault(row.source, _Tally(states={}))
            state = UserState(row.state)
            tally.states[state] = tally.states.get(state, 0) + row.users
            if state is UserState.MIGRATED:
                tally.migrated += row.users
                tally.native += row.users if row.native else 0
            elif state in PENDING_STATES:
                if row.verified:
                    tally.verified_unconfirmed += row.users
                else:
                    tally.pending += row.users - row.finished
                    tally.finished += row.finished
            tally.last_verified_at = _later(tally.last_verified_at, row.last_verified_at)
            tally.last_migrated_at = _later(tally.last_migrated_at, row.last_migrated_at)
        return {
            source: SourceProgress(
                source=source,
                states=tally.states,
                migrated=tally.migrated,
                native=tally.native,
                verified_unconfirmed=tally.verified_unconfirmed,
                pending=tally.pending,
                finished=tally.finished,
                last_verified_at=tally.last_verified_at,
                last_migrated_at=tally.last_migrated_at,
            )
            for source, tally in sorted(tallies.items())
        }

    async def migrated_since(self, source: str, since: datetime) -> int:
        """How many users of `source` migrated at or after `since` (e.g. the last 24 h)."""
        statement = select(func.count()).where(
            users.c.source == source, users.c.migrated_at >= since
        )
        async with self._read() as connection:
            count: int = (await connection.execute(statement)).scalar_one()
        return count

    async def daily_migrations(
        self, source: str, since: datetime, until: datetime | None = None
    ) -> list[tuple[date, int]]:
        """Users of `source` migrated per UTC day in [since, until), oldest day first."""
        if self.dialect == "postgresql":
            day = func.date(func.timezone("UTC", users.c.migrated_at))
        else:
            day = func.date(users.c.migrated_at)  # stored as UTC text
        conditions = [users.c.source == source, users.c.migrated_at >= since]
        if until is not None:
            conditions.append(users.c.migrated_at < until)
        statement = (
            select(day.label("day"), func.count()).where(*conditions).group_by(day).order_by(day)
        )
        async with self._read() as connection:
            rows = (await connection.execute(statement)).all()
        return [
            (value if isinstance(value, date) else date.fromisoformat(value), count)
            for value, count in rows
        ]

    async def not_signed_in(
        self,
        source: str,
        *,
        limit: int = 500,
        after: str | None = None,
        finished: bool = False,
    ) -> list[LedgerUser]:
        """One page of the users of `source` in Okta with the hook who never signed in.

        The `pending` users of `progress` (the stragglers); with `finished`, also those
        `migrate finish` already acted on (`FINISH_REASONS`), which `progress` counts apart.
        Ordered by login; pass the last login of a page as `after` for the next one.
        """
        statement = select(users).where(users.c.source == source, text(NOT_SIGNED_IN_SQL))
        if not finished:
            statement = statement.where(or_(users.c.reason.is_(None), ~_finished(users.c.reason)))
        if after is not None:
            statement = statement.where(users.c.login > after)
        statement = statement.order_by(users.c.login).limit(limit)
        async with self._read() as connection:
            rows = (await connection.execute(statement)).all()
        return [_user(row) for row in rows]


class LedgerTransaction:
    """Writes and reads inside one ledger transaction: all of them commit, or none does.

    An event delivery's chunk and the migrated marks it calls for go through one of these, so no
    recorded SUCCESS event is ever without its mark, whatever stops the process in between.
    """

    def __init__(self, ledger: Ledger, connection: AsyncConnection) -> None:
        """Use `Ledger.transaction()`."""
        self._ledger = ledger
        self._connection = connection

    async def record_events(self, batch: Sequence[OktaEvent]) -> list[bool]:
        """Record events; per event, True if its uuid is seen for the first time.

        `INSERT ... ON CONFLICT DO NOTHING RETURNING uuid`: of any number of concurrent
        deliveries of one uuid, across replicas, exactly one gets True. A uuid repeated within
        the batch is True once.
        """
        return await self._ledger._insert_events(self._connection, batch)

    async def users_by_okta_ids(
        self, okta_ids: Iterable[str], *, pending_only: bool = False
    ) -> dict[str, list[LedgerUser]]:
        """The rows recorded with each of these Okta user ids (absent: nobody has it).

        `pending_only`: only rows in Okta with the hook and not migrated (created, hooked,
        activated); usually none, which makes a redelivery's read cheap.
        """
        condition = _one_of(users.c.state, _PENDING) if pending_only else None
        return await _users_where(self._connection, users.c.okta_id, okta_ids, condition)

    async def users_by_logins(self, logins: Iterable[str]) -> dict[str, list[LedgerUser]]:
        """Every source's row for each of these logins."""
        return await _users_where(self._connection, users.c.login, logins)

    async def record_users(self, records: Sequence[UserRecord]) -> None:
        """Upsert users by (source, login); idempotent (the rules of `Ledger._upsert_users`)."""
        await self._ledger._upsert_users(self._connection, records)

    async def mark_rows_migrated(self, marks: Mapping[int, datetime]) -> int:
        """Mark rows migrated by row id at the given times; how many changed.

        One UPDATE by primary key executed over every row, where the upsert of `record_users`
        cost most of a large delivery's time. Only rows this tool put in Okta (created,
        hooked, activated) change, so a row rolled back or already migrated meanwhile keeps
        its state and its first `migrated_at`.
        """
        if not marks:
            return 0
        now = self._ledger._clock()
        if self._ledger.dialect == "sqlite":
            # Plain tuples through the driver: SQLAlchemy's per-row parameter processing was
            # most of this statement's time (see Ledger._upsert_verified_sqlite).
            stamp = _sqlite_time(now)
            result = await self._connection.exec_driver_sql(
                _SQLITE_MARK_ROW_MIGRATED,
                [(_sqlite_time(at), stamp, row_id) for row_id, at in sorted(marks.items())],
            )
            return int(result.rowcount)
        statement = (
            update(users)
            .where(users.c.id == bindparam("m_id"), _one_of(users.c.state, _PENDING))
            .values(
                state=literal(str(UserState.MIGRATED)),
                migrated_at=bindparam("m_at", type_=UtcDateTime),
                updated_at=bindparam("m_now", type_=UtcDateTime),
            )
        )
        # In id order, for the reason record_users sorts: replicas lock rows in one order.
        rows = [{"m_id": row_id, "m_at": at, "m_now": now} for row_id, at in sorted(marks.items())]
        result = await self._connection.execute(statement, rows)
        return int(result.rowcount)
