"""Records the Okta emulator keeps (users, groups) and their JSON shapes as Okta returns them.

Shapes follow the management OpenAPI spec (``User``, ``UserCredentials``, ``AuthenticationProvider``,
``Group``) and its examples ``create-user-with-password-import-inline-hook-response``,
``create-user-without-credentials-response`` and ``group-example``. Nothing here keeps a
password: the emulator records *which kind* of credential a user has, and an imported password
hash (``credentials.password.hash``) so that a sign-in can be checked against it.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "BASE_PROFILE_ATTRIBUTES",
    "DEFAULT_USER_TYPE_ID",
    "Credential",
    "GroupRecord",
    "Status",
    "UserRecord",
    "iso",
    "new_id",
    "profile_problems",
]

# The default Okta user profile (OpenAPI ``UserProfile``); other names need a schema extension.
BASE_PROFILE_ATTRIBUTES = frozenset(
    {
        "city",
        "costCenter",
        "countryCode",
        "department",
        "displayName",
        "division",
        "email",
        "employeeNumber",
        "firstName",
        "honorificPrefix",
        "honorificSuffix",
        "lastName",
        "locale",
        "login",
        "manager",
        "managerId",
        "middleName",
        "mobilePhone",
        "nickName",
        "organization",
        "postalAddress",
        "preferredLanguage",
        "primaryPhone",
        "profileUrl",
        "secondEmail",
        "state",
        "streetAddress",
        "timezone",
        "title",
        "userType",
        "zipCode",
    }
)
DEFAULT_USER_TYPE_ID = "oty1emulatordefault0"
_REQUIRED = ("login", "email", "firstName", "lastName")  # firstName/lastName: Okta's default
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ID_ALPHABET = string.ascii_letters + string.digits


class Status(StrEnum):
    """Okta user statuses (OpenAPI ``UserStatus``) the emulator can reach."""

    STAGED = "STAGED"
    PROVISIONED = "PROVISIONED"
    ACTIVE = "ACTIVE"
    DEPROVISIONED = "DEPROVISIONED"
    SUSPENDED = "SUSPENDED"
    LOCKED_OUT = "LOCKED_OUT"
    PASSWORD_EXPIRED = "PASSWORD_EXPIRED"  # noqa: S105 - a status name
    RECOVERY = "RECOVERY"


class Credential(StrEnum):
    """Which password credential a user has; the value itself is never kept."""

    NONE = "none"  # e.g. left STAGED by the Office 365 app import
    PASSWORD = "password"  # noqa: S105 - an Okta-held password (set by an admin, or imported at sign-in)
    HASH = "hash"  # an imported hash Okta checks itself on first sign-in
    HOOK = "hook"  # credentials.password.hook = {"type": "default"}

    @property
    def provider(self) -> str:
        """``credentials.provider.type``: IMPORT until Okta holds the password itself."""
        return "IMPORT" if self in (Credential.HASH, Credential.HOOK) else "OKTA"


def profile_problems(
    profile: dict[str, Any], custom_attributes: frozenset[str]
) -> list[tuple[str, str]]:
    """(attribute, cause) for each way ``profile`` breaks Okta's default user schema."""
    causes: list[tuple[str, str]] = []
    for name in _REQUIRED:
        value = profile.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            causes.append((name, f"{name}: The field cannot be left blank"))
    login, email = profile.get("login"), profile.get("email")
    if isinstance(login, str) and login and not _EMAIL.match(login):
        causes.append(("login", "login: Username must be in the form of an email address"))
    if isinstance(email, str) and email and not _EMAIL.match(email):
        causes.append(("email", "email: Does not match required pattern"))
    for name in profile:
        if name not in BASE_PROFILE_ATTRIBUTES and name not in custom_attributes:
            # Emulator wording: Okta refuses attributes its schema lacks, phrasing unconfirmed.
            causes.append((name, f"{name}: Property name '{name}' is not defined in profile"))
    return causes


