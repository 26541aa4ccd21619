"""Microsoft Entra ID (Azure AD) source: ROPC through msal's ConfidentialClientApplication.

msal is blocking and has caches that are wrong for a password checker (reference/entra-ropc-msal.md
§4): it replays one user's 429/5xx to every other user and breaks for good after ~1,000 cached
entries. So this module gives msal an HTTP cache and a token cache that store nothing, and does
the caching that is worth doing (user realm per domain) in the HTTP client it hands msal
(`plugins.entra_http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

import aiohttp
import msal
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from gateway.upstream_body import UpstreamBodyError
from plugins.base import (
    OUTAGE_REASONS,
    Result,
    Source,
    SourceConfig,
    Verdict,
    is_loopback_http,
    xml_unsafe,
)
from plugins.entra_http import (
    EntraHttpClient,
    UpstreamHTTPError,
    last_token_response,
    password_sent,
)
from plugins.sync_bridge import run_sync

logger = logging.getLogger(__name__)

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
# msal insists on an https authority; in loopback mode it gets this one and every URL is rewritten.
LOOPBACK_AUTHORITY_HOST = "https://login.loopback.invalid"

# Decision table (reference/entra-ropc-msal.md §2 and §7). Conditional Access and MFA are evaluated
# after the first factor, so these codes mean the password itself was right.
MFA_CODES = frozenset({50076, 50079, 50072, 50074, 50158})
CONDITIONAL_ACCESS_CODES = frozenset({53003})
PASSWORD_EXPIRED_CODES = frozenset({50055, 50144})
# The gateway or the tenant is set up wrong: nobody can be verified until an admin fixes it.
MISCONFIGURATION_CODES = frozenset(
    {65001, 7000218, 7000215, 7000222, 700016, 90002, 9001023, 50194, 530032, 530035,
     50105, 70011, 500011, 700027, 7000112, 70002, 700023}
)  # fmt: skip
# Entra is throttling: for one user (loop detection) or for the whole tenant.
THROTTLING_CODES = frozenset({50196, 90055})
# Pass-through authentication agents / on-premises AD could not be reached.
TRANSIENT_CODES = frozenset({80001, 80002, 80005, 80007, 80014, 90033})
MISCONFIGURATION_REASONS = frozenset(f"aadsts_{code}" for code in MISCONFIGURATION_CODES)
# The tenant has no such user (or domain): another source on the route may have them.
UNKNOWN_USER_REASONS = frozenset({"aadsts_50034", "aadsts_50128", "aadsts_50059"})
_AADSTS_IN_TEXT = re.compile(r"AADSTS(\d+)")


class AzureAdPolicy(BaseModel):
    """Product decisions for codes that imply a right password but another obstacle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mfa_required: Literal["verified", "unverified"] = "verified"
    conditional_access_blocked: Literal["verified", "unverified"] = "verified"
    password_expired: Literal["verified", "unverified"] = "unverified"  # noqa: S105


class AzureAdCertificate(BaseModel):
    """Client certificate credential (preferred over a secret by Microsoft)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    private_key_file: str
    certificate_file: str  # PEM; its SHA-1 thumbprint identifies the key to Entra
    send_certificate_chain: StrictBool = False  # x5c, for subject-name/issuer auth


class AzureAdTimeouts(BaseModel):
    """Per-HTTP-request limits; msal applies none by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_seconds: StrictFloat = Field(1.5, gt=0, le=30)
    read_seconds: StrictFloat = Field(2.5, gt=0, le=30)
    # A whole request, answer included: a read timeout never ends an answer dripped byte by
    # byte. Sign-ins are cut by the hook budget long before; this bounds Graph calls of imports.
    total_seconds: StrictFloat = Field(30, gt=0, le=300)


