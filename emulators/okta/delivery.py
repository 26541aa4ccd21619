"""Event hook delivery: published events POSTed to every subscribed hook, as Okta sends them.

What Okta documents (reference/okta-hooks.md §3.2-3.4) and the emulator does:

* only ``ACTIVE`` + ``VERIFIED`` hooks whose ``events.items`` name the type get the event, and
  only event types tagged event-hook-eligible (``event_hook.delivery`` stays in the System Log);
* events close in time share one POST: ``data.events[]`` holds up to ``max_batch_size`` (default
  50) events that waited at most ``batch_delay`` seconds (default 0.1 s) for company;
* the envelope is ``{eventType: "com.okta.event_hook", eventTypeVersion: "1.0",
  cloudEventsVersion: "0.1", source: "{org}/api/v1/eventHooks/{id}", eventId, eventTime,
  contentType: "application/json", data: {events}}``; ``eventId`` names the delivery, each event
  keeps its own ``uuid``;
* headers ``Accept`` and ``Content-Type: application/json``, the custom headers, then the auth
  header; a ``hook_timeout`` (3 s) per attempt; redirects are not followed;
* at most one retry, after a timeout, a 5xx or a connection error; none after a 2xx or a 4xx
  (a 3xx is a failure without retry too); a delivery that finally fails is logged as
  ``event_hook.delivery`` with outcome FAILURE, and the events are not sent again.

Deliveries run in background tasks, one delivery at a time per hook (Okta does not document its
parallelism), so the API call that caused an event never waits for a hook. Tests drive them with
``flush`` (deliver everything now and wait), ``pause``/``resume``, and a drop plan that skips the
next N deliverable events or a fraction of them (deterministically: ``rate=0.25`` drops exactly
every fourth), to rehearse missed events; dropped events still reach the System Log, which is
how a consumer backfills them. Every (event, hook) pair gets a ``DeliveryRecord``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import aiohttp

from emulators.okta.models import iso
from emulators.okta.system_log import CATALOGUE

__all__ = [
    "DEFAULT_BATCH_DELAY",
    "DEFAULT_MAX_BATCH_SIZE",
    "DeliveryRecord",
    "DropPlan",
    "EventDelivery",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE: Final = 50
DEFAULT_BATCH_DELAY: Final = 0.1
MAX_RECORDS: Final = 100_000
ENVELOPE_TYPE: Final = "com.okta.event_hook"
RecordStatus = Literal["queued", "sending", "delivered", "failed", "dropped", "discarded"]
_Attempt = Literal["ok", "fail", "retry"]


@dataclass(slots=True)
class DeliveryRecord:
    """One event's delivery to one hook (``discarded``: the hook went away or stopped qualifying)."""

    uuid: str
    event_type: str
    hook_id: str
    queued_at: float
    status: RecordStatus = "queued"
    attempts: int = 0
    delivery_id: str | None = None  # the envelope's eventId
    http_status: int | None = None  # of the last attempt
    error: str | None = None  # timeout, connection_error, http_503, ...
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``GET /_emulator/events/deliveries`` shows it."""
        return {
            "uuid": self.uuid,
            "eventType": self.event_type,
            "hook_id": self.hook_id,
            "status": self.status,
            "attempts": self.attempts,
            "delivery_id": self.delivery_id,
            "http_status": self.http_status,
            "error": self.error,
            "queued_at": iso(self.queued_at),
            "finished_at": iso(self.finished_at),
        }


@dataclass(slots=True)
class DropPlan:
    """Which deliverable events never reach the hooks: the next ``next`` ones, then a fraction."""

    next: int = 0
    rate: float = 0.0
    event_types: frozenset[str] = frozenset()  # empty = every type
    _credit: float = 0.0

    def __post_init__(self) -> None:
        """Refuse impossible plans."""
        if self.next < 0:
            raise ValueError("next must be >= 0")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")

    def drops(self, event_type: str) -> bool:
        """Whether this event is dropped (counts it against the plan)."""
        if self.event_types and event_type not in self.event_types:
            return False
        if self.next > 0:
            self.next -= 1
            return True
        if self.rate <= 0.0:
            return False
        self._credit += self.rate
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        """As ``GET /_emulator/events/drop`` shows it (``next`` is what is left of it)."""
        return {"next": self.next, "rate": self.rate, "event_types": sorted(self.event_types)}


@dataclass(slots=True)
class _HookQueue:
    """Events waiting for one hook, and the task sending them."""

    items: list[tuple[dict[str, Any], DeliveryRecord]] = field(default_factory=list)
    wake: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None


def deliverable(hook: dict[str, Any]) -> bool:
    """Okta sends events only to ACTIVE and VERIFIED hooks."""
    return bool(hook["status"] == "ACTIVE" and hook["verificationStatus"] == "VERIFIED")


class DeliveryHost(Protocol):
    """What delivery needs of the org (``OktaEmulator``), so this module does not import it."""

    clock: Callable[[], float]
    org_url: str
    hook_timeout: float
    event_hooks: dict[str, dict[str, Any]]

    def new_uuid(self) -> str:
        """A uuid for a delivery's ``eventId``."""
        ...

    def log_delivery_failure(self, hook: dict[str, Any], error: str) -> None:
        """Record a failed delivery in the System Log."""
        ...


