"""State shared between replicas: a cache that may forget, and protection state that may not.

Two concerns, two protocols, each with a memory and a Redis implementation:

- `CacheStore`: plain get/set with a TTL (verdicts, tokens, resolved usernames). A miss only
  costs an upstream call, so the memory implementation evicts when full. Redis through aiocache.
- `ProtectionStore`: sliding-window attempt reservations, cool-down flags and token buckets. A
  forgotten counter would let an attacker past a lockout limit, so the memory implementation
  never evicts a live entry; when full it refuses new keys (the caller fails closed). Redis
  through redis.asyncio and Lua scripts, so each operation is atomic across replicas.

`FallbackCache` and `FallbackProtection` use Redis while it answers and the memory stores while it
does not (one `RedisHealth` watches it for both). While Redis is away each replica allows its
share of what Redis last showed it was left, `(failures - seen) // fallback_replicas`, and when
Redis returns it writes its own reservations back (`gateway.reservations`).
Keys reaching this module are already HMACs or fixed names: nothing here sees a password or a
clear username.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from aiocache import RedisCache
from aiocache.serializers import StringSerializer
from cachetools import TLRUCache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.reservations import Replay, ReservationMemory
from plugins.base import MemoryCache

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Window:
    """At most `limit` reservations under `key` in any sliding interval of `seconds`."""

    name: str  # what the window limits ("username", "ip"): metric label and reason suffix
    key: str
    limit: int
    seconds: float


class Admission(enum.Enum):
    """The outcome of `ProtectionStore.admit`."""

    ADMITTED = "admitted"
    COOLING_DOWN = "cooling_down"  # a cool-down flag is set
    LIMITED = "limited"  # a window is full
    FULL = "full"  # the memory store has no room for a new key


@dataclass(frozen=True, slots=True)
class AdmitResult:
    """What `admit` decided; `window` names the full window when LIMITED."""

    admission: Admission
    window: Window | None = None

    @property
    def admitted(self) -> bool:
        """True when the reservation was made."""
        return self.admission is Admission.ADMITTED


ADMITTED = AdmitResult(Admission.ADMITTED)


class CacheStore(Protocol):
    """A TTL cache; entries may be forgotten early."""

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Read several keys at once (one round trip with Redis)."""

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""