class AzureAdConfig(SourceConfig):
    """`type: azure_ad`."""

    type: Literal["azure_ad"]
    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    certificate: AzureAdCertificate | None = None
    authority: str = DEFAULT_AUTHORITY
    scopes: list[str] = Field(default_factory=lambda: ["User.Read"])
    policy: AzureAdPolicy = AzureAdPolicy()
    timeouts: AzureAdTimeouts = AzureAdTimeouts()
    # Concurrent connections to Entra; above Okta's ~75 concurrent hook calls with room to spare.
    max_connections: StrictInt = Field(256, ge=1, le=4096)
    realm_cache_seconds: StrictFloat = Field(3600, ge=0)
    realm_cache_size: StrictInt = Field(10_000, ge=1)
    startup_retry_max_seconds: StrictFloat = Field(60, gt=0)
    # Okta logins that are not the Entra UPN (often the email): look the UPN up in Graph first.
    resolve_username: Literal["none", "graph"] = "none"
    resolve_by: tuple[Literal["userPrincipalName", "mail", "proxyAddresses"], ...] = (
        "userPrincipalName",
        "mail",
        "proxyAddresses",
    )
    resolve_cache_seconds: StrictFloat = Field(3600, ge=0)
    graph_endpoint: str = "https://graph.microsoft.com"
    # One Graph answer (a page of 999 users is about 1 MB with a few attributes selected); msal's
    # own answers (token, realm, discovery, AD FS) are capped at a fixed 1 MiB.
    max_response_bytes: StrictInt = Field(16 * 1024 * 1024, ge=65536, le=256 * 1024 * 1024)

    @field_validator("tenant_id")
    @classmethod
    def _tenant_specific(cls, value: str) -> str:
        if value.strip().lower() in {"common", "consumers"}:
            raise ValueError(f"'{value}' cannot verify passwords; use your tenant id")
        if not re.fullmatch(r"[A-Za-z0-9.-]+", value):
            raise ValueError("must be a tenant id (GUID) or a verified domain name")
        return value

    @field_validator("authority")
    @classmethod
    def _authority_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if is_loopback_http(value):
            return value
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.path or parts.query:
            raise ValueError(
                "must be https://<host> such as https://login.microsoftonline.com "
                "(plain http only for an emulator on 127.0.0.1/localhost)"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _no_reserved_scopes(cls, value: list[str]) -> list[str]:
        reserved = {"openid", "profile", "offline_access"} & {s.lower() for s in value}
        if reserved:
            raise ValueError(f"msal adds {', '.join(sorted(reserved))} itself; remove them")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> AzureAdConfig:
        if (self.client_secret is None) == (self.certificate is None):
            raise ValueError("give exactly one of client_secret or certificate")
        return self

    @property
    def loopback(self) -> bool:
        """True when the authority is a local emulator reached over plain HTTP."""
        return self.authority.startswith("http://")


class _NoStoreHttpCache(dict[Any, Any]):
    """msal's HTTP cache replays answers across users and breaks past 1,024 entries: keep nothing."""

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


class _NoStoreTokenCache(msal.TokenCache):  # type: ignore[misc]
    """ROPC never reads the token cache; storing every user's tokens would only grow memory."""

    def add(self, event: Any, **kwargs: Any) -> None:
        return None


class AzureAdSource(Source):
    """Verifies passwords against Entra ID with ROPC (managed users) or WS-Trust (federated)."""

    config_class: ClassVar[type[SourceConfig]] = AzureAdConfig
    known_reasons: ClassVar[frozenset[str]] = frozenset(
        {f"aadsts_{code}" for code in (
            MFA_CODES | CONDITIONAL_ACCESS_CODES | PASSWORD_EXPIRED_CODES
            | MISCONFIGURATION_CODES | THROTTLING_CODES | TRANSIENT_CODES
            | {50126, 50034, 50053, 50057, 50135}
        )} | {"adfs_failed_authentication", "unsupported_characters"}
    )  # fmt: skip
    misconfiguration_reasons: ClassVar[frozenset[str]] = MISCONFIGURATION_REASONS
    # Pass-through agents or on-premises AD unreachable: the tenant is in trouble for everyone.
    outage_reasons: ClassVar[frozenset[str]] = OUTAGE_REASONS | frozenset(
        f"aadsts_{code}" for code in TRANSIENT_CODES
    )

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, AzureAdConfig):
            raise TypeError("AzureAdSource needs an AzureAdConfig")
        super().__init__(config)
        self.settings = config
        self._app: msal.ConfidentialClientApplication | None = None
        self._graph_app: msal.ConfidentialClientApplication | None = None
        self._token_lock = asyncio.Lock()
        self._http: EntraHttpClient | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._last_error: str | None = "not_started"

    @property
    def ready(self) -> bool:
        """True once msal has read the tenant's discovery document."""
        return self._app is not None

    @property
    def last_error(self) -> str | None:
        """Why the source is not ready yet, as a reason code."""
        return None if self.ready else self._last_error

    @property
    def http_client(self) -> EntraHttpClient | None:
        """The client msal uses (exposed for tests and benchmarks)."""
        return self._http

    async def start(self) -> None:
        """Build the msal app once; if Entra is unreachable, keep trying in the background."""
        settings = self.settings
        self._http = EntraHttpClient(
            loopback_base=settings.authority if settings.loopback else None,
            connect_seconds=settings.timeouts.connect_seconds,
            read_seconds=settings.timeouts.read_seconds,
            total_seconds=settings.timeouts.total_seconds,
            max_connections=settings.max_connections,
            max_graph_response_bytes=settings.max_response_bytes,
            realm_cache_seconds=settings.realm_cache_seconds,
            realm_cache_size=settings.realm_cache_size,
        )
        await self._http.start()
        credential = self._client_credential()
        if not await self._try_build(credential):
            self._retry_task = asyncio.create_task(self._build_until_ready(credential))

    async def close(self) -> None:
        """Stop the background retry and close the connection pool."""
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
        if self._http is not None:
            await self._http.aclose()

    def unsupported_input(self, username: str, password: str) -> str | None:
        """Characters WS-Trust's XML cannot carry, or a line break in the username.

        Federated users' passwords go to AD FS inside a SOAP envelope, where a control character
        or U+FFFE makes the call fail; the username also goes into a URL path and a header.
        No Entra password or UPN can contain them, so they are refused before any I/O.
        """
        if xml_unsafe(password) or xml_unsafe(username) or any(c in username for c in "\r\n\t"):
            return "unsupported_characters"
        return None

    async def verify(self, username: str, password: str) -> Verdict:
        """Ask Entra; every msal exception becomes an `unavailable` or `denied` verdict."""
        if self._app is None:
            return self.verdict(Result.UNAVAILABLE, "not_ready")
        if self.settings.resolve_username == "graph":
            resolved = await self._resolve_upn(username)
            if isinstance(resolved, Verdict):
                return resolved
            username = resolved
        return await run_sync(self._verify_bridged, username, password)

    def _verify_bridged(self, username: str, password: str) -> Verdict:
        """Msal's ROPC call; runs bridged on the event loop (`plugins.sync_bridge`)."""
        assert self._app is not None
        try:
            answer = self._app.acquire_token_by_username_password(
                username, password, scopes=list(self.settings.scopes)
            )
        except Exception as err:  # noqa: BLE001 - msal raises many types; all become verdicts
            result, reason = classify_exception(err)
            status, retry_after_header = last_token_response()
            if isinstance(err, aiohttp.ClientConnectorError) and not password_sent():
                # No connection, nothing carrying the password left: give the attempt back.
                return self.verdict(result, reason, sent=False)
        else:
            status, retry_after_header = last_token_response()
            result, reason = decide(answer, status, self.settings.policy)
        if reason in MISCONFIGURATION_REASONS:
            logger.error(
                "entra rejects the gateway's own configuration; fix the app registration",
                extra={"source": self.name, "reason": reason},
            )
        throttle, retry_after = throttling(reason, retry_after_header)
        return self.verdict(
            result,
            reason,
            unknown_user=reason in UNKNOWN_USER_REASONS,
            throttle=throttle,
            retry_after=retry_after,
        )

    async def _resolve_upn(self, username: str) -> str | Verdict:
        """The UPN for what the user typed (userPrincipalName, mail or proxyAddresses), via Graph.

        Answers are cached, sealed, for `resolve_cache_seconds`: the cache key and the value
        are derived from the typed name, so the store never holds a clear username.
        """
        # The exact typed name: `straße` and `strasse` must never share an answer.
        parts = (self.name, username)
        cache = self.services.username_cache
        cached = await self.services.get_sealed(cache, parts)
        if cached is not None:
            if cached == "":
                return self.verdict(Result.DENIED, "unknown_user", unknown_user=True)
            return cached
        try:
            token = await self.graph_token()
            upns = await run_sync(self._graph_lookup, token, username)
        except GraphError as err:
            return self.verdict(Result.UNAVAILABLE, err.reason)
        if len(upns) > 1:
            logger.warning("username matches several Entra users", extra={"source": self.name})
            return self.verdict(Result.DENIED, "ambiguous_username")
        ttl = self.settings.resolve_cache_seconds
        if ttl > 0:
            await self.services.put_sealed(cache, parts, upns[0] if upns else "", ttl)
        if not upns:
            return self.verdict(Result.DENIED, "unknown_user", unknown_user=True)
        return upns[0]

    async def graph_token(self, *, refresh: bool = False) -> str:
        """An app-only Microsoft Graph token, shared through the token cache until near expiry.

        Concurrent misses in this process wait for one fetch instead of each asking Entra.
        `refresh` skips the cache (Graph answered 401 to the cached token).
        """
        cache, parts = self.services.token_cache, (self.name, "graph")
        token = None if refresh else await self.services.get_sealed(cache, parts)
        if token is not None:
            return token
        async with self._token_lock:
            token = None if refresh else await self.services.get_sealed(cache, parts)
            if token is not None:
                return token
            if self._graph_app is None:
                # Built on first use (an import lists users even when sign-ins resolve nothing).
                self._graph_app = await run_sync(self._build_app, self._client_credential())
            graph_app: msal.ConfidentialClientApplication = self._graph_app
            scopes = [f"{self.settings.graph_endpoint}/.default"]

            def fetch() -> dict[str, Any]:
                try:
                    answer: dict[str, Any] = graph_app.acquire_token_for_client(scopes=scopes)
                except Exception as err:  # noqa: BLE001 - msal raises many types
                    raise GraphError(classify_exception(err)[1]) from None
                return answer

            answer = await run_sync(fetch)
            if "access_token" not in answer:
                reason = decide(answer, None, self.settings.policy)[1]
                logger.error(
                    "cannot get a Graph token", extra={"source": self.name, "reason": reason}
                )
                raise GraphError(reason)
            lifetime = float(answer.get("expires_in", 3599))
            # Renew shortly before expiry (5 minutes, or 10% of short lifetimes).
            ttl = lifetime - min(300.0, lifetime * 0.1)
            await self.services.put_sealed(cache, parts, answer["access_token"], ttl)
            return str(answer["access_token"])

    def _graph_lookup(self, token: str, username: str) -> list[str]:
        """UPNs of the users whose chosen attributes equal `username` (bridged)."""
        assert self._http is not None
        value = username.strip().replace("'", "''")  # OData string literal escaping
        clauses = {
            "userPrincipalName": f"userPrincipalName eq '{value}'",
            "mail": f"mail eq '{value}'",
            "proxyAddresses": f"proxyAddresses/any(p:p eq 'smtp:{value}')",
        }
        params = {
            "$filter": " or ".join(clauses[field] for field in self.settings.resolve_by),
            "$select": "userPrincipalName",
            "$count": "true",
        }
        # proxyAddresses lambdas are "advanced queries": they need ConsistencyLevel + $count.
        headers = {"Authorization": f"Bearer {token}", "ConsistencyLevel": "eventual"}
        url = f"{self.settings.graph_endpoint}/v1.0/users?{urlencode(params)}"
        try:
            response = self._http.graph_get(url, headers)
        except Exception as err:  # noqa: BLE001
            raise GraphError(classify_exception(err)[1]) from None
        if response.status_code in (401, 403):
            logger.error(
                "graph refused the lookup; grant User.Read.All (application) with admin consent",
                extra={"source": self.name, "status": response.status_code},
            )
            raise GraphError("graph_forbidden")
        if response.status_code == 429:
            raise GraphError("http_429")
        if response.status_code >= 500:
            raise GraphError("http_5xx")
        try:
            users = json.loads(response.text)["value"]
            return [str(u["userPrincipalName"]) for u in users]
        except (ValueError, KeyError, TypeError):
            raise GraphError("bad_response") from None

    async def _try_build(self, credential: Any) -> bool:
        try:
            app = await run_sync(self._build_app, credential)
            if self.settings.resolve_username == "graph":
                # A second app: client-credential tokens must not share the ROPC app's caches.
                self._graph_app = await run_sync(self._build_app, credential)
            self._app = app
        except Exception as err:  # noqa: BLE001 - any failure means "retry later"
            self._last_error = classify_exception(err)[1]
            logger.warning(
                "source not ready, will retry",
                extra={"source": self.name, "reason": self._last_error},
            )
            return False
        logger.info("source ready", extra={"source": self.name})
        return True

    async def _build_until_ready(self, credential: Any) -> None:
        delay = 0.5
        while not await self._try_build_after(delay, credential):
            delay = min(delay * 2, self.settings.startup_retry_max_seconds)

    async def _try_build_after(self, delay: float, credential: Any) -> bool:
        await asyncio.sleep(delay)
        return await self._try_build(credential)

    def _build_app(self, credential: Any) -> msal.ConfidentialClientApplication:
        settings = self.settings
        host = LOOPBACK_AUTHORITY_HOST if settings.loopback else settings.authority
        return msal.ConfidentialClientApplication(
            settings.client_id,
            client_credential=credential,
            authority=f"{host}/{settings.tenant_id}",
            http_client=self._http,
            http_cache=_NoStoreHttpCache(),
            token_cache=_NoStoreTokenCache(),
            exclude_scopes=["offline_access"],
            # A non-Microsoft host would be "validated" against login.microsoftonline.com.
            instance_discovery=False if settings.loopback else None,
        )

    def _client_credential(self) -> Any:
        if self.settings.client_secret is not None:
            return self.settings.client_secret.get_secret_value()
        cert = self.settings.certificate
        assert cert is not None
        public_pem = Path(cert.certificate_file).read_bytes()
        credential = {
            "private_key": Path(cert.private_key_file).read_text(encoding="utf-8"),
            "thumbprint": certificate_thumbprint(public_pem),
        }
        if cert.send_certificate_chain:
            credential["public_certificate"] = public_pem.decode()
        return credential


