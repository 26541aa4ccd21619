"""Inbound header authentication, shared by the hook and the admin listener."""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class HookAuthConfig(BaseModel):
    """Inbound authentication: the caller sends `header: <secret>` exactly as configured.

    Used by the password hook (`okta.auth`), the event hook (`migration.event_hook.auth`) and the
    admin listener (`admin.auth`); several secrets allow a rotation without downtime.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: str = "Authorization"
    secrets: list[SecretStr] = Field(min_length=1)

    @field_validator("secrets")
    @classmethod
    def _no_empty_secret(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(s.get_secret_value()) < 8 for s in value):
            raise ValueError("every secret must be at least 8 characters")
        return value


def header_matches(request: web.Request, auth: HookAuthConfig) -> bool:
    """The auth header is present exactly once and equals one of the configured secrets.

    The whole header value is compared (Okta sends it exactly as configured), in constant time,
    against every secret, so timing does not reveal which one matched or how much of it did.
    """
    presented_all = request.headers.getall(auth.header, [])
    # Two copies are ambiguous (a proxy may check one, we another): refuse rather than pick one.
    if len(presented_all) != 1:
        return False
    return secret_matches(presented_all[0], auth.secrets)


def secret_matches(presented_value: str, secrets: list[SecretStr]) -> bool:
    """A presented header value equals one of `secrets`, compared in constant time against all."""
    presented = presented_value.encode("utf-8", "surrogateescape")
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(presented, secret.get_secret_value().encode())
    return matched
