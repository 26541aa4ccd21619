"""One request to Okta, done right: auth, pacing, concurrency, timeouts, retries, error mapping.

What is retried, and how (reference/okta-hooks.md §2.6; reference/okta-sdk-notes.md):

* 429: always (within the retry budget and ``max_retries``), after ``Reset - Date + 1``; Okta did
  not carry the request out. A bucket 429 also holds the bucket for every other request.
* 5xx, timeouts, dropped connections: only for idempotent calls. A non-idempotent call (user
  create) may have been carried out although its answer was lost: the caller gives a
  ``recover`` lookup that runs before anything is sent again, and the call is sent again only
  when the lookup finds nothing. A connection that could not even be opened is retried for any
  call: nothing was sent.
* A definite answer on a retry that only says "already done" (activate: E0000016; delete: 404;
  create: duplicate login) is turned into success by the caller's ``settle`` hook, but only when
  an earlier attempt's outcome was unknown: otherwise it is a real error.
* 401 with an OAuth access token: the token is fetched again, once.

Requests carry ``X-Okta-Retry-For``/``X-Okta-Retry-Count`` on retries, as Okta's SDKs send them.
Redirects are not followed (they would carry the token elsewhere). Every answer is read under
``max_response_bytes``, inflated in capped steps (``gateway.upstream_body``), within
``timeout_seconds`` for the whole request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import __version__
from gateway.okta_api.auth import Authorizer, TokenAnswer
from gateway.okta_api.clock import Clock
from gateway.okta_api.errors import OktaApiError, error_from_answer
from gateway.okta_api.links import bucket_key, path_template
from gateway.okta_api.operations import RequestObserver, operation_of, status_of
from gateway.okta_api.pacing import Pacer
from gateway.okta_api.retry import RetryBudget, backoff_seconds
from gateway.okta_api.stats import OktaApiStats
from gateway.upstream_body import UpstreamBodyError, capped_session, read_capped

__all__ = ["USER_AGENT", "Answer", "Transport"]

logger = logging.getLogger(__name__)

USER_AGENT: Final = f"okta-password-gateway/{__version__}"
# A page of 200 users or 1,000 log events is a few MB; the cap leaves room for large profiles.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: status, headers (repeated ones kept), decoded JSON body, final URL."""

    status: int
    headers: CIMultiDictProxy[str]
    body: Any
    url: URL


Settle = Callable[[OktaApiError], Awaitable[Answer | None]]
Recover = Callable[[], Awaitable[Answer | None]]
Form = Callable[[], dict[str, str]]


def synthetic(status: int, body: Any, url: URL) -> Answer:
    """An answer the client made up (a retried call found already done)."""
    return Answer(status, CIMultiDictProxy(CIMultiDict()), body, url)


