"""`gateway migrate import`: a source's users become Okta users whose password the hook imports.

Per user, one call: create with `credentials.password.hook = {"type": "default"}` and
`activate=true`, so Okta never sees a user that could be activated before its hook is set
(activating a STAGED user without a credential makes it PROVISIONED for good) and sends no
activation email. A user whose password hash Okta can check itself (a `hashed_export` source:
bcrypt, salted SHA/MD5, PBKDF2-HMAC-SHA256/512) is created with that hash instead, `native`:
migrated at once, no hook and no sign-in needed. A login Okta already has is `existing` and left alone; a login no route of
this gateway sends to the source is `skipped` (it could never be verified). The ledger records
each outcome as it happens, so an interrupted run loses nothing and a re-run creates nothing
twice. Users stream from the directory and a bounded number are in flight, so memory stays flat.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.ledger import Ledger, RunCommand, UserState
from gateway.migrate.csvsafe import write_csv
from gateway.migrate.mapping import MappedUser, map_user
from gateway.migrate.settings import for_source_type
from gateway.migrate.tally import last_line
from gateway.okta_api import DUPLICATE_LOGIN_CAUSE, VALIDATION_FAILED, OktaApiClient, OktaApiError
from gateway.routing import Router

logger = logging.getLogger(__name__)

RESULTS = ("created", "native", "existing", "skipped", "failed")
REPORT_HEADER = ("login", "okta_id", "result", "reason")


@dataclass
class ImportOutcome:
    """Counts of one run, the report rows and the run's ledger id."""

    run_id: int | None
    counts: Counter[str] = field(default_factory=Counter)
    report: list[tuple[str, str, str, str]] = field(default_factory=list)

    def last_line(self, dry_run: bool) -> str:
        """`import: listed=N created=N native=N existing=N skipped=N failed=N [dry_run=1]`."""
        return last_line("import", self.counts, RESULTS, total="listed", dry_run=dry_run)


class Importer:
    """Imports one source's users; `run` streams them from `users` (the directory listing)."""

    def __init__(
        self,
        config: GatewayConfig,
        source: str,
        okta: OktaApiClient,
        ledger: Ledger | None,
        *,
        dry_run: bool = False,
        concurrency: int = 8,
        on_user: Callable[[str], None] = lambda result: None,
        native_hash: Callable[[Mapping[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        kind = next((s.type for s in config.sources if s.name == source), "")
        self.settings = for_source_type(config.migration.sources[source], kind)
        # A listed user's Okta `credentials.password.hash`, when Okta can check it itself.
        self._native_hash = native_hash
        self.okta = okta
        self.ledger = ledger
        self.dry_run = dry_run
        self.router = Router(config.routes)
        self._slots = asyncio.Semaphore(concurrency)
        self._on_user = on_user
        self.run_id: int | None = None

    async def run(
        self, users: AsyncIterator[dict[str, Any]], limit: int | None = None
    ) -> ImportOutcome:
        """Import every listed user (at most `limit`); never raises for one user's failure."""
        if self.ledger is not None and not self.dry_run:
            self.run_id = await self.ledger.start_run(RunCommand.IMPORT, source=self.source)
        outcome = ImportOutcome(self.run_id)
        async with asyncio.TaskGroup() as tasks:
            seen = 0
            async for user in users:
                if limit is not None and seen >= limit:
                    break
                seen += 1
                await self._slots.acquire()  # bounded in flight: memory stays flat
                tasks.create_task(self._one(user, outcome))
        if self.ledger is not None and self.run_id is not None:
            await self.ledger.finish_run(self.run_id, dict(outcome.counts))
        return outcome

    async def _one(self, user: dict[str, Any], outcome: ImportOutcome) -> None:
        try:
            mapped = map_user(user, self.settings)
            password_hash = self._native_hash(user) if self._native_hash is not None else None
            result, okta_id, reason = await self._import(mapped, password_hash)
        except Exception as err:  # one user's trouble never stops the run
            logger.exception("import of one user failed", extra={"source": self.source})
            mapped, result, okta_id, reason = None, "failed", "", type(err).__name__
        finally:
            self._slots.release()
        outcome.counts[result] += 1
        login = mapped.login if mapped is not None else str(user.get("userPrincipalName", ""))
        if result not in ("created", "native"):
            outcome.report.append((login, okta_id, result, reason))
        self._on_user(result)

    async def _import(
        self, mapped: MappedUser, password_hash: dict[str, Any] | None = None
    ) -> tuple[str, str, str]:
        """(result, okta id, reason) for one user, recorded in the ledger as it happens."""
        if mapped.skip_reason is not None:
            await self._record(mapped.login, UserState.SKIPPED, reason=mapped.skip_reason)
            return "skipped", "", mapped.skip_reason
        route = self.router.route(mapped.login)
        if route is None or self.source not in route.sources:
            await self._record(mapped.login, UserState.SKIPPED, reason="no_route")
            return "skipped", "", "no_route"
        if self.dry_run:
            existing = await self.okta.get_user(mapped.login)
            if existing is not None:
                return "existing", str(existing.get("id", "")), "login_exists"
            return ("created" if password_hash is None else "native"), "", ""
        try:
            created = await self.okta.create_user(
                mapped.profile,
                hook=password_hash is None,
                activate=True,
                group_ids=self.settings.okta_groups,
                password_hash=password_hash,
            )
        except OktaApiError as err:
            if err.code == VALIDATION_FAILED and err.has_cause(DUPLICATE_LOGIN_CAUSE):
                existing = await self.okta.get_user(mapped.login)
                okta_id = str(existing.get("id", "")) if existing else ""
                await self._record(mapped.login, UserState.EXISTING, okta_id=okta_id)
                return "existing", okta_id, "login_exists"
            await self._record(mapped.login, UserState.FAILED, reason=err.one_line())
            return "failed", "", err.one_line()
        okta_id = str(created.get("id", ""))
        if password_hash is not None:
            await self._record(
                mapped.login, UserState.MIGRATED, okta_id=okta_id, created=True, native=True
            )
            return "native", okta_id, ""
        await self._record(mapped.login, UserState.ACTIVATED, okta_id=okta_id, created=True)
        return "created", okta_id, ""

    async def _record(
        self,
        login: str,
        state: UserState,
        *,
        okta_id: str | None = None,
        reason: str | None = None,
        created: bool = False,
        native: bool = False,
    ) -> None:
        if self.ledger is None or self.dry_run or not login:
            return
        now = datetime.now(UTC) if created else None
        await self.ledger.record_user(
            self.source,
            login,
            state,
            okta_id=okta_id or None,
            reason=reason,
            run_id=self.run_id if created else None,
            native=native,
            imported_at=now,
            hooked_at=None if native else now,
            activated_at=now,
            migrated_at=now if native else None,
        )


def write_report(path: Path | None, rows: list[tuple[str, str, str, str]]) -> None:
    """The CSV report: `login,okta_id,result,reason`, one row per user not created.

    Cells a spreadsheet would run as formulas are quoted (`csvsafe`): logins come from the
    directory.
    """
    if path is not None:
        write_csv(path, REPORT_HEADER, rows)
