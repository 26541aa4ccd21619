"""``OktaApiClient``: the Users, inline hook and event hook calls the migration commands make.

Usage::

    async with OktaApiClient(org_url, SswsToken(token)) as okta:
        user = await okta.create_user(profile, group_ids=[...])
        async for user in okta.list_users(search='status eq "STAGED"'):
            ...
    print(okta.stats.as_dict())

Endpoints, bodies and statuses from reference/okta-hooks.md §1.8, §2 and §3 and Okta's management
OpenAPI spec (``createUser``, ``getUser``, ``listUsers``, ``updateUser`` (POST, partial),
``activateUser``, ``deactivateUser``, ``deleteUser``, the inline and event hook operations).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Self
from urllib.parse import quote

from yarl import URL

from gateway.okta_api.auth import OAuthAuthorizer, OAuthServiceApp, SswsAuthorizer, SswsToken
from gateway.okta_api.clock import SYSTEM_CLOCK, Clock
from gateway.okta_api.errors import (
    ALREADY_ACTIVE,
    DUPLICATE_LOGIN_CAUSE,
    INSUFFICIENT_SCOPE,
    OktaApiError,
)
from gateway.okta_api.links import next_link, path_template
from gateway.okta_api.operations import RequestObserver
from gateway.okta_api.retry import RetryBudget
from gateway.okta_api.stats import OktaApiStats
from gateway.okta_api.transport import MAX_RESPONSE_BYTES, USER_AGENT, Answer, Transport, synthetic
from gateway.origin import foreign_origin

__all__ = ["MAX_PAGE_SIZE", "PASSWORD_HOOK", "OktaApiClient", "ScopeCheck", "check_org_url"]

MAX_PAGE_SIZE: Final = 200
PASSWORD_HOOK: Final = {"password": {"hook": {"type": "default"}}}  # the only hook type Okta has


def check_org_url(org_url: str) -> URL:
    """The org URL as an origin: ``https://``, or plain ``http://`` only for a loopback emulator."""
    url = URL(org_url.rstrip("/"))
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError(f"Okta org URL {org_url!r} must look like https://acme.okta.com")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise ValueError(f"Okta org URL {org_url!r} must have no path, query or fragment")
    if url.scheme == "http":
        host = url.host
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"Okta org URL {org_url!r}: plain http is only for an emulator on loopback; "
                "use https"
            )
    return url.origin()


@dataclass(frozen=True, slots=True)
class ScopeCheck:
    """One permission the migration needs: ``ok``, ``missing`` or ``unknown``, and why."""

    scope: str
    status: Literal["ok", "missing", "unknown", "error"]
    detail: str


