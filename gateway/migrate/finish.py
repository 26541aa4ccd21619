"""`gateway migrate finish -c CONFIG --source NAME --action ACTION [--dry-run] [--report FILE.csv]`.

The end of a source's migration (reference/okta-hooks.md §2.7): the users who never signed in
get one action in Okta, so the old directory can be retired and the password hook removed:

- `reset_password`: `POST /api/v1/users/{id}/lifecycle/reset_password?sendEmail=true` (Okta
  mails a reset link; the user goes to RECOVERY);
- `expire_password`: `POST /api/v1/users/{id}/lifecycle/expire_password` (a new password at
  the next sign-in);
- `deactivate`: `POST /api/v1/users/{id}/lifecycle/deactivate` (treated as stale).

Who: the source's `pending` users (report.py: in Okta with the hook, never verified), after
reading them back from Okta (reconcile.py), so a user whose sign-in event was missed is marked
migrated instead of being reset, and its `finished` ones (an earlier run did an action to them).
A user this action was already done to by an earlier finish run (the ledger's `reason` says
`finish_<action>`) is left alone, so a rerun only does the ones that failed; another action is
done to them too (`deactivate` after `reset_password`). Users verified by the hook but not yet
confirmed are not touched: Okta calls the hook again at their next sign-in. The source must be
ready to retire (report.py: nobody pending, or nobody verified for
`migration.retire_after_days`) unless `--force`.

Each user's outcome goes to the ledger (a `finish` run; `reason` `finish_<action>` or
`finish_<action>_failed`): from then on report.py counts a done user `finished`, no longer
`pending` (a failed one stays `pending`); `--report` writes `login,okta_id,result,reason` for
every user. With `--dry-run` nothing is written to Okta or the ledger.
Last line: `finish: pending=N done=N failed=N [dry_run=1]`; exit 0 when failed=0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from gateway.config import GatewayConfig
from gateway.ledger import (
    FINISH_REASONS,
    Ledger,
    LedgerError,
    LedgerUrlError,
    LedgerUser,
    RunCommand,
    configured_ledger_url,
    open_ledger,
)
from gateway.logs import configure_logging
from gateway.migrate.csvsafe import write_csv
from gateway.migrate.reconcile import ReconcileOutcome, Reconciler, finished
from gateway.migrate.report import build_report, iso
from gateway.migrate.tally import last_line
from gateway.okta_api import OktaApiClient, OktaApiError

logger = logging.getLogger(__name__)

Action = Literal["reset_password", "expire_password", "deactivate"]
ACTIONS: Final[tuple[Action, ...]] = ("reset_password", "expire_password", "deactivate")
RESULTS = ("done", "failed")
REPORT_HEADER = ("login", "okta_id", "result", "reason")
_PAGE = 500


def done_reason(action: str) -> str:
    """The ledger `reason` of a user this action was done to."""
    reason = f"finish_{action}"
    assert reason in FINISH_REASONS
    return reason


@dataclass
class FinishOutcome:
    """Counts of one finish run and its report rows."""

    run_id: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    report: list[tuple[str, str, str, str]] = field(default_factory=list)
    already_done: int = 0  # left alone: an earlier run did this action to them
    migrated: int = 0  # Okta showed them migrated: marked, not touched
    gone: int = 0  # no longer in Okta

    def last_line(self, dry_run: bool) -> str:
        """`finish: pending=N done=N failed=N [dry_run=1]`."""
        return last_line("finish", self.counts, RESULTS, total="pending", dry_run=dry_run)


class Finisher:
    """Does `action` to the pending users of one source; `run` streams them from the ledger."""

    def __init__(
        self,
        okta: OktaApiClient,
        ledger: Ledger,
        source: str,
        action: Action,
        *,
        dry_run: bool = False,
        concurrency: int = 8,
    ) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        self.okta = okta
        self.ledger = ledger
        self.source = source
        self.action: Action = action
        self.dry_run = dry_run
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._still_import: set[str] = set()  # what Okta showed on IMPORT just before
        self.run_id: int | None = None

    async def run(self) -> FinishOutcome:
        """Reconcile, then act on every pending user; never raises for one user's failure."""
        outcome = FinishOutcome()
        if not self.dry_run:
            self.run_id = outcome.run_id = await self.ledger.start_run(
                RunCommand.FINISH, source=self.source
            )
        checked = ReconcileOutcome()
        reconciler = Reconciler(
            self.okta, self.ledger, dry_run=self.dry_run, concurrency=self._concurrency
        )
        await reconciler.reconcile_source(self.source, checked)
        self._still_import = checked.still_import
        # Marked migrated by the reconciler (in a dry run only skipped below).
        outcome.migrated = checked.counts["migrated"]
        async with asyncio.TaskGroup() as tasks:
            async for user in self._pending():
                if user.reason == done_reason(self.action):
                    outcome.already_done += 1
                    continue
                if user.okta_id in checked.migrated_ids:
                    continue  # a missed sign-in: Okta holds the password, nothing to finish
                if user.okta_id in checked.missing_ids:
                    outcome.gone += 1
                    continue
                await self._slots.acquire()  # bounded in flight, like the other commands
                tasks.create_task(self._one(user, outcome))
        if self.run_id is not None:
            counts = {"pending": sum(outcome.counts[r] for r in RESULTS), **outcome.counts}
            await self.ledger.finish_run(self.run_id, counts)
        return outcome

    async def _pending(self) -> AsyncIterator[LedgerUser]:
        """The source's never-verified users, page by page, those finished before included.

        Pages are keyed by login, so a user's reason changing meanwhile skips or repeats nobody.
        """
        after: str | None = None
        while True:
            page = await self.ledger.not_signed_in(
                self.source, limit=_PAGE, after=after, finished=True
            )
            for user in page:
                yield user
            if len(page) < _PAGE:
                return
            after = page[-1].login

    async def _one(self, user: LedgerUser, outcome: FinishOutcome) -> None:
        try:
            result, reason = await self._finish(user)
        except Exception as err:  # one user's trouble never stops the run
            logger.exception("finish of one user failed", extra={"source": user.source})
            result, reason = "failed", type(err).__name__
        finally:
            self._slots.release()
        outcome.counts[result] += 1
        outcome.report.append((user.login, user.okta_id or "", result, reason))
        if result == "failed":
            print(f"finish: {user.login}: {reason}", file=sys.stderr)

    async def _finish(self, user: LedgerUser) -> tuple[str, str]:
        """(result, reason) for one user, recorded in the ledger as it happens."""
        if not user.okta_id:
            # Looking the login up could act on someone else's account.
            return "failed", "no Okta id in the ledger"
        if user.okta_id not in self._still_import and not finished(user):
            # Its search failed: whether the user signed in meanwhile is unknown. (A user an
            # earlier finish run acted on is not read back: Okta's answer means nothing then.)
            return "failed", "could not be read back from Okta"
        if self.dry_run:
            return "done", f"would_{self.action}"
        try:
            if self.action == "reset_password":
                await self.okta.reset_password(user.okta_id, send_email=True)
            elif self.action == "expire_password":
                await self.okta.expire_password(user.okta_id)
            else:
                await self.okta.deactivate(user.okta_id)
        except OktaApiError as err:
            await self._record(user, f"{done_reason(self.action)}_failed")
            return "failed", err.one_line()
        await self._record(user, done_reason(self.action))
        return "done", self.action

    async def _record(self, user: LedgerUser, reason: str) -> None:
        """The user's outcome in the ledger; the state stays (still not migrated)."""
        await self.ledger.record_user(
            user.source, user.login, user.state, okta_id=user.okta_id, reason=reason,
            run_id=self.run_id,
        )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """`gateway migrate finish`; exit 0 when no user failed."""
    from gateway.cli import load_or_report

    config = load_or_report(args.config)
    if config is None:
        return 1
    if config.okta.org_url is None or config.okta.api is None:
        print("finish: okta.org_url and okta.api (token or oauth) are needed", file=sys.stderr)
        return 1
    configure_logging("warning", "text")
    return asyncio.run(run_finish(config, args))


