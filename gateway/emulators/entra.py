"""Microsoft Entra ID emulator that unmodified msal can use for ROPC, over plain HTTP on loopback.

msal only accepts ``https://`` authorities, so the emulator advertises fake https URLs
(``https://login.emulator.invalid`` for Entra, ``https://adfs.emulator.invalid`` for AD FS) in its
JSON and expects the client's ``requests.Session`` to rewrite every scheme+host to
``http://127.0.0.1:<port>`` while keeping path and query.

Served endpoints (shapes follow real Entra as closely as is known):

* ``GET  /{tenant}/v2.0/.well-known/openid-configuration``  tenant discovery
* ``GET  /common/discovery/instance``                        instance discovery
* ``GET  /common/userrealm/{username}``                      user realm (Managed/Federated/Unknown)
* ``POST /{tenant}/oauth2/v2.0/token``                       password, client_credentials, SAML grants
* ``POST /adfs/services/trust/{2005,13}/usernamemixed``      emulated AD FS (WS-Trust)
* ``GET /_emulator/stats``, ``POST /_emulator/reset``, ``GET|PUT /_emulator/fault``  control plane

Global fault modes (``set_fault`` / ``PUT /_emulator/fault``): ``http_429``, ``http_500``,
``non_json`` (a proxy's HTML page), ``hang`` on token and realm requests; ``reflect_body`` makes
the token and AD FS endpoints answer 400 ``text/html`` echoing the request body they received
(raw, then URL-decoded), as a misbehaving proxy or WAF page would, so tests can check that no
client logs it (it carries the password and the client secret). Realm requests are not
affected by ``reflect_body``: they carry no body, and the client must get as far as the POST.

Deliberate simplifications: ID and access tokens are unsigned (``alg: none``); a JWT
``client_assertion`` is accepted when it decodes and its ``iss`` and ``sub`` equal the client id
(its signature is NOT checked); SAML assertions issued by the emulated AD FS carry an HMAC
(keyed by a per-process secret) instead of an XML signature, so the token endpoint only accepts
assertions this emulator issued.

Users file (YAML, see ``demo_users.yaml``): ``tenant_id``, ``client_id``, ``client_secret``,
``managed_domains``, ``federated_domains`` and ``users``, each user with ``username``,
``password`` and optional ``display_name``, ``behaviour`` (``ok``, ``mfa_required``,
``mfa_enrollment``, ``locked``, ``disabled``, ``expired``, ``ca_blocked``, ``aadsts_<code>``,
``http_429``, ``http_500``, ``non_json``, ``hang``), ``retry_after``, ``latency_ms``,
``object_id``.

Passwords are never logged and never put into exception messages; the aiohttp access log is off
unless asked for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import signal
import string
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, Self
from urllib.parse import unquote_plus, urlsplit
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import yaml
from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.emulators import graph

__all__ = [
    "DEFAULT_ADFS_BASE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_ENTRA_BASE",
    "DEFAULT_TENANT_ID",
    "DirectoryError",
    "EmulatedDirectory",
    "EmulatedUser",
    "EntraEmulator",
    "FaultMode",
    "RunningEmulator",
    "create_app",
    "load_directory",
    "serve",
    "start_emulator",
]

logger = logging.getLogger(__name__)

DEFAULT_TENANT_ID: Final = "11111111-2222-3333-4444-555555555555"
DEFAULT_CLIENT_ID: Final = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
DEFAULT_CLIENT_SECRET: Final = "emulator-client-secret"  # noqa: S105 - emulator-only demo value
DEFAULT_ENTRA_BASE: Final = "https://login.emulator.invalid"
DEFAULT_ADFS_BASE: Final = "https://adfs.emulator.invalid"

GRANT_ROPC: Final = "password"
GRANT_CLIENT_CREDENTIALS: Final = "client_credentials"
GRANT_SAML1: Final = "urn:ietf:params:oauth:grant-type:saml1_1-bearer"
GRANT_SAML2: Final = "urn:ietf:params:oauth:grant-type:saml2-bearer"
CLIENT_ASSERTION_TYPE_JWT: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

FaultMode = Literal["none", "http_429", "http_500", "non_json", "hang", "reflect_body"]
HANG_SECONDS: Final = 3600.0
# Realm names are Entra aliases, not tenants; password grants are refused on two of them.
_TENANT_ALIASES: Final = frozenset({"common", "organizations", "consumers"})
_NO_ROPC_ALIASES: Final = frozenset({"common", "consumers"})
_GRAPH_RESOURCE: Final = "00000003-0000-0000-c000-000000000000"
_CLAIMS_SUPPORTED: Final = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "nonce",
    "preferred_username",
    "name",
    "tid",
    "ver",
    "at_hash",
    "c_hash",
    "email",
)

_NS: Final = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml1": "urn:oasis:names:tc:SAML:1.0:assertion",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "wst2005": "http://schemas.xmlsoap.org/ws/2005/02/trust",
    "wst13": "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
}


# --------------------------------------------------------------------------------------------
# AADSTS catalogue
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _AadCode:
    """How real Entra reports one AADSTS code: OAuth error class, HTTP status, text, suberror."""

    error: str
    status: int
    message: str
    suberror: str | None = None


_MFA_TEXT: Final = (
    "Due to a configuration change made by your administrator, or because you moved to a new "
    "location, you must "
)

# Texts follow Microsoft's public AADSTS reference / observed responses; `$name` placeholders
# are filled per request. Codes not listed get a generic invalid_grant.
_AAD_CODES: Final[dict[int, _AadCode]] = {
    50000: _AadCode(
        "server_error",
        500,
        "There was an error issuing a token or an issue with our sign-in service.",
    ),
    50008: _AadCode(
        "invalid_grant", 400, "SAML assertion is missing or misconfigured in the token."
    ),
    50013: _AadCode("invalid_grant", 400, "Assertion failed signature validation or has expired."),
    50027: _AadCode("invalid_request", 400, "JWT token is invalid or malformed."),
    50034: _AadCode(
        "invalid_grant",
        400,
        "The user account {EmailHidden} does not exist in the $tenant directory. To sign into "
        "this application, the account must be added to the directory.",
    ),
    50053: _AadCode(
        "invalid_grant",
        400,
        "The account is locked, you've tried to sign in too many times with an incorrect user ID "
        "or password.",
    ),
    50055: _AadCode("invalid_grant", 400, "The password is expired.", "user_password_expired"),
    50056: _AadCode(
        "invalid_grant",
        400,
        "Invalid or null password: password doesn't exist in the directory for this user.",
    ),
    50057: _AadCode("invalid_grant", 400, "The user account is disabled."),
    50059: _AadCode(
        "invalid_request",
        400,
        "No tenant-identifying information found in either the request or implied by any "
        "provided credentials.",
    ),
    50072: _AadCode(
        "interaction_required",
        400,
        _MFA_TEXT + "enroll in multi-factor authentication to access '$resource'.",
    ),
    50074: _AadCode("interaction_required", 400, "Strong Authentication is required."),
    50076: _AadCode(
        "interaction_required",
        400,
        _MFA_TEXT + "use multi-factor authentication to access '$resource'.",
        "basic_action",
    ),
    50079: _AadCode(
        "interaction_required",
        400,
        _MFA_TEXT + "enroll in multi-factor authentication to access '$resource'.",
    ),
    50105: _AadCode(
        "invalid_grant",
        400,
        "Your administrator has configured the application ('$client_id') to block users unless "
        "they are specifically granted ('assigned') access to the application.",
    ),
    50125: _AadCode(
        "interaction_required",
        400,
        "Sign-in was interrupted because of a password reset or password registration entry.",
    ),
    50126: _AadCode(
        "invalid_grant", 400, "Error validating credentials due to invalid username or password."
    ),
    50128: _AadCode(
        "invalid_request",
        400,
        "Invalid domain name - No tenant-identifying information found in either the request or "
        "implied by any provided credentials.",
    ),
    50135: _AadCode("invalid_grant", 400, "Password change is required due to account risk."),
    50144: _AadCode("invalid_grant", 400, "User's Active Directory password has expired."),
    50158: _AadCode(
        "interaction_required",
        400,
        "External security challenge not satisfied. User will be redirected to another page or "
        "authentication provider to satisfy additional authentication challenges.",
    ),
    50196: _AadCode(
        "temporarily_unavailable",
        400,
        "The server terminated an operation because it encountered a client request loop. "
        "Please contact your app vendor.",
    ),
    53003: _AadCode(
        "interaction_required",
        400,
        "Access has been blocked by Conditional Access policies. The access policy does not "
        "allow token issuance.",
    ),
    53011: _AadCode("invalid_grant", 400, "User blocked due to risk on home tenant."),
    65001: _AadCode(
        "invalid_grant",
        400,
        "The user or administrator has not consented to use the application with ID "
        "'$client_id'. Send an interactive authorization request for this user and resource.",
        "consent_required",
    ),
    70003: _AadCode(
        "unsupported_grant_type", 400, "The app requested an unsupported grant type '$grant_type'."
    ),
    80001: _AadCode(
        "invalid_grant", 400, "The Authentication Agent is unable to connect to Active Directory."
    ),
    90002: _AadCode(
        "invalid_request",
        400,
        "Tenant '$tenant' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    ),
    90023: _AadCode("invalid_request", 400, "The request body could not be parsed."),
    90055: _AadCode(
        "temporarily_unavailable",
        429,
        "The request was throttled because there were too many incoming requests. Try again later.",
    ),
    500121: _AadCode(
        "invalid_grant", 400, "Authentication failed during strong authentication request."
    ),
    530035: _AadCode(
        "invalid_grant",
        400,
        "Access has been blocked by security defaults. This is due to the request using legacy "
        "auth or being deemed unsafe by security defaults policies.",
    ),
    700016: _AadCode(
        "unauthorized_client",
        400,
        "Application with identifier '$client_id' was not found in the directory '$tenant'. This "
        "can happen if the application has not been installed by the administrator of the tenant "
        "or consented to by any user in the tenant. You may have sent your authentication request "
        "to the wrong tenant.",
    ),
    700021: _AadCode(
        "invalid_client",
        401,
        "Client assertion application identifier doesn't match 'client_id' parameter.",
    ),
    700024: _AadCode("invalid_client", 401, "Client assertion is not within its valid time range."),
    900144: _AadCode(
        "invalid_request", 400, "The request body must contain the following parameter: '$name'."
    ),
    1002012: _AadCode(
        "invalid_scope",
        400,
        "The provided value for scope $scope is not valid. Client credential flows must have a "
        "scope value with /.default suffixed to the resource identifier (application ID URI).",
    ),
    7000215: _AadCode(
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '$client_id'.",
    ),
    7000218: _AadCode(
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    7000219: _AadCode(
        "invalid_client",
        401,
        "'client_assertion_type' is required when 'client_assertion' is sent.",
    ),
    7000222: _AadCode(
        "invalid_client", 401, "The provided client secret keys for app '$client_id' are expired."
    ),
    9001023: _AadCode(
        "invalid_request",
        400,
        "The grant type isn't supported over the /common or /consumers endpoints. Please use the "
        "/organizations or tenant-specific endpoint.",
    ),
}
_GENERIC_CODE: Final = _AadCode("invalid_grant", 400, "Emulated error (code $code).")

_BEFORE_PASSWORD: Final[Mapping[str, int]] = {"locked": 50053, "disabled": 50057}
_AFTER_PASSWORD: Final[Mapping[str, int]] = {
    "mfa_required": 50076,
    "mfa_enrollment": 50079,
    "expired": 50055,
    "ca_blocked": 53003,
}
_USER_FAULTS: Final = frozenset({"http_429", "http_500", "non_json", "hang"})
_BEHAVIOURS: Final = frozenset({"ok", *_BEFORE_PASSWORD, *_AFTER_PASSWORD, *_USER_FAULTS})
_AADSTS_BEHAVIOUR: Final = re.compile(r"aadsts_([1-9][0-9]{3,7})")


# --------------------------------------------------------------------------------------------
# Directory (users file)
# --------------------------------------------------------------------------------------------
class DirectoryError(ValueError):
    """The users file is missing, not YAML, or does not validate (message never holds passwords)."""


class EmulatedUser(BaseModel):
    """One directory user and how the emulated Entra ID treats that user's sign-ins."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str = Field(min_length=3, max_length=256)
    password: str = Field(min_length=1, repr=False)
    display_name: str | None = None
    behaviour: str = "ok"
    retry_after: int = Field(default=5, ge=0, le=86_400)
    latency_ms: int = Field(default=0, ge=0, le=3_600_000)
    object_id: uuid.UUID | None = None
    # Microsoft Graph attributes, for username resolution (Okta login = mail, not the UPN).
    mail: str | None = None
    proxy_addresses: list[str] = Field(default_factory=list)  # e.g. "smtp:j.doe@contoso.com"

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str) -> str:
        """Require a UPN-like ``local@domain`` with no whitespace or path characters."""
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or "@" in local:
            raise ValueError("username must look like local@domain")
        if any(ch.isspace() or ch in "/?#" for ch in value):
            raise ValueError("username must not contain whitespace, '/', '?' or '#'")
        return value

    @field_validator("behaviour")
    @classmethod
    def _check_behaviour(cls, value: str) -> str:
        """Accept the named behaviours and ``aadsts_<code>``."""
        if value in _BEHAVIOURS or _AADSTS_BEHAVIOUR.fullmatch(value):
            return value
        raise ValueError(
            "behaviour must be one of " + ", ".join(sorted(_BEHAVIOURS)) + " or aadsts_<code>"
        )

    @property
    def key(self) -> str:
        """The lookup key: the username lowercased."""
        return self.username.lower()

    @property
    def domain(self) -> str:
        """The lowercased domain part of the username."""
        return self.key.rpartition("@")[2]

    @property
    def fault(self) -> str | None:
        """The HTTP fault this user's token requests trigger, if any."""
        return self.behaviour if self.behaviour in _USER_FAULTS else None

    @property
    def code_before_password(self) -> int | None:
        """AADSTS code returned whatever the password (locked, disabled)."""
        return _BEFORE_PASSWORD.get(self.behaviour)

    @property
    def code_after_password(self) -> int | None:
        """AADSTS code returned only once the password was right (MFA, CA, expiry, aadsts_N)."""
        match = _AADSTS_BEHAVIOUR.fullmatch(self.behaviour)
        if match:
            return int(match.group(1))
        return _AFTER_PASSWORD.get(self.behaviour)

    def password_matches(self, candidate: str) -> bool:
        """Compare exactly (case and Unicode form preserved) in constant time."""
        return hmac.compare_digest(self.password.encode(), candidate.encode())


