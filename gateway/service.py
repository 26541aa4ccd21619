"""The password-import decision, independent of aiohttp: route, limits, cache, sources, decide."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.metrics import GatewayMetrics
from gateway.protection import (
    CachedVerdictPolicy,
    FailureLimiter,
    KeyMaker,
    SingleFlight,
    SourceGuard,
    VerdictCache,
    normalise_username,
)
from gateway.routing import Router
from gateway.state import Namespace, SharedState
from plugins.base import Result, Source, Verdict

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to answer Okta, and why."""

    verified: bool
    reason: str
    route: str | None = None
    source: str | None = None
    verdicts: tuple[Verdict, ...] = ()


@dataclass(frozen=True, slots=True)
class _Answer:
    """One source's verdict and whether this request made the upstream call for it."""

    verdict: Verdict
    upstream: bool


class PasswordImportService:
    """Routes a username to its sources and turns their verdicts into one decision.

    Per request: per-username and per-IP failure limits, then per source: verdict cache,
    single flight, source guard (cool-down, rate, circuit breaker, concurrency), the plugin
    under the remaining deadline; then the cache and the failure counters learn the answer.
    """

    def __init__(
        self,
        config: GatewayConfig,
        sources: Mapping[str, Source],
        metrics: GatewayMetrics,
        state: SharedState,
        keys: KeyMaker,
    ) -> None:
        self.router = Router(config.routes)
        self.sources = dict(sources)
        self.metrics = metrics
        self.keys = keys
        self.state = state
        limits = config.rate_limits
        self.username_limit = FailureLimiter(Namespace(state, "fail-user"), limits.per_username)
        self.ip_limit = FailureLimiter(Namespace(state, "fail-ip"), limits.per_ip)
        policy = CachedVerdictPolicy(
            config.cache.verified_ttl_seconds, config.cache.denied_ttl_seconds
        )
        self.verdict_cache = VerdictCache(Namespace(state, "verdict"), policy, metrics)
        self.single_flight = SingleFlight()
        self.guards = {
            name: SourceGuard(
                name,
                Namespace(state, f"source:{name}"),
                limits.per_source,
                limits.cooldown,
                limits.circuit_breaker,
                metrics,
            )
            for name in self.sources
        }

    async def decide(
        self, username: str, password: str, deadline: float, client_ip: str | None = None
    ) -> Decision:
        """Verify a pair before `deadline` (event-loop time).

        A route's sources are asked in order until one is definitive: `verified`, or `denied`
        for a user it has. An unavailable source or one without the user passes to the next;
        a wrong password is never tried against a second directory (lockouts, password oracle).
        """
        if not password:
            # An empty password is refused before any I/O (some directories treat it as anonymous).
            return Decision(False, "empty_password")
        match = self.router.route(username)
        if match is None:
            return Decision(False, "no_route")
        user = normalise_username(match.username)
        user_key = self.keys("user", user)
        ip_key = self.keys("ip", client_ip) if client_ip else None
        cache_keys = {name: self.keys("verdict", name, user, password) for name in match.sources}
        # Every key this request reads, in one round trip (one MGET with Redis).
        to_read = self.username_limit.keys_to_read(user_key)
        if ip_key is not None:
            to_read += self.ip_limit.keys_to_read(ip_key)
        for name, cache_key in cache_keys.items():
            to_read += [
                self.verdict_cache.full_key(cache_key),
                *self.guards[name].keys_to_read(user_key),
            ]
        await self.state.prefetch(to_read)
        refusal = await self._limit_refusal(user_key, ip_key)
        if refusal is not None:
            return Decision(False, refusal, match.route)
        answers: list[_Answer] = []
        for name in match.sources:
            answer = await self._ask(
                name, match.username, user_key, password, deadline, cache_keys[name]
            )
            answers.append(answer)
            if answer.verdict.definitive:
                break
        decisive = answers[-1]
        await self._learn(decisive, user_key, ip_key)
        verdict = decisive.verdict
        verdicts = tuple(a.verdict for a in answers)
        return Decision(verdict.verified, verdict.reason, match.route, verdict.source, verdicts)

    async def _limit_refusal(self, user_key: str, ip_key: str | None) -> str | None:
        if await self.username_limit.exceeded(user_key):
            self.metrics.rate_limited.labels(limit="username").inc()
            return "rate_limited_username"
        if ip_key is not None and await self.ip_limit.exceeded(ip_key):
            self.metrics.rate_limited.labels(limit="ip").inc()
            return "rate_limited_ip"
        return None

    async def _learn(self, answer: _Answer, user_key: str, ip_key: str | None) -> None:
        verdict = answer.verdict
        if verdict.result is Result.VERIFIED:
            await self.username_limit.reset(user_key)
        elif verdict.result is Result.DENIED:
            # Only a real upstream attempt spends the user's lockout budget at the directory;
            # every denial counts against the client IP (credential stuffing repeats itself).
            if answer.upstream:
                await self.username_limit.failed(user_key)
            if ip_key is not None:
                await self.ip_limit.failed(ip_key)

    async def _ask(
        self,
        name: str,
        username: str,
        user_key: str,
        password: str,
        deadline: float,
        cache_key: str,
    ) -> _Answer:
        source = self.sources[name]
        if not source.ready:
            return self._gateway_answer(source.verdict(Result.UNAVAILABLE, "not_ready"))
        cached = await self.verdict_cache.get(cache_key, name)
        if cached is not None:
            return _Answer(cached, upstream=False)
        verdict, made_call = await self.single_flight.run(
            cache_key, lambda: self._call(source, username, user_key, password, deadline, cache_key)
        )
        return _Answer(verdict, upstream=made_call and verdict.reason not in _GATEWAY_REASONS)

    def _gateway_answer(self, verdict: Verdict) -> _Answer:
        self.metrics.record_verdict(verdict, upstream=False)
        return _Answer(verdict, upstream=False)

    async def _call(
        self,
        source: Source,
        username: str,
        user_key: str,
        password: str,
        deadline: float,
        cache_key: str,
    ) -> Verdict:
        guard = self.guards[source.name]
        refusal = await guard.refusal(user_key)
        if refusal is not None:
            return self._gateway_answer(source.verdict(Result.UNAVAILABLE, refusal)).verdict
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout_at(deadline), guard.concurrency:
                verdict = await source.verify(username, password)
        except TimeoutError:
            verdict = source.verdict(Result.UNAVAILABLE, "timeout")
        except Exception:  # a plugin bug must not become a 5xx to Okta
            logger.exception("source raised instead of answering", extra={"source": source.name})
            verdict = source.verdict(Result.UNAVAILABLE, "other")
        self.metrics.record_verdict(verdict, upstream=True, seconds=loop.time() - started)
        await guard.record(verdict, user_key)
        await self.verdict_cache.put(cache_key, verdict)
        if verdict.result is Result.VERIFIED:
            self.metrics.last_success.labels(source=source.name).set(time.time())
        return verdict


# Verdicts the gateway made itself without asking the directory.
_GATEWAY_REASONS = frozenset(
    {"not_ready", "source_cooldown", "circuit_open", "rate_limited_source"}
)
