"""How the client proves who it is to Okta: an SSWS API token, or an OAuth 2.0 service app.

A service app authenticates with ``private_key_jwt`` (RFC 7523): a short-lived client assertion
(``iss`` = ``sub`` = client id, ``aud`` = the org's token endpoint, a fresh ``jti``, ``exp`` a few
minutes ahead, RS256, ``kid`` when the key has an id) buys an access token for the configured
scopes through ``client_credentials``. The token is kept until shortly before it expires and is
fetched once however many requests need it at the same moment (the lock-and-recheck pattern of
``plugins/azure_ad.py``'s ``graph_token``). A 401 on a token the client still believed valid
(revoked, or the clocks disagree) drops it, and the request is retried once with a new one.

Tokens, keys and assertions never appear in reprs, logs or exception messages.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "ASSERTION_LIFETIME",
    "Authorizer",
    "OAuthAuthorizer",
    "OAuthServiceApp",
    "SswsAuthorizer",
    "SswsToken",
    "TokenAnswer",
    "load_private_key",
]

ASSERTION_LIFETIME: Final = 300  # seconds; Okta accepts at most one hour
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True, slots=True)
class SswsToken:
    """An Okta API token (``Authorization: SSWS <token>``); acts with its admin's rights."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        """Refuse an empty token or one that would break the header."""
        if not self.token or any(ch.isspace() for ch in self.token):
            raise ValueError("the Okta API token is empty or contains white space")


@dataclass(frozen=True, slots=True)
class OAuthServiceApp:
    """An Okta API Services app using ``private_key_jwt`` (its public key registered in Okta)."""

    client_id: str
    private_key_file: str | Path  # PEM (PKCS#8 or PKCS#1) or a private JWK as Okta generates it
    scopes: Sequence[str]
    key_id: str | None = None  # the ``kid`` Okta shows for the key, sent in the JWT header

    def __post_init__(self) -> None:
        """Refuse settings Okta would refuse later with a less helpful message."""
        if not self.client_id:
            raise ValueError("the Okta service app needs a client_id")
        if not self.scopes:
            raise ValueError("the Okta service app needs at least one scope, e.g. okta.users.read")


def load_private_key(path: str | Path) -> RSAPrivateKey:
    """Read an unencrypted RSA private key from a PEM or JWK file (ValueError if unusable)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the Okta private key file {path}: {exc.strerror}") from None
    key: Any
    try:
        if data.lstrip().startswith(b"{"):
            key = jwt.PyJWK(json.loads(data), algorithm="RS256").key
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, jwt.PyJWTError):
        # The parsers' messages could quote key material: say only what the file is not.
        raise ValueError(
            f"the Okta private key file {path} is not an unencrypted RSA private key "
            "(PEM, or a JWK as the Okta admin console generates it)"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"the Okta private key file {path} holds a public or non-RSA key")
    return key


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """What the token endpoint granted."""

    access_token: str = field(repr=False)
    expires_in: float
    scopes: frozenset[str]


class Authorizer(Protocol):
    """Supplies the ``Authorization`` header and says whether a 401 is worth one more try."""

    async def header(self) -> tuple[str, int]:
        """The header value and the generation of the credential in it."""
        ...

    def refresh_after_401(self, generation: int) -> bool:
        """Drop the credential of ``generation`` if still current; True when a retry may help."""
        ...


class SswsAuthorizer:
    """``Authorization: SSWS <token>`` (with the space the API reference shows)."""

    def __init__(self, credentials: SswsToken) -> None:
        self._value = f"SSWS {credentials.token}"

    def __repr__(self) -> str:
        """Never show the token."""
        return "SswsAuthorizer()"

    async def header(self) -> tuple[str, int]:
        """The fixed header."""
        return self._value, 0

    def refresh_after_401(self, generation: int) -> bool:
        """An API token cannot be renewed: a 401 is final."""
        return False


TokenFetcher = Callable[[Callable[[], dict[str, str]]], Awaitable[TokenAnswer]]


class OAuthAuthorizer:
    """Access tokens for a service app, cached until shortly before expiry, fetched once."""

    def __init__(
        self,
        app: OAuthServiceApp,
        token_url: str,
        *,
        wall_time: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.app = app
        self.token_url = token_url
        self._key = load_private_key(app.private_key_file)  # fail at start-up, not mid-run
        self._wall_time = wall_time
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._generation = 0
        self.granted_scopes: frozenset[str] = frozenset()
        self.fetch: TokenFetcher | None = None  # set by the transport that owns this authorizer

    def __repr__(self) -> str:
        """Never show the token or the key."""
        return f"OAuthAuthorizer(client_id={self.app.client_id!r})"

    def client_assertion(self) -> str:
        """A fresh signed client assertion (one per token request: Okta refuses a reused jti)."""
        now = int(self._wall_time())
        claims = {
            "iss": self.app.client_id,
            "sub": self.app.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.app.key_id} if self.app.key_id else None
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def token_form(self) -> dict[str, str]:
        """The token request body (built per attempt, so every attempt has its own assertion)."""
        return {
            "grant_type": "client_credentials",
            "scope": " ".join(self.app.scopes),
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }

    def _current(self) -> tuple[str, int] | None:
        """The cached header while the token is fresh."""
        if self._token is not None and self._monotonic() < self._expires_at:
            return f"Bearer {self._token}", self._generation
        return None

    async def header(self) -> tuple[str, int]:
        """``Bearer <access token>``, fetching one when none is fresh (once for all waiters)."""
        current = self._current()
        if current is not None:
            return current
        async with self._lock:
            current = self._current()
            if current is not None:
                return current
            assert self.fetch is not None, "the authorizer is not attached to a transport"
            answer = await self.fetch(self.token_form)
            lifetime = max(answer.expires_in, 0.0)
            # Renew shortly before expiry (5 minutes, or 10% of short lifetimes).
            self._expires_at = self._monotonic() + lifetime - min(300.0, lifetime * 0.1)
            self._token = answer.access_token
            self._generation += 1
            self.granted_scopes = answer.scopes
            return f"Bearer {self._token}", self._generation

    def refresh_after_401(self, generation: int) -> bool:
        """Forget the token that got a 401 (unless a newer one replaced it); always retry once."""
        if generation == self._generation:
            self._token = None
        return True