def _normalise_domains(values: Iterable[str]) -> list[str]:
    """Lowercase, strip and de-duplicate a domain list, keeping order."""
    seen: dict[str, None] = {}
    for value in values:
        domain = value.strip().lower()
        if not domain or "@" in domain or "/" in domain:
            raise ValueError(f"invalid domain name {value!r}")
        seen.setdefault(domain, None)
    return list(seen)


class EmulatedDirectory(BaseModel):
    """The emulated tenant: app registration, verified domains and users."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    tenant_id: str = DEFAULT_TENANT_ID
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = Field(default=DEFAULT_CLIENT_SECRET, min_length=1, repr=False)
    managed_domains: list[str] = Field(default_factory=lambda: ["contoso.com"])
    federated_domains: list[str] = Field(default_factory=list)
    app_token_lifetime_seconds: int = Field(default=3599, ge=1, le=86_400)
    users: list[EmulatedUser] = Field(default_factory=list)

    _by_key: dict[str, EmulatedUser] = PrivateAttr(default_factory=dict)

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _check_guid(cls, value: str) -> str:
        """Tenant and client ids are GUIDs in Entra; keep them in canonical lowercase form."""
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a GUID like 11111111-2222-3333-4444-555555555555") from None

    @field_validator("managed_domains", "federated_domains")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        """Normalise domain lists."""
        return _normalise_domains(value)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        """Domains must not overlap; every user needs a known domain and a unique name."""
        overlap = set(self.managed_domains) & set(self.federated_domains)
        if overlap:
            raise ValueError(f"domains both managed and federated: {sorted(overlap)}")
        known = set(self.managed_domains) | set(self.federated_domains)
        seen: set[str] = set()
        for user in self.users:
            if user.domain not in known:
                raise ValueError(
                    f"user {user.username!r}: domain {user.domain!r} is in neither "
                    "managed_domains nor federated_domains"
                )
            if user.key in seen:
                raise ValueError(f"duplicate username {user.username!r} (case-insensitive)")
            seen.add(user.key)
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Build the case-insensitive username index."""
        self._by_key = {user.key: user for user in self.users}

    def find(self, username: str) -> EmulatedUser | None:
        """Look a user up by username, case-insensitively."""
        return self._by_key.get(username.lower())

    def put_user(self, user: EmulatedUser) -> None:
        """Add a user, or replace the one with the same (case-insensitive) username."""
        if user.domain not in {*self.managed_domains, *self.federated_domains}:
            raise ValueError(f"user {user.username!r}: domain {user.domain!r} is not in the tenant")
        self.users = [u for u in self.users if u.key != user.key] + [user]
        self._by_key[user.key] = user

    def realm(self, domain: str) -> Literal["Managed", "Federated", "Unknown"]:
        """Classify a domain the way Entra's user-realm endpoint does."""
        domain = domain.lower()
        if domain in self.managed_domains:
            return "Managed"
        if domain in self.federated_domains:
            return "Federated"
        return "Unknown"

    def accepts_tenant(self, tenant: str) -> bool:
        """Say whether a tenant path segment is the GUID, a verified domain or an Entra alias."""
        tenant = tenant.lower()
        return (
            tenant == self.tenant_id
            or tenant in _TENANT_ALIASES
            or tenant in self.managed_domains
            or tenant in self.federated_domains
        )

    @classmethod
    def with_generated_users(
        cls,
        n: int,
        domain: str = "contoso.com",
        password_template: str = "Pw-{i}!",  # noqa: S107 - load-test users only
        *,
        base: EmulatedDirectory | None = None,
        behaviour: str = "ok",
    ) -> EmulatedDirectory:
        """Return a directory with users ``user{i}@{domain}`` (i = 0..n-1), password ``password_template.format(i=i)``.

        ``base`` (default: a directory with the default ids) contributes its settings and
        users; ``domain`` is added to its managed domains unless it is already known.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        start = base if base is not None else cls()
        managed = list(start.managed_domains)
        domain = domain.lower()
        if domain not in managed and domain not in start.federated_domains:
            managed.append(domain)
        generated = [
            EmulatedUser(
                username=f"user{i}@{domain}",
                password=password_template.format(i=i),
                behaviour=behaviour,
            )
            for i in range(n)
        ]
        return cls(
            tenant_id=start.tenant_id,
            client_id=start.client_id,
            client_secret=start.client_secret,
            managed_domains=managed,
            federated_domains=list(start.federated_domains),
            users=[*start.users, *generated],
        )


def _format_validation_error(source: str, exc: ValidationError) -> str:
    """Summarise pydantic errors by location and message only (inputs hidden)."""
    lines = [f"{source}: invalid users file"]
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {location}: {error['msg']}")
    return "\n".join(lines)


def load_directory(path: str | Path) -> EmulatedDirectory:
    """Load and validate a users file (YAML); raise DirectoryError with a clear message."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise DirectoryError(f"{source}: cannot read users file: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The YAML error text quotes the offending line, which may hold a password: report
        # only the position and the problem.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise DirectoryError(f"{source}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise DirectoryError(f"{source}: top level must be a mapping")
    try:
        return EmulatedDirectory.model_validate(data)
    except ValidationError as exc:
        raise DirectoryError(_format_validation_error(source, exc)) from None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _b64url(raw: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raise ValueError on junk."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _unsigned_jwt(claims: Mapping[str, Any]) -> str:
    """Build an ``alg: none`` JWT; msal >= 1.38 only decodes ID tokens, never verifies them."""
    header = _b64url(b'{"alg":"none","typ":"JWT"}')
    return f"{header}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}."


def _now() -> datetime:
    """Return the current UTC time in whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    """SAML/WS-Trust timestamp format."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_xml(body: bytes) -> ET.Element | None:
    """Parse untrusted XML; refuse DTDs (entity expansion) and return None on any junk."""
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in head or b"<!entity" in body.lower():
        return None
    try:
        # DTDs were rejected above, so no entity expansion can happen; expat resolves no
        # external resources by default.
        return ET.fromstring(body)  # noqa: S314
    except (ET.ParseError, ValueError, UnicodeError):
        return None


def _soap_fault(subcode: str, reason: str) -> web.Response:
    """AD FS-style SOAP 1.2 fault; AD FS answers even a wrong password with HTTP 500."""
    body = (
        f"<s:Envelope xmlns:s='{_NS['s']}'><s:Body><s:Fault>"
        "<s:Code><s:Value>s:Sender</s:Value><s:Subcode>"
        f"<s:Value xmlns:a='{_NS['wst13']}'>a:{subcode}</s:Value>"
        "</s:Subcode></s:Code>"
        f"<s:Reason><s:Text xml:lang='en-US'>{escape(reason)}</s:Text></s:Reason>"
        "</s:Fault></s:Body></s:Envelope>"
    )
    return web.Response(status=500, text=body, content_type="application/soap+xml")


def _wrong_credentials_fault() -> web.Response:
    """Build the fault AD FS returns for an unknown user or a wrong password."""
    return _soap_fault(
        "FailedAuthentication",
        "ID3242: The security token could not be authenticated or authorized.",
    )


def _reflected_body(body: bytes) -> web.Response:
    """The ``reflect_body`` fault: a proxy error page quoting the request, unescaped."""
    raw = body.decode("utf-8", "replace")
    return web.Response(
        status=400,
        text=f"<html><body><h1>400 Bad Request</h1><p>Your request:</p><pre>{raw}</pre>"
        f"<pre>{unquote_plus(raw)}</pre></body></html>",
        content_type="text/html",
    )


def _malformed_request_fault() -> web.Response:
    """Build the fault for a request that is not a usable WS-Trust RST."""
    return _soap_fault("InvalidRequest", "ID3035: The request was not valid or is malformed.")


@dataclass(frozen=True, slots=True)
class _VerifiedAssertion:
    """What the token endpoint learned from an assertion the emulated AD FS issued."""

    version: Literal["1.1", "2.0"]
    upn: str
    expired: bool


@dataclass(slots=True)
class _FaultSettings:
    """The global outage simulation applied to token and realm requests."""

    mode: FaultMode = "none"
    retry_after: int = 5


class _FaultRequest(BaseModel):
    """Body of ``PUT /_emulator/fault``; ``latency_ms`` omitted or null leaves latency as is."""

    model_config = ConfigDict(extra="forbid")

    mode: FaultMode = "none"
    retry_after: int = Field(default=5, ge=0, le=86_400)
    latency_ms: int | None = Field(default=None, ge=0, le=3_600_000)


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------
class EntraEmulator:
    """State, counters and request handlers of the emulated Entra ID and AD FS.

    Counters (also in ``GET /_emulator/stats``; zeroed by ``reset_counters()``):

    * ``requests_by_kind``: ``discovery``, ``instance``, ``realm``, ``token``, ``adfs``, ``control``
    * ``token_requests_by_user``: lowercased username -> password grants naming it (counted on
      arrival, whatever the outcome) plus SAML grants whose assertion verified for that user
    * ``token_requests_by_grant``: ``grant_type`` -> count (``<missing>`` when absent)
    * ``token_results``: ``ok``, ``aadsts_<code>`` or ``http_<status>`` per answered token request
    * ``adfs_requests_by_user``: WS-Trust requests naming a known user
    * ``in_flight`` / ``peak_in_flight``: concurrent token requests
    """

    def __init__(
        self,
        directory: EmulatedDirectory,
        *,
        entra_base: str = DEFAULT_ENTRA_BASE,
        adfs_base: str = DEFAULT_ADFS_BASE,
        latency_ms: int = 0,
        wstrust_version: Literal["2005", "13"] = "2005",
        assertion_lifetime_s: int = 600,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.directory = directory
        self.entra_base = entra_base.rstrip("/")
        self.adfs_base = adfs_base.rstrip("/")
        self.latency_ms = latency_ms
        # "2005" makes AD FS issue SAML 1.1 (saml1_1-bearer, what real AD FS does for Entra);
        # "13" issues SAML 2.0 so msal's saml2-bearer path can be exercised too.
        self.wstrust_version = wstrust_version
        self.assertion_lifetime_s = assertion_lifetime_s
        self.fault = _FaultSettings()
        self._assertion_key = secrets.token_bytes(32)
        self.requests_by_kind: Counter[str] = Counter()
        self.token_requests_by_user: Counter[str] = Counter()
        self.token_requests_by_grant: Counter[str] = Counter()
        self.token_results: Counter[str] = Counter()
        self.adfs_requests_by_user: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0

    # -- control ----------------------------------------------------------------------------
    def reset_counters(self) -> None:
        """Zero every counter (the fault and latency settings stay)."""
        for counter in (
            self.requests_by_kind,
            self.token_requests_by_user,
            self.token_requests_by_grant,
            self.token_results,
            self.adfs_requests_by_user,
        ):
            counter.clear()
        self.peak_in_flight = self.in_flight

    def set_fault(
        self, mode: FaultMode, retry_after: int = 5, latency_ms: int | None = None
    ) -> None:
        """Switch the global outage simulation; ``latency_ms=None`` keeps the current latency."""
        self.fault = _FaultSettings(mode=mode, retry_after=retry_after)
        if latency_ms is not None:
            self.latency_ms = latency_ms

    def set_behaviour(self, username: str, behaviour: str) -> None:
        """Change one existing user's behaviour at run time (e.g. lock an account mid-test)."""
        user = self.directory.find(username)
        if user is None:
            raise KeyError(username)
        self.directory.put_user(
            EmulatedUser.model_validate({**user.model_dump(), "behaviour": behaviour})
        )

    def stats(self) -> dict[str, Any]:
        """Counters and settings as JSON-ready data."""
        return {
            "requests_by_kind": dict(self.requests_by_kind),
            "token_requests_by_user": dict(self.token_requests_by_user),
            "token_requests_by_grant": dict(self.token_requests_by_grant),
            "token_results": dict(self.token_results),
            "adfs_requests_by_user": dict(self.adfs_requests_by_user),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "fault": {"mode": self.fault.mode, "retry_after": self.fault.retry_after},
            "latency_ms": self.latency_ms,
            "tenant_id": self.directory.tenant_id,
            "client_id": self.directory.client_id,
            "users": len(self.directory.users),
        }

    # -- response builders ------------------------------------------------------------------
    def aad_error(
        self,
        code: int,
        *,
        headers: Mapping[str, str] | None = None,
        **params: str,
    ) -> web.Response:
        """Build an error response shaped exactly like Entra's (description, ids, timestamp, uri)."""
        spec = _AAD_CODES.get(code, _GENERIC_CODE)
        values = {
            "tenant": self.directory.tenant_id,
            "client_id": self.directory.client_id,
            "resource": _GRAPH_RESOURCE,
            "code": str(code),
            **params,
        }
        message = string.Template(spec.message).safe_substitute(values)
        timestamp = _now().strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": spec.error,
            "error_description": (
                f"AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\n"
                f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        }
        if spec.suberror:
            body["suberror"] = spec.suberror
        all_headers = {"x-ms-request-id": trace_id, "Cache-Control": "no-store, no-cache"}
        all_headers.update(headers or {})
        return web.json_response(body, status=spec.status, headers=all_headers)

    async def fault_response(self, mode: str, retry_after: int) -> web.Response:
        """Simulate throttling, a server error, a proxy's HTML page or a hung connection."""
        if mode == "http_429":
            return self.aad_error(90055, headers={"Retry-After": str(retry_after)})
        if mode == "http_500":
            return self.aad_error(50000)
        if mode == "non_json":
            return web.Response(
                status=403,
                text="<html><head><title>403 Forbidden</title></head>"
                "<body><h1>Forbidden</h1><p>Request blocked by proxy.</p></body></html>",
                content_type="text/html",
            )
        # hang: the client's timeout ends it; handler cancellation then stops this sleep.
        await asyncio.sleep(HANG_SECONDS)
        return web.Response(status=504, text="emulator hang ended")

    def object_id(self, user: EmulatedUser) -> str:
        """Return the user's stable object id."""
        if user.object_id is not None:
            return str(user.object_id)
        return str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"entra-emulator:{self.directory.tenant_id}:{user.key}")
        )

    def _user_tokens(self, user: EmulatedUser, scope: str) -> web.Response:
        """Build the delegated-token success body Entra v2 returns for ROPC/SAML grants."""
        tenant = self.directory.tenant_id
        oid = self.object_id(user)
        now = int(time.time())
        display_name = user.display_name or user.username.rpartition("@")[0]
        claims = {
            "aud": self.directory.client_id,
            "iss": f"{self.entra_base}/{tenant}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": display_name,
            "oid": oid,
            "preferred_username": user.username,
            "sub": _b64url(hashlib.sha256(f"{oid}:{self.directory.client_id}".encode()).digest()),
            "tid": tenant,
            "ver": "2.0",
        }
        requested = scope.split() or ["openid", "profile"]
        granted = [s for s in requested if s != "offline_access"]
        access_claims = {
            "aud": _GRAPH_RESOURCE,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3599,
            "oid": oid,
            "upn": user.username,
            "scp": " ".join(s for s in granted if s not in ("openid", "profile", "email")),
            "tid": tenant,
            "appid": self.directory.client_id,
        }
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(granted),
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": _unsigned_jwt(access_claims),
            "id_token": _unsigned_jwt(claims),
            "client_info": _b64url(json.dumps({"uid": oid, "utid": tenant}).encode()),
        }
        if "offline_access" in requested:
            body["refresh_token"] = "emulator-rt-" + secrets.token_hex(16)
        self.token_results["ok"] += 1
        return web.json_response(body, headers={"Cache-Control": "no-store, no-cache"})

    # -- Entra endpoints ----------------------------------------------------------------------
    async def handle_openid_configuration(self, request: web.Request) -> web.Response:
        """``GET /{tenant}/v2.0/.well-known/openid-configuration``."""
        self.requests_by_kind["discovery"] += 1
        tenant = request.match_info["tenant"]
        if not self.directory.accepts_tenant(tenant):
            return self.aad_error(90002, tenant=tenant)
        # Entra answers a domain-name request with GUID-based endpoints; aliases keep theirs.
        alias = tenant.lower() in _TENANT_ALIASES
        segment = tenant.lower() if alias else self.directory.tenant_id
        issuer_tenant = "{tenantid}" if alias else self.directory.tenant_id
        base = f"{self.entra_base}/{segment}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self.entra_base}/{issuer_tenant}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": list(_CLAIMS_SUPPORTED),
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    async def handle_instance_discovery(self, request: web.Request) -> web.Response:
        """``GET /common/discovery/instance`` (any authority host is accepted)."""
        self.requests_by_kind["instance"] += 1
        authorize = request.query.get("authorization_endpoint", "")
        parts = urlsplit(authorize)
        segments = [s for s in parts.path.split("/") if s]
        if not parts.hostname or not segments:
            return web.json_response(
                {
                    "error": "invalid_instance",
                    "error_description": "AADSTS50049: Unknown or invalid instance.",
                },
                status=400,
            )
        tenant = segments[0]
        host = urlsplit(self.entra_base).hostname or parts.hostname
        return web.json_response(
            {
                "tenant_discovery_endpoint": (
                    f"{self.entra_base}/{tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {
                        "preferred_network": host,
                        "preferred_cache": host,
                        "aliases": sorted({host, parts.hostname}),
                    }
                ],
            }
        )

    async def handle_user_realm(self, request: web.Request) -> web.Response:
        """``GET /common/userrealm/{username}?api-version=1.0``."""
        self.requests_by_kind["realm"] += 1
        if self.fault.mode not in ("none", "reflect_body"):
            return await self.fault_response(self.fault.mode, self.fault.retry_after)
        username = request.match_info["username"]
        domain = username.rpartition("@")[2].lower()
        realm = self.directory.realm(domain) if "@" in username else "Unknown"
        common = {"cloud_instance_name": "microsoftonline.com"}
        if realm == "Managed":
            return web.json_response(
                {
                    "ver": "1.0",
                    "account_type": "Managed",
                    "domain_name": domain,
                    **common,
                    "cloud_audience_urn": "urn:federation:MicrosoftOnline",
                }
            )
        if realm == "Federated":
            # No federation_metadata_url: msal then posts straight to federation_active_auth_url.
            return web.json_response(
                {
                    "ver": "1.0",
                    "account_type": "Federated",
                    "domain_name": domain,
                    "federation_protocol": "WSTrust",
                    "federation_active_auth_url": (
                        f"{self.adfs_base}/adfs/services/trust/{self.wstrust_version}/usernamemixed"
                    ),
                    "federation_global_version": -1,
                    **common,
                    "cloud_audience_urn": "urn:federation:MicrosoftOnline",
                }
            )
        return web.json_response({"ver": "1.0", "account_type": "Unknown", **common})

    async def handle_token(self, request: web.Request) -> web.Response:
        """``POST /{tenant}/oauth2/v2.0/token``."""
        self.requests_by_kind["token"] += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        loop = asyncio.get_running_loop()
        # The answer leaves `latency_ms` after the request arrived, whatever the work took, so
        # a benchmark's directory latency is L itself, not L plus the emulator's own queueing.
        answer_at = loop.time() + self.latency_ms / 1000
        try:
            response = await self._token(request)
            delay = answer_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            return response
        finally:
            self.in_flight -= 1

    async def _token(self, request: web.Request) -> web.Response:
        """Token endpoint body: global latency/fault, tenant, client auth, then the grant."""
        try:
            raw_form = await request.post()
        except (ValueError, UnicodeError):
            return self.aad_error(90023)
        form = {key: value for key, value in raw_form.items() if isinstance(value, str)}
        grant = form.get("grant_type", "")
        self.token_requests_by_grant[grant or "<missing>"] += 1
        if grant == GRANT_ROPC and form.get("username"):
            self.token_requests_by_user[form["username"].lower()] += 1
        if self.fault.mode == "reflect_body":
            return self._counted(_reflected_body(await request.read()))
        if self.fault.mode != "none":
            return self._counted(await self.fault_response(self.fault.mode, self.fault.retry_after))
        tenant = request.match_info["tenant"]
        response = self._check_tenant_and_client(tenant, form)
        if response is not None:
            return self._counted(response)
        if not grant:
            return self._counted(self.aad_error(900144, name="grant_type"))
        if grant == GRANT_ROPC:
            return self._counted(await self._password_grant(form))
        if grant == GRANT_CLIENT_CREDENTIALS:
            return self._counted(self._client_credentials_grant(form))
        if grant in (GRANT_SAML1, GRANT_SAML2):
            return self._counted(await self._saml_grant(grant, form))
        return self._counted(self.aad_error(70003, grant_type=grant))

    def _counted(self, response: web.Response) -> web.Response:
        """Record the outcome of an error response in ``token_results``."""
        if response.status >= 400 and response.content_type == "application/json":
            body = json.loads(response.text or "{}")
            codes = body.get("error_codes") or []
            key = f"aadsts_{codes[0]}" if codes else f"http_{response.status}"
            self.token_results[key] += 1
        elif response.status >= 400:
            self.token_results[f"http_{response.status}"] += 1
        return response

    def _check_tenant_and_client(self, tenant: str, form: Mapping[str, str]) -> web.Response | None:
        """Tenant routing and client authentication, in the order Entra applies them."""
        if not self.directory.accepts_tenant(tenant):
            return self.aad_error(90002, tenant=tenant)
        if tenant.lower() in _NO_ROPC_ALIASES:
            return self.aad_error(9001023)
        client_id = form.get("client_id", "")
        if not client_id:
            return self.aad_error(900144, name="client_id")
        if client_id.lower() != self.directory.client_id:
            return self.aad_error(700016, client_id=client_id)
        secret = form.get("client_secret") or None
        assertion = form.get("client_assertion") or None
        if secret is None and assertion is None:
            return self.aad_error(7000218)
        if secret is not None:
            if not hmac.compare_digest(secret.encode(), self.directory.client_secret.encode()):
                return self.aad_error(7000215)
            return None
        assert assertion is not None
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE_JWT:
            return self.aad_error(7000219)
        return self._check_client_assertion(assertion)

    def _check_client_assertion(self, assertion: str) -> web.Response | None:
        """Accept a JWT whose iss and sub are the client id; the signature is NOT verified."""
        parts = assertion.split(".")
        try:
            if len(parts) != 3:
                raise ValueError("not a JWT")
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            if not isinstance(header, dict) or not isinstance(claims, dict):
                raise ValueError("not a JWT")
        except ValueError:
            return self.aad_error(50027)
        client_id = self.directory.client_id
        if str(claims.get("iss", "")).lower() != client_id or (
            str(claims.get("sub", "")).lower() != client_id
        ):
            return self.aad_error(700021)
        expiry = claims.get("exp")
        if isinstance(expiry, int | float) and expiry < time.time():
            return self.aad_error(700024)
        return None

    async def _apply_user_faults(self, user: EmulatedUser) -> web.Response | None:
        """Per-user latency, then the user's HTTP fault if any."""
        if user.latency_ms:
            await asyncio.sleep(user.latency_ms / 1000)
        if user.fault is not None:
            return await self.fault_response(user.fault, user.retry_after)
        return None

    async def _password_grant(self, form: Mapping[str, str]) -> web.Response:
        """ROPC: the behaviours of the users file."""
        username = form.get("username", "")
        password = form.get("password", "")
        if not username:
            return self.aad_error(900144, name="username")
        if not password:
            return self.aad_error(900144, name="password")
        user = self.directory.find(username)
        if user is None:
            return self.aad_error(50034)
        fault = await self._apply_user_faults(user)
        if fault is not None:
            return fault
        if self.directory.realm(user.domain) == "Federated":
            # Without password hash sync + AllowCloudPasswordValidation Entra cannot check it.
            return self.aad_error(50126)
        if user.code_before_password is not None:
            return self.aad_error(user.code_before_password)
        if not user.password_matches(password):
            return self.aad_error(50126)
        if user.code_after_password is not None:
            return self.aad_error(user.code_after_password)
        return self._user_tokens(user, form.get("scope", ""))

    def _client_credentials_grant(self, form: Mapping[str, str]) -> web.Response:
        """App-only token; scope must be ``<resource>/.default`` like in Entra."""
        scope = form.get("scope", "")
        if not scope:
            return self.aad_error(900144, name="scope")
        if not all(s.endswith("/.default") for s in scope.split()):
            return self.aad_error(1002012, scope=scope)
        now = int(time.time())
        claims = {
            "aud": scope.split()[0].removesuffix("/.default"),
            "iss": f"https://sts.windows.net/{self.directory.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.directory.app_token_lifetime_seconds,
            "appid": self.directory.client_id,
            "tid": self.directory.tenant_id,
            "roles": [],
        }
        self.token_results["ok"] += 1
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.directory.app_token_lifetime_seconds,
                "ext_expires_in": self.directory.app_token_lifetime_seconds,
                "access_token": _unsigned_jwt(claims),
            },
            headers={"Cache-Control": "no-store, no-cache"},
        )

    async def _saml_grant(self, grant: str, form: Mapping[str, str]) -> web.Response:
        """Exchange an assertion from the emulated AD FS for the named user's tokens."""
        encoded = form.get("assertion", "")
        if not encoded:
            return self.aad_error(900144, name="assertion")
        try:
            raw = _b64url_decode(encoded)
        except ValueError:
            return self.aad_error(50008)
        verified = self._verify_assertion(raw)
        if verified is None:
            return self.aad_error(50008)
        if (verified.version == "2.0") != (grant == GRANT_SAML2):
            return self.aad_error(50008)
        if verified.expired:
            return self.aad_error(50013)
        user = self.directory.find(verified.upn)
        if user is None:
            return self.aad_error(50034)
        self.token_requests_by_user[user.key] += 1
        fault = await self._apply_user_faults(user)
        if fault is not None:
            return fault
        code = user.code_before_password or user.code_after_password
        if code is not None:
            return self.aad_error(code)
        return self._user_tokens(user, form.get("scope", ""))

    # -- emulated AD FS ---------------------------------------------------------------------
    async def handle_adfs(self, request: web.Request) -> web.Response:
        """``POST /adfs/services/trust/{2005,13}/usernamemixed`` (WS-Trust username/password)."""
        self.requests_by_kind["adfs"] += 1
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        try:
            body = await request.read()
        except ValueError:
            return _malformed_request_fault()
        if self.fault.mode == "reflect_body":
            return _reflected_body(body)
        root = _parse_xml(body)
        token = root.find(".//wsse:UsernameToken", _NS) if root is not None else None
        name_node = token.find("wsse:Username", _NS) if token is not None else None
        secret_node = token.find("wsse:Password", _NS) if token is not None else None
        if name_node is None or secret_node is None:
            return _malformed_request_fault()
        username = (name_node.text or "").strip()
        candidate = secret_node.text or ""
        user = self.directory.find(username) if username else None
        if user is None:
            return _wrong_credentials_fault()
        self.adfs_requests_by_user[user.key] += 1
        if user.latency_ms:
            await asyncio.sleep(user.latency_ms / 1000)
        if self.directory.realm(user.domain) != "Federated" or not user.password_matches(candidate):
            return _wrong_credentials_fault()
        version = "13" if request.path.startswith("/adfs/services/trust/13/") else "2005"
        return web.Response(
            status=200,
            text=self._rstr(user, version),
            content_type="application/soap+xml",
        )

    def _signature(self, version: str, assertion_id: str, upn: str, not_on_or_after: str) -> str:
        """HMAC standing in for AD FS's XML signature."""
        message = json.dumps([version, assertion_id, upn, not_on_or_after]).encode()
        return _b64url(hmac.new(self._assertion_key, message, hashlib.sha256).digest())

    def _saml_assertion(self, user: EmulatedUser, version: Literal["1.1", "2.0"]) -> str:
        """Build a SAML assertion naming the user, with an HMAC instead of an XML signature."""
        now = _now()
        issued, expires = _iso(now), _iso(now + timedelta(seconds=self.assertion_lifetime_s))
        assertion_id = "_" + uuid.uuid4().hex
        upn = user.username
        immutable_id = base64.b64encode(uuid.UUID(self.object_id(user)).bytes).decode()
        signature = (
            f"<ds:Signature xmlns:ds='{_NS['ds']}'><ds:SignatureValue>"
            f"{self._signature(version, assertion_id, upn, expires)}"
            "</ds:SignatureValue></ds:Signature>"
        )
        issuer = escape(f"{self.adfs_base}/adfs/services/trust")
        if version == "1.1":
            subject = (
                "<saml:Subject><saml:NameIdentifier Format="
                "'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified'>"
                f"{escape(immutable_id)}</saml:NameIdentifier><saml:SubjectConfirmation>"
                "<saml:ConfirmationMethod>urn:oasis:names:tc:SAML:1.0:cm:bearer"
                "</saml:ConfirmationMethod></saml:SubjectConfirmation></saml:Subject>"
            )
            return (
                f"<saml:Assertion MajorVersion='1' MinorVersion='1' AssertionID='{assertion_id}'"
                f" Issuer={quoteattr(issuer)} IssueInstant='{issued}'"
                f" xmlns:saml='{_NS['saml1']}'>"
                f"<saml:Conditions NotBefore='{issued}' NotOnOrAfter='{expires}'>"
                "<saml:AudienceRestrictionCondition><saml:Audience>"
                "urn:federation:MicrosoftOnline</saml:Audience>"
                "</saml:AudienceRestrictionCondition></saml:Conditions>"
                f"<saml:AttributeStatement>{subject}"
                "<saml:Attribute AttributeName='UPN' AttributeNamespace="
                "'http://schemas.xmlsoap.org/claims'>"
                f"<saml:AttributeValue>{escape(upn)}</saml:AttributeValue></saml:Attribute>"
                "<saml:Attribute AttributeName='ImmutableID' AttributeNamespace="
                "'http://schemas.microsoft.com/LiveID/Federation/2008/05'>"
                f"<saml:AttributeValue>{escape(immutable_id)}</saml:AttributeValue>"
                "</saml:Attribute></saml:AttributeStatement>"
                "<saml:AuthenticationStatement AuthenticationMethod="
                f"'urn:oasis:names:tc:SAML:1.0:am:password' AuthenticationInstant='{issued}'>"
                f"{subject}</saml:AuthenticationStatement>{signature}</saml:Assertion>"
            )
        return (
            f"<saml:Assertion ID='{assertion_id}' IssueInstant='{issued}' Version='2.0'"
            f" xmlns:saml='{_NS['saml2']}'><saml:Issuer>{issuer}</saml:Issuer>{signature}"
            "<saml:Subject><saml:NameID Format="
            "'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'>"
            f"{escape(immutable_id)}</saml:NameID><saml:SubjectConfirmation"
            " Method='urn:oasis:names:tc:SAML:2.0:cm:bearer'/></saml:Subject>"
            f"<saml:Conditions NotBefore='{issued}' NotOnOrAfter='{expires}'>"
            "<saml:AudienceRestriction><saml:Audience>urn:federation:MicrosoftOnline"
            "</saml:Audience></saml:AudienceRestriction></saml:Conditions>"
            "<saml:AttributeStatement><saml:Attribute Name='IDPEmail'>"
            f"<saml:AttributeValue>{escape(upn)}</saml:AttributeValue></saml:Attribute>"
            "</saml:AttributeStatement>"
            f"<saml:AuthnStatement AuthnInstant='{issued}'><saml:AuthnContext>"
            "<saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:"
            "PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>"
            "</saml:AuthnStatement></saml:Assertion>"
        )

    def _rstr(self, user: EmulatedUser, version: str) -> str:
        """Build the WS-Trust response envelope (2005 or 1.3 flavour) carrying the assertion."""
        saml_version: Literal["1.1", "2.0"] = "1.1" if version == "2005" else "2.0"
        token_type = (
            "urn:oasis:names:tc:SAML:1.0:assertion"
            if saml_version == "1.1"
            else "urn:oasis:names:tc:SAML:2.0:assertion"
        )
        assertion = self._saml_assertion(user, saml_version)
        if version == "2005":
            inner = (
                f"<t:RequestSecurityTokenResponse xmlns:t='{_NS['wst2005']}'>"
                f"<t:TokenType>{token_type}</t:TokenType>"
                f"<t:RequestedSecurityToken>{assertion}</t:RequestedSecurityToken>"
                "</t:RequestSecurityTokenResponse>"
            )
        else:
            inner = (
                f"<trust:RequestSecurityTokenResponseCollection xmlns:trust='{_NS['wst13']}'>"
                "<trust:RequestSecurityTokenResponse>"
                f"<trust:TokenType>{token_type}</trust:TokenType>"
                f"<trust:RequestedSecurityToken>{assertion}</trust:RequestedSecurityToken>"
                "</trust:RequestSecurityTokenResponse>"
                "</trust:RequestSecurityTokenResponseCollection>"
            )
        return f"<s:Envelope xmlns:s='{_NS['s']}'><s:Body>{inner}</s:Body></s:Envelope>"

    def _verify_assertion(self, raw: bytes) -> _VerifiedAssertion | None:
        """Check an assertion's HMAC and read its UPN; None if it was not issued here."""
        root = _parse_xml(raw)
        if root is None:
            return None
        version: Literal["1.1", "2.0"]
        if root.tag == f"{{{_NS['saml1']}}}Assertion":
            version, prefix = "1.1", "saml1"
            assertion_id = root.get("AssertionID", "")
            upn_node = root.find(
                "saml1:AttributeStatement/saml1:Attribute[@AttributeName='UPN']/saml1:AttributeValue",
                _NS,
            )
        elif root.tag == f"{{{_NS['saml2']}}}Assertion":
            version, prefix = "2.0", "saml2"
            assertion_id = root.get("ID", "")
            upn_node = root.find(
                "saml2:AttributeStatement/saml2:Attribute[@Name='IDPEmail']/saml2:AttributeValue",
                _NS,
            )
        else:
            return None
        conditions = root.find(f"{prefix}:Conditions", _NS)
        signature_node = root.find("ds:Signature/ds:SignatureValue", _NS)
        if upn_node is None or conditions is None or signature_node is None:
            return None
        upn = upn_node.text or ""
        not_on_or_after = conditions.get("NotOnOrAfter", "")
        expected = self._signature(version, assertion_id, upn, not_on_or_after)
        if not hmac.compare_digest(expected.encode(), (signature_node.text or "").encode()):
            return None
        try:
            deadline = datetime.strptime(not_on_or_after, "%Y-%m-%dT%H:%M:%S.000Z")
        except ValueError:
            return None
        return _VerifiedAssertion(
            version=version, upn=upn, expired=deadline.replace(tzinfo=UTC) <= _now()
        )

    # -- control plane ----------------------------------------------------------------------
    async def handle_stats(self, request: web.Request) -> web.Response:
        """``GET /_emulator/stats``."""
        self.requests_by_kind["control"] += 1
        return web.json_response(self.stats())

    async def handle_reset(self, request: web.Request) -> web.Response:
        """``POST /_emulator/reset``: zero the counters."""
        self.reset_counters()
        self.requests_by_kind["control"] += 1
        return web.json_response({"reset": True})

    async def handle_get_fault(self, request: web.Request) -> web.Response:
        """``GET /_emulator/fault``."""
        self.requests_by_kind["control"] += 1
        return web.json_response(self._fault_json())

    async def handle_put_fault(self, request: web.Request) -> web.Response:
        """``PUT /_emulator/fault`` with ``{"mode", "retry_after", "latency_ms"}``."""
        self.requests_by_kind["control"] += 1
        try:
            settings = _FaultRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            problems = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                for e in exc.errors(include_input=False, include_url=False)
            ]
            return web.json_response({"error": "invalid fault", "problems": problems}, status=400)
        self.set_fault(settings.mode, settings.retry_after, settings.latency_ms)
        return web.json_response(self._fault_json())

    def _fault_json(self) -> dict[str, Any]:
        """Return the current global fault settings."""
        return {
            "mode": self.fault.mode,
            "retry_after": self.fault.retry_after,
            "latency_ms": self.latency_ms,
        }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _contain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn an unexpected handler error into a bare 500 without logging request data."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - an emulator bug must not echo request bodies
        logger.error(
            "entra emulator: %s on %s %s", type(exc).__name__, request.method, request.path
        )
        return web.json_response(
            {"error": "server_error", "error_description": "emulator internal error"}, status=500
        )


