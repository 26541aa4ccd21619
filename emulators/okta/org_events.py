"""The org's System Log side: event uuids, publishing, and the delivery failures it records."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

from emulators.okta.delivery import EventDelivery
from emulators.okta.system_log import ADMIN_ACTOR, SYSTEM_ACTOR, SystemLog, build_event

__all__ = ["OrgEvents", "event_generator"]


def event_generator(seed: int | None) -> random.Random:
    """Seeded: the same uuids on every run; else from the OS (uuids only, nothing secret)."""
    return random.Random(seed) if seed is not None else random.SystemRandom()  # noqa: S311


class OrgEvents:
    """Publishes every change as a System Log event and queues it for the event hooks."""

    clock: Callable[[], float]
    seed: int | None
    _rng: random.Random
    system_log: SystemLog
    delivery: EventDelivery

    def reseed(self, seed: int | None) -> None:
        """Restart event uuids from ``seed`` (None: random)."""
        self.seed = seed
        self._rng = event_generator(seed)

    def new_uuid(self) -> str:
        """A version 4 UUID from the emulator's generator (seeded: reproducible)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def publish(
        self,
        event_type: str,
        targets: list[dict[str, Any]],
        *,
        actor: dict[str, Any] = ADMIN_ACTOR,
        result: str = "SUCCESS",
        reason: str | None = None,
        request_uri: str | None = None,
    ) -> dict[str, Any]:
        """Write an event to the System Log and queue it for the event hooks that want it."""
        now = self.clock()
        event = build_event(
            self.new_uuid(),
            event_type,
            now,
            actor=actor,
            targets=targets,
            result=result,
            reason=reason,
            request_uri=request_uri,
        )
        self.system_log.append(event, now)
        self.delivery.submit(event)
        return event

    async def flush_events(self, max_wait: float = 30.0) -> dict[str, Any]:
        """Deliver every queued event now and wait for the deliveries (see ``EventDelivery``)."""
        return await self.delivery.flush(max_wait)

    def log_delivery_failure(self, hook: dict[str, Any], error: str) -> None:
        """``event_hook.delivery`` FAILURE: in the System Log only, never delivered itself."""
        target = {
            "id": hook["id"],
            "type": "EventHook",
            "alternateId": hook["channel"]["config"]["uri"],
            "displayName": hook["name"],
            "detailEntry": None,
        }
        self.publish(
            "event_hook.delivery",
            [target],
            actor=SYSTEM_ACTOR,
            result="FAILURE",
            reason=error,
            request_uri="",
        )
