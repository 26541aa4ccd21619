"""Okta's Password Import Inline Hook contract: strict request parsing and exact replies.

Shapes from reference/okta-hooks.md §1.3-1.4. Nothing from the request is ever echoed back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENT_TYPE = "com.okta.user.credential.password.import"
MAX_USERNAME_CHARS = 1024
MAX_PASSWORD_CHARS = 1024


@dataclass(frozen=True, slots=True)
class PasswordImportRequest:
    """The parts of Okta's hook payload the gateway uses."""

    username: str
    password: str
    event_id: str | None
    request_id: str | None
    client_ip: str | None
    request_url: str | None
    # data.context.user.id: the Okta user id, when Okta sends it (the ledger's key for the user).
    okta_user_id: str | None = None

    def __repr__(self) -> str:
        """Never show the password, even in a debugger or a traceback."""
        return f"PasswordImportRequest(event_id={self.event_id!r}, request_id={self.request_id!r})"


class BadHookRequest(ValueError):
    """The body is not a password-import request; `location` names the offending field."""

    def __init__(self, summary: str, location: str | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.location = location

    def body(self) -> bytes:
        """Okta's error object shape; it never contains request values."""
        cause: dict[str, str] = {"errorSummary": self.summary, "reason": "INVALID_REQUEST"}
        if self.location:
            cause |= {"locationType": "body", "location": self.location}
        return json.dumps(
            {"error": {"errorSummary": self.summary, "errorCauses": [cause]}}
        ).encode()


def _credential_reply(value: str) -> bytes:
    return json.dumps(
        {"commands": [{"type": "com.okta.action.update", "value": {"credential": value}}]},
        separators=(",", ":"),
    ).encode()


VERIFIED_BODY = _credential_reply("VERIFIED")
UNVERIFIED_BODY = _credential_reply("UNVERIFIED")


def reply_body(verified: bool) -> bytes:
    """Return the exact 200 body for a decision (UNVERIFIED is always explicit, never a 204)."""
    return VERIFIED_BODY if verified else UNVERIFIED_BODY


def parse_password_import(body: bytes) -> PasswordImportRequest:
    """Parse and validate a hook body; raise BadHookRequest for anything else."""
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise BadHookRequest("body is not UTF-8") from None
    except ValueError:
        raise BadHookRequest("body is not valid JSON") from None
    except RecursionError:
        # A few kilobytes of `[[[...` exhaust the parser's stack; that is a bad request, not a fault.
        raise BadHookRequest("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadHookRequest("body must be a JSON object")
    event_type = payload.get("eventType")
    if event_type != EVENT_TYPE:
        raise BadHookRequest(f"eventType must be {EVENT_TYPE}", "eventType")
    data = _object(payload, "data", "data")
    context = _object(data, "context", "data.context")
    credential = _object(context, "credential", "data.context.credential")
    username = _text(credential, "username", "data.context.credential.username", MAX_USERNAME_CHARS)
    password = _text(credential, "password", "data.context.credential.password", MAX_PASSWORD_CHARS)
    if not username.strip():
        raise BadHookRequest("username is empty", "data.context.credential.username")
    request = context.get("request")
    if request is not None and not isinstance(request, dict):
        raise BadHookRequest("must be an object", "data.context.request")
    request = request or {}
    url = request.get("url")
    url_value = url.get("value") if isinstance(url, dict) else None
    return PasswordImportRequest(
        username=username,
        password=password,
        event_id=_optional_text(payload, "eventId", "eventId"),
        request_id=_optional_text(request, "id", "data.context.request.id"),
        client_ip=_optional_text(request, "ipAddress", "data.context.request.ipAddress"),
        request_url=url_value if isinstance(url_value, str) else None,
        okta_user_id=_okta_user_id(context),
    )


def _okta_user_id(context: dict[str, Any]) -> str | None:
    """`data.context.user.id` when it looks like an Okta id; anything else is ignored, not refused.

    Okta's documented payload has no user (reference/okta-hooks.md §1.3): the id is optional
    bookkeeping for the ledger and must never turn a sign-in into a 400.
    """
    user = context.get("user")
    value = user.get("id") if isinstance(user, dict) else None
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isascii() and value.isalnum():
        return value
    return None


def _object(parent: dict[str, Any], key: str, location: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise BadHookRequest("missing or not an object", location)
    return value


def _text(parent: dict[str, Any], key: str, location: str, max_chars: int) -> str:
    value = parent.get(key)
    if not isinstance(value, str):
        raise BadHookRequest("missing or not a string", location)
    if len(value) > max_chars:
        raise BadHookRequest(f"longer than {max_chars} characters", location)
    if "\x00" in value or not _encodable(value):
        raise BadHookRequest("contains characters that cannot be sent upstream", location)
    return value


def _optional_text(parent: dict[str, Any], key: str, location: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256 or not _encodable(value):
        raise BadHookRequest("must be a short string", location)
    return value


def _encodable(value: str) -> bool:
    """Reject lone surrogates (valid JSON escapes, invalid text) before they reach an encoder."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