class ProtectionStore(Protocol):
    """Limits and back-off state; never forgets a live entry."""

    async def admit(
        self, windows: Sequence[Window], flags: Sequence[str], token: str
    ) -> AdmitResult:
        """Atomically: refuse if a flag is set or a window is full, else reserve `token` in all."""

    async def release(self, keys: Sequence[str], token: str) -> None:
        """Give back the reservation `token` made under these window keys."""

    async def set_flag(self, key: str, seconds: float) -> None:
        """Set a cool-down flag for `seconds`."""

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from a bucket refilled at `rate` per second up to `burst`."""


class MemoryProtection:
    """Per-process protection state with a fixed capacity and no eviction of live entries.

    Window entries are sliding logs of `(time, token)` (at most `limit` of them, so memory per
    key is bounded). A new key is admitted only while fewer than `capacity` keys are live;
    otherwise `admit` answers FULL and the caller fails closed. Cool-down flags and buckets are
    few (one per source, one per throttled user) and are not counted against the capacity.
    """

    def __init__(self, capacity: int, on_full: Callable[[], None] = lambda: None) -> None:
        self.capacity = capacity
        self.on_full = on_full
        # maxsize is never reached: `admit` checks the capacity itself, so nothing is evicted.
        self._entries: TLRUCache[str, tuple[Any, float]] = TLRUCache(
            maxsize=sys.maxsize, ttu=lambda _k, v, _now: v[1], timer=time.monotonic
        )

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)

    async def admit(
        self, windows: Sequence[Window], flags: Sequence[str], token: str
    ) -> AdmitResult:
        """Refuse on a flag or a full window; reserve in every window otherwise (no await: atomic)."""
        entries = self._entries
        if any(flag in entries for flag in flags):
            return AdmitResult(Admission.COOLING_DOWN)
        now = time.monotonic()
        logs = []
        for window in windows:
            entry = entries.get(window.key)
            log = tuple(e for e in entry[0] if e[0] > now - window.seconds) if entry else ()
            if len(log) >= window.limit:
                return AdmitResult(Admission.LIMITED, window)
            logs.append(log)
        new_keys = sum(1 for window in windows if window.key not in entries)
        if new_keys:
            entries.expire(now)
            if len(entries) + new_keys > self.capacity:
                self.on_full()
                return AdmitResult(Admission.FULL)
        for window, log in zip(windows, logs, strict=True):
            entries[window.key] = ((*log, (now, token)), now + window.seconds)
        return ADMITTED

    async def release(self, keys: Sequence[str], token: str) -> None:
        """Remove the reservation from each window's log."""
        entries = self._entries
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                continue
            log = tuple(e for e in entry[0] if e[1] != token)
            if log:
                entries[key] = (log, entry[1])
            else:
                del entries[key]

    async def set_flag(self, key: str, seconds: float) -> None:
        """Set a cool-down flag for `seconds`."""
        self._entries[key] = (1, time.monotonic() + seconds)

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from a bucket refilled at `rate` per second up to `burst`."""
        now = time.monotonic()
        entry = self._entries.get(key)
        tokens, last = entry[0] if entry is not None else (float(burst), now)
        tokens = min(float(burst), tokens + (now - last) * rate)
        taken = tokens >= 1
        if taken:
            tokens -= 1
        self._entries[key] = ((tokens, now), now + burst / rate + 1)
        return taken


# Reserve in every window, or in none: epoch, flags, then each window's sliding log (a sorted set
# of request tokens scored by the server's clock, so replicas with skewed clocks agree).
# KEYS: epoch, flags..., windows...; ARGV: number of flags, token, the epoch the caller knows,
# then limit and span (ms) per window.
# Returns {status, server ms, count per window...}: status 0 admitted (counts include the new
# member), j > 0 window j full (counts of windows 1..j), -1 cooling down, -2 the epoch is not the
# caller's (then the third field is the epoch now: Redis lost its data if the caller's is gone).
# The epoch is read in the same script, so noticing an empty Redis costs no round trip.
_ADMIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[3] then
  if not epoch then
    epoch = ARGV[2]
    redis.call('SET', KEYS[1], epoch)
  end
  return {-2, now, epoch}
end
local nflags = tonumber(ARGV[1])
for i = 1, nflags do
  if redis.call('EXISTS', KEYS[1 + i]) == 1 then return {-1, now} end
end
local nwin = #KEYS - 1 - nflags
local out = {0, now}
for j = 1, nwin do
  local key = KEYS[1 + nflags + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[3 + 2 * j]))
  local count = redis.call('ZCARD', key)
  out[2 + j] = count
  if count >= tonumber(ARGV[2 + 2 * j]) then
    out[1] = j
    return out
  end
end
for j = 1, nwin do
  local key = KEYS[1 + nflags + j]
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, ARGV[3 + 2 * j])
  out[2 + j] = out[2 + j] + 1
end
return out
"""
# The epoch key, created by the first replica to find it missing: a Redis that lost its data has
# none, and every replica that knew the old one re-adds what it remembers.
_EPOCH_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
return epoch
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


# Per client: a burst of hook calls waits for a pooled connection instead of opening one each
# (each new connection costs several round trips of handshake, which timed out under a burst).
MAX_REDIS_CONNECTIONS = 32


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis; every key is prefixed with `key_prefix:`."""

    url: str
    key_prefix: str
    timeout: float

    def pool_kwargs(self) -> dict[str, Any]:
        """Connection options shared by both clients.

        One retry, only for a dropped connection: after a Redis restart every pooled
        connection is dead, and without it each one failed once and flipped the gateway back to
        its fallback (the flapping seen after an outage). A timeout is not retried: a stalled
        Redis must cost one timeout, not several.
        """
        return {
            "socket_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "timeout": self.timeout,  # waiting for a pooled connection, then fall back
        }


class RedisCacheStore:
    """`CacheStore` in Redis through aiocache (GET, MGET, SET with PX)."""

    def __init__(self, settings: RedisSettings) -> None:
        parts = urlsplit(settings.url)
        self._cache = RedisCache(
            serializer=StringSerializer(),
            namespace=settings.key_prefix,
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(parts.path.lstrip("/") or 0),
            password=parts.password,
            ssl=parts.scheme == "rediss",
            timeout=None,  # socket timeouts instead; aiocache's own wraps every call in a task
            create_connection_timeout=settings.timeout,
            connection_pool_class=aioredis.BlockingConnectionPool,
            pool_max_size=MAX_REDIS_CONNECTIONS,
            connection_pool_kwargs=settings.pool_kwargs(),
        )

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        value = await self._cache.get(key)
        return value if isinstance(value, str) else None

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Read several keys in one round trip (MGET)."""
        values = await self._cache.multi_get(list(keys))
        return [v if isinstance(v, str) else None for v in values]

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""
        await self._cache.set(key, value, ttl=ttl)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._cache.close()