class Transport:
    """Sends requests to one Okta org over one aiohttp session."""

    def __init__(
        self,
        org_url: URL,
        *,
        authorizer: Authorizer | None,
        max_concurrency: int,
        timeout_seconds: float,
        max_retries: int,
        retry_budget: RetryBudget,
        clock: Clock,
        stats: OktaApiStats,
        user_agent: str = USER_AGENT,
        rng: random.Random | None = None,
        on_request: RequestObserver | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.org_url = org_url
        self.max_response_bytes = max_response_bytes
        self.on_request = on_request  # told (operation, status class) after every attempt
        self.authorizer = authorizer
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self.budget = retry_budget
        self.clock = clock
        self.stats = stats
        self.user_agent = user_agent
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.pacer = Pacer(clock, stats)
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Open the session (inside the running loop)."""
        if self._session is None:
            self._session = capped_session(
                connector=aiohttp.TCPConnector(limit=self._max_concurrency),
                timeout=self.timeout,
                # No proxy or .netrc from the environment: netrc credentials must never be
                # mixed into calls that carry an Okta token.
                trust_env=False,
            )

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_token(self, form: Form) -> TokenAnswer:
        """``POST /oauth2/v1/token`` (retried like an idempotent call, a new assertion each time)."""
        answer = await self.call(
            "POST", "/oauth2/v1/token", form=form, idempotent=True, authenticated=False
        )
        body = answer.body
        operation = "POST /oauth2/v1/token"
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise OktaApiError(
                answer.status, "bad_response", "no access_token", operation=operation
            )
        token_type = str(body.get("token_type", "Bearer"))
        if token_type.lower() != "bearer":
            raise OktaApiError(
                answer.status,
                "unsupported_token_type",
                f"the token endpoint issued a {token_type} token; turn off 'Require DPoP' "
                "for this service app",
                operation=operation,
            )
        try:
            expires_in = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        return TokenAnswer(
            body["access_token"], expires_in, frozenset(str(body.get("scope", "")).split())
        )

    def url_for(self, target: str | URL) -> URL:
        """An absolute URL on the org for a path (``/api/v1/users``) or a URL Okta gave."""
        if isinstance(target, URL):
            return target
        return self.org_url.with_path(target, encoded=True)

    async def call(
        self,
        method: str,
        target: str | URL,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Form | None = None,
        idempotent: bool,
        authenticated: bool = True,
        settle: Settle | None = None,
        recover: Recover | None = None,
    ) -> Answer:
        """Send one request, retrying as the module docstring says; raise ``OktaApiError``."""
        if self._session is None:
            raise RuntimeError("the Okta API client is not open (use 'async with')")
        url = self.url_for(target)
        if params:
            url = url.update_query(params)
        operation = f"{method} {path_template(url.raw_path)}"
        key = bucket_key(method, url.raw_path)
        data: bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":")).encode()
        elif form is None and method in ("POST", "PUT"):
            data = b""  # Okta answers 411 to a body-less POST without Content-Length: 0
        self.budget.deposit()
        attempt = 0
        refreshed = False
        unknown_before = False  # an earlier attempt may have been carried out
        request_id: str | None = None
        while True:
            attempt += 1
            headers = {"Accept": "application/json", "User-Agent": self.user_agent}
            if json_body is not None or data == b"":
                headers["Content-Type"] = "application/json"
            generation = 0
            if authenticated:
                assert self.authorizer is not None
                headers["Authorization"], generation = await self.authorizer.header()
            if attempt > 1:
                headers["X-Okta-Retry-Count"] = str(attempt - 1)
                if request_id:
                    headers["X-Okta-Retry-For"] = request_id
            payload: Any = form() if form is not None else data
            outcome = await self._attempt(method, url, key, operation, headers, payload)
            if isinstance(outcome, Answer):
                return outcome
            failure, wait = outcome
            request_id = failure.request_id or request_id
            if failure.status == 401 and authenticated and not refreshed:
                assert self.authorizer is not None
                if self.authorizer.refresh_after_401(generation):
                    refreshed = True
                    self.stats.token_refetches += 1
                    continue
            if not failure.transient:
                if unknown_before and settle is not None:
                    settled = await self._check(settle(failure), failure, attempt)
                    if settled is not None:
                        return settled
                raise failure.evolve(attempts=attempt)
            # 429, 5xx, timeout or network error: may it go again?
            if failure.outcome_unknown and not idempotent and recover is None:
                raise failure.evolve(attempts=attempt)
            if attempt > self.max_retries:
                raise failure.evolve(attempts=attempt, gave_up="max_retries")
            if not self.budget.withdraw():
                self.stats.retries_refused += 1
                raise failure.evolve(attempts=attempt, gave_up="retry_budget")
            if wait is None:
                wait = backoff_seconds(attempt, self.rng)
            # 429s are routine under pacing (another app spent the bucket); the rest is news.
            logger.log(
                logging.DEBUG if failure.status == 429 else logging.INFO,
                "okta api: %s; retrying in %.1f s",
                failure.one_line(),
                wait,
                extra={"okta_operation": operation, "okta_code": failure.code},
            )
            self.stats.retries += 1
            self.stats.backoff_wait_seconds += wait
            await self.clock.sleep(wait)
            if failure.outcome_unknown:
                unknown_before = True
                if not idempotent and recover is not None:
                    # Look before sending again: the lost attempt may have done the work.
                    found = await self._check(recover(), failure, attempt)
                    if found is not None:
                        self.stats.recovered += 1
                        return found

    @staticmethod
    async def _check(
        lookup: Awaitable[Answer | None], failure: OktaApiError, attempt: int
    ) -> Answer | None:
        """Run a caller's ``settle``/``recover`` lookup; if it fails, the call's outcome is unknown.

        The error raised is the call's own (its operation, its code), not the lookup's.
        """
        try:
            return await lookup
        except OktaApiError as lookup_error:
            raise failure.evolve(attempts=attempt, outcome_unknown=True) from lookup_error

    async def _attempt(
        self,
        method: str,
        url: URL,
        key: str,
        operation: str,
        headers: dict[str, str],
        payload: Any,
    ) -> Answer | tuple[OktaApiError, float | None]:
        """One HTTP exchange: the answer, or the failure and how long Okta asks to wait."""
        assert self._session is not None
        await self.pacer.turn(key)
        oversized: str | None = None
        try:
            async with self._semaphore:
                self.stats.requests += 1
                if "Authorization" not in headers:
                    self.stats.token_requests += 1
                async with self._session.request(
                    method, url, data=payload, headers=headers, allow_redirects=False
                ) as resp:
                    try:
                        raw = await read_capped(resp, self.max_response_bytes)
                    except UpstreamBodyError as err:
                        raw, oversized = b"", str(err)
                    received = self.clock.monotonic()
                    status, reason, resp_headers = resp.status, resp.reason, resp.headers
        except aiohttp.ClientConnectorError:
            # The connection was never opened: nothing reached Okta, any call may go again.
            self.stats.network_errors += 1
            self._observe(method, url, None)
            return OktaApiError(
                None, "network", "cannot connect to Okta", operation=operation
            ), None
        except TimeoutError:
            self.stats.timeouts += 1
            self._observe(method, url, None)
            timed_out = OktaApiError(
                None,
                "timeout",
                f"no answer within {self.timeout_seconds:g} s",
                operation=operation,
                outcome_unknown=True,
            )
            return timed_out, None
        except aiohttp.ClientError as exc:
            self.stats.network_errors += 1
            self._observe(method, url, None)
            dropped = OktaApiError(
                None,
                "network",
                f"connection failed ({type(exc).__name__})",
                operation=operation,
                outcome_unknown=True,
            )
            return dropped, None
        finally:
            self.pacer.settle(key)
        seen = self.pacer.observe(key, resp_headers, received)
        self._observe(method, url, status)
        if 200 <= status < 300:
            if oversized is not None:
                # Not retried: the same request would get the same answer.
                return OktaApiError(status, "bad_response", oversized, operation=operation), None
            return Answer(status, resp_headers, self._decode(raw, status, operation), url)
        # An error answer past the cap is judged by its status alone (its body is dropped).
        failure = error_from_answer(status, reason, resp_headers, raw, operation=operation)
        wait: float | None = None
        if status == 429:
            self.stats.rate_limited += 1
            wait = seen.retry_wait()
            if seen.concurrency:
                # Okta's Reset for a concurrency 429 is an estimate: spread the comebacks.
                self.stats.concurrency_limited += 1
                if wait is not None:
                    wait += self.rng.uniform(0, 1)
            elif wait is not None:
                self.pacer.hold(key, received + wait)
        elif status >= 500:
            self.stats.server_errors += 1
            failure = failure.evolve(outcome_unknown=True)
        return failure, wait

    def _observe(self, method: str, url: URL, status: int | None) -> None:
        """Tell the observer (metrics, a CLI tally) how one attempt went."""
        if self.on_request is not None:
            self.on_request(operation_of(method, url.raw_path), status_of(status))

    @staticmethod
    def _decode(raw: bytes, status: int, operation: str) -> Any:
        """The JSON body of a success (None when empty)."""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise OktaApiError(
                status, "bad_response", "the answer is not JSON", operation=operation
            ) from None
