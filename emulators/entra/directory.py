"""The emulated tenant: `EmulatedDirectory` and `EmulatedUser`, read by `load_directory`.

Users file (YAML, see ``emulators/demo_users.yaml``): ``tenant_id``, ``client_id``,
``client_secret``, ``managed_domains``, ``federated_domains``, ``app_token_lifetime_seconds``
and ``users``, each user with ``username``, ``password`` and optional ``display_name``,
``behaviour`` (``ok``, ``mfa_required``, ``mfa_enrollment``, ``locked``, ``disabled``,
``expired``, ``ca_blocked``, ``aadsts_<code>``, ``http_429``, ``http_500``, ``non_json``,
``hang``), ``retry_after``, ``latency_ms``, ``object_id``, and the Microsoft Graph attributes
``mail`` and ``proxy_addresses``.

Tenant and client ids are GUIDs, as in Entra; a tenant path segment may be the GUID, a verified
domain or one of Entra's aliases (``common``, ``organizations``, ``consumers``). Domains are
classified Managed / Federated / Unknown the way Entra's user-realm endpoint does.

Validation errors name the field and never quote the input (it may be a password).
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_TENANT_ID: Final = "11111111-2222-3333-4444-555555555555"
DEFAULT_CLIENT_ID: Final = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
DEFAULT_CLIENT_SECRET: Final = "emulator-client-secret"  # noqa: S105 - emulator-only demo value
# Realm names are Entra aliases, not tenants (the token endpoint refuses two of them: token.py).
_TENANT_ALIASES: Final = frozenset({"common", "organizations", "consumers"})

_BEFORE_PASSWORD: Final[Mapping[str, int]] = {"locked": 50053, "disabled": 50057}
_AFTER_PASSWORD: Final[Mapping[str, int]] = {
    "mfa_required": 50076,
    "mfa_enrollment": 50079,
    "expired": 50055,
    "ca_blocked": 53003,
}
_USER_FAULTS: Final = frozenset({"http_429", "http_500", "non_json", "hang"})
_BEHAVIOURS: Final = frozenset({"ok", *_BEFORE_PASSWORD, *_AFTER_PASSWORD, *_USER_FAULTS})
_AADSTS_BEHAVIOUR: Final = re.compile(r"aadsts_([1-9][0-9]{3,7})")


class DirectoryError(ValueError):
    """The users file is missing, not YAML, or does not validate (message never holds passwords)."""


class EmulatedUser(BaseModel):
    """One directory user and how the emulated Entra ID treats that user's sign-ins."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str = Field(min_length=3, max_length=256)
    password: str = Field(min_length=1, repr=False)
    display_name: str | None = None
    behaviour: str = "ok"
    retry_after: int = Field(default=5, ge=0, le=86_400)
    latency_ms: int = Field(default=0, ge=0, le=3_600_000)
    object_id: uuid.UUID | None = None
    # Microsoft Graph attributes, for username resolution (Okta login = mail, not the UPN).
    mail: str | None = None
    proxy_addresses: list[str] = Field(default_factory=list)  # e.g. "smtp:j.doe@contoso.com"
    # More Graph attributes, for importing users into Okta (`gateway migrate import`).
    given_name: str | None = None
    surname: str | None = None
    job_title: str | None = None
    department: str | None = None
    mobile_phone: str | None = None
    employee_id: str | None = None
    account_enabled: bool = True
    groups: list[str] = Field(default_factory=list)  # group object ids the user is a member of

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str) -> str:
        """Require a UPN-like ``local@domain`` with no whitespace or path characters."""
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or "@" in local:
            raise ValueError("username must look like local@domain")
        if any(ch.isspace() or ch in "/?#" for ch in value):
            raise ValueError("username must not contain whitespace, '/', '?' or '#'")
        return value

    @field_validator("behaviour")
    @classmethod
    def _check_behaviour(cls, value: str) -> str:
        """Accept the named behaviours and ``aadsts_<code>``."""
        if value in _BEHAVIOURS or _AADSTS_BEHAVIOUR.fullmatch(value):
            return value
        raise ValueError(
            "behaviour must be one of " + ", ".join(sorted(_BEHAVIOURS)) + " or aadsts_<code>"
        )

    @property
    def key(self) -> str:
        """The lookup key: the username lowercased."""
        return self.username.lower()

    @property
    def domain(self) -> str:
        """The lowercased domain part of the username."""
        return self.key.rpartition("@")[2]

    @property
    def fault(self) -> str | None:
        """The HTTP fault this user's token requests trigger, if any."""
        return self.behaviour if self.behaviour in _USER_FAULTS else None

    @property
    def code_before_password(self) -> int | None:
        """AADSTS code returned whatever the password (locked, disabled)."""
        return _BEFORE_PASSWORD.get(self.behaviour)

    @property
    def code_after_password(self) -> int | None:
        """AADSTS code returned only once the password was right (MFA, CA, expiry, aadsts_N)."""
        match = _AADSTS_BEHAVIOUR.fullmatch(self.behaviour)
        if match:
            return int(match.group(1))
        return _AFTER_PASSWORD.get(self.behaviour)

    def password_matches(self, candidate: str) -> bool:
        """Compare exactly (case and Unicode form preserved) in constant time."""
        return hmac.compare_digest(self.password.encode(), candidate.encode())


