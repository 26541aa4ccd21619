"""When and how long to wait before sending a request again, and how many retries a client may spend.

* A 429 waits ``X-Rate-Limit-Reset - Date + 1`` seconds, both from Okta's answer (the formula of
  Okta's own SDKs, reference/okta-hooks.md §2.6), so a skewed local clock does not matter.
* Other transient failures wait a jittered exponential backoff, so clients that failed together
  do not come back together.
* A ``RetryBudget`` caps retries per client, not per call: every call earns a fraction of a
  retry, every retry spends one. During an outage the client then sends at most ``1 + ratio``
  requests per call instead of ``1 + max_retries`` (the token-bucket retry budget of gRPC and
  Finagle), and calls fail fast with a clear error instead of piling up.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = [
    "MAX_RATE_LIMIT_WAIT",
    "RateHeaders",
    "RetryBudget",
    "backoff_seconds",
    "rate_headers",
]

# Okta's windows last about 60 s: a bogus Reset must not stall a run for longer.
MAX_RATE_LIMIT_WAIT: Final = 120.0


class RetryBudget:
    """A token bucket of retries: ``reserve`` to start with, ``ratio`` earned per call."""

    def __init__(self, ratio: float = 0.2, reserve: float = 20.0) -> None:
        if ratio < 0 or reserve < 0:
            raise ValueError("retry budget ratio and reserve must be >= 0")
        self.ratio = ratio
        self.capacity = reserve
        self.tokens = reserve

    def deposit(self) -> None:
        """A new call (not a retry) was made."""
        self.tokens = min(self.capacity, self.tokens + self.ratio)

    def withdraw(self) -> bool:
        """Spend one retry; False when the budget is empty (the caller must not retry)."""
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def backoff_seconds(
    attempt: int, rng: random.Random, *, base: float = 0.5, cap: float = 30.0
) -> float:
    """Exponential backoff with equal jitter for the retry after failed ``attempt`` (1, 2, ...)."""
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RateHeaders:
    """``X-Rate-Limit-Limit/-Remaining/-Reset`` and ``Date`` of one answer (None when absent)."""

    __slots__ = ("date", "limit", "remaining", "reset")

    def __init__(
        self, limit: int | None, remaining: int | None, reset: int | None, date: float | None
    ) -> None:
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        self.date = date

    @property
    def complete(self) -> bool:
        """All three rate-limit headers were present."""
        return None not in (self.limit, self.remaining, self.reset)

    @property
    def concurrency(self) -> bool:
        """A concurrency 429's marker: Limit 0 and Remaining 0 (its Reset is only an estimate)."""
        return self.limit == 0 and self.remaining == 0

    def retry_wait(self) -> float | None:
        """``Reset - Date + 1`` (capped), or None when either header is missing."""
        if self.reset is None or self.date is None:
            return None
        return min(max(self.reset - self.date, 0.0) + 1.0, MAX_RATE_LIMIT_WAIT)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header; Okta may repeat one, in which case the smallest value is the safe one."""
    getall = getattr(headers, "getall", None)
    raw = getall(name, []) if getall is not None else [headers.get(name)]
    values = []
    for item in raw:
        try:
            values.append(int(str(item).strip()))
        except (TypeError, ValueError):
            continue
    return min(values) if values else None


def rate_headers(headers: Mapping[str, str]) -> RateHeaders:
    """Parse the rate-limit headers and ``Date`` (epoch seconds) of an answer."""
    date: float | None = None
    raw_date = headers.get("Date")
    if raw_date:
        try:
            date = parsedate_to_datetime(raw_date).timestamp()
        except (TypeError, ValueError, IndexError):
            date = None
    return RateHeaders(
        _int_header(headers, "X-Rate-Limit-Limit"),
        _int_header(headers, "X-Rate-Limit-Remaining"),
        _int_header(headers, "X-Rate-Limit-Reset"),
        date,
    )
