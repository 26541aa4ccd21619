"""Encodings the token, SAML and error modules share: base64url, unsigned JWTs, the clock.

Base64url is RFC 4648 §5 without padding (as JWTs use it, RFC 7515 §2); the emulator's ID and
access tokens are RFC 7519 §6 unsecured JWTs (``alg: none``), which msal decodes but never verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


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
