"""Inbound authentication of the password import hook: a static header, an OAuth 2.0 token, or either.

With `okta.auth.mode: oauth2` Okta sends `Authorization: Bearer <access token>`, minted by an
authorization server at the hook's `tokenUrl` (reference/okta-hooks.md §1.8 b). The token is an
RS256 JWT; it is checked against the issuer's published keys (JWKS), then for `iss`, `aud`,
`exp`/`nbf`/`iat` (with leeway), the hook's scope in `scp` and the hook's client in `cid`.

The key set is fetched in the background at start-up (a hook never waits for a cold start: it
answers 401 and the fetch keeps retrying) and kept per issuer across reloads. A token naming an
unknown `kid` triggers at most one refresh a minute, shared by every request waiting for it, so
random `kid`s cannot make the gateway hammer the issuer; an issuer that cannot be reached leaves
the last good keys in place.

Every failure is a short machine code (`AUTH_ERRORS`) for the log line and the metric; the token
itself is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.auth import secret_matches
from gateway.origin import foreign_origin
from gateway.upstream_body import UpstreamBodyError, capped_session, read_capped
from plugins.base import is_loopback_http

logger = logging.getLogger(__name__)

# Why a hook request was refused with 401 (`auth_error` in `hook_decision`, and the `reason`
# label of gateway_hook_auth_failures_total). Never anything taken from the request itself.
AUTH_ERRORS: Final = (
    "missing",  # no credential header
    "malformed",  # two copies of the header, not `Bearer <jwt>`, or not a parseable JWT
    "bad_secret",  # a static secret that matches none configured
    "expired",
    "not_yet_valid",  # nbf or iat in the future (beyond the leeway)
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "missing_scope",
    "client_not_allowed",
    "unknown_kid",  # no key with that id in the loaded key set
    "keys_unavailable",  # no key set loaded yet: cold start, or the issuer down since start-up
    "bad_algorithm",  # anything but RS256: `none`, HS256 keyed with the public key, ...
)
AuthMode = Literal["header", "oauth2", "either"]

# How often an unknown `kid` may make the gateway fetch the key set again.
KID_REFRESH_SECONDS: Final = 60.0
# A healthy key set is fetched again this often anyway, so a rotation is seen before it is used.
PERIODIC_REFRESH_SECONDS: Final = 3600.0
# A failed fetch is retried after 1 s, doubling up to a minute.
RETRY_FIRST_SECONDS: Final = 1.0
RETRY_MAX_SECONDS: Final = 60.0
FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=5.0, sock_connect=2.0)
# Okta's metadata is about 3 KB and a key set a few KB: anything near this is not one.
MAX_DOCUMENT_BYTES: Final = 256 * 1024
MIN_RSA_BITS: Final = 2048
METADATA_PATH: Final = "/.well-known/oauth-authorization-server"
_COLD_WARNING_SECONDS = 10.0


def _https_or_loopback(value: str) -> str:
    parts = urlsplit(value)
    origin = f"{parts.scheme}://{parts.netloc}"
    if not parts.netloc or (parts.scheme != "https" and not is_loopback_http(origin)):
        raise ValueError("must be an https:// URL (plain http only on loopback, for tests)")
    return value


class HookClientConfig(BaseModel):
    """`okta.auth.oauth2.hook_client`: the client Okta's hook channel gets its tokens with.

    Only `gateway migrate register-hooks` (which puts it on Okta's OAUTH channel) and
    `gateway migrate check` (which asks `token_url` for a token the way Okta will, then validates
    it) read it; the serving gateway needs no client secret.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_type: Literal["client_secret_post", "private_key_jwt"] = "client_secret_post"
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None  # client_secret_post
    hook_key_id: str | None = None  # private_key_jwt: a key of Okta's Workflow > Key Management
    token_url: str | None = None  # default: <issuer>/v1/token
    scope: str | None = None  # default: required_scopes, space-separated

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        return None if value is None else _https_or_loopback(value)

    @model_validator(mode="after")
    def _credential(self) -> HookClientConfig:
        secret_post = self.auth_type == "client_secret_post"
        if secret_post and (self.client_secret is None or self.hook_key_id is not None):
            raise ValueError("auth_type client_secret_post takes client_secret, not hook_key_id")
        if not secret_post and (not self.hook_key_id or self.client_secret is not None):
            raise ValueError("auth_type private_key_jwt takes hook_key_id, not client_secret")
        return self


class OAuth2HookConfig(BaseModel):
    """What a hook access token must be: issued by `issuer` for `audience`, to an allowed client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str  # compared exactly with `iss`, e.g. https://acme.okta.com/oauth2/aus1example
    audience: str
    # Both lists are required: they tell the hook's token from any other token of the same server.
    required_scopes: list[str] = Field(min_length=1)
    allowed_client_ids: list[str] = Field(min_length=1)
    leeway_seconds: int = Field(120, ge=0, le=600)
    jwks_uri: str | None = None  # default: `jwks_uri` of the issuer's metadata
    hook_client: HookClientConfig | None = None  # for register-hooks and check only

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        return _https_or_loopback(value)

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else _https_or_loopback(value)

    @model_validator(mode="after")
    def _hook_client_allowed(self) -> OAuth2HookConfig:
        client = self.hook_client
        if client is not None and client.client_id not in self.allowed_client_ids:
            # Its tokens would all be refused as client_not_allowed.
            raise ValueError("hook_client.client_id must be one of allowed_client_ids")
        if client is not None and client.scope is not None:
            missing = set(self.required_scopes) - set(client.scope.split())
            if missing:  # Okta grants what it asks for: every token would lack these
                raise ValueError(f"hook_client.scope must ask for {', '.join(sorted(missing))}")
        return self

    @property
    def token_url(self) -> str:
        """Where the hook's client gets its tokens: `hook_client.token_url` or the issuer's."""
        client = self.hook_client
        if client is not None and client.token_url is not None:
            return client.token_url
        return self.issuer.rstrip("/") + "/v1/token"

    @property
    def token_scope(self) -> str:
        """The scope Okta asks for: `hook_client.scope` or every required scope."""
        client = self.hook_client
        if client is not None and client.scope is not None:
            return client.scope
        return " ".join(self.required_scopes)


class OktaHookAuthConfig(BaseModel):
    """`okta.auth`: how Okta authenticates to the password hook (header, oauth2 or either)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: AuthMode = "header"
    header: str = "Authorization"
    secrets: list[SecretStr] = Field(default_factory=list, validate_default=True)
    oauth2: OAuth2HookConfig | None = Field(None, validate_default=True)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[SecretStr], info: ValidationInfo) -> list[SecretStr]:
        if not value and info.data.get("mode", "header") in ("header", "either"):
            raise ValueError("missing (required with mode header or either)")
        if any(len(s.get_secret_value()) < 8 for s in value):
            raise ValueError("every secret must be at least 8 characters")
        return value

    @field_validator("oauth2")
    @classmethod
    def _oauth2(cls, value: OAuth2HookConfig | None, info: ValidationInfo) -> Any:
        if value is None and info.data.get("mode") in ("oauth2", "either"):
            raise ValueError("missing (required with mode oauth2 or either)")
        return value


