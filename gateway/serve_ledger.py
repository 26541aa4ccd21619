"""The migration ledger inside `gateway serve`: events, hook decisions and the progress page.

A serving gateway uses the ledger only when the migration asks for it: `migration.event_hook`
or an explicit `migration.ledger` URL (a plain hook gateway never creates a `ledger.db`). The
password hook must never depend on it, so the ledger is opened in the background, retried with
backoff while the database is away, and everything that needs it asks `ServeLedger.ledger`
(None until it is open). Decisions go through a `DecisionRecorder` from the start: its bounded
queue waits for the database like it waits for a slow one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.ledger.models import Decision
from gateway.ledger.recorder import DecisionRecorder

if TYPE_CHECKING:
    from gateway.ledger.store import Ledger
from gateway.migrate.settings import MigrationConfig

logger = logging.getLogger(__name__)

_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 30.0
_OPEN_WAIT_SECONDS = 10.0  # at shutdown, for an open (schema check) already under way
# Decisions per ledger write. SQLAlchemy prepares a batch's parameters on the event loop: 500
# rows held the loop for tens of milliseconds once a second, which showed in the hook's p99
# (bench/run.py --ledger); small batches interleave with the hook calls instead.
DECISION_BATCH = 100


class LedgerUnavailable(RuntimeError):
    """The ledger is not open (yet): the caller retries later or answers 503."""


def ledger_wanted(migration: MigrationConfig) -> bool:
    """Whether `serve` opens the ledger at all."""
    return migration.event_hook is not None or migration.ledger is not None


class ServeLedger:
    """The serving process's ledger: opened in the background, closed last."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._ledger: Ledger | None = None
        self._opener: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()
        self._opening = False
        self.recorder = DecisionRecorder(self, batch_size=DECISION_BATCH)

    @classmethod
    def from_config(cls, migration: MigrationConfig) -> ServeLedger:
        """The ledger the migration commands use, so `status` sees what `serve` wrote."""
        from gateway.ledger.url import configured_ledger_url

        return cls(configured_ledger_url(migration.ledger))

    @property
    def ledger(self) -> Ledger | None:
        """The open ledger, or None while it cannot be opened."""
        return self._ledger

    def require(self) -> Ledger:
        """The open ledger; `LedgerUnavailable` when it is not open."""
        if self._ledger is None:
            raise LedgerUnavailable("the migration ledger is not open")
        return self._ledger

    async def wait_open(self) -> Ledger:
        """The ledger once open (wrap in `asyncio.timeout` to bound the wait)."""
        await self._opened.wait()
        return self.require()

    def _shown_url(self) -> str:
        """The URL with its password masked (or a placeholder when it does not even parse)."""
        from gateway.ledger.url import LedgerUrlError, async_ledger_url, display_url

        try:
            return display_url(async_ledger_url(self.url))
        except LedgerUrlError:
            return "(unparsable ledger URL)"

    async def record_decisions(self, decisions: Sequence[Decision]) -> None:
        """The recorder's sink: the ledger, or an error that makes it retry the batch later."""
        await self.require().record_decisions(decisions)

    def start(self) -> None:
        """Open the ledger in the background and start the decision writer."""
        self.recorder.start()
        if self._opener is None:
            self._opener = asyncio.get_running_loop().create_task(
                self._open_until_done(), name="ledger-open"
            )

    async def _open_until_done(self) -> None:
        from gateway.ledger.store import LedgerError, open_ledger  # SQLAlchemy: only when used

        delay = _RETRY_FIRST_SECONDS
        complained = False
        while True:
            try:
                # Never cancelled while opening (see close): a cancellation inside the schema
                # check would leave its SQLite connection, in its worker thread, holding the
                # write lock for as long as the process lives.
                self._opening = True
                try:
                    self._ledger = await asyncio.shield(open_ledger(self.url))
                finally:
                    self._opening = False
            except Exception as err:  # noqa: BLE001 - whatever the database says: keep retrying
                if not complained:
                    # Only LedgerError's text is ours (the URL with its password masked); a
                    # driver's may quote connection parameters.
                    detail = str(err) if isinstance(err, LedgerError) else type(err).__name__
                    logger.error(
                        "migration ledger unavailable; retrying in the background",
                        extra={"ledger": self._shown_url(), "error": detail},
                    )
                    complained = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_SECONDS)
                continue
            self._opened.set()
            # Opening loaded SQLAlchemy and ran the schema check: freeze that too (see app.py).
            from gateway.app import freeze_startup_objects

            freeze_startup_objects()
            logger.info(
                "migration ledger open",
                extra={"ledger": self._shown_url(), "dialect": self._ledger.dialect},
            )
            return

    async def close(self) -> None:
        """Write the queued decisions (if the ledger is open), then close it.

        An open in progress is awaited (at most `_OPEN_WAIT_SECONDS`), not cancelled: see
        `_open_until_done`. Between attempts the opener only sleeps and is cancelled at once.
        """
        if self._opener is not None:
            if self._opening:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._opener), _OPEN_WAIT_SECONDS)
            self._opener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opener
        if self._ledger is not None:
            await self.recorder.close()
            await self._ledger.close()
            self._ledger = None
        else:
            dropped = await self.recorder.abandon()
            if dropped:
                logger.warning(
                    "ledger never opened: hook decisions not recorded",
                    extra={"decisions": dropped},
                )


SERVE_LEDGER = web.AppKey("serve_ledger", ServeLedger)


def serve_ledger_of(app: web.Application) -> ServeLedger | None:
    """The app's ledger handle, or None when this gateway does not use the ledger."""
    return app.get(SERVE_LEDGER)


async def serve_ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start (as an aiohttp cleanup context) the ledger handle stored under `SERVE_LEDGER`."""
    handle = app[SERVE_LEDGER]
    handle.start()
    try:
        yield
    finally:
        await handle.close()
