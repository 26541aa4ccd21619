"""`gateway migrate sync-attributes -c CONFIG --source NAME [--dry-run] [--login L] [--deactivate-gone]`.

The seed's attribute flow: the source stays the system of record until users are cut over, so
attributes edited there after the import are copied to Okta. The candidates are the users this
tool put in Okta for the source (ledger states created, hooked, activated, migrated; `existing`
users were never ours and are left alone), streamed from the ledger in pages, or with `--login`
just that one. For each, a bounded number in flight:

- the Graph user is read by its UPN (`GET /v1.0/users/{upn}?$select=<the mapping's attributes>`);
  a 404, or `accountEnabled: false` when the import leaves disabled users out, makes it `gone`,
  and with `--deactivate-gone` it is deactivated in Okta (not again when already DEPROVISIONED);
- the Okta user is read by the Okta id the ledger holds (never by login: the login may belong to
  someone else by now), the source user is mapped as the import maps it, and only the attributes
  whose value differs are sent in one partial update (`POST /api/v1/users/{id}`); an optional
  attribute emptied in the source is removed (`null`). Nothing is sent when nothing differs, so
  a re-run writes nothing. `login` is never changed: the ledger and the hook know the user by it.
- a user whose Okta profile matches (after an update or without one) is `unchanged` or
  `updated`, and the ledger records the sync time; Okta's refusals are `failed`, one stderr line
  each.

With `--dry-run` nothing is written to Okta or the ledger (the Graph and Okta reads still
happen, so the counts are those a real run would print). Only `userPrincipalName` can be the
source of `login` here: Graph's "Get user" addresses a user by id or UPN only.
Last line: `sync-attributes: checked=N updated=N unchanged=N gone=N failed=N`; exit 0 when
failed=0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig
from gateway.ledger import (
    PENDING_STATES,
    Ledger,
    LedgerError,
    LedgerUrlError,
    LedgerUser,
    RunCommand,
    UserState,
)
from gateway.logs import configure_logging
from gateway.migrate.mapping import graph_attributes, map_user
from gateway.migrate.settings import REQUIRED_OKTA_ATTRIBUTES, MigrationSourceConfig
from gateway.migrate.tally import last_line
from gateway.okta_api import OktaApiClient, OktaApiError
from plugins.azure_ad import AzureAdSource
from plugins.entra_directory import DirectoryListError, get_user

logger = logging.getLogger(__name__)

RESULTS = ("updated", "unchanged", "gone", "failed")
# The users this tool put in Okta for a source (EXISTING ones belonged to someone else).
OURS = frozenset({*PENDING_STATES, UserState.MIGRATED})
DEPROVISIONED = "DEPROVISIONED"


@dataclass
class SyncOutcome:
    """Counts of one sync."""

    counts: Counter[str] = field(default_factory=Counter)

    def last_line(self) -> str:
        """`sync-attributes: checked=N updated=N unchanged=N gone=N failed=N`."""
        return last_line("sync-attributes", self.counts, RESULTS, total="checked")


@dataclass(frozen=True, slots=True)
class UserSynced:
    """What syncing one user did (a RESULTS value), and why."""

    result: str
    reason: str = ""
    retryable: bool = False  # failed on something that may pass later (429/5xx, network, Graph)


class AttributeSync:
    """Copies changed source attributes to Okta; `run` streams candidates, `sync_user` does one."""

    def __init__(
        self,
        source_name: str,
        settings: MigrationSourceConfig,
        directory: AzureAdSource,
        okta: OktaApiClient,
        ledger: Ledger,
        *,
        dry_run: bool = False,
        deactivate_gone: bool = False,
        concurrency: int = 8,
    ) -> None:
        self.source_name = source_name
        self.settings = settings
        self.directory = directory
        self.okta = okta
        self.ledger = ledger
        self.dry_run = dry_run
        self.deactivate_gone = deactivate_gone
        self.select = graph_attributes(settings)
        self._slots = asyncio.Semaphore(concurrency)
        self.run_id: int | None = None

    async def run(self, candidates: AsyncIterator[LedgerUser]) -> SyncOutcome:
        """Sync every candidate; never raises for one user's failure."""
        if not self.dry_run:
            self.run_id = await self.ledger.start_run(
                RunCommand.SYNC_ATTRIBUTES, source=self.source_name
            )
        outcome = SyncOutcome()
        async with asyncio.TaskGroup() as tasks:
            async for user in candidates:
                await self._slots.acquire()  # bounded in flight: memory and both APIs stay calm
                tasks.create_task(self._one(user, outcome))
        if self.run_id is not None:
            counts = {"checked": sum(outcome.counts[r] for r in RESULTS), **outcome.counts}
            await self.ledger.finish_run(self.run_id, counts)
        return outcome

    async def _one(self, user: LedgerUser, outcome: SyncOutcome) -> None:
        try:
            synced = await self.sync_user(user)
        finally:
            self._slots.release()
        outcome.counts[synced.result] += 1
        if synced.result == "failed":
            print(f"sync-attributes: {user.login}: {synced.reason}", file=sys.stderr)

    async def sync_user(self, user: LedgerUser) -> UserSynced:
        """Sync one candidate: `run`'s step per user, and sync on activate's.

        Never raises for the user's own trouble: a failure is a `failed` result.
        """
        try:
            return await self._sync(user)
        except Exception as err:  # one user's trouble never stops the run
            logger.exception("attribute sync of one user failed", extra={"source": user.source})
            return UserSynced("failed", type(err).__name__)

    async def _sync(self, user: LedgerUser) -> UserSynced:
        if not user.okta_id:
            # Looking the login up instead could update someone else's account.
            return UserSynced("failed", "no Okta id in the ledger")
        try:
            source_user = await get_user(self.directory, user.login, self.select)
        except DirectoryListError as err:
            return UserSynced("failed", f"graph: {err.reason}", retryable=True)
        try:
            if source_user is None or not self._enabled(source_user):
                return UserSynced(*await self._gone(user.okta_id))
            okta_user = await self.okta.get_user(user.okta_id)
            if okta_user is None:
                # Deleted in Okta by someone else: nothing to sync, and worth a look.
                return UserSynced("failed", "not in Okta")
            changed = self.changes(source_user, _profile(okta_user))
            if not changed:
                await self._mark(user)
                return UserSynced("unchanged")
            if not self.dry_run:
                await self.okta.update_profile(user.okta_id, changed)
        except OktaApiError as err:
            return UserSynced("failed", err.one_line(), retryable=err.transient)
        await self._mark(user)
        return UserSynced("updated")

    def _enabled(self, source_user: dict[str, Any]) -> bool:
        # An import that includes disabled users put them in Okta on purpose: not gone.
        return self.settings.include_disabled or source_user.get("accountEnabled") is not False

    def changes(self, source_user: dict[str, Any], okta_profile: dict[str, Any]) -> dict[str, Any]:
        """The Okta attributes whose mapped source value differs; `None` removes one."""
        mapped = map_user(source_user, self.settings)
        changed = {
            name: value
            for name, value in mapped.profile.items()
            if name != "login" and okta_profile.get(name) != value
        }
        for name in self.settings.profile:
            # Emptied in the source: remove it, except what Okta requires (it keeps the old).
            if (
                name not in mapped.profile
                and name not in REQUIRED_OKTA_ATTRIBUTES
                and okta_profile.get(name) not in (None, "")
            ):
                changed[name] = None
        return changed

    async def _gone(self, okta_id: str) -> tuple[str, str]:
        """Deactivate a user gone from the source when asked (once: a re-run sends nothing)."""
        if not self.deactivate_gone or self.dry_run:
            return "gone", ""
        found = await self.okta.get_user(okta_id)
        if found is not None and found.get("status") != DEPROVISIONED:
            await self.okta.deactivate(okta_id)
        return "gone", ""

    async def _mark(self, user: LedgerUser) -> None:
        if not self.dry_run:
            await self.ledger.mark_attributes_synced(user.source, user.login)


