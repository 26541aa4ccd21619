"""`gateway_migration_users{source,state}`, read from the ledger every minute inside `gateway serve`.

The numbers are report.py's (`migrate status`, the progress page): one grouped query a
minute, whatever the number of users, on a gateway that uses the ledger (serve_ledger.py);
a gateway without one exports no such series. Until the ledger is open, or while it fails,
the last values stay (and a failure is logged once per outage): a gauge that jumped to 0 would
read as "nobody pending" and silence MigrationStalled. A source that leaves both the config
and the ledger loses its series.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from gateway.ledger import Ledger
from gateway.metrics import MIGRATION_STATES, GatewayMetrics
from gateway.migrate.report import user_counts
from gateway.runtime import RUNTIME
from gateway.serve_ledger import serve_ledger_of

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0
# Tests shorten the interval; production keeps the minute.
GAUGE_INTERVAL = web.AppKey("migration_gauge_interval", float)


async def refresh_gauges(
    ledger: Ledger, metrics: GatewayMetrics, source_names: Iterable[str]
) -> set[str]:
    """Set every source's gauges (one per `MIGRATION_STATES`) from the ledger; the sources set."""
    counts = await user_counts(ledger, source_names)
    for source, states in counts.items():
        for state in MIGRATION_STATES:
            metrics.migration_users.labels(source=source, state=state).set(states[state])
    return set(counts)


class MigrationGauges:
    """The background task that keeps the gauges current."""

    def __init__(self, app: web.Application, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.shown: set[str] = set()
        self._failing = False

    async def run(self) -> None:
        """Refresh now, then every `interval` seconds, until cancelled."""
        from gateway.app import METRICS  # gateway.app registers this module

        handle = serve_ledger_of(self.app)
        assert handle is not None  # only started when the gateway uses the ledger
        while True:
            ledger = handle.ledger
            if ledger is not None:
                metrics = self.app[METRICS]
                configured = self.app[RUNTIME].current.config.migration.sources
                try:
                    shown = await refresh_gauges(ledger, metrics, configured)
                except Exception as err:  # noqa: BLE001 - keep the last values, try again
                    if not self._failing:
                        logger.warning(
                            "migration gauges not refreshed; keeping the last values",
                            extra={"error": type(err).__name__},
                        )
                    self._failing = True
                else:
                    self._failing = False
                    for source in self.shown - shown:
                        for state in MIGRATION_STATES:
                            with contextlib.suppress(KeyError):
                                metrics.migration_users.remove(source, state)
                    self.shown = shown
            await asyncio.sleep(self.interval)


async def migration_gauges_ctx(app: web.Application) -> AsyncIterator[None]:
    """An aiohttp cleanup context: the refresh task while serving, when the ledger is in use."""
    if serve_ledger_of(app) is None:
        yield
        return
    gauges = MigrationGauges(app, app.get(GAUGE_INTERVAL, REFRESH_SECONDS))
    task = asyncio.get_running_loop().create_task(gauges.run(), name="migration-gauges")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
