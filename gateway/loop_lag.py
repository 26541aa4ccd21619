"""`gateway_event_loop_lag_seconds`: how late the event loop gets to work that is due.

Every hook answer waits for the event loop, so when the loop runs late (a starved CPU, a call
that blocks, a long garbage collection) every answer is late by as much, whatever the directory
does. A task asks to be woken every `TICK_SECONDS` and records how much later it woke; the gauge
holds the worst lateness of the last `WINDOW_SECONDS`, which is as long as a usual scrape
interval, so every scrape sees every spike at least once. A gauge and not a histogram: its value
is what an SRE reads against the 2.5 s budget, and it adds no `_count` series that moves by
itself. The cost is ten wake-ups a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web
from prometheus_client import Gauge

TICK_SECONDS: Final = 0.1
WINDOW_SECONDS: Final = 15.0


class LoopLagMonitor:
    """Samples the loop's lateness; `worst` is the largest over the last window."""

    def __init__(self, gauge: Gauge, window_seconds: float = WINDOW_SECONDS) -> None:
        self.gauge = gauge
        self.window_seconds = window_seconds
        self._samples: deque[tuple[float, float]] = deque()  # (woke at, lateness)

    def record(self, now: float, lateness: float) -> None:
        """One wake-up, `lateness` seconds after it was due."""
        samples = self._samples
        # Keep only samples that can still be the worst: older and no larger ones go first.
        while samples and samples[-1][1] <= lateness:
            samples.pop()
        samples.append((now, lateness))
        while samples[0][0] < now - self.window_seconds:
            samples.popleft()
        self.gauge.set(samples[0][1])

    @property
    def worst(self) -> float:
        """The largest lateness of the window (0 before the first sample)."""
        return self._samples[0][1] if self._samples else 0.0

    async def run(self) -> None:
        """Wake every tick and record how late; until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            now = loop.time()
            self.record(now, max(0.0, now - due))


def loop_lag_ctx(gauge: Gauge) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context running the monitor for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(LoopLagMonitor(gauge).run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