def _profile(okta_user: dict[str, Any]) -> dict[str, Any]:
    profile = okta_user.get("profile")
    return profile if isinstance(profile, dict) else {}


def main(args: argparse.Namespace) -> int:
    """`gateway migrate sync-attributes`; exit 0 when no user failed, 1 otherwise."""
    from gateway.cli import load_or_report
    from gateway.migrate.commands import import_problem

    config = load_or_report(args.config)
    if config is None:
        return 1
    problem = import_problem(config, args.source)
    if problem is None and config.migration.sources[args.source].profile.get("login") != (
        "userPrincipalName"
    ):
        problem = "sync-attributes needs login mapped from userPrincipalName (Graph reads by UPN)"
    if problem is not None:
        print(f"sync-attributes: {problem}", file=sys.stderr)
        return 1
    configure_logging("warning", "text")
    return asyncio.run(_sync(config, args))


async def _sync(config: GatewayConfig, args: argparse.Namespace) -> int:
    """Open the ledger, the source and Okta, then sync (the body of `main`)."""
    from gateway.migrate.commands import _ledger, _started_source, okta_client

    async with contextlib.AsyncExitStack() as stack:
        try:
            ledger = await stack.enter_async_context(_ledger(config))
        except (LedgerError, LedgerUrlError) as err:
            print(f"sync-attributes: {err}", file=sys.stderr)
            return 1
        candidates: AsyncIterator[LedgerUser]
        if args.login is not None:
            user = await ledger.get_user(args.source, args.login)
            if user is None or user.state not in OURS:
                print(
                    f"sync-attributes: {args.login} was not put in Okta by an import of "
                    f"{args.source}",
                    file=sys.stderr,
                )
                return 1
            candidates = _one_user(user)
        else:
            candidates = ledger.users_in_state(args.source, OURS)
        directory = await stack.enter_async_context(_started_source(config, args.source))
        okta = await stack.enter_async_context(okta_client(config))
        assert config.okta.api is not None  # import_problem checked it
        sync = AttributeSync(
            args.source,
            config.migration.sources[args.source],
            directory,
            okta,
            ledger,
            dry_run=args.dry_run,
            deactivate_gone=args.deactivate_gone,
            concurrency=config.okta.api.max_concurrency,
        )
        outcome = await sync.run(candidates)
    print(outcome.last_line())
    return 0 if outcome.counts["failed"] == 0 else 1


async def _one_user(user: LedgerUser) -> AsyncIterator[LedgerUser]:
    yield user
