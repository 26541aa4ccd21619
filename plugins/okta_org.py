"""Another Okta org as a source (after a merger, say): Okta's Authentication API, primary authentication.

`POST {org_url}/api/v1/authn` with `{"username", "password"}`, as a *public application*: no API
token, so nothing here can change the source org, and the gateway holds no admin secret for it.
Okta answers a transaction state (200) or `401 E0000004` (Okta's Authentication API reference):

| Answer | Result (reason) |
|---|---|
| `SUCCESS`, `PASSWORD_WARN` (password right, expiring soon) | verified (`ok`, `password_warn`) |
| `MFA_REQUIRED`, `MFA_ENROLL`, `MFA_CHALLENGE`, `MFA_ENROLL_ACTIVATE` | `policy.mfa_required` |
| `PASSWORD_EXPIRED` | `policy.password_expired` |
| `LOCKED_OUT` | denied (`locked_out`) |
| `RECOVERY`, `RECOVERY_CHALLENGE`, `PASSWORD_RESET`, `UNAUTHENTICATED` | denied (their names) |
| any other state | denied (`unknown_status`): fail closed |
| 401 `E0000004` (wrong password, unknown user, hidden lockout, refused by policy) | denied |
| 429 | unavailable (`http_429`), source cool-down until `X-Rate-Limit-Reset` |
| 5xx, timeout, no connection, a body that is not a transaction | unavailable |
| 400 | unavailable (`http_400`) |
| 3xx, any other 4xx, 401 with another code | unavailable (`unexpected_status`): misconfigured |

Okta evaluates MFA and password expiry only after the password was found right, which is why
those states follow the policy switches (as Entra's MFA codes do). Okta does not tell an unknown
user from a wrong password, so every E0000004 is a denial about a user this source may have: a
route never passes it to a next source (a wrong password is never tried twice).

What is never done: keep the `sessionToken` or `stateToken` (only `status` is read from the
answer, the parsed body is dropped at once), log them or the password, put either in an
exception message, or share cookies between users (Okta sets some on authn answers; the session
has a jar that stores nothing). No `X-Forwarded-For` is sent: Okta honours it only from a trusted
application (API token and an allow-listed gateway IP), so the source org sees every attempt
coming from the gateway's address; its ThreatInsight, network zones and sign-on policy apply to
that address.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import ClassVar, Final, Literal
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import certifi
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator

from gateway.upstream_body import UpstreamBodyError, capped_session, read_capped
from plugins.base import OUTAGE_REASONS, Result, Source, SourceConfig, Verdict, is_loopback_http

logger = logging.getLogger(__name__)

AUTHN_PATH: Final = "/api/v1/authn"
# Okta's authn answers are a few kilobytes; anything far larger is not one.
MAX_BODY_BYTES: Final = 256 * 1024
# Okta's rate-limit windows last about a minute: a Reset further out than this is a clock or a
# proxy to distrust, and a cool-down shorter than a second is not worth setting.
MAX_RETRY_AFTER: Final = 60.0
MIN_RETRY_AFTER: Final = 1.0

# Transaction states (Okta Authentication API, "Transaction state") and what each one means here.
VERIFIED_STATES: Final = {"SUCCESS": "ok", "PASSWORD_WARN": "password_warn"}
# Reached only after the password was validated: the policy's `mfa_required` decides.
MFA_STATES: Final = {
    "MFA_REQUIRED": "mfa_required",
    "MFA_ENROLL": "mfa_enroll",
    "MFA_CHALLENGE": "mfa_challenge",
    "MFA_ENROLL_ACTIVATE": "mfa_enroll_activate",
}
# Not a validated password (locked, or a recovery flow): denied.
DENIED_STATES: Final = {
    "LOCKED_OUT": "locked_out",
    "RECOVERY": "recovery",
    "RECOVERY_CHALLENGE": "recovery_challenge",
    "PASSWORD_RESET": "password_reset",
    "UNAUTHENTICATED": "unauthenticated",
}
PASSWORD_EXPIRED_REASON: Final = "password_expired"  # noqa: S105 - a reason code
# The org (or what answers at org_url) refuses the gateway's request itself: every user fails.
MISCONFIGURATION_REASONS: Final = frozenset({"unexpected_status"})


class OktaOrgPolicy(BaseModel):
    """Product decisions for states that imply a right password but another obstacle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mfa_required: Literal["verified", "unverified"] = "verified"
    password_expired: Literal["verified", "unverified"] = "unverified"  # noqa: S105


