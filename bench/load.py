"""Async load generator: exactly C hook requests in flight, each answer timed and its verdict checked.

Kept cheap because it shares two cores with the gateway and the emulator: bodies are built from
pre-encoded pieces, verdicts are found with a byte search, one `ClientSession` serves every worker.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Protocol

import aiohttp

from bench.users import Planned

_VERIFIED = b'"VERIFIED"'
_UNVERIFIED = b'"UNVERIFIED"'


class RequestSource(Protocol):
    """Where workers get their next request from (None: no more requests)."""

    issued: int

    def next(self, worker: int) -> Planned | None:
        """The next request for `worker`."""
        ...


@dataclass
class LoadGroup:
    """C workers sending one stream of hook requests to one URL, with their counters."""

    name: str
    url: str
    headers: dict[str, str]
    concurrency: int
    source: RequestSource
    on_answer: Callable[[LoadGroup], None] | None = None
    answered: int = 0  # every answer (or transport error) since the start, warm-up included
    non_200: int = 0
    transport_errors: int = 0
    wrong: int = 0
    window_start: float = math.inf
    # (completion time, latency) of answers completed after `window_start`.
    done_at: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """Run the workers until `stop` is set or the source runs dry; in-flight requests finish."""
        async with asyncio.TaskGroup() as group:
            for worker in range(self.concurrency):
                group.create_task(self._worker(worker, session, stop))

    async def _worker(
        self, worker: int, session: aiohttp.ClientSession, stop: asyncio.Event
    ) -> None:
        url, headers, source = self.url, self.headers, self.source
        while not stop.is_set():
            plan = source.next(worker)
            if plan is None:
                return
            started = perf_counter()
            status, body = -1, b""
            try:
                async with session.post(url, data=plan.body, headers=headers) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                self.transport_errors += 1
            finished = perf_counter()
            self._record(plan, status, body, started, finished)

    def _record(
        self, plan: Planned, status: int, body: bytes, started: float, finished: float
    ) -> None:
        self.answered += 1
        if status != 200:
            self.non_200 += 1
        elif (_VERIFIED in body) != plan.expect_verified or (
            not plan.expect_verified and _UNVERIFIED not in body
        ):
            self.wrong += 1
        if finished >= self.window_start:
            self.done_at.append(finished)
            self.latency.append(finished - started)
        if self.on_answer is not None:
            self.on_answer(self)

    def window(self, start: float, end: float) -> list[float]:
        """Latencies (seconds) of the answers completed within [start, end]."""
        return [lat for t, lat in zip(self.done_at, self.latency, strict=True) if start <= t <= end]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def client_session(total_concurrency: int) -> aiohttp.ClientSession:
    """One session for every worker, with a connection limit above the total concurrency."""
    limit = total_concurrency + 16
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=15),
        skip_auto_headers=("User-Agent",),
    )
