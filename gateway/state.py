"""State shared between replicas: cache entries, failure counters, token buckets, cool-downs.

Redis (through aiocache, plus Lua scripts for the atomic parts) when configured, so a limit holds
across a fleet; a bounded in-process store otherwise, and as the fallback while Redis is away.
Keys reaching this module are already HMACs or fixed names: nothing here sees a password or a
clear username.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from aiocache import RedisCache
from aiocache.serializers import StringSerializer
from cachetools import TLRUCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# INCR that starts a fixed window on the first failure: the count and its expiry are one step.
_INCR_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""
# Token bucket on the server's clock, so replicas with skewed clocks still share one rate.
_BUCKET_SCRIPT = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or burst
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + (now - ts) / 1000 * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
"""


class StateBackend(abc.ABC):
    """The operations the gateway needs from shared state."""

    @abc.abstractmethod
    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""

    @abc.abstractmethod
    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove a key."""

    @abc.abstractmethod
    async def get_many(self, keys: list[str]) -> list[str | None]:
        """Read several keys at once (counters as decimal strings)."""

    @abc.abstractmethod
    async def incr_window(self, key: str, window: float) -> int:
        """Count one event; the count resets `window` seconds after its first event."""

    @abc.abstractmethod
    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from a bucket refilled at `rate` per second up to `burst`."""

    async def ping(self) -> None:
        """Raise when the backend cannot be reached."""

    async def close(self) -> None:
        """Release connections."""


class MemoryBackend(StateBackend):
    """Per-process state, bounded: the soonest-expiring entries go first when a store is full.

    Cache entries (keys under `CACHE_NAMESPACES`) and protection state (failure counters,
    cool-downs, buckets) live in separate stores of `max_entries` each, so a flood of cache
    entries can never push a lockout counter out.
    """

    CACHE_NAMESPACES = ("verdict:", "token:", "username:")

    def __init__(self, max_entries: int = 10_000) -> None:
        def bounded() -> TLRUCache[str, tuple[Any, float]]:
            # Values carry their own expiry, so one structure serves every TTL.
            return TLRUCache(
                maxsize=max_entries, ttu=lambda _k, v, _now: v[1], timer=time.monotonic
            )

        self._cache = bounded()
        self._protection = bounded()

    def _store(self, key: str) -> TLRUCache[str, tuple[Any, float]]:
        return self._cache if key.startswith(self.CACHE_NAMESPACES) else self._protection

    def _live(self, key: str) -> Any:
        entry = self._store(key).get(key)
        return None if entry is None else entry[0]

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        value = self._live(key)
        return value if isinstance(value, str) else None

    async def get_many(self, keys: list[str]) -> list[str | None]:
        """Read several keys at once (counters as decimal strings)."""
        values = [self._live(key) for key in keys]
        return [str(v) if isinstance(v, int) else v if isinstance(v, str) else None for v in values]

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds (short repeated values are interned)."""
        self._store(key)[key] = (
            sys.intern(value) if len(value) < 40 else value,
            time.monotonic() + ttl,
        )

    async def delete(self, key: str) -> None:
        """Remove a key."""
        self._store(key).pop(key, None)

    async def incr_window(self, key: str, window: float) -> int:
        """Count one event in a fixed window that starts with the first event."""
        store = self._store(key)
        entry = store.get(key)
        if entry is None or not isinstance(entry[0], int):
            store[key] = (1, time.monotonic() + window)
            return 1
        count = entry[0] + 1
        store[key] = (count, entry[1])
        return count

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from a bucket refilled at `rate` per second up to `burst`."""
        store = self._store(key)
        now = time.monotonic()
        entry = store.get(key)
        tokens, last = entry[0] if entry is not None else (float(burst), now)
        tokens = min(float(burst), tokens + (now - last) * rate)
        taken = tokens >= 1
        if taken:
            tokens -= 1
        store[key] = ((tokens, now), now + burst / rate + 1)
        return taken

    async def count(self, key: str) -> int:
        """Read a counter made by `incr_window` (0 when absent)."""
        value = self._live(key)
        return value if isinstance(value, int) else 0

    def __len__(self) -> int:
        return len(self._cache) + len(self._protection)