class OktaOrgTimeouts(BaseModel):
    """Limits for one authn call: getting a connection, and the whole exchange."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: StrictFloat = Field(1.5, gt=0, le=30)
    total: StrictFloat = Field(2.5, gt=0, le=30)


class OktaOrgConfig(SourceConfig):
    """`type: okta_org`."""

    type: Literal["okta_org"]
    org_url: str
    timeouts: OktaOrgTimeouts = OktaOrgTimeouts()
    # Pooled connections to the org; above Okta's ~75 concurrent hook calls with room to spare.
    pool_size: StrictInt = Field(256, ge=1, le=4096)
    policy: OktaOrgPolicy = OktaOrgPolicy()

    @field_validator("org_url")
    @classmethod
    def _org_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if is_loopback_http(value):
            return value
        parts = urlsplit(value)
        if (
            parts.scheme != "https"
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise ValueError(
                "must be https://<host> such as https://acme.okta.com "
                "(plain http only for an emulator on 127.0.0.1/localhost)"
            )
        return value


def _user_agent() -> str:
    """Okta asks API clients to identify themselves."""
    try:
        release = version("okta-password-gateway")
    except PackageNotFoundError:
        release = "0"
    return f"okta-password-gateway/{release} (okta_org source)"


class OktaOrgSource(Source):
    """Verifies passwords with another Okta org's primary authentication (`POST /api/v1/authn`)."""

    config_class: ClassVar[type[SourceConfig]] = OktaOrgConfig
    known_reasons: ClassVar[frozenset[str]] = frozenset(
        {"password_warn", PASSWORD_EXPIRED_REASON, "e0000004", "unknown_status", "http_400"}
        | set(MFA_STATES.values())
        | set(DENIED_STATES.values())
        | MISCONFIGURATION_REASONS
    )
    misconfiguration_reasons: ClassVar[frozenset[str]] = MISCONFIGURATION_REASONS
    outage_reasons: ClassVar[frozenset[str]] = OUTAGE_REASONS

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, OktaOrgConfig):
            raise TypeError("OktaOrgSource needs an OktaOrgConfig")
        super().__init__(config)
        self.settings = config
        self._url = config.org_url + AUTHN_PATH
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": _user_agent(),
        }

    @property
    def ready(self) -> bool:
        """True once the connection pool exists (Okta needs no discovery)."""
        return self._session is not None

    @property
    def last_error(self) -> str | None:
        """`not_started` until `start` ran."""
        return None if self.ready else "not_started"

    async def start(self) -> None:
        """Open the bounded connection pool (needs the running loop)."""
        settings = self.settings
        # Operators point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at a corporate CA, as for Entra.
        ca_file = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("SSL_CERT_FILE")
            or certifi.where()
        )
        connector = aiohttp.TCPConnector(
            limit=settings.pool_size,
            ssl=ssl.create_default_context(cafile=ca_file),
            ttl_dns_cache=300,
        )
        self._session = capped_session(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=settings.timeouts.total, connect=settings.timeouts.connect
            ),
            # Okta sets cookies on authn answers: one user's must never ride on another's call.
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # would read ~/.netrc; the proxy is resolved below instead
        )
        self._proxy = self._proxy_for(settings.org_url)

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, username: str, password: str) -> Verdict:
        """One primary authentication; never raises for upstream trouble."""
        if not password:
            # Refused before any I/O, as the hook does: some directories read it as anonymous.
            return self.verdict(Result.DENIED, "empty_password", sent=False)
        session = self._session
        if session is None:
            return self.verdict(Result.UNAVAILABLE, "not_ready", sent=False)
        body = json.dumps({"username": username, "password": password}).encode("utf-8")
        try:
            async with session.post(
                self._url,
                data=body,
                headers=self._headers,
                proxy=self._proxy,
                allow_redirects=False,
            ) as response:
                status = response.status
                payload = await read_capped(response, MAX_BODY_BYTES)
                reset = response.headers.get("X-Rate-Limit-Reset")
                date = response.headers.get("Date")
        except aiohttp.ClientConnectorError:
            # No connection was made: the password never left, the attempt is given back.
            return self.verdict(Result.UNAVAILABLE, "network", sent=False)
        except TimeoutError:  # aiohttp's connect/read timeouts are TimeoutErrors too
            return self.verdict(Result.UNAVAILABLE, "timeout")
        except (aiohttp.ClientError, OSError):
            return self.verdict(Result.UNAVAILABLE, "network")
        except UpstreamBodyError:  # too large or undecodable: content, not an outage
            return self.verdict(Result.UNAVAILABLE, "bad_response")
        result, reason = decide(status, payload, self.settings.policy)
        if reason in MISCONFIGURATION_REASONS:
            logger.error(
                "the okta org refused the gateway's authn request; check org_url",
                extra={"source": self.name, "reason": reason, "status": status},
            )
        elif reason in {"unknown_status", "http_400"}:
            logger.warning(
                "unexpected answer from the okta org's authn endpoint",
                extra={"source": self.name, "reason": reason, "status": status},
            )
        if reason == "http_429":
            return self.verdict(
                result,
                reason,
                throttle="source",
                retry_after=retry_after_seconds(reset, date, time.time()),
            )
        return self.verdict(result, reason)

    def _proxy_for(self, url: str) -> str | None:
        """HTTPS_PROXY / NO_PROXY as requests would honour them; never for a loopback emulator."""
        if is_loopback_http(url):
            return None
        host = urlsplit(url).hostname or ""
        proxy = getproxies().get("https")
        return None if not proxy or proxy_bypass(host) else proxy


