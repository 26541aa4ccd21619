"""The emulated Okta org's seed file: API tokens, OAuth apps and servers, groups and users (YAML).

An org file describes the state the emulator starts from (and returns to on a full reset)::

    api_tokens: [00emulator-okta-api-token]       # accepted as "SSWS <token>" (or "SSWS<token>")
    oauth_clients:                                # service apps for private_key_jwt
      - client_id: 0oaemulatorservice01
        jwks: [{kty: RSA, kid: k1, n: ..., e: AQAB}]    # public keys only
        scopes: [okta.users.read, okta.users.manage]
    authorization_servers:                        # custom servers (/oauth2/{id}) for OAuth hooks
      - id: ausemulatorhooks0001                  # "default" or "aus" + 17 letters/digits
        audience: api://okta-password-gateway     # the tokens' aud
        scopes: [okta.hooks.password]             # what a client may request (scope=...)
        clients:                                  # client_secret_post or client_secret_basic
          - {client_id: 0oaemulatorhook00001, client_secret: ...}
    custom_attributes: [adObjectGuid]             # profile attributes beyond Okta's base profile
    rate_limits: {users_collection: 600}          # per bucket per minute; null = unlimited
    concurrency_limit: 75
    groups:
      - {name: Office 365 users, id: 00gemulatorgroup0001}
    users:                                        # default: STAGED with no credential, as the
      - profile: {login: a@contoso.com, email: a@contoso.com, firstName: A, lastName: B}
        groups: [Office 365 users]                #   Office 365 app import leaves them
        status: STAGED                            # STAGED | PROVISIONED | ACTIVE | DEPROVISIONED
        credential: none                          # none | password | hash | hook

Every listed client of an authorization server may get any of its scopes (Okta would decide that
with the server's access policies). Client secrets are ``SecretStr``: never in reprs or errors.

Errors never quote the file's lines (a token could be on them): only positions and problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

__all__ = [
    "DEFAULT_API_TOKEN",
    "DEFAULT_HOOK_AUDIENCE",
    "DEFAULT_HOOK_AUTH_SERVER",
    "DEFAULT_HOOK_AUTH_SERVER_ID",
    "DEFAULT_HOOK_CLIENT_ID",
    "DEFAULT_HOOK_CLIENT_SECRET",
    "DEFAULT_HOOK_SCOPE",
    "DEFAULT_OAUTH_CLIENT_ID",
    "OktaOrg",
    "OrgFileError",
    "SeedAuthServerClient",
    "SeedAuthorizationServer",
    "SeedGroup",
    "SeedOAuthClient",
    "SeedUser",
    "load_org",
]

DEFAULT_API_TOKEN = "00emulator-okta-api-token-0000000000000"  # noqa: S105 - emulator-only value
DEFAULT_OAUTH_CLIENT_ID = "0oaemulatorservice01"
# A custom authorization server for OAuth 2.0 hook channels (tests list DEFAULT_HOOK_AUTH_SERVER).
DEFAULT_HOOK_AUTH_SERVER_ID = "ausemulatorhooks0001"
DEFAULT_HOOK_AUDIENCE = "api://okta-password-gateway"
DEFAULT_HOOK_SCOPE = "okta.hooks.password"
DEFAULT_HOOK_CLIENT_ID = "0oaemulatorhook00001"
DEFAULT_HOOK_CLIENT_SECRET = "emulator-hook-client-secret-0000000000000"  # noqa: S105 - emulator-only
MANAGEMENT_SCOPES = (
    "okta.users.read",
    "okta.users.manage",
    "okta.groups.read",
    "okta.groups.manage",
    "okta.inlineHooks.read",
    "okta.inlineHooks.manage",
    "okta.eventHooks.read",
    "okta.eventHooks.manage",
    "okta.logs.read",
)


class OrgFileError(ValueError):
    """The org file is missing, not YAML, or does not validate (message never quotes secrets)."""


class SeedGroup(BaseModel):
    """A group that exists when the emulator starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=255)
    id: str | None = Field(default=None, pattern=r"^00g[A-Za-z0-9]{17}$")
    description: str | None = None


class SeedUser(BaseModel):
    """A user that exists when the emulator starts (by default STAGED with no credential)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: dict[str, Any]
    id: str | None = Field(default=None, pattern=r"^00u[A-Za-z0-9]{17}$")
    status: Literal["STAGED", "PROVISIONED", "ACTIVE", "DEPROVISIONED"] = "STAGED"
    credential: Literal["none", "password", "hash", "hook"] = "none"
    groups: list[str] = Field(default_factory=list)  # group names or ids

    @field_validator("profile")
    @classmethod
    def _check_login(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Every user needs a login; the rest is checked like an API create."""
        if not isinstance(value.get("login"), str) or not value["login"]:
            raise ValueError("profile.login is required")
        return value