def new_id(prefix: str) -> str:
    """An Okta-style object id: a 3-character type prefix and 17 letters/digits (20 in all)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


def iso(moment: float | None) -> str | None:
    """Okta's timestamp format (millisecond precision, ``Z``), or None."""
    if moment is None:
        return None
    stamp = datetime.fromtimestamp(moment, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class UserRecord:
    """One Okta user as the emulator stores it."""

    id: str
    seq: int  # creation order: list order and the ``after`` cursor follow it
    profile: dict[str, Any]
    status: Status
    credential: Credential
    created: float
    last_updated: float
    activated: float | None = None
    status_changed: float | None = None
    last_login: float | None = None
    password_changed: float | None = None
    recovery_question: str | None = None
    type_id: str = DEFAULT_USER_TYPE_ID
    group_ids: list[str] = field(default_factory=list)
    # The imported hash Okta checks at the first sign-in (Credential.HASH only); never shown.
    password_hash: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def login(self) -> str:
        """The user's login (``profile.login``)."""
        return str(self.profile.get("login", ""))

    @property
    def provider(self) -> str:
        """``credentials.provider.type`` (and ``name``): ``IMPORT`` or ``OKTA``."""
        return self.credential.provider

    def credentials_json(self) -> dict[str, Any]:
        """``credentials`` as Okta returns it: ``password: {}`` only when one exists (write-only)."""
        body: dict[str, Any] = {}
        if self.credential is not Credential.NONE:
            body["password"] = {}
        if self.recovery_question is not None:
            body["recovery_question"] = {"question": self.recovery_question}
        body["provider"] = {"type": self.provider, "name": self.provider}
        return body

    def links_json(self, base: str, *, full: bool) -> dict[str, Any]:
        """``_links``: only ``self`` in collections; lifecycle links for the status on a single user."""
        href = f"{base}/api/v1/users/{self.id}"
        links: dict[str, Any] = {}
        if full:
            if self.status in (Status.STAGED, Status.DEPROVISIONED):
                links["activate"] = {"href": f"{href}/lifecycle/activate", "method": "POST"}
            if self.status is Status.PROVISIONED:
                links["reactivate"] = {"href": f"{href}/lifecycle/reactivate", "method": "POST"}
            if self.status is not Status.DEPROVISIONED:
                links["deactivate"] = {"href": f"{href}/lifecycle/deactivate", "method": "POST"}
            else:
                links["delete"] = {"href": href, "method": "DELETE"}
            links["type"] = {"href": f"{base}/api/v1/meta/types/user/{self.type_id}"}
        links["self"] = {"href": href}
        return links

    def to_json(self, base: str, *, full: bool = True) -> dict[str, Any]:
        """The ``User`` object; ``full=False`` is the shape of an entry in a list response."""
        return {
            "id": self.id,
            "status": self.status.value,
            "created": iso(self.created),
            "activated": iso(self.activated),
            "statusChanged": iso(self.status_changed),
            "lastLogin": iso(self.last_login),
            "lastUpdated": iso(self.last_updated),
            "passwordChanged": iso(self.password_changed),
            "type": {"id": self.type_id},
            "profile": dict(self.profile),
            "credentials": self.credentials_json(),
            "_links": self.links_json(base, full=full),
        }

    def search_value(self, attribute: str) -> Any:
        """The value a ``search``/``filter`` attribute names, or None when the user has none."""
        if attribute.startswith("profile."):
            return self.profile.get(attribute.removeprefix("profile."))
        # Only the attribute asked for is computed: a search evaluates this per user and term,
        # and formatting every timestamp each time made `id eq ... or ...` searches slow.
        if attribute == "id":
            return self.id
        if attribute == "status":
            return self.status.value
        if attribute == "type.id":
            return self.type_id
        moment = {
            "created": self.created,
            "activated": self.activated,
            "statusChanged": self.status_changed,
            "lastUpdated": self.last_updated,
        }.get(attribute)
        return None if moment is None else iso(moment)


@dataclass(slots=True)
class GroupRecord:
    """One ``OKTA_GROUP`` and its members."""

    id: str
    name: str
    description: str | None
    created: float
    last_updated: float
    last_membership_updated: float
    member_ids: set[str] = field(default_factory=set)

    def to_json(self, base: str) -> dict[str, Any]:
        """The ``Group`` object (spec example ``group-example``)."""
        href = f"{base}/api/v1/groups/{self.id}"
        return {
            "id": self.id,
            "created": iso(self.created),
            "lastUpdated": iso(self.last_updated),
            "lastMembershipUpdated": iso(self.last_membership_updated),
            "objectClass": ["okta:user_group"],
            "type": "OKTA_GROUP",
            "profile": {"name": self.name, "description": self.description},
            "_links": {
                "users": {"href": f"{href}/users"},
                "apps": {"href": f"{href}/apps"},
                "self": {"href": href},
            },
        }
