"""Bring the ledger up to date with Okta: who has migrated, whatever events were missed.

Okta's event hook delivers `user.import.password` at most a few times and gives up; a gateway
that was down, a queue that was full or a hook that was not registered yet loses events, and then
the ledger keeps counting migrated users as pending (or "verified, not confirmed"). Two sources
of truth put that right, in this order:

1. The System Log (`GET /api/v1/logs?filter=eventType eq "user.import.password"&since=...`,
   since the newest such event the ledger holds): each event is recorded by its uuid, as the
   event hook records it, and a SUCCESS marks its target user migrated at the event's
   `published` time, so the daily rate stays true. Skipped when the org does not serve the
   System Log to this client (403/404): step 2 still gets the numbers right.
2. The users themselves: every user the ledger has in Okta with the hook and not yet migrated
   (created, hooked, activated) is read back, whichever costs fewer requests: 50 ids per
   `search` (`id eq "..." or ...`, one page each, bounded and paced by the client), or one
   listing of the whole org, 200 users a page, when the candidates are more than a quarter of
   the users the ledger knows (a source far into its migration). `credentials.provider.type`
   decides (users `migrate finish` already acted on are left out): `OKTA` means Okta holds the password (marked migrated at the user's `lastLogin`,
   else now); `IMPORT` means still pending. Users recorded without an Okta id are searched by
   `profile.login` instead. Migrated users are never read, so a native-hash user stays migrated
   although Okta shows IMPORT for it, and nobody is ever demoted.

With `dry_run` nothing is written; the outcome still says who Okta shows migrated.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from gateway.ledger import FINISH_REASONS as FINISH_REASONS  # was defined here; still importable
from gateway.ledger import PENDING_STATES, Ledger, LedgerUser, OktaEvent
from gateway.migrate.report import iso
from gateway.migrate.settings import IMPORT_PASSWORD_EVENT
from gateway.okta_api import MAX_PAGE_SIZE, OktaApiClient, OktaApiError

logger = logging.getLogger(__name__)

SEARCH_BATCH = 50  # ids per search: ~1.5 KB of query string, one page of results
IMPORT_PROVIDER = "IMPORT"
OKTA_PROVIDER = "OKTA"
EVENT_FILTER = f'eventType eq "{IMPORT_PASSWORD_EVENT}"'
_EVENT_CHUNK = 500


def _now() -> datetime:
    return datetime.now(UTC)


def provider_of(okta_user: dict[str, Any]) -> str | None:
    """`credentials.provider.type` of an Okta user, or None when Okta sent none."""
    credentials = okta_user.get("credentials")
    provider = credentials.get("provider") if isinstance(credentials, dict) else None
    kind = provider.get("type") if isinstance(provider, dict) else None
    return kind if isinstance(kind, str) else None


def _time(value: Any) -> datetime | None:
    """An Okta timestamp (`2024-05-01T10:00:00.000Z`) as an aware datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC now: an offset can push year 1 or 9999 out of range (`0001-01-01T00:00:00+14:00`),
        # which would otherwise raise OverflowError when the ledger stores it.
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def finished(user: LedgerUser) -> bool:
    """Whether `migrate finish` reset, expired or deactivated this user.

    Okta then shows them on OKTA (a reset ends the import) or not at all, which says nothing
    about a migration: such users are not read back; the ledger keeps their state and counts
    them `finished` (`Ledger.progress`), unless the hook verifies them or an event migrates them.
    """
    return user.reason in FINISH_REASONS


def _slim(okta_user: dict[str, Any]) -> dict[str, Any]:
    """What reconciling needs of an Okta user (a whole org's listing is held at once)."""
    return {
        "id": okta_user.get("id"),
        "credentials": {"provider": {"type": provider_of(okta_user)}},
        "lastLogin": okta_user.get("lastLogin"),
    }


