"""Management API authentication: ``SSWS`` API tokens and OAuth 2.0 service-app access tokens.

``POST /oauth2/v1/token`` is the org authorization server's token endpoint as a service app uses
it: ``grant_type=client_credentials`` with a ``private_key_jwt`` client assertion (RFC 7523)
signed by a key whose public JWK the org knows. The assertion must carry ``iss`` = ``sub`` =
client id, ``aud`` = the token endpoint URL, an ``exp`` at most one hour ahead, and (when it
has one) a ``jti`` not seen before; the signature is verified (RS256/384/512, ES256/384/512).
Scopes are granted exactly as requested when the app may have them all. Access tokens are
opaque to clients (tokens of Okta's org authorization server are meant to be), last one hour,
and carry their scopes; a ``.manage`` scope includes its ``.read``. ``SSWS`` tokens act as a
super admin's: every scope. A DPoP header is ignored (the emulated apps do not require DPoP).
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

import jwt
from aiohttp import web

from emulators.okta import errors
from emulators.okta.state import EMULATOR_KEY, OktaEmulator
from emulators.okta.tokens import TOKEN_LIFETIME, AccessToken

__all__ = [
    "SCOPES_KEY",
    "authenticate",
    "handle_token",
    "oauth_error",
    "requires",
    "token_response",
]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME: Final = 3600
CLOCK_SKEW: Final = 60
_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
_SSWS = re.compile(r"^SSWS\s*(\S+)\s*$")  # Okta's Python SDK sends "SSWS<token>", no space
_BEARER = re.compile(r"^Bearer\s+(\S+)\s*$", re.IGNORECASE)
ALL_SCOPES: Final = frozenset({"*"})  # what an SSWS (super admin) token may do
SCOPES_KEY: Final = web.RequestKey("okta_scopes", frozenset[str])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def oauth_error(status: int, error: str, description: str) -> web.Response:
    """An OAuth 2.0 error response (RFC 6749 §5.2), as Okta's authorization servers send it."""
    return web.json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def token_response(token: str, scopes: list[str]) -> web.Response:
    """A successful token response (RFC 6749 §5.1) of a one-hour bearer token."""
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "access_token": token,
            "scope": " ".join(scopes),
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _token_endpoint_url(request: web.Request) -> str:
    """The audience an assertion must name: this endpoint as the client reached it."""
    return f"{request.url.origin()}/oauth2/v1/token"


