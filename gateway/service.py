"""The password-import decision, independent of aiohttp: route, limits, cache, sources, decide."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from gateway.config import GatewayConfig, ShadowConfig
from gateway.metrics import GatewayMetrics
from gateway.protection import (
    AttemptLimits,
    CachedVerdictPolicy,
    KeyMaker,
    SingleFlight,
    SourceGuard,
    VerdictCache,
    limiter_ip,
    limiter_username,
)
from gateway.routing import Router
from gateway.shadow import ShadowJob, ShadowRunner
from gateway.state import Admission, Namespace, SharedState, Window
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


@dataclass(eq=False)
class _Attempt:
    """One hook request's reservation in the username and IP windows.

    Reserved right before the first directory call and kept unless the password provably never
    reached a directory, or it was right: only wrong-or-unknown attempts spend the budget.
    """

    user_key: str
    windows: tuple[Window, ...]
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    reserved: bool = False
    spent: bool = False
    # Windows of accounts the sources found (`reserve_account`), released with the others.
    account_keys: list[str] = field(default_factory=list)
    # Why a source's account reservation was refused: the request is refused as a whole.
    refusal: str | None = None


# The account reservation of the source call running in this task (see `reserve_account`).
_ACCOUNT_RESERVER: ContextVar[Callable[[str], Awaitable[bool]] | None] = ContextVar(
    "account_reserver", default=None
)


async def reserve_account(identity: str) -> bool:
    """`SourceServices.reserve_account`: reserve the running sign-in against a found account.

    A source calls it from its `verify`, in the task of the service's call, which set the
    reserver; outside a sign-in (no reserver) nothing is limited.
    """
    reserver = _ACCOUNT_RESERVER.get()
    return True if reserver is None else await reserver(identity)


class _Refused(Exception):
    """The request's username or IP budget is used up, or the protection store is full."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PasswordImportService:
    """Routes a username to its sources and turns their verdicts into one decision.

    Per request: the verdict cache for the route's sources (one read); then per source, on a
    miss: single flight, the attempt reservation (username and IP sliding windows, cool-down
    flags), the source guard (rate, concurrency, circuit breaker), input the protocol cannot
    carry, and the plugin under the remaining deadline; the cache and the guard learn the answer.
    """

    def __init__(
        self,
        config: GatewayConfig,
        sources: Mapping[str, Source],
        metrics: GatewayMetrics,
        state: SharedState,
        keys: KeyMaker,
        *,
        fingerprints: Mapping[str, str] | None = None,
        single_flight: SingleFlight | None = None,
        previous: PasswordImportService | None = None,
        shadow: ShadowRunner | None = None,
    ) -> None:
        self.router = Router(config.routes)
        self.budget_seconds = config.budget_seconds
        self.shadow = shadow
        self.sources = dict(sources)
        self.metrics = metrics
        self.keys = keys
        self.protection = state.protection
        limits = config.rate_limits
        self.attempt_limits = AttemptLimits(limits)
        policy = CachedVerdictPolicy(
            config.cache.verified_ttl_seconds, config.cache.denied_ttl_seconds
        )
        self.verdict_cache = VerdictCache(Namespace(state.cache, "verdict"), policy, metrics)
        # Part of each verdict key: a source whose settings changed never reads old verdicts.
        self.fingerprints = dict(fingerprints or {})
        self.single_flight = single_flight or SingleFlight()
        self.guards: dict[str, SourceGuard] = {}
        for name, source in self.sources.items():
            guard = previous.guards.get(name) if previous is not None else None
            # After a reload an unchanged source keeps its guard: breaker state, in-flight count.
            if (
                guard is None
                or previous is None
                or previous.sources.get(name) is not source
                or (
                    not guard.same_settings(
                        limits.per_source, limits.cooldown, limits.circuit_breaker
                    )
                )
            ):
                guard = SourceGuard(
                    name,
                    state.protection,
                    limits.per_source,
                    limits.cooldown,
                    limits.circuit_breaker,
                    metrics,
                )
            self.guards[name] = guard

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
        user_key = self.keys("user", limiter_username(match.username))
        ip_key = self.keys("ip", limiter_ip(client_ip))
        attempt = _Attempt(user_key, self.attempt_limits.windows(user_key, ip_key))
        # Exact username sent upstream: never normalised (DESIGN "Keys").
        cache_keys = [
            self.keys("verdict", name, self.fingerprints.get(name, ""), match.username, password)
            for name in match.sources
        ]
        cached = await self.verdict_cache.read(cache_keys)
        verdicts: list[Verdict] = []
        try:
            for name, cache_key, raw in zip(match.sources, cache_keys, cached, strict=True):
                verdict = self.verdict_cache.verdict(raw, name) or await self._ask(
                    self.sources[name], match.username, password, deadline, cache_key, attempt
                )
                verdicts.append(verdict)
                if verdict.definitive:
                    break
        except _Refused as refused:
            return Decision(False, refused.reason, match.route)
        finally:
            await self._settle(attempt)
        verdict = verdicts[-1]
        if match.shadow is not None and verdict.definitive and self.shadow is not None:
            self._offer_shadow(match.route, match.shadow, match.username, password, verdict)
        return Decision(
            verdict.verified, verdict.reason, match.route, verdict.source, tuple(verdicts)
        )

    async def _settle(self, attempt: _Attempt) -> None:
        """Give the attempt's slots back unless it was spent (a wrong or unknown password)."""
        task = asyncio.current_task()
        # Cancelled (the handler's deadline, shutdown): keep the slot rather than wait on a
        # store that may be what is stalling; a kept slot only errs on the strict side.
        cancelled = task is not None and task.cancelling() > 0
        if attempt.reserved and not attempt.spent and not cancelled:
            await self.protection.release(
                [*(w.key for w in attempt.windows), *attempt.account_keys], attempt.token
            )

    def _offer_shadow(
        self, route: str, shadow: ShadowConfig, username: str, password: str, verdict: Verdict
    ) -> None:
        """Queue a sample of a route's definitive answers for its shadow source (no await)."""
        assert self.shadow is not None
        if not self.shadow.sampled(shadow.sample):
            return
        deadline = asyncio.get_running_loop().time() + self.budget_seconds
        job = ShadowJob(route, shadow.source, username, password, verdict.verified, deadline, self)
        self.shadow.offer(job, shadow.queue_size)

    async def shadow_verify(
        self, source_name: str, username: str, password: str, deadline: float
    ) -> Verdict:
        """Verify a pair against a shadow source, with that source's own per-user budget.

        The budget is keyed apart from the route's (`shadow`, source, user), so shadowing
        neither spends the user's budget at the real sources nor escapes the shadow source's
        limits; there is no IP window (the client's IP was charged by the real call).
        """
        source = self.sources[source_name]
        user_key = self.keys("user", "shadow", source_name, limiter_username(username))
        windows = self.attempt_limits.windows(user_key, "")
        attempt = _Attempt(user_key, tuple(w for w in windows if w.name == "username"))
        cache_key = self.keys(
            "verdict", source_name, self.fingerprints.get(source_name, ""), username, password
        )
        (raw,) = await self.verdict_cache.read([cache_key])
        cached = self.verdict_cache.verdict(raw, source_name)
        if cached is not None:
            return cached
        try:
            return await self._ask(source, username, password, deadline, cache_key, attempt)
        except _Refused as refused:
            return source.verdict(Result.UNAVAILABLE, refused.reason)
        finally:
            await self._settle(attempt)

    async def _ask(
        self,
        source: Source,
        username: str,
        password: str,
        deadline: float,
        cache_key: str,
        attempt: _Attempt,
    ) -> Verdict:
        if not source.ready:
            return self._gateway_verdict(source.verdict(Result.UNAVAILABLE, "not_ready"))
        # Identical requests share one call (Okta's retries); only the caller that makes it
        # reserves an attempt, and a refusal reaches every waiter.
        verdict, _ = await self.single_flight.run(
            cache_key, lambda: self._call(source, username, password, deadline, cache_key, attempt)
        )
        return verdict

    def _gateway_verdict(self, verdict: Verdict, limit: str | None = None) -> Verdict:
        """A verdict the gateway made without asking the directory."""
        if limit is not None:
            self.metrics.rate_limited.labels(limit=limit).inc()
        self.metrics.record_verdict(verdict, upstream=False)
        return verdict

    async def _reserve(self, guard: SourceGuard, attempt: _Attempt) -> str | None:
        """Reserve the attempt (first call of the request) and check cool-downs, atomically.

        Raises `_Refused` when the username or IP budget is used up or there is no room to
        track this user; returns `source_cooldown` when the directory asked us to back off.
        """
        windows = () if attempt.reserved else attempt.windows
        result = await self.protection.admit(
            windows, guard.cooldown_flags(attempt.user_key), attempt.token
        )
        if result.admission is Admission.COOLING_DOWN:
            return "source_cooldown"
        if result.admission is Admission.FULL:  # counted by the store (gateway_state_full_total)
            raise _Refused("protection_full")
        if result.window is not None:
            self.metrics.rate_limited.labels(limit=result.window.name).inc()
            raise _Refused(f"rate_limited_{result.window.name}")
        attempt.reserved = True
        return None

    async def _reserve_account(self, source: str, attempt: _Attempt, identity: str) -> bool:
        """Reserve the attempt in the window of the account `source` found (its directory id).

        Keyed by HMAC of the source and the widened id, so no clear id reaches the store; kept
        or given back with the username's reservation. False refuses the request.
        """
        window = self.attempt_limits.account_window(
            self.keys("account", source, limiter_username(identity))
        )
        if window is None or window.key in attempt.account_keys:
            return True
        result = await self.protection.admit((window,), (), attempt.token)
        if result.admitted:
            attempt.account_keys.append(window.key)
            return True
        if result.admission is Admission.FULL:
            attempt.refusal = "protection_full"
        else:
            self.metrics.rate_limited.labels(limit="username").inc()
            attempt.refusal = "rate_limited_username"
        return False

    async def _call(
        self,
        source: Source,
        username: str,
        password: str,
        deadline: float,
        cache_key: str,
        attempt: _Attempt,
    ) -> Verdict:
        guard = self.guards[source.name]
        if await self._reserve(guard, attempt) is not None:
            return self._gateway_verdict(
                source.verdict(Result.UNAVAILABLE, "source_cooldown"), "cooldown"
            )
        unsupported = source.unsupported_input(username, password)
        if unsupported is not None:
            # Refused before any I/O, but counted like a wrong password: the content is the
            # client's choice, and it must never look like a directory outage.
            attempt.spent = True
            return self._gateway_verdict(source.verdict(Result.DENIED, unsupported))
        refusal = await guard.refusal()
        if refusal is not None:
            reason, limit = refusal
            return self._gateway_verdict(source.verdict(Result.UNAVAILABLE, reason), limit)
        loop = asyncio.get_running_loop()
        started = loop.time()
        reserver = _ACCOUNT_RESERVER.set(
            functools.partial(self._reserve_account, source.name, attempt)
        )
        try:
            async with asyncio.timeout_at(deadline), guard.concurrency:
                verdict = await source.verify(username, password)
        except TimeoutError:
            verdict = source.verdict(Result.UNAVAILABLE, "timeout")
        except Exception:  # a plugin bug must not become a 5xx to Okta
            logger.exception("source raised instead of answering", extra={"source": source.name})
            verdict = source.verdict(Result.UNAVAILABLE, "other")
        finally:
            _ACCOUNT_RESERVER.reset(reserver)
        if attempt.refusal is not None:
            # The account's budget was used up through another of its names: nothing was sent.
            raise _Refused(attempt.refusal)
        if not isinstance(verdict, Verdict):  # a third-party plugin returned garbage
            logger.error("source returned no verdict", extra={"source": source.name})
            verdict = source.verdict(Result.UNAVAILABLE, "other")
        if verdict.sent and not verdict.verified:
            attempt.spent = True
        self.metrics.record_verdict(verdict, upstream=True, seconds=loop.time() - started)
        await guard.record(verdict, attempt.user_key, verdict.reason in source.outage_reasons)
        await self.verdict_cache.put(cache_key, verdict)
        if verdict.verified:
            self.metrics.last_success.labels(source=source.name).set(time.time())
        return verdict
