"""Any OAuth 2.0 server that still allows the resource-owner password grant (RFC 6749 §4.3).

One POST to the token endpoint per verification, with aiohttp on the event loop. The answer is
read for its verdict only: the access token (and any refresh token) is dropped at once, never
logged, cached or returned. Error answers are mapped by the OAuth `error` code (RFC 6749 §5.2)
or, without one, by HTTP status; `error_map` adapts the table to a server's dialect (some say
`invalid_request` for a locked account).
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import re
import secrets
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote_plus, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import certifi
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from gateway.upstream_body import UpstreamBodyError, capped_session, read_capped
from plugins.base import OUTAGE_REASONS, Result, Source, SourceConfig, Verdict, is_loopback_http

logger = logging.getLogger(__name__)

ErrorClass = Literal["denied", "unavailable", "misconfigured"]
Algorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# A token answer is a few kilobytes; anything far larger is not one (and is not held in memory).
MAX_BODY_BYTES = 256 * 1024
ASSERTION_LIFETIME_SECONDS = 60

# The error codes whose meaning RFC 6749 §5.2 fixes to the client itself: nobody can be verified
# until an admin fixes the gateway's client settings or the server's client registration.
MISCONFIGURATION_CODES = frozenset(
    {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}
)
# Built-in table for the other codes. `invalid_request` says the request was malformed, which
# for a well-formed password grant is the server's own dialect: unavailable unless error_map
# says what that server means by it.
CODE_TABLE: dict[str, ErrorClass] = {
    "invalid_grant": "denied",  # wrong password, unknown, inactive or locked user
    "access_denied": "denied",  # the server refuses this user (a rule, a block)
    "invalid_request": "unavailable",
    "server_error": "unavailable",
    "temporarily_unavailable": "unavailable",
}
# Not RFC 6749, but common (Auth0): the password was right and a second factor is wanted.
MFA_REQUIRED_CODE = "mfa_required"
MISCONFIGURED_BY_ERROR_MAP = "oauth_misconfigured"
UNKNOWN_CODE_REASON = "oauth_unknown_error"
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_CODE_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_REPORTABLE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_MAX_REPORTED_UNKNOWN_CODES = 32


def _code_reason(code: str) -> str:
    return "oauth_" + re.sub(r"[^a-z0-9_]", "_", code.lower())


class OAuth2PasswordPolicy(BaseModel):
    """Product decisions for answers that imply a right password but another obstacle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Only servers that check the password before asking for MFA (Auth0 does) may be trusted
    # with `verified`; a generic server is not assumed to.
    mfa_required: Literal["verified", "unverified"] = "unverified"