@dataclass(frozen=True, slots=True)
class RedisReply:
    """What the admit script answered (see `_ADMIT_SCRIPT`)."""

    status: int
    server_ms: int
    counts: tuple[int, ...] = ()
    epoch: str = ""


EPOCH_KEY = "epoch"
REPLAY_CHUNK = 500  # commands per pipeline when re-adding reservations


class RedisProtection:
    """Protection state in Redis: one Lua script per admission, atomic across replicas."""

    def __init__(self, settings: RedisSettings) -> None:
        self._prefix = f"{settings.key_prefix}:"
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.url,
            socket_connect_timeout=settings.timeout,
            max_connections=MAX_REDIS_CONNECTIONS,
            **settings.pool_kwargs(),
        )
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._admit = self.client.register_script(_ADMIT_SCRIPT)
        self._epoch = self.client.register_script(_EPOCH_SCRIPT)
        self._take = self.client.register_script(_BUCKET_SCRIPT)

    async def reserve(
        self, windows: Sequence[Window], flags: Sequence[str], token: str, epoch: str
    ) -> RedisReply:
        """Epoch, flags and windows checked, and the token reserved, in one script."""
        keys = [self._prefix + EPOCH_KEY]
        keys += [self._prefix + k for k in flags] + [self._prefix + w.key for w in windows]
        args: list[str | int] = [len(flags), token, epoch]
        for window in windows:
            args += [window.limit, max(1, int(window.seconds * 1000))]
        answer = await self._admit(keys=keys, args=args)
        status, server_ms = int(answer[0]), int(answer[1])
        if status == -2:
            value = answer[2]
            return RedisReply(
                status, server_ms, epoch=value.decode() if isinstance(value, bytes) else str(value)
            )
        return RedisReply(status, server_ms, tuple(int(c) for c in answer[2:]))

    async def epoch(self, candidate: str) -> str:
        """The current epoch, set to `candidate` if Redis has none (a fresh or emptied Redis)."""
        value = await self._epoch(keys=[self._prefix + EPOCH_KEY], args=[candidate])
        return value.decode() if isinstance(value, bytes) else str(value)

    async def replay(self, replays: Iterable[Replay]) -> None:
        """Write remembered reservations back (the same members and scores: idempotent)."""
        async with self.client.pipeline(transaction=False) as pipe:
            queued = 0
            for item in replays:
                key = self._prefix + item.key
                pipe.zadd(key, {item.token: item.score_ms})
                pipe.pexpire(key, item.span_ms)
                queued += 1
                if queued >= REPLAY_CHUNK:
                    await pipe.execute()
                    queued = 0
            if queued:
                await pipe.execute()

    async def release(self, keys: Sequence[str], token: str) -> None:
        """ZREM the token from each window (one round trip)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(self._prefix + key, token)
            await pipe.execute()

    async def set_flag(self, key: str, seconds: float) -> None:
        """SET with a millisecond expiry."""
        await self.client.set(self._prefix + key, "1", px=max(1, int(seconds * 1000)))

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token atomically across replicas."""
        return bool(await self._take(keys=[self._prefix + key], args=[rate, burst]))

    async def ping(self) -> None:
        """Raise when Redis does not answer."""
        await self.client.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose(close_connection_pool=True)


_REDIS_TROUBLE = (RedisError, OSError, asyncio.TimeoutError)
PROBE_MAX_SECONDS = 10.0


class RedisHealth:
    """Whether Redis answers: one failure switches to the fallback, a probe switches back.

    One ERROR line per outage and one WARNING when it ends, however many calls fail meanwhile.
    """

    def __init__(
        self,
        ping: Callable[[], Awaitable[Any]],
        on_change: Callable[[bool], None] = lambda up: None,
        probe_interval: float = 0.5,
    ) -> None:
        self._ping = ping
        self.up = True
        self._on_change = on_change
        self._probe_interval = probe_interval
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Check Redis once so /readyz and the metric are right from the first second."""
        try:
            await self._ping()
        except _REDIS_TROUBLE as err:
            self._down(err)
        else:
            self._on_change(True)

    async def run(
        self, primary: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        """Run `primary` (Redis) while it is up, `fallback` (memory) otherwise or on trouble."""
        if self.up:
            try:
                return await primary()
            except _REDIS_TROUBLE as err:
                self._down(err)
        return await fallback()

    def _down(self, err: BaseException) -> None:
        if self.up or self._probe is None:
            logger.error(
                "redis unavailable; using per-process cache and limits until it returns",
                extra={"error": type(err).__name__, "detail": str(err)[:200]},
            )
        self.up = False
        self._on_change(False)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        delay = self._probe_interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self._ping()
            except _REDIS_TROUBLE:
                # Back off so a long outage is not a ping storm; never slower than every 10 s.
                delay = min(delay * 2, PROBE_MAX_SECONDS)
                continue
            self.up = True
            self._on_change(True)
            logger.warning("redis is back; shared cache and limits restored")
            return

    async def close(self) -> None:
        """Stop probing."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe


