"""Bodies for registering the gateway's hooks with Okta (reference/okta-hooks.md §1.8 and §3).

Okta returns an auth header's name lower-cased and never returns its secret (nor an OAUTH
channel's client secret), so a caller comparing a registered hook with the wanted one compares the
URI and the header name case-insensitively and cannot tell whether the secret changed (send it
again to be sure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "PASSWORD_IMPORT_HOOK_TYPE",
    "event_hook_body",
    "http_channel",
    "oauth_channel",
    "password_import_hook_body",
]

PASSWORD_IMPORT_HOOK_TYPE: Final = "com.okta.user.credential.password.import"  # noqa: S105


def http_channel(uri: str, auth_header: str, auth_value: str) -> dict[str, Any]:
    """An ``HTTP`` channel with header authentication (Okta sends ``auth_header: auth_value``)."""
    return {
        "type": "HTTP",
        "version": "1.0.0",
        "config": {
            "uri": uri,
            "method": "POST",
            "headers": [],
            "authScheme": {"type": "HEADER", "key": auth_header, "value": auth_value},
        },
    }


def oauth_channel(
    uri: str,
    *,
    client_id: str,
    token_url: str,
    scope: str,
    client_secret: str | None = None,
    hook_key_id: str | None = None,
) -> dict[str, Any]:
    """An ``OAUTH`` channel (inline hooks only, §1.8 b): Okta gets a token, sends it as Bearer.

    ``client_secret`` makes it ``client_secret_post``; otherwise ``hook_key_id`` (a key of
    Okta's Key Management, whose private half Okta keeps) makes it ``private_key_jwt``.
    """
    config: dict[str, Any] = {
        "uri": uri,
        "method": "POST",
        "headers": [],
        "authScheme": None,  # must be null on an OAUTH channel
        "clientId": client_id,
        "tokenUrl": token_url,
        "scope": scope,
    }
    if client_secret is not None:
        config.update(authType="client_secret_post", clientSecret=client_secret)
    elif hook_key_id is not None:
        config.update(authType="private_key_jwt", hookKeyId=hook_key_id)
    else:
        raise ValueError("an OAUTH channel needs a client secret or a hook key id")
    return {"type": "OAUTH", "version": "1.0.0", "config": config}


def password_import_hook_body(name: str, channel: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/v1/inlineHooks`` body for the password import hook on ``channel``."""
    return {
        "name": name,
        "type": PASSWORD_IMPORT_HOOK_TYPE,
        "version": "1.0.0",
        "channel": channel,
    }


def event_hook_body(
    name: str,
    uri: str,
    event_types: Sequence[str],
    *,
    auth_header: str,
    auth_value: str,
    description: str | None = None,
) -> dict[str, Any]:
    """``POST``/``PUT /api/v1/eventHooks`` body (event hooks support header auth only)."""
    if not event_types:
        raise ValueError("an event hook needs at least one event type")
    body: dict[str, Any] = {
        "name": name,
        "events": {"type": "EVENT_TYPE", "items": list(event_types)},
        "channel": http_channel(uri, auth_header, auth_value),
    }
    if description is not None:
        body["description"] = description
    return body
