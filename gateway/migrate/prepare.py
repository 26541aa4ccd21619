"""`gateway migrate prepare`: STAGED Okta users get the password hook, then are activated.

The seed's flow 01, for users that Okta's Office 365 app (or anything else) left STAGED. Per
user whose login has a route in this gateway: first `credentials.password.hook` is set, then
the user is activated with `sendEmail=false`, never the other way round (activating a STAGED
user without a credential makes it PROVISIONED, which cannot be activated again). A user found
hooked but still STAGED (an earlier run was interrupted between the two calls) is only activated.
A login with no route is `skipped`: the hook could never verify its password.

Idempotent and resumable: what is left STAGED is exactly what is left to do, so a re-run picks
up where a killed one stopped and touches no user twice. The ledger records each outcome (a
PREPARE run; HOOKED, then ACTIVATED; FAILED with the reason); `--dry-run` writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.config import GatewayConfig
from gateway.ledger import Ledger, RunCommand, UserState
from gateway.migrate.commands import _ledger, okta_client
from gateway.migrate.importer import write_report
from gateway.migrate.tally import last_line
from gateway.okta_api import ALREADY_ACTIVE, NOT_FOUND, OktaApiClient, OktaApiError
from gateway.routing import Router

logger = logging.getLogger(__name__)

STAGED_SEARCH = 'status eq "STAGED"'
COUNTS = ("staged", "hooked", "activated", "skipped", "failed")


@dataclass
class PrepareOutcome:
    """Counts of one run, the report rows and the run's ledger id.

    Every STAGED user found ends in exactly one of activated, skipped or failed, so
    staged = activated + skipped + failed; hooked counts the hooks set by this run.
    """

    run_id: int | None
    counts: Counter[str] = field(default_factory=Counter)
    report: list[tuple[str, str, str, str]] = field(default_factory=list)

    def last_line(self, dry_run: bool) -> str:
        """`prepare: staged=N hooked=N activated=N skipped=N failed=N [dry_run=1]`."""
        return last_line("prepare", self.counts, COUNTS, dry_run=dry_run)


def has_hook(user: dict[str, Any]) -> bool:
    """Whether Okta already imports this user's password (the hook, or a hash, is set)."""
    credentials = user.get("credentials") or {}
    provider = credentials.get("provider") or {}
    password = credentials.get("password") or {}
    return provider.get("type") == "IMPORT" or "hook" in password


@dataclass(frozen=True, slots=True)
class UserPrepared:
    """What preparing one user did: `activated`, `skipped` or `failed`, and why."""

    login: str
    result: str
    hooked: bool = False  # the hook was set by this call
    reason: str = ""
    retryable: bool = False  # failed on something that may pass later (Okta 429/5xx, network)