class FallbackCache:
    """`CacheStore`: Redis while it answers, the bounded memory cache otherwise."""

    def __init__(self, redis: RedisCacheStore, memory: MemoryCache, health: RedisHealth) -> None:
        self.redis = redis
        self.memory = memory
        self._health = health

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        return await self._health.run(lambda: self.redis.get(key), lambda: self.memory.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Read several keys at once."""
        return await self._health.run(
            lambda: self.redis.get_many(keys), lambda: self.memory.get_many(keys)
        )

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""
        await self._health.run(
            lambda: self.redis.set(key, value, ttl), lambda: self.memory.set(key, value, ttl)
        )


class _StaleEpoch(RedisError):
    """Redis kept changing its epoch while this replica rebuilt its reservations."""


class FallbackProtection:
    """`ProtectionStore`: Redis while it answers; what this replica remembers otherwise.

    Every reservation Redis makes is also remembered here with the count Redis returned
    (`ReservationMemory`). While Redis is away a replica allows, per window, its share of what
    was left: `(limit - highest count seen) // fallback_replicas`. When Redis comes back the
    replica writes all its live reservations back (the same members, so nothing counts twice):
    on reconnect, and when the admit script finds the epoch key gone (a restart without
    persistence, a failover), even if no call noticed the outage.
    Cool-down flags are mirrored in memory, so the replica that learned one keeps it.
    """

    def __init__(
        self,
        redis: RedisProtection,
        memory: MemoryProtection,
        health: RedisHealth,
        fallback_replicas: int,
        remembered: ReservationMemory | None = None,
    ) -> None:
        self.redis = redis
        self.memory = memory
        self.remembered = remembered or ReservationMemory(memory.capacity)
        self._health = health
        self._replicas = fallback_replicas
        self._epoch = ""  # the epoch this replica's remembered reservations are in Redis under
        self._rebuild: asyncio.Task[None] | None = None

    async def admit(
        self, windows: Sequence[Window], flags: Sequence[str], token: str
    ) -> AdmitResult:
        """Reserve in Redis, or in memory within this replica's share of what is left."""
        if (await self.memory.admit((), flags, token)).admission is Admission.COOLING_DOWN:
            return AdmitResult(Admission.COOLING_DOWN)
        return await self._health.run(
            lambda: self._admit_online(windows, flags, token),
            lambda: self._admit_offline(windows, token),
        )

    async def _admit_online(
        self, windows: Sequence[Window], flags: Sequence[str], token: str
    ) -> AdmitResult:
        for _ in range(3):
            reply = await self.redis.reserve(windows, flags, token, self._epoch)
            if reply.status != -2:
                break
            await self._rebuilt(reply.epoch)
        else:
            raise _StaleEpoch("the epoch changed during every rebuild")
        if reply.status == 0:
            self.remembered.admitted(windows, reply.counts, token, reply.server_ms)
            return ADMITTED
        if reply.status < 0:
            return AdmitResult(Admission.COOLING_DOWN)
        self.remembered.refused(windows, reply.counts)
        return AdmitResult(Admission.LIMITED, windows[reply.status - 1])

    async def _admit_offline(self, windows: Sequence[Window], token: str) -> AdmitResult:
        full = self.remembered.offline_full(windows, self._replicas)
        if full is not None:
            return AdmitResult(Admission.LIMITED, full)
        if not self.remembered.reserve_offline(windows, token):
            self.memory.on_full()
            return AdmitResult(Admission.FULL)
        return ADMITTED

    async def _rebuilt(self, epoch: str) -> None:
        """Re-add every live reservation under a new epoch; concurrent callers share one rebuild."""
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.create_task(self._replay(epoch))
            # Retrieved here: a caller cancelled while waiting must not leave it unread.
            self._rebuild.add_done_callback(lambda t: t.cancelled() or t.exception())
        # Shielded: a caller's deadline must not leave the set half rebuilt.
        await asyncio.shield(self._rebuild)

    async def _replay(self, epoch: str) -> None:
        await self.redis.replay(list(self.remembered.replays()))
        self._epoch = epoch

    async def reconnect(self) -> None:
        """Check Redis and write back what it may lack (the health probe; raises on trouble).

        Everything live is written back, not only what was reserved offline: a failover to a
        Redis replica that lagged keeps the epoch key but may lack the newest members, and the
        same members and scores make a second ZADD a no-op.
        """
        await self._replay(await self.redis.epoch(uuid.uuid4().hex))

    async def release(self, keys: Sequence[str], token: str) -> None:
        """Give back a reservation (a token the store does not hold is ignored)."""
        self.remembered.release(keys, token)
        await self._health.run(lambda: self.redis.release(keys, token), _nothing)

    async def set_flag(self, key: str, seconds: float) -> None:
        """Set a cool-down flag for `seconds` (in memory too: it outlives a Redis restart here)."""
        await self.memory.set_flag(key, seconds)
        await self._health.run(lambda: self.redis.set_flag(key, seconds), _nothing)

    async def take_token(self, key: str, rate: float, burst: int) -> bool:
        """Take one token from a bucket."""
        return await self._health.run(
            lambda: self.redis.take_token(key, rate, burst),
            lambda: self.memory.take_token(key, rate, burst),
        )


async def _nothing() -> None:
    """The fallback of a write the memory side has already done."""


@dataclass(frozen=True, slots=True)
class StateLimits:
    """Sizes of the per-process stores and the fallback share."""

    cache_entries: int
    protection_entries: int
    fallback_replicas: int


class SharedState:
    """Everything the gateway keeps between requests: Redis-backed when configured."""

    def __init__(
        self,
        redis: RedisSettings | None,
        limits: StateLimits,
        *,
        on_full: Callable[[str], None] = lambda store: None,
        on_redis_change: Callable[[bool], None] = lambda up: None,
    ) -> None:
        memory_cache = MemoryCache(limits.cache_entries, on_evict=lambda: on_full("cache"))
        memory_protection = MemoryProtection(
            limits.protection_entries, on_full=lambda: on_full("protection")
        )
        self.cache: CacheStore = memory_cache
        self.protection: ProtectionStore = memory_protection
        self.health: RedisHealth | None = None
        self._redis_cache: RedisCacheStore | None = None
        self._redis_protection: RedisProtection | None = None
        if redis is not None:
            self._redis_cache = RedisCacheStore(redis)
            self._redis_protection = RedisProtection(redis)
            # The probe is the protection's reconnect: Redis counts as back only once this
            # replica has written back the reservations it may lack.
            self.health = RedisHealth(lambda: protection.reconnect(), on_redis_change)
            self.cache = FallbackCache(self._redis_cache, memory_cache, self.health)
            protection = FallbackProtection(
                self._redis_protection, memory_protection, self.health, limits.fallback_replicas
            )
            self.protection = protection

    @property
    def redis_up(self) -> bool | None:
        """None without Redis; else whether it answers now."""
        return None if self.health is None else self.health.up

    @property
    def backend_name(self) -> str:
        """`redis`, `memory`, or `memory (redis unavailable)` for /readyz."""
        if self.health is None:
            return "memory"
        return "redis" if self.health.up else "memory (redis unavailable)"

    async def start(self) -> None:
        """Check Redis once before serving."""
        if self.health is not None:
            await self.health.start()

    async def close(self) -> None:
        """Stop probing and close Redis connections."""
        if self.health is not None:
            await self.health.close()
        if self._redis_cache is not None:
            await self._redis_cache.close()
        if self._redis_protection is not None:
            await self._redis_protection.close()


class Namespace:
    """A view of a cache store whose keys all start with `<name>:`; one per user of the cache."""

    def __init__(
        self, store: CacheStore, name: str, on_lookup: Callable[[bool], None] | None = None
    ) -> None:
        self._store = store
        self._prefix = f"{name}:"
        self._on_lookup = on_lookup

    def full_key(self, key: str) -> str:
        """The key as the store sees it."""
        return self._prefix + key

    async def get(self, key: str) -> str | None:
        """Return a value, or None; count a hit or a miss when metered."""
        value = await self._store.get(self._prefix + key)
        if self._on_lookup is not None:
            self._on_lookup(value is not None)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Read several keys at once (not metered: the caller counts what it uses)."""
        return await self._store.get_many([self._prefix + key for key in keys])

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""
        await self._store.set(self._prefix + key, value, ttl)