async def run_finish(config: GatewayConfig, args: argparse.Namespace) -> int:
    """Check the source is ready to retire, then finish it (the body of `main`)."""
    from gateway.migrate.commands import okta_client

    url = configured_ledger_url(config.migration.ledger)
    try:
        ledger = await open_ledger(url)
    except (LedgerError, LedgerUrlError) as err:
        print(f"finish: {err}", file=sys.stderr)
        return 1
    try:
        report = await build_report(
            ledger,
            config.migration.sources,
            now=datetime.now(UTC),
            retire_after_days=config.migration.retire_after_days,
        )
        source = report.sources.get(args.source)
        if source is None or source.imported == 0:
            print(f"finish: the ledger has no users of source {args.source!r}", file=sys.stderr)
            return 1
        if not source.ready_to_retire and not args.force:
            print(
                f"finish: source {args.source!r} is not ready to retire: {source.pending} "
                f"pending, last verification {iso(source.last_verified_at) or 'never'} (less "
                f"than migration.retire_after_days={config.migration.retire_after_days} ago); "
                "wait, or pass --force",
                file=sys.stderr,
            )
            return 1
        api = config.okta.api
        assert api is not None  # checked in main
        async with okta_client(config) as okta:
            finisher = Finisher(
                okta,
                ledger,
                args.source,
                args.action,
                dry_run=args.dry_run,
                concurrency=api.max_concurrency,
            )
            outcome = await finisher.run()
    finally:
        await ledger.close()
    if args.report is not None:
        write_csv(args.report, REPORT_HEADER, sorted(outcome.report))
    notes = [
        (outcome.migrated, "had signed in after all (now marked migrated)"),
        (outcome.already_done, f"already had {args.action} in an earlier run"),
        (outcome.gone, "are no longer in Okta"),
    ]
    for number, what in notes:
        if number:
            print(f"finish: {number} users {what}: left alone", file=sys.stderr)
    print(outcome.last_line(args.dry_run))
    return 0 if outcome.counts["failed"] == 0 else 1
