"""The password-import decision, independent of aiohttp: route, ask sources, decide."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.metrics import GatewayMetrics
from gateway.routing import Router
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


class PasswordImportService:
    """Routes a username to its sources and turns their verdicts into one decision."""

    def __init__(
        self, router: Router, sources: Mapping[str, Source], metrics: GatewayMetrics
    ) -> None:
        self.router = router
        self.sources = dict(sources)
        self.metrics = metrics

    async def decide(self, username: str, password: str, deadline: float) -> Decision:
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
        verdicts: list[Verdict] = []
        for name in match.sources:
            verdict = await self._ask(self.sources[name], match.username, password, deadline)
            verdicts.append(verdict)
            if verdict.definitive:
                break
        last = verdicts[-1]
        return Decision(last.verified, last.reason, match.route, last.source, tuple(verdicts))

    async def _ask(self, source: Source, username: str, password: str, deadline: float) -> Verdict:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not source.ready:
            verdict = source.verdict(Result.UNAVAILABLE, "not_ready")
        elif deadline - started <= 0:
            verdict = source.verdict(Result.UNAVAILABLE, "timeout")
        else:
            try:
                async with asyncio.timeout_at(deadline):
                    verdict = await source.verify(username, password)
            except TimeoutError:
                verdict = source.verdict(Result.UNAVAILABLE, "timeout")
            except Exception:  # a plugin bug must not become a 5xx to Okta
                logger.exception(
                    "source raised instead of answering", extra={"source": source.name}
                )
                verdict = source.verdict(Result.UNAVAILABLE, "other")
        self.metrics.record_verdict(verdict, loop.time() - started, time.time())
        return verdict
