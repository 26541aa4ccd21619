"""Custom authorization servers (``/oauth2/{authServerId}``): metadata, keys and token endpoint.

What an OAuth 2.0 inline hook channel gets its access token from; the servers themselves (keys,
minting) are in ``tokens``.
Each server listed in the org file's ``authorization_servers`` gets a fresh RSA 2048 signing key
(and ``kid``) when the emulator starts and on every full reset. The emulator's
``rotate_authorization_server_key`` replaces it with a new key and ``kid`` and drops the old one at
once (Okta keeps publishing an old key for a while, so this is the harder case for a verifier).

* ``GET {issuer}/.well-known/oauth-authorization-server``: RFC 8414 metadata (``issuer``,
  ``token_endpoint``, ``jwks_uri``, ``scopes_supported``, ...). Only the token endpoint is
  emulated, so ``response_types_supported`` is empty and only ``client_credentials`` is listed.
* ``GET {issuer}/v1/keys``: ``{"keys": [{kty, alg: RS256, kid, use: sig, e, n}]}``.
* ``POST {issuer}/v1/token``: ``grant_type=client_credentials`` with the client's secret, as form
  fields (``client_secret_post``) or HTTP Basic (``client_secret_basic``; RFC 6749 §2.3.1, so
  id and secret are form-urlencoded before base64), never both; secrets are compared in constant
  time (a ``client_assertion`` is not accepted: hook keys are not emulated). ``scope``
  (space-separated) is required and every scope must be one of the server's: the token carries
  exactly those. Every client the server lists may have every scope. Errors are RFC 6749 §5.2 objects: ``invalid_request`` 400,
  ``unsupported_grant_type`` 400, ``invalid_client`` 401 (unknown client, wrong or missing
  secret), ``invalid_scope`` 400 (none requested, or one the server does not have).

The access token is what Okta's custom servers issue: an RS256 JWT (header ``kid``, ``alg``),
claims ``ver`` 1, ``jti``, ``iss``, ``aud`` (the server's audience), ``iat``, ``exp`` (one hour,
on the emulator's clock), ``cid`` and ``sub`` (the client id: client credentials have no user)
and ``scp`` (the granted scopes). The issuer is ``{org}/oauth2/{id}`` with the org URL as the
client reached the emulator, so a gateway configured with ``{okta.url}/oauth2/{id}`` matches it.

An unknown server id is 404 E0000007, Okta's JSON error. These endpoints bypass ``gate.api_gate``:
Okta exempts ``.well-known`` and ``/v1/keys`` from rate limits; a custom server's token endpoint is
rate limited in Okta, but the emulator leaves it unlimited (no bucket, no injected faults). They
are counted in ``events`` instead: ``auth_server_metadata_requests``, ``auth_server_keys_requests``,
``auth_server_tokens_issued`` and ``auth_server_tokens_refused``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import unquote_plus

from aiohttp import web

from emulators.okta import errors
from emulators.okta.oauth import oauth_error, token_response
from emulators.okta.state import EMULATOR_KEY
from emulators.okta.tokens import AuthorizationServer
from emulators.okta.wire import base_url

__all__ = [
    "handle_keys",
    "handle_metadata",
    "handle_token",
]

FORM_TYPE: Final = "application/x-www-form-urlencoded"
_BAD_CLIENT: Final = (
    "Client authentication failed. Either the client or the client credentials are invalid."
)
_BAD_SECRET: Final = "The client secret supplied for a confidential client is invalid."  # noqa: S105
_NO_SCOPE: Final = (
    "The authorization server resource does not have any configured default scopes, "
    "'scope' must be provided."
)
_UNKNOWN_SCOPE: Final = (
    "One or more scopes are not configured for the authorization server resource."
)
_BASIC_CHALLENGE: Final = 'Basic realm="Okta"'


def _server(request: web.Request) -> AuthorizationServer:
    """The server the path names, or 404 E0000007."""
    server_id = request.match_info["server_id"]
    server = request.app[EMULATOR_KEY].authorization_servers.get(server_id)
    if server is None:
        raise errors.not_found(server_id, "AuthorizationServer")
    return server


async def handle_metadata(request: web.Request) -> web.Response:
    """``GET /oauth2/{authServerId}/.well-known/oauth-authorization-server``."""
    try:
        server = _server(request)
    except errors.OktaApiError as err:
        return err.response()
    request.app[EMULATOR_KEY].events["auth_server_metadata_requests"] += 1
    return web.json_response(server.metadata(base_url(request)))


async def handle_keys(request: web.Request) -> web.Response:
    """``GET /oauth2/{authServerId}/v1/keys``."""
    try:
        server = _server(request)
    except errors.OktaApiError as err:
        return err.response()
    request.app[EMULATOR_KEY].events["auth_server_keys_requests"] += 1
    return web.json_response(server.jwks())


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, secret) from ``Authorization: Basic ...``; None when it is not usable."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


async def handle_token(request: web.Request) -> web.Response:
    """``POST /oauth2/{authServerId}/v1/token``: client credentials with a client secret."""
    try:
        server = _server(request)
    except errors.OktaApiError as err:
        return err.response()
    emulator = request.app[EMULATOR_KEY]
    if request.content_type != FORM_TYPE:
        return oauth_error(
            400, "invalid_request", f"The request body must be {FORM_TYPE} parameters."
        )
    form = await request.post()
    grant_type = form.get("grant_type")
    if not grant_type:
        return oauth_error(
            400, "invalid_request", "The request is missing a required parameter: grant_type."
        )
    if grant_type != "client_credentials":
        return oauth_error(
            400,
            "unsupported_grant_type",
            "The authorization server does not support the requested grant type.",
        )
    header = request.headers.get("Authorization", "")
    basic = header.lower().startswith("basic ")
    posted_id, posted_secret = form.get("client_id"), form.get("client_secret")
    if basic and posted_secret is not None:
        return oauth_error(
            400,
            "invalid_request",
            "Cannot supply multiple client credentials. Use one of the following: credentials "
            "in the Authorization header, credentials in the post body, or a client_assertion "
            "in the post body.",
        )
    credentials: tuple[str, str] | None = None
    if basic:
        credentials = _basic_credentials(header)
        if credentials is not None and posted_id not in (None, credentials[0]):
            credentials = None  # a body client_id must name the client the header authenticates
    elif isinstance(posted_id, str) and isinstance(posted_secret, str):
        credentials = posted_id, posted_secret
    matched = server.client_matches(*credentials) if credentials is not None else None
    if credentials is None or not matched:
        emulator.events["auth_server_tokens_refused"] += 1
        why = _BAD_SECRET if matched is False else _BAD_CLIENT
        refused = oauth_error(401, "invalid_client", why)
        if basic:
            refused.headers["WWW-Authenticate"] = _BASIC_CHALLENGE
        return refused
    client_id = credentials[0]
    requested = list(dict.fromkeys(str(form.get("scope") or "").split()))
    if not requested:
        emulator.events["auth_server_tokens_refused"] += 1
        return oauth_error(400, "invalid_scope", _NO_SCOPE)
    if any(scope not in server.scopes for scope in requested):
        emulator.events["auth_server_tokens_refused"] += 1
        return oauth_error(400, "invalid_scope", _UNKNOWN_SCOPE)
    token = server.mint(base_url(request), client_id, requested, emulator.clock())
    emulator.events["auth_server_tokens_issued"] += 1
    return token_response(token, requested)