class GraphError(Exception):
    """Microsoft Graph could not answer a username lookup; `reason` is a reason code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def error_codes(answer: Mapping[str, Any]) -> list[int]:
    """AADSTS codes from an msal error dict: `error_codes`, else parsed from the description."""
    codes = answer.get("error_codes")
    if isinstance(codes, list) and all(isinstance(c, int) for c in codes) and codes:
        return codes
    description = answer.get("error_description")
    if isinstance(description, str):
        return [int(c) for c in _AADSTS_IN_TEXT.findall(description)]
    return []


def decide(
    answer: Mapping[str, Any], http_status: int | None, policy: AzureAdPolicy
) -> tuple[Result, str]:
    """Map msal's answer (and the HTTP status it hid) to a result and reason code."""
    if "access_token" in answer:
        return Result.VERIFIED, "ok"
    if http_status == 429:
        return Result.UNAVAILABLE, "http_429"
    if http_status is not None and http_status >= 500:
        return Result.UNAVAILABLE, "http_5xx"
    codes = set(error_codes(answer))
    if not codes:
        return Result.UNAVAILABLE, "bad_response"

    def pick(matched: frozenset[int]) -> str:
        return f"aadsts_{min(codes & matched)}"

    def by_policy(setting: str) -> Result:
        return Result.VERIFIED if setting == "verified" else Result.DENIED

    if codes & MISCONFIGURATION_CODES:
        return Result.UNAVAILABLE, pick(MISCONFIGURATION_CODES)
    if codes & THROTTLING_CODES:
        return Result.UNAVAILABLE, pick(THROTTLING_CODES)
    if codes & TRANSIENT_CODES:
        return Result.UNAVAILABLE, pick(TRANSIENT_CODES)
    if codes & MFA_CODES:
        return by_policy(policy.mfa_required), pick(MFA_CODES)
    if codes & CONDITIONAL_ACCESS_CODES:
        return by_policy(policy.conditional_access_blocked), pick(CONDITIONAL_ACCESS_CODES)
    if codes & PASSWORD_EXPIRED_CODES:
        return by_policy(policy.password_expired), pick(PASSWORD_EXPIRED_CODES)
    # 50126, 50034, 50053, 50057, 50135, ... and every code we do not know: fail closed.
    return Result.DENIED, f"aadsts_{min(codes)}"


