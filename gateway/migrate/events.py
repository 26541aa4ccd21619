"""Okta event hook deliveries: parsed, recorded in the ledger, and acted on (no aiohttp here).

A delivery (reference/okta-hooks.md §3.2) is an envelope whose `data.events[]` are System Log
events, each with its own `uuid`. `EventProcessor.process` records every event of a delivery in
one ledger transaction (`Ledger.record_events`: insert-or-ignore by uuid, so of any number of
deliveries of one event, across replicas, exactly one is new), then acts on the new ones only:

- `user.import.password` SUCCESS marks the user migrated at the event's `published` time, found
  by the User target's id; a user the ledger has no row for (hooked by something else) is
  recorded under the source of its recorded VERIFIED decision, else under the route's first
  source for the target's login. FAILURE is counted as `import_failed` (Okta retries the import
  at the next sign-in). These writes happen before the answer, so a 200 means "recorded and applied".
- `user.lifecycle.activate` with `migration.sync_on_activate`, and the `migration.prepare_on`
  events (`application.user_membership.add` only for `migration.prepare_app_id`) queue an
  attribute sync or a prepare (hook + activate without email) for the User target; `ActionQueue`
  runs them in the background with a few attempts and backoff, never delaying the answer.

Okta delivers at least once and retries a delivery that got no answer: a process killed between
recording the events and marking the users would leave the redelivered events "seen" and the
users unmarked, so a redelivered SUCCESS for a user not yet migrated is applied again (a no-op
for a user already migrated: a redelivery changes nothing). Queued actions lost to a crash are
what `gateway migrate prepare` / `sync-attributes` pick up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from gateway.config import GatewayConfig
from gateway.ledger import PENDING_STATES, Ledger, LedgerUser, OktaEvent, UserRecord, UserState
from gateway.migrate.prepare import Preparer
from gateway.migrate.settings import (
    ACTIVATE_EVENT,
    APP_MEMBERSHIP_EVENT,
    CREATE_EVENT,
    DEFAULT_CHUNK_EVENTS,
    IMPORT_PASSWORD_EVENT,
)
from gateway.migrate.sync import OURS, AttributeSync
from gateway.okta_api import OktaApiClient
from gateway.routing import Router
from plugins.azure_ad import AzureAdSource
from plugins.base import Source

logger = logging.getLogger(__name__)

HANDLED_TYPES: Final = (IMPORT_PASSWORD_EVENT, ACTIVATE_EVENT, CREATE_EVENT, APP_MEMBERSHIP_EVENT)
OTHER_TYPE: Final = "other"
# Column sizes of the ledger's events table: longer values are not Okta's.
_MAX_UUID: Final = 64
_MAX_TYPE: Final = 128
_MAX_OUTCOME: Final = 32
_MAX_ID: Final = 64
_MAX_LOGIN: Final = 1024

# `import_failed`: Okta reported a password import FAILURE (recorded; Okta retries at the next
# sign-in); `failed`: an event the gateway could not use or act on.
Outcome = Literal["recorded", "duplicate", "ignored", "import_failed", "failed"]


class BadEnvelope(ValueError):
    """The body is not an Okta event hook delivery; the summary never quotes the input."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