def _verify_assertion(
    emulator: OktaEmulator, request: web.Request, assertion: str
) -> tuple[str | None, str]:
    """Return (client_id, "") for a valid assertion, else (None, why) with Okta-like wording."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None, "The client_assertion is not a valid JWT."
    client_id = unverified.get("iss")
    client = emulator.oauth_clients.get(client_id) if isinstance(client_id, str) else None
    if client is None or not isinstance(client_id, str):
        return None, "The client_assertion issuer is not a known client."
    algorithm = header.get("alg")
    if algorithm not in _ALGORITHMS:
        return None, "The client_assertion signature algorithm is not supported."
    kid = header.get("kid")
    candidates = [k for k in client.jwks if kid is None or k.get("kid") == kid]
    claims: dict[str, Any] | None = None
    for jwk in candidates:
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm)
            claims = jwt.decode(
                assertion,
                key=key.key,
                algorithms=[algorithm],
                audience=_token_endpoint_url(request),
                issuer=client_id,
                # Time claims are checked below against the emulator's (injectable) clock.
                options={
                    "require": ["iss", "sub", "aud", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            break
        except jwt.InvalidAudienceError:
            return None, "The audience claim for client_assertion must be the endpoint invoked."
        except jwt.PyJWTError:
            continue
    if claims is None:
        return None, "The client_assertion signature is invalid."
    if claims.get("sub") != client_id:
        return None, "The client_assertion subject must equal the client id."
    now = emulator.clock()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now - CLOCK_SKEW:
        return None, "The client_assertion token is expired."
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        return None, "The client_assertion token has an expiration too far in the future."
    jti = claims.get("jti")
    if isinstance(jti, str):
        emulator.used_assertion_ids = {
            k: v for k, v in emulator.used_assertion_ids.items() if v > now - CLOCK_SKEW
        }
        if jti in emulator.used_assertion_ids:
            return None, "The client_assertion token has already been used."
        emulator.used_assertion_ids[jti] = float(exp)
    return client_id, ""


async def handle_token(request: web.Request) -> web.Response:
    """``POST /oauth2/v1/token``: client credentials with a private_key_jwt client assertion."""
    emulator = request.app[EMULATOR_KEY]
    form = await request.post()
    grant_type = form.get("grant_type")
    if grant_type != "client_credentials":
        return oauth_error(
            400,
            "unsupported_grant_type",
            "The authorization server does not support the requested grant type.",
        )
    if form.get("client_assertion_type") != ASSERTION_TYPE or not isinstance(
        form.get("client_assertion"), str
    ):
        return oauth_error(
            401, "invalid_client", "Client authentication failed: a client_assertion is required."
        )
    client_id, why = _verify_assertion(emulator, request, str(form["client_assertion"]))
    if client_id is None:
        emulator.events["token_requests_refused"] += 1
        return oauth_error(401, "invalid_client", why)
    if "client_id" in form and form["client_id"] != client_id:
        return oauth_error(401, "invalid_client", "The client_id does not match the assertion.")
    requested = str(form.get("scope") or "").split()
    if not requested:
        return oauth_error(
            400,
            "invalid_scope",
            "The authorization server resource does not have any configured default scopes, "
            "'scope' must be provided.",
        )
    allowed = set(emulator.oauth_clients[client_id].scopes)
    refused = [scope for scope in requested if scope not in allowed]
    if refused:
        return oauth_error(
            400, "invalid_scope", f"The following scopes are not allowed: {' '.join(refused)}"
        )
    token = secrets.token_urlsafe(32)
    emulator.access_tokens[token] = AccessToken(
        client_id, frozenset(requested), emulator.clock() + TOKEN_LIFETIME
    )
    emulator.events["access_tokens_issued"] += 1
    return token_response(token, requested)


def authenticate(emulator: OktaEmulator, request: web.Request) -> None:
    """Check ``Authorization`` and remember the caller's scopes; 401 E0000011 when it fails."""
    header = request.headers.get("Authorization", "")
    ssws = _SSWS.match(header)
    if ssws is not None:
        offered = ssws.group(1).encode()
        # Compare against every token, always, so timing says nothing about which one was close.
        matched = False
        for token in emulator.api_tokens:
            matched |= hmac.compare_digest(offered, token.encode())
        if matched:
            request[SCOPES_KEY] = ALL_SCOPES
            return
        raise errors.invalid_token()
    bearer = _BEARER.match(header)
    if bearer is not None:
        access = emulator.access_tokens.get(bearer.group(1))
        if access is not None and access.expires_at > emulator.clock():
            request[SCOPES_KEY] = access.scopes
            return
    raise errors.invalid_token()


def requires(scope: str) -> Callable[[Handler], Handler]:
    """Decorate a handler with the OAuth scope Okta demands for it (``.manage`` covers ``.read``)."""
    accepted = {scope, scope.removesuffix(".read") + ".manage"}

    def wrap(handler: Handler) -> Handler:
        """Wrap one handler."""

        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            """Refuse (403) a token without the scope, then run the handler."""
            scopes = request.get(SCOPES_KEY)
            if scopes is None:  # the authentication middleware did not run: refuse, never allow
                raise errors.invalid_token()
            if scopes is not ALL_SCOPES and not accepted & scopes:
                raise errors.forbidden(scope, request.path)
            return await handler(request)

        return checked

    return wrap