class RedisBackend(StateBackend):
    """Shared state in Redis; every key is prefixed with `key_prefix:`."""

    def __init__(self, url: str, key_prefix: str, timeout: float) -> None:
        parts = urlsplit(url)
        self._cache = RedisCache(
            serializer=StringSerializer(),
            namespace=key_prefix,
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(parts.path.lstrip("/") or 0),
            password=parts.password,
            ssl=parts.scheme == "rediss",
            timeout=None,  # socket timeouts below; aiocache's own would wrap every call in a task
            create_connection_timeout=timeout,
            connection_pool_kwargs={"socket_timeout": timeout},
        )
        self._prefix = key_prefix
        client = self._cache.client
        self._incr = client.register_script(_INCR_WINDOW)
        self._take = client.register_script(_BUCKET_SCRIPT)

    def _key(self, key: str) -> str:
        return str(self._cache.build_key(key))

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        value = await self._cache.get(key)
        return value if isinstance(value, str) else None

    async def get_many(self, keys: list[str]) -> list[str | None]:
        """Read several keys in one round trip (MGET)."""
        raw = await self._cache.client.mget([self._key(key) for key in keys])
        return [None if v is None else v.decode("utf-8", "replace") for v in raw]

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""
        await self._cache.set(key, value, ttl=ttl)

    async def delete(self, key: str) -> None:
        """Remove a key."""
        await self._cache.delete(key)

    async def incr_window(self, key: str, window: float) -> int:
        """Count one event atomically (one Lua script) in a window started by the first event."""
        return int(await self._incr(keys=[self._key(key)], args=[max(1, int(window * 1000))]))

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token atomically across replicas."""
        return bool(await self._take(keys=[self._key(key)], args=[rate, burst]))

    async def count(self, key: str) -> int:
        """Read a counter made by `incr_window` (0 when absent)."""
        raw = await self._cache.client.get(self._key(key))
        return int(raw) if raw is not None else 0

    async def ping(self) -> None:
        """Raise when Redis does not answer."""
        await self._cache.client.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._cache.close()


_REDIS_TROUBLE = (RedisError, OSError, asyncio.TimeoutError)
# Values a request prefetched (`SharedState.prefetch`), per task.
_SNAPSHOT: ContextVar[dict[str, str | None] | None] = ContextVar("state_snapshot", default=None)


def _remember(key: str, value: str | None) -> None:
    snapshot = _SNAPSHOT.get()
    if snapshot is not None and key in snapshot:
        snapshot[key] = value


class SharedState(StateBackend):
    """Redis when it answers, the in-process store when it does not; recovers by itself."""

    def __init__(
        self,
        redis: RedisBackend | None,
        memory: MemoryBackend,
        on_redis_change: Any = None,
        probe_interval: float = 1.0,
    ) -> None:
        self.redis = redis
        self.memory = memory
        self.redis_up = redis is not None
        self._on_change = on_redis_change or (lambda up: None)
        self._probe_interval = probe_interval
        self._probe: asyncio.Task[None] | None = None

    @property
    def backend_name(self) -> str:
        """`redis`, `memory`, or `memory (redis unavailable)` for /readyz."""
        if self.redis is None:
            return "memory"
        return "redis" if self.redis_up else "memory (redis unavailable)"

    async def start(self) -> None:
        """Check Redis once so /readyz and the metric are right from the first second."""
        if self.redis is None:
            return
        try:
            await self.redis.ping()
        except _REDIS_TROUBLE as err:
            self._down(err)
        else:
            self._on_change(True)

    async def _call(self, method: str, *args: Any) -> Any:
        if self.redis is not None and self.redis_up:
            try:
                return await getattr(self.redis, method)(*args)
            except _REDIS_TROUBLE as err:
                self._down(err)
        return await getattr(self.memory, method)(*args)

    def _down(self, err: BaseException) -> None:
        if self.redis_up or self._probe is None:
            logger.error(
                "redis unavailable; using per-process cache and limits until it returns",
                extra={"error": type(err).__name__},
            )
        self.redis_up = False
        self._on_change(False)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        assert self.redis is not None
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self.redis.ping()
            except _REDIS_TROUBLE:
                continue
            self.redis_up = True
            self._on_change(True)
            logger.warning("redis is back; shared cache and limits restored")
            return

    async def prefetch(self, keys: list[str]) -> None:
        """Read the keys this request will need in one round trip; later reads of them are free.

        The snapshot belongs to the current task (a context variable), and this request's own
        writes keep it current.
        """
        values: list[str | None] = await self._call("get_many", keys)
        _SNAPSHOT.set(dict(zip(keys, values, strict=True)))

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        snapshot = _SNAPSHOT.get()
        if snapshot is not None and key in snapshot:
            return snapshot[key]
        value: str | None = await self._call("get", key)
        return value

    async def get_many(self, keys: list[str]) -> list[str | None]:
        """Read several keys at once."""
        values: list[str | None] = await self._call("get_many", keys)
        return values

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""
        await self._call("set", key, value, ttl)
        _remember(key, value)

    async def delete(self, key: str) -> None:
        """Remove a key."""
        await self._call("delete", key)
        _remember(key, None)

    async def incr_window(self, key: str, window: float) -> int:
        """Count one event in a window started by the first event."""
        count: int = await self._call("incr_window", key, window)
        _remember(key, str(count))
        return count

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from a bucket."""
        taken: bool = await self._call("take_token", key, rate, burst)
        return taken

    async def count(self, key: str) -> int:
        """Read a counter (0 when absent)."""
        snapshot = _SNAPSHOT.get()
        if snapshot is not None and key in snapshot:
            raw = snapshot[key]
            return int(raw) if raw is not None and raw.isdigit() else 0
        value: int = await self._call("count", key)
        return value

    async def close(self) -> None:
        """Stop probing and close Redis connections."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.redis is not None:
            await self.redis.close()


class Namespace:
    """A view of shared state whose keys all start with `<name>:`; one per user of the cache."""

    def __init__(self, state: SharedState, name: str) -> None:
        self._state = state
        self._prefix = f"{name}:"

    def full_key(self, key: str) -> str:
        """The key as the shared state sees it (for `SharedState.prefetch`)."""
        return self._prefix + key

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        return await self._state.get(self._prefix + key)

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""
        await self._state.set(self._prefix + key, value, ttl)

    async def delete(self, key: str) -> None:
        """Remove a key."""
        await self._state.delete(self._prefix + key)

    async def incr_window(self, key: str, window: float) -> int:
        """Count one event in a window started by the first event."""
        return await self._state.incr_window(self._prefix + key, window)

    async def count(self, key: str) -> int:
        """Read a counter (0 when absent)."""
        return await self._state.count(self._prefix + key)

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from a bucket."""
        return await self._state.take_token(self._prefix + key, rate, burst)


class MeteredNamespace(Namespace):
    """A namespace whose lookups are counted (gateway_cache_requests_total)."""

    def __init__(self, state: SharedState, name: str, on_lookup: Callable[[bool], None]) -> None:
        super().__init__(state, name)
        self._on_lookup = on_lookup

    async def get(self, key: str) -> str | None:
        """Return a value, or None; count a hit or a miss."""
        value = await super().get(key)
        self._on_lookup(value is not None)
        return value