@dataclass(frozen=True, slots=True)
class HookEvent:
    """One event of a delivery, reduced to what the gateway uses."""

    uuid: str
    type: str
    outcome: str | None = None  # outcome.result: SUCCESS, FAILURE, ...
    published: datetime | None = None
    user_id: str | None = None  # the target of type User: its id ...
    user_login: str | None = None  # ... and its alternateId (the Okta login)
    app_ids: tuple[str, ...] = ()  # targets of type AppInstance

    @property
    def label(self) -> str:
        """The metric's `type` label: one of the handled types, or `other`."""
        return self.type if self.type in HANDLED_TYPES else OTHER_TYPE

    def ledger_row(self) -> OktaEvent:
        """The ledger's record of this event."""
        return OktaEvent(self.uuid, self.type, self.outcome, self.user_id, self.published)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST from Okta: its `eventId`, its usable events in the order sent, and the others."""

    event_id: str | None
    events: tuple[HookEvent, ...]
    # Events the gateway cannot use (no uuid, a malformed field): counted `failed`, not recorded.
    unusable: tuple[HookEvent, ...] = ()


class _Unusable(ValueError):
    """One event of a delivery cannot be used (the delivery still can)."""


def parse_delivery(body: bytes) -> Delivery:
    """The delivery in a body; `BadEnvelope` for anything that is not one.

    Strict on the envelope (an object whose `data.events` is a list), lenient per event: an
    event that is not an object, has no usable `uuid`, or has a field Okta always sends in one
    shape (`published`, `outcome`, `target`) in another is unusable, and only that event is
    left out, so one odd event never costs the good ones beside it. Absent optional fields are
    fine.
    """
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise BadEnvelope("body is not UTF-8") from None
    except ValueError:
        raise BadEnvelope("body is not valid JSON") from None
    except RecursionError:
        raise BadEnvelope("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadEnvelope("body must be a JSON object")
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise BadEnvelope("data.events: missing or not a list")
    events: list[HookEvent] = []
    unusable: list[HookEvent] = []
    for raw in data["events"]:
        event_type = _short(raw.get("eventType"), _MAX_TYPE) if isinstance(raw, dict) else None
        try:
            if not isinstance(raw, dict):
                raise _Unusable("not an object")
            events.append(_event(raw, event_type))
        except _Unusable:
            # Only the type goes on: the metric's label; the event itself is never echoed.
            unusable.append(HookEvent("", event_type or OTHER_TYPE))
    event_id = payload.get("eventId")
    return Delivery(_short(event_id, 128), tuple(events), tuple(unusable))


def _event(raw: dict[str, Any], event_type: str | None) -> HookEvent:
    """One event, or `_Unusable`."""
    uuid = _short(raw.get("uuid"), _MAX_UUID)
    if uuid is None or event_type is None:
        raise _Unusable("uuid and eventType must be short strings")
    outcome = raw.get("outcome")
    if not isinstance(outcome, dict | None):
        raise _Unusable("outcome: not an object")
    result = _optional_short(outcome.get("result"), _MAX_OUTCOME) if outcome else None
    user_id = user_login = None
    app_ids = []
    targets = raw.get("target")
    if not isinstance(targets, list | None):
        raise _Unusable("target: not a list")
    for target in targets or ():
        if not isinstance(target, dict):
            raise _Unusable("target: an entry is not an object")
        # Match on type, never on position: Okta does not promise an order.
        kind = target.get("type")
        if kind == "User" and user_id is None:
            user_id = _short(target.get("id"), _MAX_ID)
            user_login = _short(target.get("alternateId"), _MAX_LOGIN) if user_id else None
        elif kind == "AppInstance":
            app_id = _short(target.get("id"), _MAX_ID)
            if app_id is not None:
                app_ids.append(app_id)
    published = raw.get("published")
    return HookEvent(
        uuid, event_type, result, None if published is None else _timestamp(published),
        user_id, user_login, tuple(app_ids),
    )  # fmt: skip


def _short(value: Any, limit: int) -> str | None:
    """A non-empty string of at most `limit` characters that can be stored, else None."""
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: valid JSON, not storable text
        return None
    return value


def _optional_short(value: Any, limit: int) -> str | None:
    """`_short` for a field that may be absent (None), but not present and malformed."""
    if value is None:
        return None
    short = _short(value, limit)
    if short is None:
        raise _Unusable("a field is not a short string")
    return short


def _timestamp(value: Any) -> datetime:
    """Okta's `published` (ISO 8601 with its offset, `Z`) in UTC, or `_Unusable`.

    A naive time's zone would be a guess, and an offset can push year 1 or 9999 out of range
    when moved to UTC (`0001-01-01T00:00:00+14:00`), which would otherwise raise far from here.
    """
    if not isinstance(value, str) or len(value) > 64:
        raise _Unusable("published: not a short string")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise _Unusable("published: no UTC offset")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Unusable("published: not an ISO 8601 time in range") from None


# Actions run in the background


@dataclass(frozen=True, slots=True)
class Action:
    """A follow-up for one user: `prepare` (hook + activate) or `sync` (attributes)."""

    kind: Literal["prepare", "sync"]
    okta_id: str
    event_uuid: str


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one attempt did; `retry` asks for another attempt later."""

    result: str  # e.g. activated, skipped, updated, unchanged, failed
    reason: str = ""
    retry: bool = False


