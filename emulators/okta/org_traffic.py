"""The org's traffic settings: injected faults, latency, per-bucket limits, the concurrency cap."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from emulators.okta.limits import FaultMode, FaultPlan, RateLimiter

__all__ = ["OrgTraffic"]


class OrgTraffic:
    """What ``/_emulator/fault`` and ``/_emulator/limits`` change (``gate`` applies it)."""

    fault: FaultPlan
    latency_ms: int
    limiter: RateLimiter
    concurrency_limit: int | None

    def set_fault(
        self,
        mode: FaultMode,
        rate: float = 1.0,
        retry_after: int = 1,
        buckets: Iterable[str] = (),
        latency_ms: int | None = None,
    ) -> None:
        """Inject an outage on API requests; ``latency_ms=None`` keeps the current latency."""
        self.fault = FaultPlan.build(mode, rate, retry_after, buckets)
        if latency_ms is not None:
            if latency_ms < 0:
                raise ValueError("latency_ms must be >= 0")
            self.latency_ms = latency_ms

    def set_limits(
        self,
        limits: dict[str, int | None],
        *,
        concurrency_limit: int | Literal["keep"] | None = "keep",
    ) -> None:
        """Change per-bucket per-minute limits (None = unlimited) and optionally the concurrency cap."""
        self.limiter.set_limits(limits)
        if concurrency_limit != "keep":
            if concurrency_limit is not None and concurrency_limit < 1:
                raise ValueError("concurrency_limit must be >= 1 or None")
            self.concurrency_limit = concurrency_limit