class EventDelivery:
    """The queues, workers, drop plan and delivery log of one emulated org."""

    def __init__(self, emulator: DeliveryHost) -> None:
        self.emulator = emulator
        self.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        self.batch_delay = DEFAULT_BATCH_DELAY
        self.paused = False
        self.drop_plan = DropPlan()
        self.records: list[DeliveryRecord] = []
        self.counters: Counter[str] = Counter()
        self._queues: dict[str, _HookQueue] = {}
        self._session: aiohttp.ClientSession | None = None
        self._resumed: asyncio.Event | None = None
        self._flushing = 0
        self._sending = 0

    # -- publishing -------------------------------------------------------------------------
    def submit(self, event: dict[str, Any]) -> None:
        """Queue a just-published event for every hook that subscribes to its type."""
        event_type = event["eventType"]
        kind = CATALOGUE.get(event_type)
        if kind is None or not kind.hook_eligible:
            return
        hook_ids = [
            hook["id"]
            for hook in self.emulator.event_hooks.values()
            if deliverable(hook) and event_type in hook["events"]["items"]
        ]
        if not hook_ids:
            return
        now = self.emulator.clock()
        dropped = self.drop_plan.drops(event_type)
        if dropped:
            self.counters["events_dropped"] += 1
        for hook_id in hook_ids:
            record = DeliveryRecord(event["uuid"], event_type, hook_id, now)
            self._record(record)
            if dropped:
                record.status = "dropped"
                record.finished_at = now
                continue
            queue = self._queues.setdefault(hook_id, _HookQueue())
            queue.items.append((event, record))
            self.counters["events_queued"] += 1
            if len(queue.items) >= self.max_batch_size and queue.wake is not None:
                queue.wake.set()
            self._start(hook_id, queue)

    def _record(self, record: DeliveryRecord) -> None:
        """Keep the record while the log has room (deliveries go on regardless)."""
        if len(self.records) < MAX_RECORDS:
            self.records.append(record)
        else:
            self.counters["records_not_kept"] += 1

    def _start(self, hook_id: str, queue: _HookQueue) -> None:
        """Start the hook's worker if none runs (outside an event loop, ``flush`` starts it)."""
        if queue.task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        # A fresh context: the worker outlives the request that happened to start it.
        queue.task = loop.create_task(
            self._work(hook_id, queue),
            name=f"okta-event-hook-{hook_id}",
            context=contextvars.Context(),
        )

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        return sum(len(q.items) for q in self._queues.values()) + self._sending

    # -- the worker -------------------------------------------------------------------------
    async def _wait_for_company(self, queue: _HookQueue) -> None:
        """Let more events join the batch, unless it is full or a flush is waiting."""
        if len(queue.items) >= self.max_batch_size or self._flushing or self.batch_delay <= 0:
            return
        queue.wake = asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.batch_delay):
                    await queue.wake.wait()
        finally:
            queue.wake = None

    async def _while_paused(self) -> None:
        """Hold deliveries while paused."""
        while self.paused:
            if self._resumed is None:
                self._resumed = asyncio.Event()
            await self._resumed.wait()

    async def _work(self, hook_id: str, queue: _HookQueue) -> None:
        """Send the hook's queue in batches until it is empty."""
        try:
            while queue.items:
                await self._wait_for_company(queue)
                await self._while_paused()
                if not queue.items:  # discarded meanwhile
                    break
                batch = queue.items[: self.max_batch_size]
                del queue.items[: len(batch)]
                await self._send(hook_id, batch)
        finally:
            queue.task = None
            if not queue.items and self._queues.get(hook_id) is queue:
                del self._queues[hook_id]

    def _session_for_delivery(self) -> aiohttp.ClientSession:
        """One client session for every delivery (closed with the app)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _send(self, hook_id: str, batch: list[tuple[dict[str, Any], DeliveryRecord]]) -> None:
        """One delivery: the POST and at most one retry."""
        emulator = self.emulator
        records = [record for _, record in batch]
        hook = emulator.event_hooks.get(hook_id)
        if hook is None or not deliverable(hook):
            # Deleted, deactivated or changed (unverified) while the events waited.
            for record in records:
                record.status, record.finished_at = "discarded", emulator.clock()
            self.counters["events_discarded"] += len(records)
            return
        delivery_id = emulator.new_uuid()
        envelope = {
            "eventType": ENVELOPE_TYPE,
            "eventTypeVersion": "1.0",
            "cloudEventsVersion": "0.1",
            "source": f"{emulator.org_url}/api/v1/eventHooks/{hook_id}",
            "eventId": delivery_id,
            "eventTime": iso(emulator.clock()),
            "contentType": "application/json",
            "data": {"events": [event for event, _ in batch]},
        }
        body = json.dumps(envelope).encode()
        config = hook["channel"]["config"]
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        for item in config["headers"]:
            headers[item["key"]] = item["value"]
        scheme = config.get("authScheme")
        if scheme:
            headers[scheme["key"]] = scheme["value"]
        for record in records:
            record.status, record.delivery_id = "sending", delivery_id
        self.counters["deliveries"] += 1
        outcome: _Attempt = "retry"
        status: int | None = None
        error: str | None = None
        self._sending += len(records)
        try:
            for attempt in (1, 2):  # the delivery and Okta's single retry
                for record in records:
                    record.attempts = attempt
                self.counters["delivery_attempts"] += 1
                outcome, status, error = await self._post(config["uri"], body, headers)
                if outcome != "retry":
                    break
        finally:
            self._sending -= len(records)
        finished = emulator.clock()
        for record in records:
            record.http_status, record.error, record.finished_at = status, error, finished
            record.status = "delivered" if outcome == "ok" else "failed"
        if outcome == "ok":
            self.counters["deliveries_succeeded"] += 1
            self.counters["events_delivered"] += len(records)
            return
        self.counters["deliveries_failed"] += 1
        self.counters["events_failed"] += len(records)
        # The hook's URI and name only: never the headers, which carry the secret.
        logger.info("okta emulator: event hook %s delivery failed (%s)", hook_id, error)
        emulator.log_delivery_failure(hook, error or "failed")

    async def _post(
        self, uri: str, body: bytes, headers: dict[str, str]
    ) -> tuple[_Attempt, int | None, str | None]:
        """One attempt: ok (2xx), fail (3xx/4xx, not retried) or retry (timeout, 5xx, no answer)."""
        session = self._session_for_delivery()
        try:
            async with asyncio.timeout(self.emulator.hook_timeout):
                async with session.post(
                    uri, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    await resp.read()
                    status = resp.status
        except TimeoutError:
            return "retry", None, "timeout"
        except aiohttp.ClientError:
            return "retry", None, "connection_error"
        if 200 <= status < 300:
            return "ok", status, None
        if status >= 500:
            return "retry", status, f"http_{status}"
        return "fail", status, f"http_{status}"

    # -- control ----------------------------------------------------------------------------
    def pause(self) -> None:
        """Hold new deliveries (one being sent finishes)."""
        self.paused = True

    def resume(self) -> None:
        """Let held deliveries go."""
        self.paused = False
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None

    def set_drop(
        self, *, next: int = 0, rate: float = 0.0, event_types: frozenset[str] = frozenset()
    ) -> None:
        """Replace the drop plan (all zero: drop nothing)."""
        self.drop_plan = DropPlan(next=next, rate=rate, event_types=event_types)

    def totals(self) -> dict[str, Any]:
        """Counters since the last reset, with the queue and pause state."""
        names = (
            "events_queued",
            "events_delivered",
            "events_failed",
            "events_dropped",
            "events_discarded",
            "deliveries",
            "deliveries_succeeded",
            "deliveries_failed",
            "delivery_attempts",
        )
        result: dict[str, Any] = {name: self.counters[name] for name in names}
        result["pending"] = self.pending
        result["paused"] = self.paused
        return result

    async def flush(self, max_wait: float = 30.0) -> dict[str, Any]:
        """Deliver everything queued now, wait for it, and count what settled meanwhile."""
        before = Counter(self.counters)
        timed_out = False
        if not self.paused:
            self._flushing += 1
            try:
                async with asyncio.timeout(max_wait):
                    while True:
                        for hook_id, queue in list(self._queues.items()):
                            if queue.wake is not None:
                                queue.wake.set()
                            self._start(hook_id, queue)
                        tasks = [q.task for q in self._queues.values() if q.task is not None]
                        if not tasks:
                            break
                        await asyncio.wait(tasks)
            except TimeoutError:
                timed_out = True
            finally:
                self._flushing -= 1
        after = self.counters
        return {
            "deliveries": after["deliveries_succeeded"]
            + after["deliveries_failed"]
            - before["deliveries_succeeded"]
            - before["deliveries_failed"],
            "delivered": after["events_delivered"] - before["events_delivered"],
            "failed": after["events_failed"] - before["events_failed"],
            "discarded": after["events_discarded"] - before["events_discarded"],
            "pending": self.pending,
            "paused": self.paused,
            "timed_out": timed_out,
            "totals": self.totals(),
        }

    def reset_counters(self) -> None:
        """Zero the counters and forget the delivery log (queued events stay queued)."""
        self.counters.clear()
        self.records = [r for r in self.records if r.status in ("queued", "sending")]

    def discard_pending(self) -> None:
        """Forget every queued event (a full reset: the hooks they were for are gone)."""
        now = self.emulator.clock()
        for queue in self._queues.values():
            for _, record in queue.items:
                record.status, record.finished_at = "discarded", now
            self.counters["events_discarded"] += len(queue.items)
            queue.items.clear()
            if queue.wake is not None:
                queue.wake.set()

    async def close(self) -> None:
        """Stop the workers and close the client session (queued events are abandoned)."""
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