class OAuth2PasswordTimeouts(BaseModel):
    """Per-request limits (the gateway's answer budget cuts in earlier when it is shorter)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: StrictFloat = Field(1.5, gt=0, le=30)
    total: StrictFloat = Field(2.5, gt=0, le=30)


class PrivateKeyJwt(BaseModel):
    """Client authentication by a signed assertion (RFC 7523 §2.2, OIDC `private_key_jwt`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_file: str  # PEM, unencrypted (PKCS#8, or PKCS#1 / SEC1)
    key_id: str | None = None  # sent as `kid`, for servers holding several keys of the client
    algorithm: Algorithm = "RS256"

    @model_validator(mode="after")
    def _key_usable(self) -> PrivateKeyJwt:
        load_signing_key(self.key_file, self.algorithm)
        return self


class OAuth2PasswordConfig(SourceConfig):
    """`type: oauth2_password`."""

    type: Literal["oauth2_password"]
    token_url: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    private_key_jwt: PrivateKeyJwt | None = None
    scope: str | None = None  # space-separated, as RFC 6749 §3.3 sends it
    timeouts: OAuth2PasswordTimeouts = OAuth2PasswordTimeouts()
    # Concurrent connections to the server; above Okta's ~75 concurrent hook calls with room.
    pool_size: StrictInt = Field(256, ge=1, le=4096)
    policy: OAuth2PasswordPolicy = OAuth2PasswordPolicy()
    # OAuth error code or HTTP status (400-599) -> what it means on this server.
    error_map: dict[int | str, ErrorClass] = Field(default_factory=dict)

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None or parts.fragment:
            raise ValueError("must not carry credentials or a fragment")
        if parts.scheme == "http" and is_loopback_http(f"http://{parts.netloc}"):
            return value
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(
                "must be https://<host>/<path> of the token endpoint "
                "(plain http only for a server on 127.0.0.1/localhost)"
            )
        return value

    @field_validator("error_map")
    @classmethod
    def _error_map(cls, value: dict[int | str, ErrorClass]) -> dict[int | str, ErrorClass]:
        out: dict[int | str, ErrorClass] = {}
        for key, meaning in value.items():
            if isinstance(key, int) or key.isdigit():
                status = int(key)
                if not 400 <= status <= 599:
                    raise ValueError(f"{key}: an HTTP status here must be 400-599")
                out[status] = meaning
                continue
            if not _CODE_PATTERN.fullmatch(key):
                raise ValueError(f"{key!r}: an OAuth error code is lowercase, like invalid_grant")
            if key == MFA_REQUIRED_CODE:
                raise ValueError("mfa_required: set policy.mfa_required instead")
            if key in MISCONFIGURATION_CODES and meaning != "misconfigured":
                raise ValueError(
                    f"{key}: RFC 6749 fixes it to the client's own settings; it stays misconfigured"
                )
            out[key] = meaning
        return out

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), space-separated.
        tokens = value.split(" ")
        if not all(_SCOPE_TOKEN.fullmatch(t) for t in tokens if t) or not value.strip():
            raise ValueError("must be space-separated scope names, like 'read profile'")
        return " ".join(t for t in tokens if t)

    @model_validator(mode="after")
    def _one_credential(self) -> OAuth2PasswordConfig:
        if (self.client_secret is None) == (self.private_key_jwt is None):
            raise ValueError("give exactly one of client_secret or private_key_jwt")
        return self