EMULATOR_KEY: Final = web.AppKey("entra_emulator", EntraEmulator)


def create_app(emulator: EntraEmulator) -> web.Application:
    """Build the aiohttp application serving ``emulator``."""
    app = web.Application(middlewares=[_contain_errors])
    app[EMULATOR_KEY] = emulator
    router = app.router
    router.add_get("/common/discovery/instance", emulator.handle_instance_discovery)
    router.add_get("/common/userrealm/{username}", emulator.handle_user_realm)
    router.add_get(
        "/{tenant}/v2.0/.well-known/openid-configuration", emulator.handle_openid_configuration
    )
    router.add_post("/{tenant}/oauth2/v2.0/token", emulator.handle_token)
    router.add_post("/adfs/services/trust/2005/usernamemixed", emulator.handle_adfs)
    router.add_post("/adfs/services/trust/13/usernamemixed", emulator.handle_adfs)
    router.add_get("/v1.0/users", functools.partial(graph.handle_users, emulator))
    router.add_get("/v1.0/users/{user_id}", functools.partial(graph.handle_user, emulator))
    router.add_get("/_emulator/stats", emulator.handle_stats)
    router.add_post("/_emulator/reset", emulator.handle_reset)
    router.add_get("/_emulator/fault", emulator.handle_get_fault)
    router.add_put("/_emulator/fault", emulator.handle_put_fault)
    return app


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class RunningEmulator:
    """A started emulator: its base URL, port and state; ``await close()`` when done."""

    url: str
    port: int
    emulator: EntraEmulator
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop listening and cancel pending requests."""
        await self.runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_emulator(
    directory: EmulatedDirectory,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: int = 0,
    *,
    entra_base: str = DEFAULT_ENTRA_BASE,
    adfs_base: str = DEFAULT_ADFS_BASE,
    wstrust_version: Literal["2005", "13"] = "2005",
    access_log: bool = False,
    shutdown_timeout: float = 1.0,
) -> RunningEmulator:
    """Serve a new emulator on ``host:port`` (port 0 picks a free one) in the running loop."""
    emulator = EntraEmulator(
        directory,
        entra_base=entra_base,
        adfs_base=adfs_base,
        latency_ms=latency_ms,
        wstrust_version=wstrust_version,
    )
    runner = web.AppRunner(
        create_app(emulator),
        # The access log prints request lines (realm paths carry usernames): opt-in only.
        access_log=logger if access_log else None,
        # A client that gives up (timeout) must not leave a "hang" handler sleeping.
        handler_cancellation=True,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        real_port = int(bound[1])
    except BaseException:
        await runner.cleanup()
        raise
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - mapping only
    if ":" in url_host:
        url_host = f"[{url_host}]"
    return RunningEmulator(
        url=f"http://{url_host}:{real_port}", port=real_port, emulator=emulator, runner=runner
    )


async def _serve_until_stopped(
    directory: EmulatedDirectory, host: str, port: int, latency_ms: int
) -> None:
    """Run until SIGINT/SIGTERM."""
    running = await start_emulator(directory, host, port, latency_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        print(
            f"Entra emulator listening on {running.url} tenant={directory.tenant_id} "
            f"client_id={directory.client_id} users={len(directory.users)}",
            flush=True,
        )
        await stop.wait()
    finally:
        await running.close()


def serve(users_path: str, host: str, port: int, latency_ms: int) -> None:
    """Load ``users_path`` and serve the emulator until interrupted (blocking)."""
    directory = load_directory(users_path)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(directory, host, port, latency_ms))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m gateway.emulators.entra --users FILE``."""
    import argparse

    parser = argparse.ArgumentParser(description="Run the Entra ID emulator.")
    parser.add_argument("--users", default=str(Path(__file__).with_name("demo_users.yaml")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        serve(args.users, args.host, args.port, args.latency_ms)
    except DirectoryError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