class OktaApiClient:
    """An async client for one Okta org (one aiohttp session, bounded concurrency, paced)."""

    def __init__(
        self,
        org_url: str,
        credentials: SswsToken | OAuthServiceApp,
        *,
        max_concurrency: int = 8,
        timeout_seconds: float = 10.0,
        max_retries: int = 4,
        retry_budget: RetryBudget | None = None,
        clock: Clock = SYSTEM_CLOCK,
        user_agent: str = USER_AGENT,
        rng: random.Random | None = None,
        on_request: RequestObserver | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        """``on_request(operation, status)`` is told of every attempt (see ``operations``)."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.org_url = check_org_url(org_url)
        self.stats = OktaApiStats()
        self._oauth: OAuthAuthorizer | None = None
        authorizer: SswsAuthorizer | OAuthAuthorizer
        if isinstance(credentials, SswsToken):
            authorizer = SswsAuthorizer(credentials)
        else:
            authorizer = self._oauth = OAuthAuthorizer(
                credentials,
                f"{self.org_url}/oauth2/v1/token",
                wall_time=clock.time,
                monotonic=clock.monotonic,
            )
        self._transport = Transport(
            self.org_url,
            authorizer=authorizer,
            max_concurrency=max_concurrency,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            retry_budget=retry_budget or RetryBudget(),
            clock=clock,
            stats=self.stats,
            user_agent=user_agent,
            rng=rng,
            on_request=on_request,
            max_response_bytes=max_response_bytes,
        )
        if self._oauth is not None:
            self._oauth.fetch = self._transport.fetch_token

    def __repr__(self) -> str:
        """The org, never the credentials."""
        return f"OktaApiClient({str(self.org_url)!r})"

    async def open(self) -> None:
        """Open the HTTP session."""
        await self._transport.open()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._transport.close()

    async def __aenter__(self) -> Self:
        """``async with OktaApiClient(...) as okta``."""
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close on leaving the block."""
        await self.close()

    # -- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def _segment(value: str) -> str:
        """One path segment, percent-encoded (a login may hold ``/``, ``+``, ``#``, ``?``)."""
        if not value:
            raise ValueError("an Okta id or login cannot be empty")
        return quote(value, safe="@")

    async def _pages(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[list[Any]]:
        """Each page of a list, following ``Link: <...>; rel="next"`` as Okta gives it."""
        target: str | URL = path
        query = params
        seen: set[str] = set()
        while True:
            answer = await self._transport.call("GET", target, params=query, idempotent=True)
            operation = f"GET {path_template(answer.url.raw_path)}"
            if not isinstance(answer.body, list):
                raise OktaApiError(
                    answer.status, "bad_response", "expected a JSON list", operation=operation
                )
            yield answer.body
            following = next_link(answer.headers.getall("Link", []), answer.url)
            if following is None:
                return
            # The next link would carry the token to another origin: never follow it.
            self._check_origin(following, answer.status, operation)
            if str(following) in seen:
                raise OktaApiError(
                    answer.status,
                    "bad_response",
                    "the next-page link repeats an earlier page",
                    operation=operation,
                )
            seen.add(str(following))
            target, query = following, None

    def _check_origin(self, following: URL, status: int, operation: str) -> None:
        """Raise unless a link Okta handed back stays on the org's origin."""
        foreign = foreign_origin(str(following), [str(self.org_url)])
        if foreign is not None:
            raise OktaApiError(
                status,
                "bad_response",
                f"the next-page link points to {foreign}, outside the Okta org",
                operation=operation,
            )

    async def _items(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object of a list, page by page (one page in memory at a time)."""
        async for page in self._pages(path, params):
            for item in page:
                if isinstance(item, dict):
                    yield item

    async def _list(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """A whole (short) list, such as the org's hooks."""
        return [item async for item in self._items(path, params)]

    @staticmethod
    def _object(answer: Answer) -> dict[str, Any]:
        """The answer's JSON object (``bad_response`` when it is something else)."""
        if not isinstance(answer.body, dict):
            raise OktaApiError(
                answer.status,
                "bad_response",
                "expected a JSON object",
                operation=path_template(answer.url.raw_path),
            )
        return answer.body

    # -- users --------------------------------------------------------------------------------
    async def create_user(
        self,
        profile: Mapping[str, Any],
        *,
        hook: bool = True,
        activate: bool = True,
        group_ids: Sequence[str] = (),
        password_hash: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/users?activate=...``: one call creates the user with the password hook.

        With ``hook`` the password credential is ``{"hook": {"type": "default"}}``, so with
        ``activate`` the user is ACTIVE with provider IMPORT and no activation email is sent.
        With ``password_hash`` (and ``hook=False``) it is ``{"hash": {...}}`` instead: a hash
        Okta checks itself (``PasswordCredentialHash``), so the user is migrated at creation.
        Creating is not idempotent: when an attempt's answer is lost (timeout, dropped
        connection, 5xx), the login is looked up before anything is sent again, and a user found
        is returned instead (``stats.recovered``). Such a user is very likely the lost attempt's;
        it could only be someone else's if the login appeared in Okta during that same call.
        """
        login = profile.get("login")
        if not isinstance(login, str) or not login:
            raise ValueError("profile.login is required to create an Okta user")
        if hook and password_hash is not None:
            raise ValueError("give the password hook or a password hash, not both")
        if activate and not hook and password_hash is None:
            # Okta would mail an activation link and leave the user PROVISIONED, which the
            # migration can never activate again with the hook (issue 10).
            raise ValueError("refusing to activate a new user without the password hook")
        body: dict[str, Any] = {"profile": dict(profile)}
        if hook:
            body["credentials"] = PASSWORD_HOOK
        elif password_hash is not None:
            body["credentials"] = {"password": {"hash": dict(password_hash)}}
        if group_ids:
            body["groupIds"] = list(group_ids)

        async def lookup() -> Answer | None:
            """The user the lost attempt may have created."""
            found = await self.get_user(login)
            if found is None:
                return None
            return synthetic(200, found, self.org_url)

        async def settle(error: OktaApiError) -> Answer | None:
            """A duplicate login on a retry is the earlier attempt's user."""
            if error.code == "E0000001" and error.has_cause(DUPLICATE_LOGIN_CAUSE):
                found = await lookup()
                if found is not None:
                    self.stats.recovered += 1
                return found
            return None

        answer = await self._transport.call(
            "POST",
            "/api/v1/users",
            params={"activate": "true" if activate else "false"},
            json_body=body,
            idempotent=False,
            recover=lookup,
            settle=settle,
        )
        return self._object(answer)

    async def get_user(self, id_or_login: str) -> dict[str, Any] | None:
        """``GET /api/v1/users/{idOrLogin}``; None when Okta has no such user (404)."""
        try:
            answer = await self._transport.call(
                "GET", f"/api/v1/users/{self._segment(id_or_login)}", idempotent=True
            )
        except OktaApiError as error:
            if error.status == 404:
                return None
            raise
        return self._object(answer)

    def list_users(
        self,
        *,
        search: str | None = None,
        filter: str | None = None,  # Okta's parameter name
        limit: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """``GET /api/v1/users`` with ``search`` or ``filter``, every page, one page at a time.

        ``search`` (Okta's recommendation) and ``filter`` include DEPROVISIONED users; no
        expression lists everyone else. Results are eventually consistent (about a second).
        """
        if search is not None and filter is not None:
            raise ValueError("give search or filter, not both")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}")
        params = {"limit": str(limit)}
        if search is not None:
            params["search"] = search
        if filter is not None:
            params["filter"] = filter
        return self._items("/api/v1/users", params)

    async def put_password_hook(self, user_id: str) -> dict[str, Any]:
        """Give an existing (e.g. STAGED) user the password import hook.

        ``POST /api/v1/users/{id}`` is Okta's partial update (``PUT`` would replace the whole
        user); the body carries only ``credentials.password.hook`` (reference §2.3).
        """
        answer = await self._transport.call(
            "POST",
            f"/api/v1/users/{self._segment(user_id)}",
            json_body={"credentials": PASSWORD_HOOK},
            idempotent=True,  # setting the same hook twice changes nothing
        )
        return self._object(answer)

    async def update_profile(self, user_id: str, changed: Mapping[str, Any]) -> dict[str, Any]:
        """Partial profile update (``POST /api/v1/users/{id}``) with only ``changed``.

        Attributes not named keep their values; a ``None`` value removes the attribute.
        """
        if not changed:
            raise ValueError("update_profile needs at least one changed attribute")
        answer = await self._transport.call(
            "POST",
            f"/api/v1/users/{self._segment(user_id)}",
            json_body={"profile": dict(changed)},
            idempotent=True,  # the same values again change nothing
        )
        return self._object(answer)

    async def activate(self, user_id: str, *, send_email: bool = False) -> None:
        """``POST /api/v1/users/{id}/lifecycle/activate?sendEmail=false``.

        Only STAGED or DEPROVISIONED users can be activated (else 403 E0000016, raised). When an
        earlier attempt's answer was lost, E0000016 on the retry means that attempt activated
        the user, and counts as success. The activation token Okta returns is not kept.
        """

        async def settle(error: OktaApiError) -> Answer | None:
            """Already active after a lost attempt: done."""
            if error.status == 403 and error.code == ALREADY_ACTIVE:
                return synthetic(200, None, self.org_url)
            return None

        await self._transport.call(
            "POST",
            f"/api/v1/users/{self._segment(user_id)}/lifecycle/activate",
            params={"sendEmail": "true" if send_email else "false"},
            idempotent=True,
            settle=settle,
        )

    async def deactivate(self, user_id: str, *, send_email: bool = False) -> None:
        """``POST /api/v1/users/{id}/lifecycle/deactivate`` (any status; sessions end)."""
        await self._transport.call(
            "POST",
            f"/api/v1/users/{self._segment(user_id)}/lifecycle/deactivate",
            params={"sendEmail": "true" if send_email else "false"},
            idempotent=True,
        )

    async def reset_password(self, user_id: str, *, send_email: bool = True) -> dict[str, Any]:
        """``POST /api/v1/users/{id}/lifecycle/reset_password?sendEmail=...``.

        With ``sendEmail=true`` Okta mails the user a reset link and answers ``{}``; with
        ``false`` it answers ``{"resetPasswordUrl": ...}`` for the caller to deliver. The user
        goes to RECOVERY. Sent again after a lost answer (at worst a second email).
        """
        answer = await self._transport.call(
            "POST",
            f"/api/v1/users/{self._segment(user_id)}/lifecycle/reset_password",
            params={"sendEmail": "true" if send_email else "false"},
            idempotent=True,
        )
        return answer.body if isinstance(answer.body, dict) else {}

    async def expire_password(self, user_id: str) -> dict[str, Any]:
        """``POST /api/v1/users/{id}/lifecycle/expire_password``: PASSWORD_EXPIRED, the user.

        The user must choose a new password at the next sign-in; Okta answers the user.
        """
        answer = await self._transport.call(
            "POST",
            f"/api/v1/users/{self._segment(user_id)}/lifecycle/expire_password",
            idempotent=True,  # expiring an expired password changes nothing
        )
        return answer.body if isinstance(answer.body, dict) else {}

    async def delete_user(self, user_id: str, *, send_email: bool = False) -> None:
        """``DELETE /api/v1/users/{id}``.

        Okta deletes only a DEPROVISIONED user; on any other it only deactivates (a second
        DELETE then deletes), so call ``deactivate`` first. A 404 on a retry after a lost
        answer means the lost attempt deleted the user, and counts as success.
        """

        async def settle(error: OktaApiError) -> Answer | None:
            """Gone after a lost attempt: done."""
            return synthetic(204, None, self.org_url) if error.status == 404 else None

        await self._transport.call(
            "DELETE",
            f"/api/v1/users/{self._segment(user_id)}",
            params={"sendEmail": "true" if send_email else "false"},
            idempotent=True,
            settle=settle,
        )

    # -- system log ---------------------------------------------------------------------------
    async def list_log_events(
        self,
        *,
        filter: str | None = None,  # Okta's parameter name
        since: str | None = None,
        limit: int = 1000,
    ) -> AsyncIterator[dict[str, Any]]:
        """``GET /api/v1/logs?filter=...&since=...``: events oldest first, until caught up.

        The System Log is a polling API: it always sends a ``next`` link, also on its last
        page (reference/okta-hooks.md §2.5), so the listing ends at the first short page
        instead. ``since`` is ISO 8601; Okta's default is seven days ago.
        """
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1..1000")
        params = {"limit": str(limit), "sortOrder": "ASCENDING"}
        if filter is not None:
            params["filter"] = filter
        if since is not None:
            params["since"] = since
        target: str | URL = "/api/v1/logs"
        query: Mapping[str, str] | None = params
        while True:
            answer = await self._transport.call("GET", target, params=query, idempotent=True)
            if not isinstance(answer.body, list):
                raise OktaApiError(
                    answer.status,
                    "bad_response",
                    "expected a JSON list",
                    operation="GET /api/v1/logs",
                )
            for item in answer.body:
                if isinstance(item, dict):
                    yield item
            following = next_link(answer.headers.getall("Link", []), answer.url)
            if len(answer.body) < limit or following is None:
                return
            self._check_origin(following, answer.status, "GET /api/v1/logs")
            target, query = following, None

    # -- inline hooks -------------------------------------------------------------------------
    async def list_inline_hooks(self, hook_type: str | None = None) -> list[dict[str, Any]]:
        """``GET /api/v1/inlineHooks[?type=...]``."""
        return await self._list("/api/v1/inlineHooks", {"type": hook_type} if hook_type else None)

    async def create_inline_hook(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/inlineHooks`` (created ACTIVE; not retried after a lost answer)."""
        answer = await self._transport.call(
            "POST", "/api/v1/inlineHooks", json_body=dict(body), idempotent=False
        )
        return self._object(answer)

    async def update_inline_hook(self, hook_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/inlineHooks/{id}``: partial update (name, channel)."""
        answer = await self._transport.call(
            "POST",
            f"/api/v1/inlineHooks/{self._segment(hook_id)}",
            json_body=dict(body),
            idempotent=True,
        )
        return self._object(answer)

    async def activate_inline_hook(self, hook_id: str) -> dict[str, Any]:
        """``POST /api/v1/inlineHooks/{id}/lifecycle/activate``."""
        answer = await self._transport.call(
            "POST",
            f"/api/v1/inlineHooks/{self._segment(hook_id)}/lifecycle/activate",
            idempotent=True,
        )
        return self._object(answer)

    # -- event hooks --------------------------------------------------------------------------
    async def list_event_hooks(self) -> list[dict[str, Any]]:
        """``GET /api/v1/eventHooks``."""
        return await self._list("/api/v1/eventHooks")

    async def create_event_hook(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/eventHooks`` (ACTIVE, UNVERIFIED; not retried after a lost answer)."""
        answer = await self._transport.call(
            "POST", "/api/v1/eventHooks", json_body=dict(body), idempotent=False
        )
        return self._object(answer)

    async def update_event_hook(self, hook_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /api/v1/eventHooks/{id}``: full replace (Okta has no partial update here)."""
        answer = await self._transport.call(
            "PUT",
            f"/api/v1/eventHooks/{self._segment(hook_id)}",
            json_body=dict(body),
            idempotent=True,
        )
        return self._object(answer)

    async def activate_event_hook(self, hook_id: str) -> dict[str, Any]:
        """``POST /api/v1/eventHooks/{id}/lifecycle/activate``."""
        answer = await self._transport.call(
            "POST",
            f"/api/v1/eventHooks/{self._segment(hook_id)}/lifecycle/activate",
            idempotent=True,
        )
        return self._object(answer)

    async def verify_event_hook(self, hook_id: str) -> dict[str, Any]:
        """``POST /api/v1/eventHooks/{id}/lifecycle/verify``: Okta sends its one-time GET challenge.

        Okta waits up to 3 s (and retries once) for the hook endpoint before answering.
        """
        answer = await self._transport.call(
            "POST",
            f"/api/v1/eventHooks/{self._segment(hook_id)}/lifecycle/verify",
            idempotent=True,
        )
        return self._object(answer)

    # -- preflight ----------------------------------------------------------------------------
    async def check_scopes(self) -> list[ScopeCheck]:
        """What this client may do, for ``migrate check``: read probes, and the granted scopes.

        Reads are probed (``GET /api/v1/users?limit=1``, the inline and event hook lists): 403
        E0000006 means the scope (OAuth) or the admin role (SSWS) is missing. Nothing is
        written: ``.manage`` scopes are read from the token Okta granted (OAuth); for an API
        token they follow the admin's role and are reported ``unknown``.
        """
        probes = [
            ("okta.users.read", "/api/v1/users", {"limit": "1"}),
            ("okta.inlineHooks.read", "/api/v1/inlineHooks", None),
            ("okta.eventHooks.read", "/api/v1/eventHooks", None),
        ]
        checks: list[ScopeCheck] = []
        for scope, path, params in probes:
            try:
                await self._transport.call("GET", path, params=params, idempotent=True)
            except OktaApiError as error:
                if error.status == 403 and error.code == INSUFFICIENT_SCOPE:
                    checks.append(ScopeCheck(scope, "missing", error.one_line()))
                else:
                    checks.append(ScopeCheck(scope, "error", error.one_line()))
            else:
                checks.append(ScopeCheck(scope, "ok", f"GET {path} answered"))
        for scope in ("okta.users.manage", "okta.inlineHooks.manage", "okta.eventHooks.manage"):
            if self._oauth is None:
                checks.append(
                    ScopeCheck(scope, "unknown", "API token: depends on the token admin's role")
                )
            elif not self._oauth.granted_scopes:
                checks.append(ScopeCheck(scope, "unknown", "Okta issued no access token"))
            elif scope in self._oauth.granted_scopes:
                checks.append(ScopeCheck(scope, "ok", "granted to the service app's token"))
            else:
                checks.append(
                    ScopeCheck(scope, "missing", "not granted: add it to the app and to scopes")
                )
        return checks
