"""From a source directory's user to the Okta user that imports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.migrate.settings import MigrationSourceConfig


@dataclass(frozen=True, slots=True)
class MappedUser:
    """An Okta profile ready to create, or the reason it cannot be."""

    login: str
    profile: dict[str, Any]
    skip_reason: str | None = None


def graph_attributes(settings: MigrationSourceConfig) -> list[str]:
    """The Graph properties to `$select` for this mapping (sorted, for stable requests)."""
    wanted = set(settings.profile.values()) | {"id", "userPrincipalName", "accountEnabled"}
    if settings.email_fallback:
        wanted.add(settings.email_fallback)
    return sorted(wanted)


def map_user(user: dict[str, Any], settings: MigrationSourceConfig) -> MappedUser:
    """Map one Graph user; empty attributes are left out (Okta rejects empty strings)."""
    profile: dict[str, Any] = {}
    for okta_attribute, graph_attribute in settings.profile.items():
        value = user.get(graph_attribute)
        if isinstance(value, list):
            value = next((v for v in value if v), None)
        if value not in (None, ""):
            profile[okta_attribute] = value
    if "email" not in profile and settings.email_fallback:
        fallback = user.get(settings.email_fallback)
        if isinstance(fallback, str) and "@" in fallback:
            profile["email"] = fallback
    login = str(profile.get("login") or user.get("userPrincipalName") or "")
    if not login:
        return MappedUser("", profile, "no_login")
    if "email" not in profile:
        return MappedUser(login, profile, "no_email")
    for required in ("firstName", "lastName"):
        # Okta's default profile requires both; a service account often has neither.
        profile.setdefault(required, login.partition("@")[0] if required == "firstName" else "-")
    return MappedUser(login, profile)
