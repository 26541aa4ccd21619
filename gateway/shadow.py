"""Shadow verification: prove a new source answers like the old one before switching a route.

A route with `shadow: {source: NAME, sample: 0.1}` answers Okta from its own sources as always;
then, for a sample of the calls whose answer was definitive, the same username and password are
verified against the shadow source off the hot path, and the agreement is counted in
`gateway_shadow_verifications_total{route,agreement}` (`same`, `different`, `unavailable`).

This sends users' passwords to a second system: that is its purpose, and why it is opt-in per
route. The password waits only in memory, in a bounded queue (`queue_size` per route; a full
queue drops the job and counts it), and never longer than one budget: a job not finished by
then is dropped (`gateway_shadow_dropped_total{route,reason}`). The shadow source's calls go
through the service with their own per-user budget, so shadowing never locks a user out of the
second system and never spends the budget of the route's own sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway.metrics import GatewayMetrics
from plugins.base import Result

if TYPE_CHECKING:
    from gateway.service import PasswordImportService

logger = logging.getLogger(__name__)

AGREEMENTS: Final = ("same", "different", "unavailable")
DROP_REASONS: Final = ("queue_full", "expired")
WORKERS: Final = 4


@dataclass(frozen=True, slots=True, repr=False)
class ShadowJob:
    """One pair to verify again; holds a password, so it is never shown."""

    route: str
    source: str
    username: str
    password: str
    primary_verified: bool
    deadline: float  # event-loop time: the job is dropped, or its call cut, at this moment
    service: PasswordImportService  # the generation that answered (its sources and limits)

    def __repr__(self) -> str:
        return f"ShadowJob(route={self.route!r}, source={self.source!r})"


class ShadowRunner:
    """A bounded queue per route and a few workers; one per process, across reloads."""

    def __init__(self, metrics: GatewayMetrics, workers: int = WORKERS) -> None:
        self._metrics = metrics
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue()
        self._queued: Counter[str] = Counter()  # jobs waiting or running, per route
        self._workers: list[asyncio.Task[None]] = []
        self._worker_count = workers

    def declare_route(self, route: str) -> None:
        """Export the route's series at 0."""
        for agreement in AGREEMENTS:
            self._metrics.shadow_verifications.labels(route=route, agreement=agreement)
        for reason in DROP_REASONS:
            self._metrics.shadow_dropped.labels(route=route, reason=reason)

    @staticmethod
    def sampled(sample: float) -> bool:
        """Whether this call is shadowed (not a security decision: plain `random`)."""
        return random.random() < sample  # noqa: S311

    def offer(self, job: ShadowJob, queue_size: int) -> bool:
        """Queue a job without waiting; False (and counted) when the route's queue is full."""
        if self._queued[job.route] >= queue_size:
            self._metrics.shadow_dropped.labels(route=job.route, reason="queue_full").inc()
            return False
        self._start_workers()
        self._queued[job.route] += 1
        self._queue.put_nowait(job)
        return True

    def _start_workers(self) -> None:
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [
                loop.create_task(self._work(), name=f"shadow-{n}")
                for n in range(self._worker_count)
            ]

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            try:
                if loop.time() >= job.deadline:
                    self._metrics.shadow_dropped.labels(route=job.route, reason="expired").inc()
                    continue
                verdict = await job.service.shadow_verify(
                    job.source, job.username, job.password, job.deadline
                )
                if verdict.result is Result.UNAVAILABLE:
                    agreement = "unavailable"
                elif verdict.verified == job.primary_verified:
                    agreement = "same"
                else:
                    agreement = "different"
                self._metrics.shadow_verifications.labels(
                    route=job.route, agreement=agreement
                ).inc()
            except Exception:  # a worker must survive whatever one job does
                logger.exception("shadow verification failed", extra={"route": job.route})
            finally:
                self._queued[job.route] -= 1
                del job  # the password goes with it

    async def close(self) -> None:
        """Stop the workers; queued jobs (and their passwords) are dropped."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queued.clear()