class Preparer:
    """Hooks and activates the org's STAGED users; `run` does them all, `prepare_user` one."""

    def __init__(
        self,
        config: GatewayConfig,
        okta: OktaApiClient,
        ledger: Ledger | None,
        *,
        dry_run: bool = False,
        concurrency: int = 8,
    ) -> None:
        self.okta = okta
        self.ledger = ledger
        self.dry_run = dry_run
        self.router = Router(config.routes)
        self._concurrency = concurrency
        self.run_id: int | None = None

    async def run(self) -> PrepareOutcome:
        """Prepare every STAGED user; never raises for one user's failure."""
        if self.ledger is not None and not self.dry_run:
            self.run_id = await self.ledger.start_run(RunCommand.PREPARE)
        outcome = PrepareOutcome(self.run_id)
        staged = await self._staged_ids()
        outcome.counts["staged"] = len(staged)
        slots = asyncio.Semaphore(self._concurrency)
        async with asyncio.TaskGroup() as tasks:
            for okta_id in staged:
                await slots.acquire()  # bounded in flight, as Okta's concurrency limit wants
                tasks.create_task(self._one(okta_id, outcome, slots))
        if self.ledger is not None and self.run_id is not None:
            await self.ledger.finish_run(self.run_id, dict(outcome.counts))
        return outcome

    async def _staged_ids(self) -> list[str]:
        """The ids of every STAGED user, listed to the end before any user is changed.

        The search is live: each activation takes a user out of `status eq "STAGED"`, so
        activating while paging could shift the pages under the cursor and miss or repeat
        users (Okta does not promise a stable cursor for a changing search). Listing first
        sees the set as it was, and only ids are kept (about 20 bytes each: flat enough for
        hundreds of thousands). Each user is then read again by id before anything is done,
        because search results lag (about a second) and the user may have changed since.
        """
        ids: list[str] = []
        seen: set[str] = set()
        async for user in self.okta.list_users(search=STAGED_SEARCH):
            okta_id = str(user.get("id", ""))
            if okta_id and okta_id not in seen:
                seen.add(okta_id)
                ids.append(okta_id)
        return ids

    async def _one(self, okta_id: str, outcome: PrepareOutcome, slots: asyncio.Semaphore) -> None:
        try:
            prepared = await self.prepare_user(okta_id)
        finally:
            slots.release()
        outcome.counts[prepared.result] += 1
        outcome.counts["hooked"] += prepared.hooked
        if prepared.result != "activated":
            outcome.report.append((prepared.login, okta_id, prepared.result, prepared.reason))

    async def prepare_user(self, okta_id: str) -> UserPrepared:
        """Hook and activate one STAGED user: `run`'s step per user, and the event hook's.

        Never raises for the user's own trouble: a failure is a `failed` result, `retryable`
        when Okta may accept the same calls later.
        """
        try:
            return await self._prepare(okta_id)
        except OktaApiError as err:  # reading the user failed, even after the client's retries
            return UserPrepared("", "failed", reason=err.one_line(), retryable=err.transient)
        except Exception as err:  # one user's trouble never stops the run
            logger.exception("prepare of one user failed")
            return UserPrepared("", "failed", reason=type(err).__name__)

    async def _prepare(self, okta_id: str) -> UserPrepared:
        """One user, recorded in the ledger as it happens."""
        # Read by id (consistent, unlike search): a user activated since the listing must not
        # get the hook again, which would replace the password it may already have in Okta.
        user = await self.okta.get_user(okta_id)
        if user is None:
            return UserPrepared("", "skipped", reason="not_found")
        login = str((user.get("profile") or {}).get("login", ""))
        if user.get("status") != "STAGED":
            return UserPrepared(login, "skipped", reason="not_staged")
        route = self.router.route(login)
        if route is None or not route.sources:
            # Not in the ledger: it is keyed by source, and no source of this gateway owns it.
            return UserPrepared(login, "skipped", reason="no_route")
        # The ledger keys users by source: the route's first source is the one asked first.
        source = route.sources[0]
        needs_hook = not has_hook(user)
        if self.dry_run:
            return UserPrepared(login, "activated", needs_hook)
        hooked = False
        try:
            if needs_hook:
                await self.okta.put_password_hook(okta_id)
                hooked = True
                await self._record(source, login, okta_id, UserState.HOOKED, hooked_at=_now())
            await self.okta.activate(okta_id, send_email=False)
        except OktaApiError as err:
            if err.code == ALREADY_ACTIVE or err.code == NOT_FOUND:
                # Activated or deleted by someone else since it was read: not ours to finish.
                reason = "not_staged" if err.code == ALREADY_ACTIVE else "not_found"
                return UserPrepared(login, "skipped", hooked, reason)
            await self._record(source, login, okta_id, UserState.FAILED, reason=err.one_line())
            return UserPrepared(login, "failed", hooked, err.one_line(), err.transient)
        await self._record(source, login, okta_id, UserState.ACTIVATED, activated_at=_now())
        return UserPrepared(login, "activated", hooked)

    async def _record(
        self,
        source: str,
        login: str,
        okta_id: str,
        state: UserState,
        *,
        reason: str | None = None,
        hooked_at: datetime | None = None,
        activated_at: datetime | None = None,
    ) -> None:
        if self.ledger is None or self.dry_run or not login:
            return
        # No imported_at: this tool did not create the user, so rollback must never delete it.
        await self.ledger.record_user(
            source,
            login,
            state,
            okta_id=okta_id,
            reason=reason,
            run_id=self.run_id,
            hooked_at=hooked_at,
            activated_at=activated_at,
        )


def _now() -> datetime:
    return datetime.now(UTC)


def prepare_problem(config: GatewayConfig) -> str | None:
    """Why this config cannot prepare users, or None."""
    if config.okta.org_url is None or config.okta.api is None:
        return "okta.org_url and okta.api (token or oauth) are needed to call Okta"
    if not config.routes:
        return "routes is empty: no STAGED user could be verified by this gateway"
    return None


async def run_prepare(config: GatewayConfig, args: argparse.Namespace) -> int:
    """Prepare the org's STAGED users (the body of `gateway migrate prepare`)."""
    api = config.okta.api
    assert api is not None
    async with contextlib.AsyncExitStack() as stack:
        okta = await stack.enter_async_context(okta_client(config))
        ledger = None if args.dry_run else await stack.enter_async_context(_ledger(config))
        preparer = Preparer(
            config, okta, ledger, dry_run=args.dry_run, concurrency=api.max_concurrency
        )
        try:
            outcome = await preparer.run()
        except OktaApiError as err:  # the listing itself failed: nothing can be done
            print(f"prepare: cannot list the STAGED users: {err.one_line()}", file=sys.stderr)
            return 1
    write_report(args.report, outcome.report)
    print(outcome.last_line(args.dry_run))
    return 0 if outcome.counts["failed"] == 0 else 1


def main(args: argparse.Namespace) -> int:
    """`gateway migrate prepare -c CONFIG [--dry-run] [--report FILE.csv]`; 0 when none failed."""
    from gateway.cli import load_or_report
    from gateway.logs import configure_logging

    config = load_or_report(args.config)
    if config is None:
        return 1
    problem = prepare_problem(config)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    configure_logging("warning", "text")
    return asyncio.run(run_prepare(config, args))
