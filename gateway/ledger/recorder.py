"""Hook decisions into the ledger without touching the hook's latency.

The password hook answers Okta within its budget; a database write on that path would add its
latency, and its outages, to every sign-in. `DecisionRecorder.put` only appends to a bounded
in-memory queue (no await, no I/O); a background task writes what is queued, in batches of at
most `batch_size`, as soon as a batch is full or `flush_seconds` after the last write. When the queue is full
(the database is slow or away) new decisions are dropped and counted: losing a "verified, not yet
confirmed" mark costs nothing that an event or `status --refresh` does not restore, while
unbounded memory would cost the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from gateway.ledger.models import Decision

logger = logging.getLogger(__name__)


class DecisionSink(Protocol):
    """Where batches of decisions go: `Ledger.record_decisions`."""

    async def record_decisions(self, decisions: Sequence[Decision]) -> None:
        """Write one batch."""


class DecisionRecorder:
    """A bounded, batching, non-blocking queue of hook decisions in front of the ledger."""

    def __init__(
        self,
        sink: DecisionSink,
        *,
        batch_size: int = 500,
        flush_seconds: float = 1.0,
        max_queued: int = 50_000,
    ) -> None:
        """Queue at most `max_queued` decisions; write every `batch_size` or `flush_seconds`."""
        if batch_size < 1 or max_queued < batch_size or flush_seconds <= 0:
            raise ValueError("need batch_size >= 1, max_queued >= batch_size, flush_seconds > 0")
        self._sink = sink
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._max_queued = max_queued
        self._queue: deque[Decision] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.recorded = 0  # decisions written to the ledger
        self.dropped = 0  # decisions refused because the queue was full (or after close)
        self.failed_writes = 0  # batch writes that raised (the batch is retried)

    @property
    def queued(self) -> int:
        """Decisions waiting to be written."""
        return len(self._queue)

    def start(self) -> None:
        """Start the background writer (on the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="ledger-decision-recorder"
            )

    def put(self, decision: Decision) -> bool:
        """Queue a decision without waiting; False (and counted) when it had to be dropped."""
        if self._closing or len(self._queue) >= self._max_queued:
            self.dropped += 1
            return False
        self._queue.append(decision)
        if len(self._queue) >= self._batch_size:
            self._wake.set()
        return True

    async def close(self) -> None:
        """Write everything still queued, then stop; later `put`s are dropped."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        else:
            await self._drain()

    async def abandon(self) -> int:
        """Stop without writing (the ledger never opened); how many decisions were dropped."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        lost = len(self._queue)
        self._queue.clear()
        self.dropped += lost
        return lost

    async def _run(self) -> None:
        """Write a batch whenever one is full or `flush_seconds` passed, until closed."""
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            if not await self._write_batches():
                # Back off: a full queue wakes the writer on every put, and a ledger that is
                # down must not be hammered by retries.
                await asyncio.sleep(self._flush_seconds)
        await self._drain()

    async def _drain(self, attempts: int = 3) -> None:
        """On close: write until the queue is empty or the ledger failed `attempts` times."""
        for attempt in range(attempts):
            if await self._write_batches():
                return
            if attempt + 1 < attempts:
                await asyncio.sleep(self._flush_seconds)
        lost = len(self._queue)
        self._queue.clear()
        self.dropped += lost
        logger.error(
            "ledger decisions lost on close: the ledger did not accept them",
            extra={"decisions": lost},
        )

    async def _write_batches(self) -> bool:
        """Write every full batch, then what is left; False if a write failed."""
        while self._queue:
            batch = list(itertools.islice(self._queue, self._batch_size))
            try:
                await self._sink.record_decisions(batch)
            except Exception as err:  # noqa: BLE001 - any ledger failure: keep the batch, retry later
                self.failed_writes += 1
                # Only the type: a database error's text can quote the statement's parameters,
                # which hold usernames.
                logger.warning(
                    "ledger decisions not written; retrying",
                    extra={"decisions": len(batch), "error": type(err).__name__},
                )
                return False
            # Remove only what was written: puts made meanwhile stay queued behind it.
            for _ in batch:
                self._queue.popleft()
            self.recorded += len(batch)
        return True
