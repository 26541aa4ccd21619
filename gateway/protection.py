"""What keeps the directory safe: verdict cache, single flight, failure limits, source guards.

Every key is an HMAC-SHA256 under `cache.hmac_secret` (or a per-process secret with the memory
backend), so neither Redis nor memory holds a clear username, IP or password.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from gateway.config import CircuitBreakerConfig, CooldownConfig, FailureLimit, SourceLimits
from gateway.metrics import GatewayMetrics
from gateway.state import Namespace
from plugins.base import Result, Verdict, derive_key

logger = logging.getLogger(__name__)


def normalise_username(username: str) -> str:
    """Compare usernames the way directories do: case-insensitive, Unicode-normalised, trimmed."""
    return unicodedata.normalize("NFC", username.strip()).casefold()


class KeyMaker:
    """Derives opaque keys from credentials; equal inputs give equal keys on every replica."""

    def __init__(self, secret: bytes | None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def __call__(self, kind: str, *parts: str) -> str:
        """An opaque key for `kind` and the parts (see `plugins.base.derive_key`)."""
        # 128 bits are ample for cache keys and halve what every entry costs in memory.
        return derive_key(self._secret, kind, *parts)[:16].hex()


@dataclass(frozen=True, slots=True)
class CachedVerdictPolicy:
    """How long each kind of answer may be reused."""

    verified_ttl: float
    denied_ttl: float


class VerdictCache:
    """Remembers definitive answers (never `unavailable`) so a repeat costs no upstream call."""

    def __init__(
        self, store: Namespace, policy: CachedVerdictPolicy, metrics: GatewayMetrics
    ) -> None:
        self._store = store
        self._policy = policy
        self._metrics = metrics

    def full_key(self, key: str) -> str:
        """Where the verdict for `key` lives in the shared state."""
        return self._store.full_key(key)

    async def get(self, key: str, source: str) -> Verdict | None:
        """A cached verdict for this credential key, or None."""
        raw = await self._store.get(key)
        self._metrics.cache_requests.labels(cache="verdict", result="hit" if raw else "miss").inc()
        if not raw:
            return None
        result, _, reason = raw.partition("|")
        return Verdict(Result(result), source, reason, unknown_user=reason == "unknown_user")

    async def put(self, key: str, verdict: Verdict) -> None:
        """Store a verified or denied verdict for its TTL."""
        if verdict.result is Result.VERIFIED:
            ttl = self._policy.verified_ttl
        elif verdict.result is Result.DENIED:
            ttl = self._policy.denied_ttl
        else:
            return
        if ttl > 0:
            reason = "unknown_user" if verdict.unknown_user else verdict.reason
            await self._store.set(key, f"{verdict.result.value}|{reason}", ttl)


class SingleFlight:
    """Identical requests in flight at the same time share one upstream call (Okta retries)."""

    def __init__(self) -> None:
        self._calls: dict[str, asyncio.Future[Verdict]] = {}

    async def run(self, key: str, call: Callable[[], Awaitable[Verdict]]) -> tuple[Verdict, bool]:
        """Run `call` unless an identical one is running; True when this caller made the call."""
        running = self._calls.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running), False
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The first caller was cancelled (shutdown, client gone): ask for ourselves.
            return await self.run(key, call)
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        try:
            verdict = await call()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(verdict)
            return verdict, True
        finally:
            del self._calls[key]


class FailureLimiter:
    """Refuses a key (username or client IP) after too many failures in a window."""

    def __init__(self, store: Namespace, limit: FailureLimit | None) -> None:
        self._store = store
        self._limit = limit

    def keys_to_read(self, key: str) -> list[str]:
        """What `exceeded` will read (nothing when the limit is off)."""
        return [] if self._limit is None else [self._store.full_key(key)]

    async def exceeded(self, key: str) -> bool:
        """True when the key has used up its failures for the current window."""
        if self._limit is None:
            return False
        return await self._store.count(key) >= self._limit.failures

    async def failed(self, key: str) -> None:
        """Count one failure."""
        if self._limit is not None:
            await self._store.incr_window(key, self._limit.window_seconds)

    async def reset(self, key: str) -> None:
        """Forget failures (after a verified sign-in); no write when there were none."""
        if self._limit is not None and await self._store.count(key) > 0:
            await self._store.delete(key)


class CircuitState(IntEnum):
    """Values of `gateway_source_circuit_state`."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Per process: after N consecutive unavailable answers, fail fast for T seconds, then probe."""

    def __init__(
        self, config: CircuitBreakerConfig | None, on_change: Callable[[int], None]
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.state = CircuitState.CLOSED

    def _set(self, state: CircuitState) -> None:
        if state is not self.state:
            self.state = state
            self._on_change(int(state))

    def allow(self) -> bool:
        """Whether a call may go upstream now (one probe at a time when half-open)."""
        if self._config is None or self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN:
            if time.monotonic() - self._opened_at < self._config.open_seconds:
                return False
            self._set(CircuitState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def record(self, available: bool) -> None:
        """Feed the outcome of an upstream call."""
        if self._config is None:
            return
        self._probing = False
        if available:
            self._failures = 0
            self._set(CircuitState.CLOSED)
            return
        self._failures += 1
        if self.state is CircuitState.HALF_OPEN or self._failures >= self._config.failures:
            self._opened_at = time.monotonic()
            if self.state is not CircuitState.OPEN:
                logger.warning("circuit opened: source answers unavailable until a probe succeeds")
            self._set(CircuitState.OPEN)


class SourceGuard:
    """One source's protection: cool-downs, circuit breaker, rate bucket, concurrency cap."""

    def __init__(
        self,
        name: str,
        store: Namespace,
        limits: SourceLimits,
        cooldown: CooldownConfig,
        breaker: CircuitBreakerConfig | None,
        metrics: GatewayMetrics,
    ) -> None:
        self.name = name
        self._store = store
        self._limits = limits
        self._cooldown = cooldown
        self._metrics = metrics
        self.concurrency = asyncio.Semaphore(limits.max_concurrency)
        self.breaker = CircuitBreaker(
            breaker, lambda state: metrics.circuit_state.labels(source=name).set(state)
        )

    def keys_to_read(self, user_key: str) -> list[str]:
        """The cool-down flags `refusal` will read."""
        return [self._store.full_key("source"), self._store.full_key(f"user:{user_key}")]

    async def refusal(self, user_key: str) -> str | None:
        """A reason to answer without calling the directory, or None to go ahead."""
        if await self._store.get("source") or await self._store.get(f"user:{user_key}"):
            return "source_cooldown"
        limits = self._limits
        if limits.rate_per_second is not None:
            burst = limits.burst or max(1, round(limits.rate_per_second))
            if not await self._store.take_token("bucket", limits.rate_per_second, burst):
                self._metrics.rate_limited.labels(limit="source").inc()
                return "rate_limited_source"
        if not self.breaker.allow():  # last: a half-open probe slot must lead to a call
            return "circuit_open"
        return None

    async def record(self, verdict: Verdict, user_key: str) -> None:
        """Learn from an upstream answer: breaker state and requested back-off."""
        self.breaker.record(verdict.result is not Result.UNAVAILABLE)
        if verdict.throttle is None:
            return
        cooldown = self._cooldown
        default = cooldown.user_seconds if verdict.throttle == "user" else cooldown.source_seconds
        seconds = min(verdict.retry_after or default, cooldown.max_seconds)
        key = "source" if verdict.throttle == "source" else f"user:{user_key}"
        await self._store.set(key, "1", seconds)
        logger.warning(
            "directory asked to back off",
            extra={"source": self.name, "scope": verdict.throttle, "seconds": seconds,
                   "reason": verdict.reason},
        )  # fmt: skip