def decide(status: int, payload: bytes, policy: OktaOrgPolicy) -> tuple[Result, str]:
    """Map an authn answer (HTTP status and body) to a result and reason code."""
    if status == 200:
        state = _field(payload, "status")
        if state is None:
            return Result.UNAVAILABLE, "bad_response"
        return decide_state(state, policy)
    if status == 401:
        if _field(payload, "errorCode") == "E0000004":
            return Result.DENIED, "e0000004"
        return Result.UNAVAILABLE, "unexpected_status"
    if status == 429:
        return Result.UNAVAILABLE, "http_429"
    if status >= 500:
        return Result.UNAVAILABLE, "http_5xx"
    if status == 400:
        return Result.UNAVAILABLE, "http_400"
    if 200 <= status < 300:
        return Result.UNAVAILABLE, "bad_response"
    return Result.UNAVAILABLE, "unexpected_status"


def decide_state(state: str, policy: OktaOrgPolicy) -> tuple[Result, str]:
    """Map one transaction state to a result and reason (see the module's table)."""

    def by_policy(setting: str) -> Result:
        return Result.VERIFIED if setting == "verified" else Result.DENIED

    if state in VERIFIED_STATES:
        return Result.VERIFIED, VERIFIED_STATES[state]
    if state in MFA_STATES:
        return by_policy(policy.mfa_required), MFA_STATES[state]
    if state == "PASSWORD_EXPIRED":
        return by_policy(policy.password_expired), PASSWORD_EXPIRED_REASON
    if state in DENIED_STATES:
        return Result.DENIED, DENIED_STATES[state]
    return Result.DENIED, "unknown_status"  # a state Okta added later: fail closed


def _field(payload: bytes, name: str) -> str | None:
    """One string field of a JSON object body, or None; the rest of the body is dropped."""
    try:
        parsed = json.loads(payload)
    except ValueError:  # UnicodeDecodeError is one too
        return None
    value = parsed.get(name) if isinstance(parsed, dict) else None
    del parsed  # the sessionToken / stateToken go with it
    return value if isinstance(value, str) else None


def retry_after_seconds(reset: str | None, date: str | None, now: float) -> float | None:
    """Seconds until `X-Rate-Limit-Reset` (epoch seconds), bounded; None if it is unusable.

    Measured from the answer's own `Date` (Okta's clock, as its SDKs do) so a skewed local
    clock cannot stretch or cancel the cool-down; from `now` when there is no usable Date.
    """
    if reset is None:
        return None
    try:
        reset_at = float(reset.strip())
    except ValueError:
        return None
    if reset_at != reset_at or reset_at in (float("inf"), float("-inf")):  # NaN, infinities
        return None
    base = now
    if date is not None:
        try:
            base = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            base = now
    return min(max(reset_at - base, MIN_RETRY_AFTER), MAX_RETRY_AFTER)
