"""Okta's per-bucket rate limits, its concurrency limit, and injected faults.

Buckets and default per-minute limits follow the historical management table in
reference/okta-hooks.md §2.6 (Workforce column); the ones marked UNCONFIRMED are the emulator's
choice where Okta publishes no figure (today the numbers live in each org's Rate Limits report).
Windows last 60 s from the first request that opens them (Okta's windows are not aligned to
wall-clock minutes); ``X-Rate-Limit-Reset`` is the window's end in UTC epoch seconds.

A concurrency 429 carries ``X-Rate-Limit-Limit: 0`` and ``X-Rate-Limit-Remaining: 0`` (as Okta
sends it) and a Reset one second ahead, an estimate as Okta's is.

Injected faults are deterministic: with ``rate=0.25`` exactly every fourth eligible request
fails, so tests can count what a client had to survive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "BUCKETS",
    "DEFAULT_LIMITS",
    "FaultMode",
    "FaultPlan",
    "RateLimitState",
    "RateLimiter",
    "bucket_for",
]

WINDOW_SECONDS: Final = 60.0
DEFAULT_LIMITS: Final[dict[str, int | None]] = {
    "users_collection": 600,  # GET/POST /api/v1/users (create and list)
    "user_write": 600,  # POST/PUT/DELETE /api/v1/users/{id}
    "user_get": 2000,  # GET /api/v1/users/{idOrLogin}
    "user_lifecycle": 600,  # /api/v1/users/{id}/lifecycle/*, /groups - UNCONFIRMED (/api/v1/users*)
    "groups": 500,  # /api/v1/groups* - UNCONFIRMED
    "hooks": 100,  # /api/v1/inlineHooks*, /api/v1/eventHooks* - UNCONFIRMED
    "logs": 120,  # GET /api/v1/logs - UNCONFIRMED (the figure Okta long published for it)
    "oauth2_token": 600,  # /oauth2/v1/token - UNCONFIRMED
    "authn": 600,  # POST /api/v1/authn, org-wide - UNCONFIRMED (Okta also limits per username)
}
BUCKETS: Final = tuple(DEFAULT_LIMITS)

FaultMode = Literal["none", "http_429", "http_500", "http_503", "http_504", "hang"]


def bucket_for(method: str, path: str) -> str | None:
    """The rate-limit bucket of an API request (longest match, as Okta assigns them); None if exempt."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["oauth2", "v1"] and parts[2:] == ["token"]:
        return "oauth2_token"
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        return None
    family = parts[2]
    if family == "authn":
        return "authn"
    if family == "users":
        if len(parts) == 3:
            return "users_collection"
        if len(parts) == 4:
            return "user_get" if method == "GET" else "user_write"
        return "user_lifecycle"
    if family == "groups":
        return "groups"
    if family in ("inlineHooks", "eventHooks"):
        return "hooks"
    if family == "logs":
        return "logs"
    return None


@dataclass(slots=True)
class RateLimitState:
    """What to put in the ``X-Rate-Limit-*`` headers after counting one request."""

    limit: int
    remaining: int
    reset: int
    exceeded: bool

    def headers(self) -> dict[str, str]:
        """The three headers Okta sends on every response."""
        return {
            "X-Rate-Limit-Limit": str(self.limit),
            "X-Rate-Limit-Remaining": str(self.remaining),
            "X-Rate-Limit-Reset": str(self.reset),
        }


@dataclass(slots=True)
class _Window:
    """One bucket's current window."""

    start: float
    count: int = 0


class RateLimiter:
    """Fixed 60-second windows per bucket, on an injectable clock."""

    def __init__(
        self, limits: dict[str, int | None] | None = None, *, clock: Callable[[], float]
    ) -> None:
        self.clock = clock
        self.limits: dict[str, int | None] = dict(DEFAULT_LIMITS)
        self.set_limits(limits or {})
        self._windows: dict[str, _Window] = {}

    def set_limits(self, limits: dict[str, int | None]) -> None:
        """Change some buckets' per-minute limits (None = unlimited); unknown buckets are refused."""
        unknown = set(limits) - set(BUCKETS)
        if unknown:
            raise ValueError(f"unknown rate-limit bucket(s) {sorted(unknown)}; known: {BUCKETS}")
        for name, value in limits.items():
            if value is not None and value < 1:
                raise ValueError(f"rate limit for {name} must be >= 1 or null")
        self.limits.update(limits)

    def reset(self) -> None:
        """Forget every window (all buckets full again)."""
        self._windows.clear()

    def hit(self, bucket: str) -> RateLimitState:
        """Count one request in ``bucket``; ``exceeded`` means answer 429 (it is still counted)."""
        now = self.clock()
        limit = self.limits.get(bucket)
        window = self._windows.get(bucket)
        if window is None or now >= window.start + WINDOW_SECONDS:
            window = self._windows[bucket] = _Window(start=now)
        window.count += 1
        reset = math.ceil(window.start + WINDOW_SECONDS)
        if limit is None:
            # Unlimited buckets still send headers, as a generous bucket would.
            return RateLimitState(limit=1_000_000, remaining=1_000_000, reset=reset, exceeded=False)
        return RateLimitState(
            limit=limit,
            remaining=max(limit - window.count, 0),
            reset=reset,
            exceeded=window.count > limit,
        )

    def peek(self, bucket: str) -> RateLimitState:
        """The bucket's state without counting a request (for concurrency 429s and faults)."""
        now = self.clock()
        limit = self.limits.get(bucket)
        window = self._windows.get(bucket)
        if window is None or now >= window.start + WINDOW_SECONDS:
            used, reset = 0, math.ceil(now + WINDOW_SECONDS)
        else:
            used, reset = window.count, math.ceil(window.start + WINDOW_SECONDS)
        if limit is None:
            return RateLimitState(limit=1_000_000, remaining=1_000_000, reset=reset, exceeded=False)
        return RateLimitState(limit, max(limit - used, 0), reset, used >= limit)


@dataclass(slots=True)
class FaultPlan:
    """An injected outage: which answer, how often, on which buckets."""

    mode: FaultMode = "none"
    rate: float = 1.0  # fraction of eligible requests that fail, spread evenly
    retry_after: int = 1  # seconds to the Reset header of an injected 429
    buckets: frozenset[str] = field(default_factory=frozenset)  # empty = every API bucket
    _credit: float = 0.0

    def __post_init__(self) -> None:
        """Refuse a rate outside [0, 1] or an unknown bucket."""
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        unknown = set(self.buckets) - set(BUCKETS)
        if unknown:
            raise ValueError(f"unknown rate-limit bucket(s) {sorted(unknown)}; known: {BUCKETS}")

    @classmethod
    def build(
        cls,
        mode: FaultMode,
        rate: float = 1.0,
        retry_after: int = 1,
        buckets: Iterable[str] = (),
    ) -> FaultPlan:
        """A plan from plain arguments (validated)."""
        return cls(mode=mode, rate=rate, retry_after=retry_after, buckets=frozenset(buckets))

    def strikes(self, bucket: str) -> bool:
        """Whether this request fails; every 1/rate-th eligible request does, deterministically."""
        if self.mode == "none" or (self.buckets and bucket not in self.buckets):
            return False
        self._credit += self.rate
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False

    def to_json(self) -> dict[str, object]:
        """The plan as ``GET /_emulator/fault`` shows it."""
        return {
            "mode": self.mode,
            "rate": self.rate,
            "retry_after": self.retry_after,
            "buckets": sorted(self.buckets),
        }
