"""Bodies for registering the gateway's hooks with Okta (reference/okta-hooks.md §1.8 and §3).

Okta returns an auth header's name lower-cased and never returns its secret, so a caller
comparing a registered hook with the wanted one compares the URI and the header name
case-insensitively and cannot tell whether the secret changed (send it again to be sure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["PASSWORD_IMPORT_HOOK_TYPE", "event_hook_body", "password_import_hook_body"]

PASSWORD_IMPORT_HOOK_TYPE: Final = "com.okta.user.credential.password.import"  # noqa: S105


def _http_channel(uri: str, auth_header: str, auth_value: str) -> dict[str, Any]:
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


def password_import_hook_body(
    name: str, uri: str, *, auth_header: str, auth_value: str
) -> dict[str, Any]:
    """``POST /api/v1/inlineHooks`` body for the password import hook with header auth."""
    return {
        "name": name,
        "type": PASSWORD_IMPORT_HOOK_TYPE,
        "version": "1.0.0",
        "channel": _http_channel(uri, auth_header, auth_value),
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
        "channel": _http_channel(uri, auth_header, auth_value),
    }
    if description is not None:
        body["description"] = description
    return body