def _normalise_domains(values: Iterable[str]) -> list[str]:
    """Lowercase, strip and de-duplicate a domain list, keeping order."""
    seen: dict[str, None] = {}
    for value in values:
        domain = value.strip().lower()
        if not domain or "@" in domain or "/" in domain:
            raise ValueError(f"invalid domain name {value!r}")
        seen.setdefault(domain, None)
    return list(seen)


class EmulatedDirectory(BaseModel):
    """The emulated tenant: app registration, verified domains and users."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    tenant_id: str = DEFAULT_TENANT_ID
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = Field(default=DEFAULT_CLIENT_SECRET, min_length=1, repr=False)
    managed_domains: list[str] = Field(default_factory=lambda: ["contoso.com"])
    federated_domains: list[str] = Field(default_factory=list)
    app_token_lifetime_seconds: int = Field(default=3599, ge=1, le=86_400)
    users: list[EmulatedUser] = Field(default_factory=list)

    _by_key: dict[str, EmulatedUser] = PrivateAttr(default_factory=dict)

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _check_guid(cls, value: str) -> str:
        """Tenant and client ids are GUIDs in Entra; keep them in canonical lowercase form."""
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a GUID like 11111111-2222-3333-4444-555555555555") from None

    @field_validator("managed_domains", "federated_domains")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        """Normalise domain lists."""
        return _normalise_domains(value)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        """Domains must not overlap; every user needs a known domain and a unique name."""
        overlap = set(self.managed_domains) & set(self.federated_domains)
        if overlap:
            raise ValueError(f"domains both managed and federated: {sorted(overlap)}")
        known = set(self.managed_domains) | set(self.federated_domains)
        seen: set[str] = set()
        for user in self.users:
            if user.domain not in known:
                raise ValueError(
                    f"user {user.username!r}: domain {user.domain!r} is in neither "
                    "managed_domains nor federated_domains"
                )
            if user.key in seen:
                raise ValueError(f"duplicate username {user.username!r} (case-insensitive)")
            seen.add(user.key)
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Build the case-insensitive username index."""
        self._by_key = {user.key: user for user in self.users}

    def find(self, username: str) -> EmulatedUser | None:
        """Look a user up by username, case-insensitively."""
        return self._by_key.get(username.lower())

    def put_user(self, user: EmulatedUser) -> None:
        """Add a user, or replace the one with the same (case-insensitive) username."""
        if user.domain not in {*self.managed_domains, *self.federated_domains}:
            raise ValueError(f"user {user.username!r}: domain {user.domain!r} is not in the tenant")
        self.users = [u for u in self.users if u.key != user.key] + [user]
        self._by_key[user.key] = user

    def realm(self, domain: str) -> Literal["Managed", "Federated", "Unknown"]:
        """Classify a domain the way Entra's user-realm endpoint does."""
        domain = domain.lower()
        if domain in self.managed_domains:
            return "Managed"
        if domain in self.federated_domains:
            return "Federated"
        return "Unknown"

    def accepts_tenant(self, tenant: str) -> bool:
        """Say whether a tenant path segment is the GUID, a verified domain or an Entra alias."""
        tenant = tenant.lower()
        return (
            tenant == self.tenant_id
            or tenant in _TENANT_ALIASES
            or tenant in self.managed_domains
            or tenant in self.federated_domains
        )

    @classmethod
    def with_generated_users(
        cls,
        n: int,
        domain: str = "contoso.com",
        password_template: str = "Pw-{i}!",  # noqa: S107 - load-test users only
        *,
        base: EmulatedDirectory | None = None,
        behaviour: str = "ok",
    ) -> EmulatedDirectory:
        """Return a directory with users ``user{i}@{domain}`` (i = 0..n-1), password ``password_template.format(i=i)``.

        ``base`` (default: a directory with the default ids) contributes its settings and
        users; ``domain`` is added to its managed domains unless it is already known.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        start = base if base is not None else cls()
        managed = list(start.managed_domains)
        domain = domain.lower()
        if domain not in managed and domain not in start.federated_domains:
            managed.append(domain)
        generated = [
            EmulatedUser(
                username=f"user{i}@{domain}",
                password=password_template.format(i=i),
                behaviour=behaviour,
                given_name=f"User{i}",
                surname="Generated",
                mail=f"user{i}@{domain}" if i % 4 else None,  # Graph's mail is often empty
                department=("Sales", "Engineering", "Finance")[i % 3],
            )
            for i in range(n)
        ]
        return cls(
            tenant_id=start.tenant_id,
            client_id=start.client_id,
            client_secret=start.client_secret,
            managed_domains=managed,
            federated_domains=list(start.federated_domains),
            users=[*start.users, *generated],
        )


def _format_validation_error(source: str, exc: ValidationError) -> str:
    """Summarise pydantic errors by location and message only (inputs hidden)."""
    lines = [f"{source}: invalid users file"]
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {location}: {error['msg']}")
    return "\n".join(lines)


def load_directory(path: str | Path) -> EmulatedDirectory:
    """Load and validate a users file (YAML); raise DirectoryError with a clear message."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise DirectoryError(f"{source}: cannot read users file: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The YAML error text quotes the offending line, which may hold a password: report
        # only the position and the problem.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise DirectoryError(f"{source}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise DirectoryError(f"{source}: top level must be a mapping")
    try:
        return EmulatedDirectory.model_validate(data)
    except ValidationError as exc:
        raise DirectoryError(_format_validation_error(source, exc)) from None