def throttling(
    reason: str, retry_after_header: str | None
) -> tuple[Literal["user", "source"] | None, float | None]:
    """Whether Entra asked us to back off, for whom, and for how long (if it said)."""
    retry_after = _seconds(retry_after_header)
    if reason == "aadsts_50196":  # loop detection: this user, about 15 calls in 5 minutes
        return "user", retry_after
    if reason in {"http_429", "aadsts_90055"}:
        return "source", retry_after
    if reason == "http_5xx" and retry_after is not None:
        return "source", retry_after
    return None, None


def _seconds(header: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is rare for Entra and ignored."""
    if header is None:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def classify_exception(err: BaseException) -> tuple[Result, str]:
    """Map what msal or the HTTP client raised to a result and reason.

    Message text is never logged or returned; only the AD FS fault code is read from it, and that
    carries no user input.
    """
    if isinstance(err, TimeoutError):  # aiohttp's connect/read timeouts are TimeoutErrors too
        return Result.UNAVAILABLE, "timeout"
    if isinstance(err, UpstreamBodyError):
        # Too large or undecodable: the answer's content, not an outage (the breaker ignores it).
        return Result.UNAVAILABLE, "bad_response"
    if isinstance(err, UpstreamHTTPError):
        if err.status == 429:
            return Result.UNAVAILABLE, "http_429"
        return Result.UNAVAILABLE, "http_5xx" if err.status >= 500 else "bad_response"
    if isinstance(err, aiohttp.ClientError | OSError):
        return Result.UNAVAILABLE, "network"
    if isinstance(err, msal.exceptions.MsalServiceError):
        # msal >= 1.32.1 raises this for an HTTP error on discovery or the user realm.
        text = str(err)
        if "HTTP Error: 429" in text:
            return Result.UNAVAILABLE, "http_429"
        return Result.UNAVAILABLE, "http_5xx" if "HTTP Error: 5" in text else "bad_response"
    if isinstance(err, RuntimeError) and "FailedAuthentication" in str(err):
        # AD FS answers a wrong password with HTTP 500 and a SOAP fault; msal raises this.
        return Result.DENIED, "adfs_failed_authentication"
    if isinstance(err, ValueError | SyntaxError):  # bad JSON or XML, MEX without an endpoint
        return Result.UNAVAILABLE, "bad_response"
    return Result.UNAVAILABLE, "other"


def certificate_thumbprint(pem: bytes) -> str:
    """SHA-1 thumbprint of a PEM certificate, as Entra shows it (hex)."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()