def _quoted(value: str) -> str:
    """A string literal of Okta's search language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ReconcileOutcome:
    """What one reconciliation found.

    counts: `checked` (users read back), `migrated` (Okta holds the password: marked now),
    `pending` (still on IMPORT), `missing` (not in Okta any more), `failed` (their batch could
    not be read), `events` (System Log events new to the ledger), `event_migrated` (users those
    events marked migrated). The id sets say what Okta showed, by Okta user id.
    """

    counts: Counter[str] = field(default_factory=Counter)
    still_import: set[str] = field(default_factory=set)
    migrated_ids: set[str] = field(default_factory=set)
    missing_ids: set[str] = field(default_factory=set)
    system_log: bool | None = None  # None: not asked; False: the org refused it
    errors: list[str] = field(default_factory=list)


class Reconciler:
    """Reads Okta back into the ledger (see the module docstring)."""

    def __init__(
        self,
        okta: OktaApiClient,
        ledger: Ledger,
        *,
        dry_run: bool = False,
        concurrency: int = 8,
        batch_size: int = SEARCH_BATCH,
        strategy: Literal["auto", "ids", "list"] = "auto",
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if not 1 <= batch_size <= MAX_PAGE_SIZE:
            raise ValueError(f"batch_size must be 1..{MAX_PAGE_SIZE}")
        self.okta = okta
        self.ledger = ledger
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.strategy = strategy
        self._known_users: int | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._clock = clock

    async def backfill_events(self, outcome: ReconcileOutcome) -> None:
        """Record the `user.import.password` events the ledger missed, from the System Log."""
        since = await self.ledger.last_event_at(IMPORT_PASSWORD_EVENT)
        batch: list[OktaEvent] = []
        try:
            async for item in self.okta.list_log_events(filter=EVENT_FILTER, since=iso(since)):
                event = _event(item)
                if event is not None:
                    batch.append(event)
                if len(batch) >= _EVENT_CHUNK:
                    await self._record_events(batch, outcome)
                    batch = []
        except OktaApiError as err:
            if err.status in (403, 404):
                # Not served to this client (scope okta.logs.read, or no such endpoint): the
                # provider reconciliation below still gets the numbers right.
                outcome.system_log = False
                outcome.errors.append(f"System Log not read: {err.one_line()}")
                await self._record_events(batch, outcome)
                return
            raise
        await self._record_events(batch, outcome)
        outcome.system_log = True

    async def _record_events(self, batch: list[OktaEvent], outcome: ReconcileOutcome) -> None:
        if not batch:
            return
        if self.dry_run:
            outcome.counts["events"] += len(batch)
            return
        fresh = await self.ledger.record_events(batch)
        outcome.counts["events"] += sum(fresh)
        for event in batch:
            # Marked for every SUCCESS in the window, new or not: marking is idempotent, and an
            # event recorded by a hook delivery that then failed to mark is put right here.
            if event.outcome == "SUCCESS" and event.okta_user_id:
                marked = await self.ledger.mark_migrated(
                    okta_id=event.okta_user_id, at=event.published_at
                )
                outcome.counts["event_migrated"] += 1 if marked else 0

    async def reconcile_source(self, source: str, outcome: ReconcileOutcome) -> None:
        """Read every not-yet-migrated user of `source` back from Okta (see the docstring)."""
        users = [
            user
            async for user in self.ledger.users_in_state(source, PENDING_STATES)
            if not finished(user)
        ]
        if not users:
            return
        if await self._list_whole_org(len(users)):
            await self._by_listing(users, outcome)
            return
        by_id = [user for user in users if user.okta_id]
        by_login = [user for user in users if not user.okta_id]
        async with asyncio.TaskGroup() as tasks:
            for group in (by_id, by_login):
                for start in range(0, len(group), self.batch_size):
                    await self._slots.acquire()  # bounded in flight; the client paces too
                    tasks.create_task(self._batch(group[start : start + self.batch_size], outcome))

    async def _list_whole_org(self, candidates: int) -> bool:
        """Whether one listing of the org costs fewer requests than searching by id.

        Searching costs candidates/50 requests, listing users/200: listing wins when the
        candidates are more than a quarter of the users. The org's size is unknown, so the
        users the ledger knows (every source) stand in for it.
        """
        if self.strategy != "auto":
            return self.strategy == "list"
        if self._known_users is None:
            progress = await self.ledger.progress()
            self._known_users = sum(sum(p.states.values()) for p in progress.values())
        return candidates * MAX_PAGE_SIZE > self._known_users * self.batch_size

    async def _by_listing(self, users: Sequence[LedgerUser], outcome: ReconcileOutcome) -> None:
        """Every Okta user, page by page, keeping only the candidates (their ids or logins)."""
        ids = {user.okta_id for user in users if user.okta_id}
        logins = {user.login.casefold() for user in users if not user.okta_id}
        found: dict[str, dict[str, Any]] = {}
        try:
            # No expression: every user but DEPROVISIONED ones (who cannot sign in any more).
            async for item in self.okta.list_users(limit=MAX_PAGE_SIZE):
                okta_id = item.get("id")
                profile = item.get("profile")
                login = profile.get("login") if isinstance(profile, dict) else None
                if okta_id in ids:
                    found[okta_id] = _slim(item)
                elif isinstance(login, str) and login.casefold() in logins:
                    found[login.casefold()] = _slim(item)
        except OktaApiError as err:
            outcome.counts["failed"] += len(users)
            outcome.errors.append(err.one_line())
            return
        await self._settle(users, found, outcome)

    async def _batch(self, users: Sequence[LedgerUser], outcome: ReconcileOutcome) -> None:
        """One search for up to `batch_size` users, by id (or by login when none has an id)."""
        try:
            found = await self._search(users)
        except OktaApiError as err:
            outcome.counts["failed"] += len(users)
            outcome.errors.append(err.one_line())
            return
        finally:
            self._slots.release()
        await self._settle(users, found, outcome)

    async def _settle(
        self,
        users: Sequence[LedgerUser],
        found: dict[str, dict[str, Any]],
        outcome: ReconcileOutcome,
    ) -> None:
        """What Okta showed for each user: migrated (marked), still pending, or missing."""
        for user in users:
            okta_user = found.get(user.okta_id or "") or found.get(user.login.casefold())
            if okta_user is None:
                outcome.counts["missing"] += 1
                if user.okta_id:
                    outcome.missing_ids.add(user.okta_id)
                continue
            outcome.counts["checked"] += 1
            okta_id = str(okta_user.get("id", "")) or None
            if provider_of(okta_user) != OKTA_PROVIDER:
                outcome.counts["pending"] += 1
                if okta_id:
                    outcome.still_import.add(okta_id)
                continue
            outcome.counts["migrated"] += 1
            if okta_id:
                outcome.migrated_ids.add(okta_id)
            if not self.dry_run:
                at = _time(okta_user.get("lastLogin")) or self._clock()
                await self.ledger.mark_migrated(
                    at=min(at, self._clock()), okta_id=okta_id, source=user.source, login=user.login
                )

    async def _search(self, users: Sequence[LedgerUser]) -> dict[str, dict[str, Any]]:
        """The Okta users of one batch, keyed by id and by case-folded login."""
        if users[0].okta_id:
            terms = [f"id eq {_quoted(u.okta_id or '')}" for u in users]
        else:
            terms = [f"profile.login eq {_quoted(u.login)}" for u in users]
        found: dict[str, dict[str, Any]] = {}
        async for item in self.okta.list_users(search=" or ".join(terms), limit=MAX_PAGE_SIZE):
            okta_id = item.get("id")
            if isinstance(okta_id, str):
                found[okta_id] = item
            profile = item.get("profile")
            login = profile.get("login") if isinstance(profile, dict) else None
            if isinstance(login, str) and not users[0].okta_id:
                found[login.casefold()] = item
        return found


def _event(item: dict[str, Any]) -> OktaEvent | None:
    """A System Log `LogEvent` as the ledger records it (None without a uuid)."""
    uuid = item.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        return None
    outcome = item.get("outcome")
    result = outcome.get("result") if isinstance(outcome, dict) else None
    targets = item.get("target")
    user_id = None
    for target in targets if isinstance(targets, list) else []:
        if isinstance(target, dict) and target.get("type") == "User":
            user_id = target.get("id") if isinstance(target.get("id"), str) else None
            break
    return OktaEvent(
        uuid=uuid,
        type=str(item.get("eventType", IMPORT_PASSWORD_EVENT)),
        outcome=result if isinstance(result, str) else None,
        okta_user_id=user_id,
        published_at=_time(item.get("published")),
    )
