"""Tokens and signing keys the org holds: service-app access tokens, hook tokens, custom servers.

State only, free of HTTP: ``oauth`` and ``auth_servers`` serve the endpoints that issue them.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.okta.directory import SeedAuthorizationServer

__all__ = ["TOKEN_LIFETIME", "AccessToken", "AuthorizationServer", "HookToken", "SigningKey"]

TOKEN_LIFETIME: Final = 3600
CLAIMS: Final = ("ver", "jti", "iss", "aud", "iat", "exp", "cid", "scp", "sub")
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An access token the org authorization server issued to a service app."""

    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True, slots=True)
class HookToken:
    """An access token Okta fetched for an OAuth 2.0 inline hook channel, kept for reuse."""

    access_token: str = field(repr=False)
    reuse_until: float  # Okta fetches a new one shortly before it expires
    channel: str  # digest of tokenUrl, clientId, clientSecret and scope: a change refetches


def _b64url_uint(value: int) -> str:
    """An RSA integer as a JWK member: big-endian bytes, base64url without padding."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One RS256 signing key, its ``kid`` and its public JWK."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh RSA 2048 key with a random ``kid`` (43 URL-safe characters, like Okta's)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid=secrets.token_urlsafe(32), private_key=key)

    def public_jwk(self) -> dict[str, str]:
        """The public key as Okta's ``/v1/keys`` lists it."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": "RS256",
            "kid": self.kid,
            "use": "sig",
            "e": _b64url_uint(numbers.e),
            "n": _b64url_uint(numbers.n),
        }

    def __repr__(self) -> str:
        """Never the key material."""
        return f"SigningKey(kid={self.kid!r})"


class AuthorizationServer:
    """One custom authorization server at run time: its seed and its current signing key."""

    def __init__(self, seed: SeedAuthorizationServer) -> None:
        self.seed = seed
        self.id = seed.id
        self.audience = seed.audience
        self.scopes = tuple(seed.scopes)
        self._secrets = {c.client_id: c.client_secret.get_secret_value() for c in seed.clients}
        self.key = SigningKey.generate()

    def __repr__(self) -> str:
        """Id and kid only (no secrets, no key)."""
        return f"AuthorizationServer(id={self.id!r}, kid={self.key.kid!r})"

    def rotate_key(self) -> str:
        """Replace the signing key (the old one is no longer published); return the new ``kid``."""
        self.key = SigningKey.generate()
        return self.key.kid

    def issuer(self, org_url: str) -> str:
        """``{org}/oauth2/{id}``."""
        return f"{org_url}/oauth2/{self.id}"

    def metadata(self, org_url: str) -> dict[str, Any]:
        """The RFC 8414 document at ``{issuer}/.well-known/oauth-authorization-server``."""
        issuer = self.issuer(org_url)
        return {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/v1/token",
            "jwks_uri": f"{issuer}/v1/keys",
            "response_types_supported": [],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": list(self.scopes),
            "claims_supported": list(CLAIMS),
        }

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [...]}``: the current public key only."""
        return {"keys": [self.key.public_jwk()]}

    def client_matches(self, client_id: str, secret: str) -> bool | None:
        """None for an unknown client; else whether ``secret`` is its secret (constant time)."""
        expected = self._secrets.get(client_id)
        # An unknown client still costs a comparison, so timing does not tell the two apart.
        matched = hmac.compare_digest(secret.encode(), (expected or "\0").encode())
        return None if expected is None else matched

    def mint(self, org_url: str, client_id: str, scopes: list[str], now: float) -> str:
        """An access token for ``client_id`` with exactly ``scopes``, signed with the current key."""
        issued = int(now)
        claims = {
            "ver": 1,
            "jti": "AT." + secrets.token_urlsafe(32),
            "iss": self.issuer(org_url),
            "aud": self.audience,
            "iat": issued,
            "exp": issued + TOKEN_LIFETIME,
            "cid": client_id,
            "scp": scopes,
            "sub": client_id,
        }
        return jwt.encode(
            claims,
            self.key.private_key,
            algorithm="RS256",
            headers={"kid": self.key.kid, "typ": None},  # Okta's header: kid and alg only
        )
