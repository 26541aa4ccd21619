"""Spread requests over each rate-limit bucket's window, from what Okta's own headers say.

Okta counts requests per bucket in windows of about 60 s and reports, on every answer, the
bucket's ``Limit``, what ``Remaining`` and when the window ends (``Reset``, epoch seconds). A
client that sends as fast as it can spends the window in the first seconds and then collects
429s until it resets; the bucket is also shared with every other client of the org. So, per
bucket, before each request:

* after a 429 the bucket is held until the answer's ``Reset - Date + 1``;
* with nothing left (``Remaining`` minus our requests still in flight), wait for the reset;
* when the budget left is below the window's pro-rata share (``Limit * time left / 60``) by more
  than a small burst (10% of the limit), send one request every ``time left / budget`` seconds.

"Time left" is measured on Okta's clock: ``Reset`` minus the server time, estimated from the
answers' ``Date`` headers and the local monotonic clock, never from local wall time.
Requests of one bucket take their turn in order (an ``asyncio.Lock`` is first-in first-out), so
every decision uses the latest answer, and a sleeping bucket never holds up another one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.okta_api.clock import Clock
from gateway.okta_api.retry import RateHeaders, rate_headers
from gateway.okta_api.stats import OktaApiStats

__all__ = ["WINDOW_SECONDS", "Pacer"]

logger = logging.getLogger(__name__)

WINDOW_SECONDS: Final = 60.0
BURST_FRACTION: Final = 0.1
RESET_MARGIN: Final = 1.0  # Date has one-second resolution; the SDKs add 1 s too
_CLOCK_STEP: Final = 2.0  # a server-time estimate this far below the best one means a clock step


@dataclass(slots=True)
class _Bucket:
    """What the client knows about one bucket's current window."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    limit: int | None = None
    remaining: int | None = None
    reset: int | None = None  # server epoch seconds
    in_flight: int = 0  # our requests sent (or about to be) and not answered yet
    last_dispatch: float | None = None  # local monotonic
    held_until: float = 0.0  # local monotonic, after a 429
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set on every answer


class Pacer:
    """Per-bucket pacing from ``X-Rate-Limit-*`` headers."""

    def __init__(self, clock: Clock, stats: OktaApiStats) -> None:
        self.clock = clock
        self.stats = stats
        self._buckets: dict[str, _Bucket] = {}
        self._offset: float | None = None  # server epoch seconds minus local monotonic seconds

    def _bucket(self, key: str) -> _Bucket:
        """The bucket named ``key`` (created on first use; the set of keys is small and closed)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        return bucket

    def server_time(self, local: float) -> float:
        """Okta's clock at local monotonic time ``local`` (local wall time until a Date is seen)."""
        if self._offset is None:
            return local + (self.clock.time() - self.clock.monotonic())
        return local + self._offset

    def delay(self, key: str) -> float | None:
        """Seconds the next request of bucket ``key`` should wait; None: wait for an answer."""
        bucket = self._bucket(key)
        now = self.clock.monotonic()
        if bucket.held_until > now:
            return bucket.held_until - now
        if bucket.limit is None or bucket.remaining is None or bucket.reset is None:
            # Nothing known yet: one request finds out the bucket's size before others go.
            return 0.0 if bucket.in_flight == 0 else None
        burst = max(1.0, bucket.limit * BURST_FRACTION)
        time_left = bucket.reset - self.server_time(now)
        if time_left <= 0:
            # A new window of unknown budget: a burst may go, the rest waits for its answers.
            return 0.0 if bucket.in_flight < burst else None
        budget = bucket.remaining - bucket.in_flight
        if budget <= 0:
            return time_left + RESET_MARGIN
        share = bucket.limit * min(1.0, time_left / WINDOW_SECONDS)
        if budget >= share - burst:
            return 0.0  # not ahead of the bucket's steady rate
        if bucket.last_dispatch is None:
            return 0.0
        return max(0.0, bucket.last_dispatch + time_left / budget - now)

    async def turn(self, key: str) -> None:
        """Wait until a request of bucket ``key`` may go, then count it as in flight.

        Every ``turn`` must be followed by exactly one ``settle`` for the same key.
        """
        bucket = self._bucket(key)
        async with bucket.lock:
            while (wait := self.delay(key)) is None or wait > 0:
                if wait is None:
                    bucket.answered.clear()
                    await bucket.answered.wait()
                    continue
                self.stats.pacing_wait_seconds += wait
                await self.clock.sleep(wait)
            bucket.in_flight += 1
            bucket.last_dispatch = self.clock.monotonic()

    def settle(self, key: str) -> None:
        """The request counted by ``turn`` was answered or failed (call ``observe`` right after)."""
        bucket = self._bucket(key)
        bucket.in_flight -= 1
        bucket.answered.set()

    def observe(self, key: str, headers: Mapping[str, str], received_at: float) -> RateHeaders:
        """Learn from an answer's headers (received at local monotonic ``received_at``)."""
        seen = rate_headers(headers)
        if seen.date is not None:
            # Date is truncated to the second and arrives late, so every estimate is at most
            # the true offset: keep the best one, unless the server's clock visibly stepped.
            candidate = seen.date - received_at
            best = self._offset
            if best is None or candidate > best or candidate < best - _CLOCK_STEP:
                self._offset = candidate
        if not seen.complete or seen.concurrency:
            # A concurrency 429 says nothing about the bucket's window.
            return seen
        assert seen.limit is not None and seen.remaining is not None and seen.reset is not None
        bucket = self._bucket(key)
        if bucket.reset is None or seen.reset > bucket.reset:
            bucket.limit, bucket.remaining, bucket.reset = seen.limit, seen.remaining, seen.reset
        elif seen.reset == bucket.reset:
            # Answers overtake each other; within one window Remaining only goes down.
            bucket.limit = seen.limit
            known = bucket.remaining
            bucket.remaining = seen.remaining if known is None else min(known, seen.remaining)
        return seen

    def hold(self, key: str, until: float) -> None:
        """Keep bucket ``key`` closed until local monotonic time ``until`` (after a 429)."""
        bucket = self._bucket(key)
        bucket.held_until = max(bucket.held_until, until)
