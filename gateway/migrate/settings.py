"""The `okta.api` and `migration` config sections (validated with the rest of config.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictFloat, StrictInt

# Graph user properties an import may map (Graph v1.0 `user` resource; strings or string lists).
GRAPH_USER_ATTRIBUTES = frozenset(
    {
        "id", "userPrincipalName", "mail", "displayName", "givenName", "surname", "jobTitle",
        "department", "mobilePhone", "businessPhones", "officeLocation", "preferredLanguage",
        "employeeId", "employeeType", "companyName", "city", "country", "state", "streetAddress",
        "postalCode", "usageLocation", "onPremisesSamAccountName", "onPremisesImmutableId",
        "mailNickname", "otherMails", "proxyAddresses",
    }
)  # fmt: skip
# Okta's default user profile requires these (reference/okta-hooks.md §2, createUser).
REQUIRED_OKTA_ATTRIBUTES = ("login", "email", "firstName", "lastName")
DEFAULT_PROFILE = {
    "login": "userPrincipalName",
    "email": "mail",
    "firstName": "givenName",
    "lastName": "surname",
    "mobilePhone": "mobilePhone",
    "title": "jobTitle",
    "department": "department",
    "employeeNumber": "employeeId",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OktaOAuthConfig(_Strict):
    """An OAuth 2.0 service app: private_key_jwt client assertion, scoped access tokens."""

    client_id: str
    private_key_file: str
    key_id: str | None = None
    scopes: list[str] = Field(
        default_factory=lambda: [
            "okta.users.read",
            "okta.users.manage",
            "okta.inlineHooks.manage",
            "okta.eventHooks.manage",
        ],
        min_length=1,
    )


class OktaApiConfig(_Strict):
    """How the migration commands call the Okta Management API: an SSWS token or OAuth."""

    token: SecretStr | None = None
    oauth: OktaOAuthConfig | None = None
    max_concurrency: StrictInt = Field(8, ge=1, le=75)
    timeout_seconds: StrictFloat = Field(10, gt=0, le=120)


class MigrationSourceConfig(_Strict):
    """How one source directory's users become Okta users."""

    group: str | None = None  # an Entra group object id: only its members
    include_disabled: StrictBool = False
    okta_groups: list[str] = Field(default_factory=list)  # groupIds at creation
    # Okta requires an email; Graph's `mail` is often empty.
    email_fallback: str | None = "userPrincipalName"
    profile: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PROFILE))


class MigrationConfig(_Strict):
    """The `migration:` section."""

    ledger: str | None = None  # a SQLAlchemy URL; default: ledger.db in $STATE_DIRECTORY or here
    sources: dict[str, MigrationSourceConfig] = Field(default_factory=dict)


def migration_problems(
    migration: MigrationConfig, source_types: dict[str, str], api: OktaApiConfig | None
) -> list[tuple[str, str]]:
    """Cross-checks a schema cannot express, each with its config path."""
    problems: list[tuple[str, str]] = []
    for name, settings in migration.sources.items():
        here = f"migration.sources.{name}"
        kind = source_types.get(name)
        if kind is None:
            problems.append((here, f"no source is named {name!r}"))
            continue
        if kind != "azure_ad":
            problems.append((here, f"source type {kind!r} cannot list its users for an import"))
        for okta_attribute, graph_attribute in settings.profile.items():
            if graph_attribute not in GRAPH_USER_ATTRIBUTES:
                problems.append(
                    (
                        f"{here}.profile.{okta_attribute}",
                        f"unknown Graph attribute {graph_attribute!r}",
                    )
                )
        for required in REQUIRED_OKTA_ATTRIBUTES:
            if required not in settings.profile:
                problems.append((f"{here}.profile", f"Okta requires {required}: map it"))
        fallback = settings.email_fallback
        if fallback is not None and fallback not in GRAPH_USER_ATTRIBUTES:
            problems.append((f"{here}.email_fallback", f"unknown Graph attribute {fallback!r}"))
    if api is not None and (api.token is None) == (api.oauth is None):
        problems.append(("okta.api", "give exactly one of token or oauth"))
    return problems


Action = Literal["created", "native", "existing", "skipped", "failed"]