class KeySetError(Exception):
    """The issuer's metadata or key set could not be fetched or used."""


class KeySet:
    """One issuer's RS256 signing keys: fetched in the background, refreshed with restraint.

    `keys` maps `kid` to a ready public key object, so a validation does no key parsing.
    """

    def __init__(
        self, issuer: str, jwks_uri: str | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.issuer = issuer
        self.clock = clock  # tests replace it to move past the refresh interval
        self.keys: dict[str, RSAPublicKey] = {}
        self.loaded = False
        self.fetches = 0  # key set downloads started (metadata not counted)
        self._jwks_uri = jwks_uri
        self._session: aiohttp.ClientSession | None = None
        self._refresh: asyncio.Task[bool] | None = None
        self._background: asyncio.Task[None] | None = None
        self._last_kid_refresh: float | None = None
        self._last_cold_warning: float | None = None
        self._closed = False

    def start(self) -> None:
        """Fetch the keys in the background now, then keep them fresh (never blocks)."""
        if self._background is None and not self._closed:
            self._background = asyncio.get_running_loop().create_task(self._keep_fresh())

    async def close(self) -> None:
        """Stop fetching; keys already loaded stay usable by requests still running."""
        self._closed = True
        for task in (self._background, self._refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._session is not None:
            await self._session.close()

    async def key_for(self, kid: str, wait_seconds: float) -> RSAPublicKey | None:
        """The key named `kid`; an unknown one may refresh the set (once a minute, shared)."""
        key = self.keys.get(kid)
        if key is not None:
            return key
        now = self.clock()
        if not self.loaded:
            # Cold start or an issuer down since start-up: answer now, the background retries.
            if (
                self._last_cold_warning is None
                or now - self._last_cold_warning >= _COLD_WARNING_SECONDS
            ):
                self._last_cold_warning = now
                logger.warning(
                    "hook token refused: the issuer's signing keys are not loaded yet",
                    extra={"issuer": self.issuer},
                )
            return None
        refresh = self._refresh if self._refresh is not None and not self._refresh.done() else None
        if refresh is None:
            if self._closed or (
                self._last_kid_refresh is not None
                and now - self._last_kid_refresh < KID_REFRESH_SECONDS
            ):
                return None
            self._last_kid_refresh = now
            logger.info("unknown key id in a hook token; fetching the issuer's keys again")
            refresh = self._refresh_now()
        # Wait for the fetch, not longer than the hook can afford; it goes on without us.
        await asyncio.wait({refresh}, timeout=wait_seconds)
        return self.keys.get(kid)

    def _refresh_now(self) -> asyncio.Task[bool]:
        """The fetch in flight, or a new one: one at a time, whoever asks."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._fetch())
        return self._refresh

    async def _keep_fresh(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            if await self._refresh_now():
                delay = RETRY_FIRST_SECONDS
                await asyncio.sleep(PERIODIC_REFRESH_SECONDS)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _fetch(self) -> bool:
        """Fetch the key set once; on any failure keep the last good keys and say so."""
        try:
            await self.load()
        except (aiohttp.ClientError, TimeoutError, KeySetError) as err:
            logger.warning(
                "could not fetch the hook token issuer's signing keys; keeping the last good ones",
                extra={"issuer": self.issuer, "error": str(err), "keys_kept": len(self.keys)},
            )
            return False
        return True

    async def load(self) -> int:
        """Fetch the key set now and use it: how many keys; raises on any failure."""
        if self._session is None:
            self._session = capped_session(timeout=FETCH_TIMEOUT)
        jwks_uri = self._jwks_uri or await self._discover(self._session)
        self.fetches += 1
        keys = parse_jwks(await _get_json(self._session, jwks_uri))
        added = sorted(keys.keys() - self.keys.keys())
        self.keys, self.loaded = keys, True
        if added:
            logger.info(
                "hook token signing keys loaded", extra={"issuer": self.issuer, "kids": added}
            )
        return len(keys)

    async def _discover(self, session: aiohttp.ClientSession) -> str:
        """`jwks_uri` from the issuer's metadata (RFC 8414), whose `issuer` must be ours."""
        metadata = await _get_json(session, self.issuer.rstrip("/") + METADATA_PATH)
        if metadata.get("issuer") != self.issuer:
            raise KeySetError("the metadata names another issuer (RFC 8414 §3.3)")
        uri = metadata.get("jwks_uri")
        if not isinstance(uri, str):
            raise KeySetError("the metadata has no jwks_uri")
        try:
            _https_or_loopback(uri)
        except ValueError as err:
            raise KeySetError(f"the metadata's jwks_uri {err}") from err
        # Keys from elsewhere would be trusted as the issuer's; a key set really hosted on
        # another origin is configured explicitly (`jwks_uri`), never taken from an answer.
        foreign = foreign_origin(uri, [self.issuer])
        if foreign is not None:
            raise KeySetError(
                f"the metadata's jwks_uri is on {foreign}, not on the issuer's origin; "
                "set okta.auth.oauth2.jwks_uri if that is really where the keys are"
            )
        self._jwks_uri = uri
        return self._jwks_uri


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """GET a JSON object: 200 only, no redirects (they could leave https), size-capped."""
    async with session.get(url, allow_redirects=False) as response:
        if response.status != 200:
            raise KeySetError(f"{url} answered HTTP {response.status}")
        try:
            body = await read_capped(response, MAX_DOCUMENT_BYTES)
        except UpstreamBodyError as err:
            raise KeySetError(f"{url}: {err}") from None
    try:
        document = json.loads(body)
    except ValueError as err:
        raise KeySetError(f"{url} did not answer JSON") from err
    if not isinstance(document, dict):
        raise KeySetError(f"{url} did not answer a JSON object")
    return document


def parse_jwks(document: dict[str, Any]) -> dict[str, RSAPublicKey]:
    """The usable RS256 signature keys of a JWKS, by `kid`, as key objects (parsed once)."""
    keys: dict[str, RSAPublicKey] = {}
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", "RS256") != "RS256":
            continue
        try:
            key = RSAAlgorithm.from_jwk(entry)
        except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        if isinstance(key, RSAPrivateKey):  # a key set must not hold one; use its public half
            key = key.public_key()
        if key.key_size >= MIN_RSA_BITS:
            keys[kid] = key
    if not keys:
        raise KeySetError("the key set has no usable RS256 signing key")
    return keys


class TokenValidator:
    """Checks an Okta access token for the hook: RS256, iss, aud, time, scp, cid."""

    def __init__(self, settings: OAuth2HookConfig, keys: KeySet) -> None:
        self.settings = settings
        self.keys = keys
        self._scopes = frozenset(settings.required_scopes)
        self._clients = frozenset(settings.allowed_client_ids)

    async def validate(self, token: str, wait_seconds: float) -> str | None:
        """None when the token is good, else its `AUTH_ERRORS` code."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return "malformed"
        # Decided before any key is touched: `none` and HS* (keyed with our public key) never
        # reach a verifier.
        if header.get("alg") != "RS256":
            return "bad_algorithm"
        kid = header.get("kid")
        if not isinstance(kid, str):
            return "unknown_kid"
        key = await self.keys.key_for(kid, wait_seconds)
        if key is None:
            # Told apart for the SRE: an issuer the gateway never reached is not random kids.
            return "unknown_kid" if self.keys.loaded else "keys_unavailable"
        return self.check_claims(token, key)

    def check_claims(self, token: str, key: RSAPublicKey) -> str | None:
        """Signature and claims against one key (synchronous: the whole hot path once keyed)."""
        settings = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            return "expired"
        except jwt.ImmatureSignatureError:
            return "not_yet_valid"
        except jwt.InvalidSignatureError:
            return "bad_signature"
        except jwt.InvalidIssuerError:
            return "wrong_issuer"
        except jwt.InvalidAudienceError:
            return "wrong_audience"
        except jwt.InvalidAlgorithmError:
            return "bad_algorithm"
        except jwt.MissingRequiredClaimError as err:
            return {"iss": "wrong_issuer", "aud": "wrong_audience"}.get(err.claim, "malformed")
        except jwt.InvalidTokenError:
            return "malformed"
        # Okta puts scopes in a `scp` list; a space-separated `scope` string is read too.
        granted = claims.get("scp", claims.get("scope"))
        if isinstance(granted, str):
            granted = granted.split()
        if not isinstance(granted, list) or not self._scopes <= set(granted):
            return "missing_scope"
        if claims.get("cid") not in self._clients:
            return "client_not_allowed"
        return None


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class HookAuthenticator:
    """`okta.auth` of one configuration generation: answers None (let in) or an AUTH_ERRORS code."""

    def __init__(self, config: OktaHookAuthConfig, keys: KeySet | None) -> None:
        self.config = config
        self.keys = keys
        self.validator = (
            TokenValidator(config.oauth2, keys)
            if config.oauth2 is not None and keys is not None
            else None
        )

    async def check(self, headers: Any, wait_seconds: float) -> str | None:
        """Authenticate a request by its headers (a multidict); waits only on a key refresh."""
        config, validator = self.config, self.validator
        static_error = None
        if config.mode != "oauth2":
            # The static comparison first: a configured secret may itself start with `Bearer `.
            static_error = _static_error(headers.getall(config.header, []), config.secrets)
            if static_error is None or config.mode == "header":
                return static_error
        if validator is None:  # not reached: the config requires oauth2 for these modes
            return static_error or "missing"
        # Okta always sends its token in Authorization, whatever header a static secret uses.
        values = headers.getall("Authorization", [])
        if len(values) > 1:
            return "malformed"
        scheme, _, token = values[0].partition(" ") if values else ("", "", "")
        token = token.strip()
        is_bearer = scheme.lower() == "bearer" and token != ""
        if static_error is not None and not (is_bearer and _looks_like_jwt(token)):
            return static_error  # `either`: no token attempt, so the static secret was wrong
        if not values:
            return "missing"
        if not is_bearer:
            return "malformed"
        try:
            return await validator.validate(token, wait_seconds)
        except Exception:  # a library surprise is a refusal, never a 5xx (or UNVERIFIED)
            logger.exception("hook token validation failed unexpectedly")
            return "malformed"


def _static_error(presented_all: list[str], secrets: list[SecretStr]) -> str | None:
    if not presented_all:
        return "missing"
    # Two copies are ambiguous (a proxy may check one, we another): refuse rather than pick one.
    if len(presented_all) != 1:
        return "malformed"
    return None if secret_matches(presented_all[0], secrets) else "bad_secret"


class KeySets:
    """Key sets by (issuer, jwks_uri), shared by configuration generations across reloads."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, str | None], KeySet] = {}

    def get(self, auth: OktaHookAuthConfig) -> KeySet | None:
        """The key set `auth` uses (none in header mode); a new one, not started, if none is kept."""
        settings = auth.oauth2
        if settings is None or auth.mode == "header":
            return None
        name = (settings.issuer, settings.jwks_uri)
        if name not in self._sets:
            self._sets[name] = KeySet(settings.issuer, settings.jwks_uri)
        return self._sets[name]

    def start(self) -> None:
        """Start fetching every key set not started yet (in the background)."""
        for key_set in self._sets.values():
            key_set.start()

    async def keep_only(self, auth: OktaHookAuthConfig) -> None:
        """Close the key sets a reload stopped using."""
        settings = auth.oauth2 if auth.mode != "header" else None
        wanted = None if settings is None else (settings.issuer, settings.jwks_uri)
        for name in [n for n in self._sets if n != wanted]:
            await self._sets.pop(name).close()

    async def close(self) -> None:
        """Close every key set (shutdown)."""
        for key_set in self._sets.values():
            await key_set.close()
        self._sets.clear()
