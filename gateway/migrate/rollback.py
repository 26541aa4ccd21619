"""`gateway migrate rollback -c CONFIG --run RUN_ID [--dry-run]`: undo a mistaken import run.

The candidates are the users that import run created (the ledger's `created_run_id`); users the
run found `existing` were never ours and are not candidates. Each candidate is fetched from Okta
by its Okta id (never by login: the login may belong to someone else by now) and:

- is `kept` when the ledger says it migrated or the hook verified its password, or when Okta no
  longer says `credentials.provider.type == IMPORT`: the user has signed in and Okta holds the
  password, so deleting them would lock out a migrated person;
- is `deleted` after deactivate + delete when still on IMPORT (Okta's DELETE on a user that is
  not DEPROVISIONED only deactivates), or when Okta has no such user any more, so a re-run (or a
  run after a partial one) reports the same and sends no DELETE;
- is `failed` when Okta refuses, with one line on stderr.

A user can still sign in between the read and the deactivation; Okta has no conditional delete,
so that window is accepted (a rollback is run right after a mistaken import, before users are
told to sign in). With `--dry-run` nothing is written to Okta or the ledger.
Last line: `rollback: candidates=N deleted=N kept=N failed=N`; exit 0 when failed=0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig
from gateway.ledger import (
    Ledger,
    LedgerError,
    LedgerUrlError,
    LedgerUser,
    RunCommand,
    UserState,
    configured_ledger_url,
    open_ledger,
)
from gateway.logs import configure_logging
from gateway.migrate.tally import last_line
from gateway.okta_api import OktaApiClient, OktaApiError

logger = logging.getLogger(__name__)

RESULTS = ("deleted", "kept", "failed")
IMPORTED = "IMPORT"  # credentials.provider.type while the password still lives in the source
DEPROVISIONED = "DEPROVISIONED"


@dataclass
class RollbackOutcome:
    """Counts of one rollback."""

    counts: Counter[str] = field(default_factory=Counter)

    def last_line(self) -> str:
        """`rollback: candidates=N deleted=N kept=N failed=N`."""
        return last_line("rollback", self.counts, RESULTS, total="candidates")


class Rollback:
    """Deletes the not-yet-migrated users of one import run; `run` streams them from the ledger."""

    def __init__(
        self,
        okta: OktaApiClient,
        ledger: Ledger,
        *,
        dry_run: bool = False,
        concurrency: int = 8,
    ) -> None:
        self.okta = okta
        self.ledger = ledger
        self.dry_run = dry_run
        self._slots = asyncio.Semaphore(concurrency)
        self.run_id: int | None = None  # this rollback's own run in the ledger

    async def run(self, import_run: int, source: str | None) -> RollbackOutcome:
        """Roll back every user `import_run` created; never raises for one user's failure."""
        if not self.dry_run:
            self.run_id = await self.ledger.start_run(RunCommand.ROLLBACK, source=source)
        outcome = RollbackOutcome()
        async with asyncio.TaskGroup() as tasks:
            async for user in self.ledger.created_by_run(import_run):
                await self._slots.acquire()  # bounded in flight, like the import
                tasks.create_task(self._one(user, outcome))
        if self.run_id is not None:
            counts = {"candidates": sum(outcome.counts[r] for r in RESULTS), **outcome.counts}
            await self.ledger.finish_run(self.run_id, counts)
        return outcome

    async def _one(self, user: LedgerUser, outcome: RollbackOutcome) -> None:
        try:
            result, reason = await self._roll_back(user)
        except Exception as err:  # one user's trouble never stops the run
            logger.exception("rollback of one user failed", extra={"source": user.source})
            result, reason = "failed", type(err).__name__
        finally:
            self._slots.release()
        outcome.counts[result] += 1
        if result == "failed":
            print(f"rollback: {user.login}: {reason}", file=sys.stderr)

    async def _roll_back(self, user: LedgerUser) -> tuple[str, str]:
        """(result, reason) for one candidate, recorded in the ledger as it happens."""
        if user.state is UserState.MIGRATED or user.verified_at is not None:
            # The ledger knows this person signed in: Okta may not say so yet (no read needed).
            return "kept", "migrated"
        if not user.okta_id:
            # Looking the login up instead could find and delete someone else's account.
            return "failed", "no Okta id in the ledger"
        try:
            found = await self.okta.get_user(user.okta_id)
            if found is None:
                await self._mark(user)
                return "deleted", "gone"
            if _provider(found) != IMPORTED:
                return "kept", "signed_in"
            if self.dry_run:
                return "deleted", "would_delete"
            if found.get("status") != DEPROVISIONED:
                # DELETE on a user that is not DEPROVISIONED only deactivates it.
                await self.okta.deactivate(user.okta_id)
            await self.okta.delete_user(user.okta_id)
        except OktaApiError as err:
            if err.status != 404:
                return "failed", err.one_line()
            # Deleted by someone else between our calls: the result is the same.
        await self._mark(user)
        return "deleted", ""

    async def _mark(self, user: LedgerUser) -> None:
        """Record the user rolled back, keeping the first time when a re-run finds them gone."""
        if self.dry_run or user.state is UserState.ROLLED_BACK:
            return
        await self.ledger.mark_rolled_back(user.source, user.login, run_id=self.run_id)


def _provider(okta_user: dict[str, Any]) -> str | None:
    """`credentials.provider.type` of an Okta user, or None when Okta sent none."""
    credentials = okta_user.get("credentials")
    provider = credentials.get("provider") if isinstance(credentials, dict) else None
    kind = provider.get("type") if isinstance(provider, dict) else None
    return kind if isinstance(kind, str) else None


def main(args: argparse.Namespace) -> int:
    """`gateway migrate rollback`; exit 0 when no user failed, 1 on any refusal or failure.

    `args.run_id` is `--run` (stored under `run_id`: `args.run` is the command dispatcher).
    """
    from gateway.cli import load_or_report

    config = load_or_report(args.config)
    if config is None:
        return 1
    if config.okta.org_url is None or config.okta.api is None:
        print("rollback: okta.org_url and okta.api (token or oauth) are needed", file=sys.stderr)
        return 1
    configure_logging("warning", "text")
    return asyncio.run(_rollback(config, args))


async def _rollback(config: GatewayConfig, args: argparse.Namespace) -> int:
    """Check the run, then roll it back (the body of `main`)."""
    from gateway.migrate.commands import okta_client

    url = configured_ledger_url(config.migration.ledger)
    try:
        ledger = await open_ledger(url)
    except (LedgerError, LedgerUrlError) as err:
        print(f"rollback: {err}", file=sys.stderr)
        return 1
    try:
        run = await ledger.get_run(args.run_id)
        if run is None:
            print(f"rollback: no run {args.run_id} in the ledger", file=sys.stderr)
            return 1
        if run.command != RunCommand.IMPORT:
            # Only an import's created users are ours to delete; any other run created nobody.
            print(
                f"rollback: run {run.id} is a {run.command} run; only an import run can be "
                "rolled back",
                file=sys.stderr,
            )
            return 1
        assert config.okta.api is not None  # checked in main
        async with okta_client(config) as okta:
            rollback = Rollback(
                okta, ledger, dry_run=args.dry_run, concurrency=config.okta.api.max_concurrency
            )
            outcome = await rollback.run(run.id, run.source)
    finally:
        await ledger.close()
    print(outcome.last_line())
    return 0 if outcome.counts["failed"] == 0 else 1
