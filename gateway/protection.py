"""What keeps the directory safe: verdict cache, single flight, attempt limits, source guards.

Every key is an HMAC-SHA256 under `cache.hmac_secret` (or a per-process secret with the memory
backend), so neither Redis nor memory holds a clear username, IP or password.

Keys have two rules (DESIGN "Keys"): a cached verdict is keyed by the exact username sent
upstream, never normalised, so two users can never share a verdict; a limiter key may be widened
(case-folded, NFKC) because that only makes a limit stricter.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from gateway.config import (
    CircuitBreakerConfig,
    CooldownConfig,
    RateLimitsConfig,
    SourceLimits,
)
from gateway.metrics import GatewayMetrics
from gateway.state import Namespace, ProtectionStore, Window
from plugins.base import Result, Verdict, derive_key

logger = logging.getLogger(__name__)


def limiter_username(username: str) -> str:
    """Widen a username for limiter keys only: trimmed, NFKC, case-folded.

    `Alice`, `ALICE`, the Kelvin sign and fullwidth forms all share one failure budget, which
    can only make a limit stricter. Never use this for a cache key.
    """
    return unicodedata.normalize("NFKC", username.strip()).casefold()


UNKNOWN_IP = "unknown"


def limiter_ip(client_ip: str | None) -> str:
    """The IP limiter key: IPv4 as is, IPv6 per /64, anything missing or unparsable shared.

    One host holds a whole /64 (SLAAC, privacy addresses), so per-address IPv6 keys would give
    an attacker 2^64 budgets. A request without a usable `ipAddress` shares one "unknown" budget.
    """
    if not client_ip:
        return UNKNOWN_IP
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return UNKNOWN_IP
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


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

    async def read(self, keys: Sequence[str]) -> list[str | None]:
        """Fetch the raw entries for several credential keys at once (one MGET with Redis)."""
        return await self._store.get_many(keys)

    def verdict(self, raw: str | None, source: str) -> Verdict | None:
        """Turn a raw entry into a verdict, counting the hit or miss."""
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


class AttemptLimits:
    """The sliding windows a directory call must reserve a slot in: per username, per IP."""

    def __init__(self, limits: RateLimitsConfig) -> None:
        self._per_username = limits.per_username
        self._per_ip = limits.per_ip

    def windows(self, user_key: str, ip_key: str) -> tuple[Window, ...]:
        """The windows for one request (none for a limit that is off)."""
        windows = []
        if self._per_username is not None:
            limit = self._per_username
            windows.append(
                Window("username", f"fail-user:{user_key}", limit.failures, limit.window_seconds)
            )
        if self._per_ip is not None:
            limit = self._per_ip
            windows.append(Window("ip", f"fail-ip:{ip_key}", limit.failures, limit.window_seconds))
        return tuple(windows)

    def account_window(self, account_key: str) -> Window | None:
        """The per-username window for an account a source found (None when the limit is off).

        The same budget as a typed username's, so all the names of one account share one.
        """
        limit = self._per_username
        if limit is None:
            return None
        return Window("username", f"fail-user:{account_key}", limit.failures, limit.window_seconds)


class CircuitState(IntEnum):
    """Values of `gateway_source_circuit_state`."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Per process: fail fast for T seconds after an outage seen by several users, then probe.

    It opens after `failures` consecutive outage answers that came from at least
    `distinct_users` different usernames, so one client, one username or one request's content
    cannot open it for everyone. Answers that are neither success nor outage leave it as it is.
    """

    def __init__(
        self, name: str, config: CircuitBreakerConfig | None, on_change: Callable[[int], None]
    ) -> None:
        self.name = name
        self._config = config
        self._on_change = on_change
        # Users behind the current run of consecutive outage answers (only the last N matter).
        self._outage_users: deque[str] = deque(maxlen=config.failures if config else 1)
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

    def record(self, outcome: Literal["success", "outage", "neutral"], user_key: str) -> None:
        """Feed the outcome of an upstream call made for `user_key`."""
        config = self._config
        if config is None:
            return
        self._probing = False
        if outcome == "success":
            self._outage_users.clear()
            if self.state is not CircuitState.CLOSED:
                logger.warning("circuit closed: a probe succeeded", extra={"source": self.name})
            self._set(CircuitState.CLOSED)
            return
        if outcome == "neutral":
            return
        self._outage_users.append(user_key)
        enough = (
            len(self._outage_users) >= config.failures
            and len(set(self._outage_users)) >= config.distinct_users
        )
        if self.state is CircuitState.HALF_OPEN or enough:
            self._opened_at = time.monotonic()
            if self.state is not CircuitState.OPEN:
                logger.warning(
                    "circuit opened: source answers unavailable until a probe succeeds",
                    extra={"source": self.name, "open_seconds": config.open_seconds},
                )
            self._set(CircuitState.OPEN)


class SourceGuard:
    """One source's protection: cool-downs, rate bucket, concurrency cap, circuit breaker."""

    def __init__(
        self,
        name: str,
        store: ProtectionStore,
        limits: SourceLimits,
        cooldown: CooldownConfig,
        breaker: CircuitBreakerConfig | None,
        metrics: GatewayMetrics,
    ) -> None:
        self.name = name
        self._store = store
        self._limits = limits
        self._cooldown = cooldown
        self._breaker_config = breaker
        self._metrics = metrics
        self.concurrency = asyncio.Semaphore(limits.max_concurrency)
        self.breaker = CircuitBreaker(
            name, breaker, lambda state: metrics.circuit_state.labels(source=name).set(state)
        )

    def same_settings(
        self, limits: SourceLimits, cooldown: CooldownConfig, breaker: CircuitBreakerConfig | None
    ) -> bool:
        """Whether this guard already enforces these settings (then a reload keeps it)."""
        return (limits, cooldown, breaker) == (self._limits, self._cooldown, self._breaker_config)

    def cooldown_flags(self, user_key: str) -> tuple[str, str]:
        """The flags that stop calls: for the whole source, and for this user at this source."""
        return f"cool:{self.name}", f"cool:{self.name}:{user_key}"

    async def refusal(self) -> tuple[str, str] | None:
        """(reason, limit label) to answer without calling the directory, or None to go ahead.

        Run after the cool-down check (`ProtectionStore.admit`). The breaker comes last: a
        half-open probe slot must lead to a call.
        """
        limits = self._limits
        if limits.rate_per_second is not None:
            burst = limits.burst or max(1, round(limits.rate_per_second))
            if not await self._store.take_token(
                f"bucket:{self.name}", limits.rate_per_second, burst
            ):
                return "rate_limited_source", "source"
        if self.concurrency.locked():
            # Local overload, not the directory's: answered at once, never fed to the breaker.
            return "source_busy", "busy"
        if not self.breaker.allow():
            return "circuit_open", "circuit"
        return None

    async def record(self, verdict: Verdict, user_key: str, outage: bool) -> None:
        """Learn from an upstream answer: breaker state and requested back-off."""
        if verdict.result is not Result.UNAVAILABLE:
            self.breaker.record("success", user_key)
        else:
            self.breaker.record("outage" if outage else "neutral", user_key)
        if verdict.throttle is None:
            return
        cooldown = self._cooldown
        default = cooldown.user_seconds if verdict.throttle == "user" else cooldown.source_seconds
        seconds = min(verdict.retry_after or default, cooldown.max_seconds)
        source_flag, user_flag = self.cooldown_flags(user_key)
        await self._store.set_flag(
            source_flag if verdict.throttle == "source" else user_flag, seconds
        )
        logger.warning(
            "directory asked to back off",
            extra={"source": self.name, "scope": verdict.throttle, "seconds": seconds,
                   "reason": verdict.reason},
        )  # fmt: skip