class SeedOAuthClient(BaseModel):
    """An API Services app that may get tokens with a private_key_jwt client assertion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    jwks: list[dict[str, Any]] = Field(min_length=1)  # public JWKs (RSA or EC)
    scopes: list[str] = Field(default_factory=lambda: list(MANAGEMENT_SCOPES))


def _require_unique(ids: list[str], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} must be unique")


class SeedAuthServerClient(BaseModel):
    """An API Services app that gets tokens from a custom authorization server with its secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1, pattern=r"^\S+$")
    client_secret: SecretStr = Field(min_length=1)


class SeedAuthorizationServer(BaseModel):
    """A custom authorization server (``/oauth2/{id}``): its audience, scopes and clients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^(default|aus[A-Za-z0-9]{17})$")
    audience: str = Field(min_length=1)
    scopes: list[str] = Field(min_length=1)
    clients: list[SeedAuthServerClient] = Field(default_factory=list)

    @field_validator("scopes")
    @classmethod
    def _check_scopes(cls, value: list[str]) -> list[str]:
        """Scope names are requested space-separated: none may be empty or hold white space."""
        if any(not scope or any(ch.isspace() for ch in scope) for scope in value):
            raise ValueError("scope names must be non-empty and without white space")
        return value

    @field_validator("clients")
    @classmethod
    def _unique_clients(cls, value: list[SeedAuthServerClient]) -> list[SeedAuthServerClient]:
        """One entry per client id."""
        _require_unique([client.client_id for client in value], "client ids")
        return value


DEFAULT_HOOK_AUTH_SERVER = SeedAuthorizationServer(
    id=DEFAULT_HOOK_AUTH_SERVER_ID,
    audience=DEFAULT_HOOK_AUDIENCE,
    scopes=[DEFAULT_HOOK_SCOPE],
    clients=[
        SeedAuthServerClient(
            client_id=DEFAULT_HOOK_CLIENT_ID, client_secret=SecretStr(DEFAULT_HOOK_CLIENT_SECRET)
        )
    ],
)


class OktaOrg(BaseModel):
    """Everything the emulated org starts with."""

    model_config = ConfigDict(extra="forbid")

    api_tokens: list[str] = Field(default_factory=lambda: [DEFAULT_API_TOKEN], repr=False)
    oauth_clients: list[SeedOAuthClient] = Field(default_factory=list)
    authorization_servers: list[SeedAuthorizationServer] = Field(default_factory=list)
    custom_attributes: list[str] = Field(default_factory=list)
    rate_limits: dict[str, int | None] = Field(default_factory=dict)
    concurrency_limit: int | None = Field(default=75, ge=1)
    groups: list[SeedGroup] = Field(default_factory=list)
    users: list[SeedUser] = Field(default_factory=list)

    @field_validator("authorization_servers")
    @classmethod
    def _unique_servers(cls, value: list[SeedAuthorizationServer]) -> list[SeedAuthorizationServer]:
        """One entry per authorization server id."""
        _require_unique([server.id for server in value], "authorization server ids")
        return value

    @classmethod
    def with_staged_users(
        cls,
        n: int,
        domain: str = "contoso.com",
        *,
        base: OktaOrg | None = None,
        status: Literal["STAGED", "PROVISIONED", "ACTIVE", "DEPROVISIONED"] = "STAGED",
        credential: Literal["none", "password", "hash", "hook"] = "none",
    ) -> OktaOrg:
        """``base`` (default: an empty org) plus users ``user{i}@{domain}``, i = 0..n-1."""
        if n < 0:
            raise ValueError("n must be >= 0")
        start = base if base is not None else cls()
        generated = [
            SeedUser(
                profile={
                    "login": f"user{i}@{domain}",
                    "email": f"user{i}@{domain}",
                    "firstName": "User",
                    "lastName": f"Number{i}",
                },
                status=status,
                credential=credential,
            )
            for i in range(n)
        ]
        return start.model_copy(update={"users": [*start.users, *generated]})


def _format_validation_error(source: str, exc: ValidationError) -> str:
    """Summarise pydantic errors by location and message only (inputs hidden)."""
    lines = [f"{source}: invalid Okta org file"]
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {location}: {error['msg']}")
    return "\n".join(lines)


def load_org(path: str | Path) -> OktaOrg:
    """Load and validate an org file (YAML); raise OrgFileError with a clear message."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise OrgFileError(f"{source}: cannot read Okta org file: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise OrgFileError(f"{source}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OrgFileError(f"{source}: top level must be a mapping")
    try:
        return OktaOrg.model_validate(data)
    except ValidationError as exc:
        raise OrgFileError(_format_validation_error(source, exc)) from None