class OAuth2PasswordSource(Source):
    """Verifies passwords with the resource-owner password grant against a token endpoint."""

    config_class: ClassVar[type[SourceConfig]] = OAuth2PasswordConfig
    misconfiguration_reasons: ClassVar[frozenset[str]] = frozenset(
        {_code_reason(code) for code in MISCONFIGURATION_CODES} | {MISCONFIGURED_BY_ERROR_MAP}
    )
    # The server itself says it is in trouble, whoever asks.
    outage_reasons: ClassVar[frozenset[str]] = OUTAGE_REASONS | frozenset(
        {"oauth_server_error", "oauth_temporarily_unavailable"}
    )
    known_reasons: ClassVar[frozenset[str]] = (
        frozenset({_code_reason(code) for code in CODE_TABLE})
        | misconfiguration_reasons
        | {
            _code_reason(MFA_REQUIRED_CODE), UNKNOWN_CODE_REASON, "http_4xx", "http_429",
            "http_5xx", "timeout", "network", "bad_response", "empty_password",
        }
    )  # fmt: skip

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, OAuth2PasswordConfig):
            raise TypeError("OAuth2PasswordSource needs an OAuth2PasswordConfig")
        super().__init__(config)
        self.settings = config
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._signing_key: Any = None
        self._codes = {k: v for k, v in config.error_map.items() if isinstance(k, str)}
        self._statuses = {k: v for k, v in config.error_map.items() if isinstance(k, int)}
        self._reported: set[tuple[str, str]] = set()
        self._unknown_codes: set[str] = set()

    @property
    def ready(self) -> bool:
        """True once the connection pool is open (nothing is fetched at start-up)."""
        return self._session is not None

    @property
    def last_error(self) -> str | None:
        """`not_started` until `start` ran."""
        return None if self.ready else "not_started"

    async def start(self) -> None:
        """Open the bounded connection pool; no request is made, so a server down is no error."""
        settings = self.settings
        if settings.private_key_jwt is not None:
            jwt_settings = settings.private_key_jwt
            self._signing_key = load_signing_key(jwt_settings.key_file, jwt_settings.algorithm)
        parts = urlsplit(settings.token_url)
        ssl_context: ssl.SSLContext | bool = False
        if parts.scheme == "https":
            # Operators point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at a corporate CA, as for requests.
            ca_file = (
                os.environ.get("REQUESTS_CA_BUNDLE")
                or os.environ.get("SSL_CERT_FILE")
                or certifi.where()
            )
            ssl_context = ssl.create_default_context(cafile=ca_file)
            proxy = getproxies().get("https")
            host = parts.hostname or ""
            self._proxy = None if not proxy or proxy_bypass(host) else proxy
        connector = aiohttp.TCPConnector(
            limit=settings.pool_size, ssl=ssl_context, ttl_dns_cache=300
        )
        self._session = capped_session(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=settings.timeouts.total, connect=settings.timeouts.connect
            ),
            trust_env=False,  # no netrc credentials added to requests; proxies resolved above
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )

    async def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def verify(self, username: str, password: str) -> Verdict:
        """One password-grant request; every failure becomes an `unavailable` or `denied` verdict."""
        if not password:
            # Some servers treat an empty password as anonymous; nothing is sent.
            return self.verdict(Result.DENIED, "empty_password", sent=False)
        session = self._session
        if session is None:
            return self.verdict(Result.UNAVAILABLE, "not_ready", sent=False)
        form, headers = self._request(username, password)
        try:
            async with session.post(
                self.settings.token_url,
                data=form,
                headers=headers,
                proxy=self._proxy,
                allow_redirects=False,  # a redirect would resend the password elsewhere
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                try:
                    body: bytes | None = await read_capped(response, MAX_BODY_BYTES)
                except UpstreamBodyError:
                    body = None  # larger than any token answer, or undecodable: bad_response
        except aiohttp.ConnectionTimeoutError:
            # No connection in time (or none free in the pool): the password never left.
            return self.verdict(Result.UNAVAILABLE, "timeout", sent=False)
        except TimeoutError:  # aiohttp's read timeouts are TimeoutErrors too
            return self.verdict(Result.UNAVAILABLE, "timeout")
        except aiohttp.ClientConnectorError:
            # Refused, unresolvable, TLS failed: nothing carrying the password was sent.
            return self.verdict(Result.UNAVAILABLE, "network", sent=False)
        except (aiohttp.ClientError, OSError):
            return self.verdict(Result.UNAVAILABLE, "network")
        return self._decide(status, body, retry_after)

    def _request(self, username: str, password: str) -> tuple[dict[str, str], dict[str, str]]:
        """The form and headers of one password-grant request (RFC 6749 §4.3.2)."""
        settings = self.settings
        form = {"grant_type": "password", "username": username, "password": password}
        if settings.scope:
            form["scope"] = settings.scope
        headers = {"Accept": "application/json"}
        if settings.client_secret is not None:
            # RFC 6749 §2.3.1: form-encode both parts, then HTTP Basic (every server must take it).
            secret = settings.client_secret.get_secret_value()
            pair = f"{quote_plus(settings.client_id)}:{quote_plus(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = settings.client_id
            form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
            form["client_assertion"] = self._client_assertion()
        return form, headers

    def _client_assertion(self) -> str:
        """A fresh, single-use signed assertion (RFC 7523 §3): iss = sub = client, aud = endpoint."""
        jwt_settings = self.settings.private_key_jwt
        assert jwt_settings is not None
        now = int(time.time())
        claims = {
            "iss": self.settings.client_id,
            "sub": self.settings.client_id,
            "aud": self.settings.token_url,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        }
        headers = {"kid": jwt_settings.key_id} if jwt_settings.key_id else None
        return jwt.encode(
            claims, self._signing_key, algorithm=jwt_settings.algorithm, headers=headers
        )

    def _decide(self, status: int, body: bytes | None, retry_after_header: str | None) -> Verdict:
        """Map the token endpoint's answer to a verdict (the README's decision table)."""
        answer = _json_object(body)
        if status == 200 and answer is not None and _nonempty_str(answer.get("access_token")):
            return self.verdict(Result.VERIFIED, "ok")
        code = answer.get("error") if answer is not None else None
        code = code if _nonempty_str(code) else None
        meaning: ErrorClass | Literal["verified"] | None = None
        reason = ""
        if code is not None and code in self._codes:
            meaning, reason = self._codes[code], _code_reason(code)
        elif code is not None and code in MISCONFIGURATION_CODES:
            meaning, reason = "misconfigured", _code_reason(code)
        elif code is not None and code in CODE_TABLE:
            meaning, reason = CODE_TABLE[code], _code_reason(code)
        elif code == MFA_REQUIRED_CODE:
            verified = self.settings.policy.mfa_required == "verified"
            meaning, reason = ("verified" if verified else "denied"), _code_reason(code)
        elif status in self._statuses:
            meaning, reason = self._statuses[status], _status_reason(status, named=True)
        elif status == 429 or status >= 500:
            meaning, reason = "unavailable", _status_reason(status, named=False)
        elif code is not None:
            # A code nobody told us about: fail closed, and never as "try the next directory".
            self._report_unknown(code)
            meaning, reason = "denied", UNKNOWN_CODE_REASON
        elif 400 <= status < 500:
            meaning, reason = "unavailable", "http_4xx"
        else:  # 200 without a token, 1xx/3xx, another 2xx: not a token endpoint's answer
            meaning, reason = "unavailable", "bad_response"

        if meaning == "verified":
            return self.verdict(Result.VERIFIED, reason)
        if meaning == "denied":
            return self.verdict(Result.DENIED, reason)
        if meaning == "misconfigured":
            upstream = code if code is not None else f"http_{status}"
            if reason not in self.misconfiguration_reasons:
                reason = MISCONFIGURED_BY_ERROR_MAP
            self._report_misconfiguration(reason, upstream)
            return self.verdict(Result.UNAVAILABLE, reason)
        retry_after = _seconds(retry_after_header)
        if status == 429 or (status >= 500 and retry_after is not None):
            return self.verdict(
                Result.UNAVAILABLE, reason, throttle="source", retry_after=retry_after
            )
        return self.verdict(Result.UNAVAILABLE, reason)

    def _report_misconfiguration(self, reason: str, upstream: str) -> None:
        """Log once per code: the server rejects the gateway's own settings, not a user."""
        if (reason, upstream) in self._reported:
            return
        self._reported.add((reason, upstream))
        logger.error(
            "the OAuth server rejects the gateway's client settings; check client_id, the "
            "client credential, scope and the client's registration (password grant allowed)",
            extra={"source": self.name, "reason": reason, "upstream_code": upstream},
        )

    def _report_unknown(self, code: str) -> None:
        """Say once which unknown code a server uses, so an admin can put it in error_map."""
        if not _REPORTABLE_CODE.fullmatch(code) or code in self._unknown_codes:
            return
        if len(self._unknown_codes) >= _MAX_REPORTED_UNKNOWN_CODES:
            return
        self._unknown_codes.add(code)
        logger.warning(
            "the OAuth server answered an error code the gateway does not know; it counts as "
            "a wrong password until error_map says otherwise",
            extra={"source": self.name, "upstream_code": code},
        )


def _status_reason(status: int, *, named: bool) -> str:
    """`http_429`, `http_5xx`, `http_4xx`; a 4xx that error_map names keeps its number."""
    if status == 429:
        return "http_429"
    if status >= 500:  # one code, so an outage stays an outage whatever error_map says
        return "http_5xx"
    return f"http_{status}" if named else "http_4xx"  # named: bounded by the config


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _json_object(body: bytes | None) -> Mapping[str, Any] | None:
    """The body as a JSON object, or None (not JSON, too large, not an object)."""
    if body is None:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _seconds(header: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "RS": (rsa.RSAPrivateKey,),
    "PS": (rsa.RSAPrivateKey,),
    "ES": (ec.EllipticCurvePrivateKey,),
    "Ed": (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey),
}
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


def load_signing_key(path: str, algorithm: str) -> Any:
    """Read an unencrypted PEM private key fit for `algorithm` (ValueError saying why not)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read key file {path}: {err.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The parser's message could quote key material: say only what the file is not.
        raise ValueError(f"key file {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, _KEY_TYPES[algorithm[:2]]):
        raise ValueError(f"key file {path} holds a key that cannot sign {algorithm}")
    if algorithm in _CURVES and (
        not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _CURVES[algorithm]
    ):
        raise ValueError(f"{algorithm} needs a {_CURVES[algorithm]} key")
    return key