class ActionQueue:
    """Background actions: a bounded queue, a few workers, a few attempts each with backoff.

    `put` never waits (the event hook answers Okta first); a full queue drops the action with a
    warning, since `gateway migrate prepare` / `sync-attributes` catch up with whatever an event
    did not do. Every attempt's failure is logged with the user's Okta id, never a login.
    """

    def __init__(
        self,
        perform: Callable[[Action], Awaitable[ActionResult]],
        *,
        workers: int = 4,
        max_queued: int = 10_000,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        """Run `perform` for each action, at most `attempts` times, waiting backoff * 2**n."""
        if workers < 1 or max_queued < 1 or attempts < 1 or backoff_seconds < 0:
            raise ValueError("need workers, max_queued and attempts >= 1, backoff_seconds >= 0")
        self._perform = perform
        self._queue: asyncio.Queue[Action] = asyncio.Queue(max_queued)
        self._workers = workers
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.done: Counter[str] = Counter()  # final results, per kind:result
        self.dropped = 0

    def start(self) -> None:
        """Start the workers on the running loop."""
        loop = asyncio.get_running_loop()
        while len(self._tasks) < self._workers:
            self._tasks.append(
                loop.create_task(self._work(), name=f"event-action-{len(self._tasks)}")
            )

    def put(self, action: Action) -> bool:
        """Queue an action without waiting; False when it had to be dropped."""
        if self._closing:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(action)
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning(
                "event action queue full; action dropped (run the migrate command to catch up)",
                extra={"action": action.kind, "okta_user_id": action.okta_id},
            )
            return False
        return True

    async def idle(self) -> None:
        """Wait until every queued action has finished (tests, shutdown)."""
        await self._queue.join()

    async def close(self, drain_seconds: float = 10.0) -> None:
        """Stop taking actions, give the queued ones `drain_seconds`, then cancel the rest."""
        self._closing = True
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_seconds):
                    await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        left = self._queue.qsize()
        if left:
            logger.warning("event actions not run at shutdown", extra={"actions": left})

    async def _work(self) -> None:
        while True:
            action = await self._queue.get()
            try:
                await self._run(action)
            finally:
                self._queue.task_done()

    async def _run(self, action: Action) -> None:
        extra = {"action": action.kind, "okta_user_id": action.okta_id, "uuid": action.event_uuid}
        for attempt in range(1, self._attempts + 1):
            try:
                outcome = await self._perform(action)
            except Exception as err:  # noqa: BLE001 - a ledger or API hiccup: retry like a 5xx
                outcome = ActionResult("failed", type(err).__name__, retry=True)
            if not outcome.retry:
                self.done[f"{action.kind}:{outcome.result}"] += 1
                level = logging.WARNING if outcome.result == "failed" else logging.INFO
                logger.log(
                    level,
                    "event action done",
                    extra={**extra, "result": outcome.result, "reason": outcome.reason,
                           "attempts": attempt},
                )  # fmt: skip
                return
            if attempt < self._attempts:
                delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
                logger.warning(
                    "event action failed; retrying",
                    extra={**extra, "reason": outcome.reason, "attempt": attempt,
                           "retry_in_seconds": delay},
                )  # fmt: skip
                await asyncio.sleep(delay)
        self.done[f"{action.kind}:failed"] += 1
        logger.error(
            "event action gave up",
            extra={**extra, "reason": outcome.reason, "attempts": self._attempts},
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the gateway runs on right now (the current configuration generation)."""

    config: GatewayConfig
    router: Router
    sources: Mapping[str, Source]


class ActionRunner:
    """Performs one `Action` with `migrate prepare`'s and `sync-attributes`' per-user code."""

    def __init__(
        self,
        okta: OktaApiClient,
        ledger: Callable[[], Ledger],
        snapshot: Callable[[], Snapshot],
    ) -> None:
        """`ledger` gives the open ledger (or raises); `snapshot` the current configuration."""
        self.okta = okta
        self._ledger = ledger
        self._snapshot = snapshot

    async def __call__(self, action: Action) -> ActionResult:
        """One attempt."""
        if action.kind == "prepare":
            return await self.prepare(action.okta_id)
        return await self.sync(action.okta_id)

    async def prepare(self, okta_id: str) -> ActionResult:
        """Hook and activate one STAGED user, exactly as `migrate prepare` does."""
        preparer = Preparer(self._snapshot().config, self.okta, self._ledger())
        prepared = await preparer.prepare_user(okta_id)
        return ActionResult(prepared.result, prepared.reason, prepared.retryable)

    async def sync(self, okta_id: str) -> ActionResult:
        """Sync one user's attributes from its source, exactly as `sync-attributes` does."""
        ledger, snapshot = self._ledger(), self._snapshot()
        ours = [u for u in await ledger.users_by_okta_id(okta_id) if u.state in OURS]
        if not ours:
            return ActionResult("skipped", "not_ours")
        result = ActionResult("skipped", "source_cannot_sync")
        for user in ours:
            directory = snapshot.sources.get(user.source)
            settings = snapshot.config.migration.sources.get(user.source)
            if (
                not isinstance(directory, AzureAdSource)
                or settings is None
                or settings.profile.get("login") != "userPrincipalName"
            ):
                continue  # as sync-attributes refuses: Graph reads a user by UPN only
            sync = AttributeSync(user.source, settings, directory, self.okta, ledger)
            synced = await sync.sync_user(user)
            result = ActionResult(synced.result, synced.reason, synced.retryable)
            if result.retry:
                return result
        return result


# Recording and acting on deliveries


@dataclass
class DeliveryOutcome:
    """Counts of one delivery, per (type label, outcome), and whether all of it was applied."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    applied: int = 0  # events whose chunk committed

    def add(self, event: HookEvent, outcome: Outcome) -> None:
        """Count one event."""
        self.counts[(event.label, outcome)] += 1

    def by_outcome(self) -> dict[str, int]:
        """Totals per outcome (the log line)."""
        totals: Counter[str] = Counter()
        for (_, outcome), count in self.counts.items():
            totals[outcome] += count
        return dict(totals)


def _oldest_first(event: HookEvent) -> tuple[bool, datetime, str]:
    """Chunk order: by `published`, so what a cut delivery leaves is its newest events."""
    return (event.published is None, event.published or _EPOCH, event.uuid)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class EventProcessor:
    """Records deliveries in the ledger and acts on the events new to it, chunk by chunk."""

    def __init__(
        self, actions: ActionQueue | None = None, *, chunk_events: int = DEFAULT_CHUNK_EVENTS
    ) -> None:
        """`actions`: where prepare and sync go (None: nothing is queued)."""
        if chunk_events < 1:
            raise ValueError("chunk_events must be at least 1")
        self.actions = actions
        self.chunk_events = chunk_events

    async def process(
        self,
        ledger: Ledger,
        delivery: Delivery,
        snapshot: Snapshot,
        *,
        outcome: DeliveryOutcome | None = None,
    ) -> DeliveryOutcome:
        """Apply a delivery in chunks: each chunk's events and marks are one transaction.

        Per chunk: record the events (insert-or-ignore by uuid), read their users by Okta id,
        then by login for ids the ledger does not know, upsert the migrated marks, commit; then
        queue the chunk's actions. So a delivery stopped at any point (an error, a shutdown)
        never leaves a recorded SUCCESS without its mark, and a redelivery skips the recorded
        uuids and applies the rest. Raises what the ledger raises; the chunks committed before
        stay committed, and counted in `outcome` when the caller passes one.
        """
        outcome = DeliveryOutcome() if outcome is None else outcome
        for event in delivery.unusable:
            outcome.add(event, "failed")
        ordered = sorted(delivery.events, key=_oldest_first)
        for start in range(0, len(ordered), self.chunk_events):
            chunk = ordered[start : start + self.chunk_events]
            await self._apply(ledger, chunk, snapshot, outcome)
            outcome.applied += len(chunk)
        return outcome

    async def _apply(
        self,
        ledger: Ledger,
        chunk: Sequence[HookEvent],
        snapshot: Snapshot,
        outcome: DeliveryOutcome,
    ) -> None:
        """One chunk in one transaction, then its actions (only once it is committed)."""
        results: list[Outcome | Literal["queued"]] = []
        async with ledger.transaction() as transaction:
            new = await transaction.record_events([event.ledger_row() for event in chunk])
            imports = [
                (e, is_new) for e, is_new in zip(chunk, new, strict=True) if _import_success(e)
            ]
            known = await transaction.users_by_okta_ids(
                e.user_id for e, n in imports if n and e.user_id
            )
            # A redelivered event's mark was committed with it; only a row still pending (an
            # event recorded by an older gateway, which marked in a second transaction) is read.
            known |= await transaction.users_by_okta_ids(
                (e.user_id for e, n in imports if not n and e.user_id), pending_only=True
            )
            logins = {
                e.user_login for e, n in imports if n and e.user_id not in known and e.user_login
            }
            by_login = await transaction.users_by_logins(logins) if logins else {}
            context = _Context(snapshot, known, by_login)
            for event, is_new in zip(chunk, new, strict=True):
                try:
                    result = self._act(event, context) if is_new else _redelivered(event, context)
                except Exception:  # one event's trouble never fails the delivery
                    logger.exception(
                        "event not applied", extra={"uuid": event.uuid, "event_type": event.label}
                    )
                    result = "failed"
                results.append(result)
            if context.row_marks:
                await transaction.mark_rows_migrated(context.row_marks)
            if context.marks:
                # One upsert: `migrated` and the first `migrated_at` are final there, so a
                # replica writing the same users at the same time agrees with this one.
                await transaction.record_users(list(context.marks.values()))
        queued = iter(context.actions)
        for event, result in zip(chunk, results, strict=True):
            if result == "queued":
                result = self._queue(next(queued))
            outcome.add(event, result)

    def _act(self, event: HookEvent, context: _Context) -> Outcome | Literal["queued"]:
        migration = context.snapshot.config.migration
        if event.type == IMPORT_PASSWORD_EVENT:
            if event.user_id is None:
                return "failed"  # no User target: nobody to mark
            if not _import_success(event):
                return "import_failed"  # Okta imports again at the next successful sign-in
            return context.migrated(event)
        if event.type == ACTIVATE_EVENT and migration.sync_on_activate:
            return self._action(event, "sync", context)
        if event.type in migration.prepare_on:
            if event.type == APP_MEMBERSHIP_EVENT and migration.prepare_app_id not in event.app_ids:
                return "ignored"  # another application's assignment
            return self._action(event, "prepare", context)
        return "ignored"

    def _action(
        self, event: HookEvent, kind: Literal["prepare", "sync"], context: _Context
    ) -> Outcome | Literal["queued"]:
        """An action to queue once the chunk is committed (a rolled-back event acts on nothing)."""
        if event.user_id is None:
            return "failed"  # no User target: nobody to act on
        if self.actions is None:
            logger.warning(
                "event action needs okta.org_url and okta.api at start-up; restart the gateway",
                extra={"action": kind, "uuid": event.uuid},
            )
            return "ignored"
        context.actions.append(Action(kind, event.user_id, event.uuid))
        return "queued"

    def _queue(self, action: Action) -> Outcome:
        if self.actions is None:  # detached at shutdown while the chunk committed
            return "failed"
        return "recorded" if self.actions.put(action) else "failed"


def _redelivered(event: HookEvent, context: _Context) -> Outcome:
    """A duplicate: nothing, unless it is a SUCCESS whose user is still pending.

    Its chunk committed the mark with the event; a pending user means the event was recorded by
    an older gateway that marked in a second transaction and died between the two.
    """
    if (
        _import_success(event)
        and event.user_id in context.known
        and not context.is_migrated(event)
        and context.migrated(event) == "recorded"
    ):
        logger.info("redelivered import event applied", extra={"uuid": event.uuid})
    return "duplicate"


@dataclass
class _Context:
    """One delivery's reads and the migrated marks it collects."""

    snapshot: Snapshot
    known: Mapping[str, list[LedgerUser]]  # by Okta id
    by_login: Mapping[str, list[LedgerUser]]
    marks: dict[tuple[str, str], UserRecord] = field(default_factory=dict)  # new rows, by login
    row_marks: dict[int, datetime] = field(default_factory=dict)  # known rows, by row id
    marked: set[str] = field(default_factory=set)  # Okta ids marked by this chunk
    actions: list[Action] = field(default_factory=list)  # queued after the commit

    def is_migrated(self, event: HookEvent) -> bool:
        """Whether the ledger, or this chunk, already has the event's user migrated."""
        rows = self.known.get(event.user_id or "", [])
        return event.user_id in self.marked or any(u.state is UserState.MIGRATED for u in rows)

    def migrated(self, event: HookEvent) -> Outcome:
        """Add the marks an import SUCCESS calls for (see the module docstring for whom)."""
        assert event.user_id is not None
        at = event.published or datetime.now(UTC)
        rows = self.known.get(event.user_id)
        if rows:
            # Every row this tool put in Okta for the user (one per source that saw it); the
            # earliest time wins when a delivery marks one user twice.
            pending = [u.id for u in rows if u.state in PENDING_STATES]
            for row_id in pending:
                self.row_marks[row_id] = min(at, self.row_marks.get(row_id, at))
            if pending:
                self.marked.add(event.user_id)
            ours = pending or any(u.state is UserState.MIGRATED for u in rows)
            return "recorded" if ours else "ignored"  # e.g. `existing`: not ours
        login = event.user_login
        if login is None:
            return "ignored"
        source = self._verified_source(login) or _routed_source(login, self.snapshot.router)
        if source is None:
            return "ignored"  # no source of this gateway owns the login
        self._mark((source, login), event.user_id, at)
        self.marked.add(event.user_id)
        return "recorded"

    def _verified_source(self, login: str) -> str | None:
        """The configured source whose VERIFIED hook decision for the login is the latest."""
        verified = [
            (u.verified_at, u.source)
            for u in self.by_login.get(login, [])
            if u.verified_at is not None and u.source in self.snapshot.sources
        ]
        return max(verified)[1] if verified else None

    def _mark(self, key: tuple[str, str], okta_id: str, at: datetime) -> None:
        """Add a migrated mark; the earliest time wins when a delivery marks one user twice."""
        known = self.marks.get(key)
        if known is None or at < (known.migrated_at or at):
            self.marks[key] = UserRecord(
                key[0], key[1], UserState.MIGRATED, okta_id=okta_id, migrated_at=at
            )


def _import_success(event: HookEvent) -> bool:
    return (
        event.type == IMPORT_PASSWORD_EVENT
        and event.outcome == "SUCCESS"
        and event.user_id is not None
    )


def _routed_source(login: str, router: Router) -> str | None:
    """The first source of the route that takes this login (the one the hook asks first)."""
    match = router.route(login)
    return match.sources[0] if match is not None and match.sources else None


__all__ = [
    "HANDLED_TYPES",
    "OTHER_TYPE",
    "Action",
    "ActionQueue",
    "ActionResult",
    "ActionRunner",
    "BadEnvelope",
    "Delivery",
    "DeliveryOutcome",
    "EventProcessor",
    "HookEvent",
    "Snapshot",
    "parse_delivery",
]
