"""The `okta.api` and `migration` config sections (validated with the rest of config.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
)

from gateway.auth import HookAuthConfig

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
    # One answer (a page of users or log events); past it the call fails as bad_response.
    max_response_bytes: StrictInt = Field(16 * 1024 * 1024, ge=65536, le=256 * 1024 * 1024)


class MigrationSourceConfig(_Strict):
    """How one source directory's users become Okta users."""

    group: str | None = None  # an Entra group object id: only its members
    include_disabled: StrictBool = False
    okta_groups: list[str] = Field(default_factory=list)  # groupIds at creation
    # Okta requires an email; Graph's `mail` is often empty.
    email_fallback: str | None = "userPrincipalName"
    profile: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PROFILE))


# Event types the event hook acts on; any other type is recorded and counted as `other`.
IMPORT_PASSWORD_EVENT = "user.import.password"  # noqa: S105 - an event type
ACTIVATE_EVENT = "user.lifecycle.activate"
CREATE_EVENT = "user.lifecycle.create"
APP_MEMBERSHIP_EVENT = "application.user_membership.add"
PREPARE_EVENTS = (CREATE_EVENT, APP_MEMBERSHIP_EVENT)


# Events per ledger transaction, chosen with bench/event_delivery.py (events/s, loop hold).
DEFAULT_CHUNK_EVENTS = 500


class EventHookConfig(_Strict):
    """Okta's event hook into the gateway (`GET` verification, `POST` deliveries)."""

    path: str = "/okta/events"
    auth: HookAuthConfig
    # Okta delivers at most a few hundred events per request; a batch is a few hundred KB.
    max_body_bytes: StrictInt = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Where Okta calls it, for `migrate register-hooks` (default: okta.hook_url's origin + path).
    url: str | None = None
    # Events per ledger transaction (each chunk's events and migrated marks commit together).
    chunk_events: StrictInt = Field(DEFAULT_CHUNK_EVENTS, ge=1, le=5000)
    # Answer a delivery by then (Okta waits 3 s): 200 if all of it is applied, else 503.
    budget_seconds: StrictFloat = Field(2.5, gt=0, lt=3)

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise ValueError("must be an absolute URL path such as /okta/events")
        return value


class MigrationConfig(_Strict):
    """The `migration:` section."""

    ledger: str | None = None  # a SQLAlchemy URL; default: ledger.db in $STATE_DIRECTORY or here
    sources: dict[str, MigrationSourceConfig] = Field(default_factory=dict)
    event_hook: EventHookConfig | None = None
    # Events that prepare a STAGED user (set the hook, activate without email), as `migrate
    # prepare` does for one user.
    prepare_on: list[Literal["user.lifecycle.create", "application.user_membership.add"]] = Field(
        default_factory=list
    )
    # With application.user_membership.add: only assignments to this Okta app id count.
    prepare_app_id: str | None = None
    sync_on_activate: StrictBool = False  # copy source attributes when a user is activated
    # A source is ready to retire when nobody is pending, or nobody was verified for this long.
    retire_after_days: StrictInt = Field(14, ge=1, le=3650)


# What an import can map, per source type that can list its users: Graph's user properties, or
# None for a file whose columns are named freely (checked against the file when it is read).
PROFILE_ATTRIBUTES: dict[str, frozenset[str] | None] = {
    "azure_ad": GRAPH_USER_ATTRIBUTES,
    "hashed_export": None,
}
# A file source's defaults: the column names `gateway migrate import` expects unless told.
FILE_PROFILE = {
    "login": "username",
    "email": "email",
    "firstName": "firstName",
    "lastName": "lastName",
}


def for_source_type(settings: MigrationSourceConfig, kind: str) -> MigrationSourceConfig:
    """`settings` with a file source's defaults for the keys the config left out."""
    if kind != "hashed_export":
        return settings
    given = settings.model_fields_set
    update: dict[str, object] = {}
    if "profile" not in given:
        update["profile"] = dict(FILE_PROFILE)
    if "email_fallback" not in given:
        update["email_fallback"] = "username"
    return settings.model_copy(update=update) if update else settings


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
        if kind not in PROFILE_ATTRIBUTES:
            problems.append((here, f"source type {kind!r} cannot list its users for an import"))
            continue
        settings = for_source_type(settings, kind)
        known = PROFILE_ATTRIBUTES[kind]
        for okta_attribute, graph_attribute in settings.profile.items():
            if known is not None and graph_attribute not in known:
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
        if fallback is not None and known is not None and fallback not in known:
            problems.append((f"{here}.email_fallback", f"unknown Graph attribute {fallback!r}"))
        if kind != "azure_ad" and (settings.group is not None or settings.include_disabled):
            problems.append((here, "group and include_disabled are for Entra (azure_ad) sources"))
    if APP_MEMBERSHIP_EVENT in migration.prepare_on and migration.prepare_app_id is None:
        problems.append(
            ("migration.prepare_app_id", f"needed with {APP_MEMBERSHIP_EVENT} in prepare_on")
        )
    if (migration.prepare_on or migration.sync_on_activate) and migration.event_hook is None:
        problems.append(
            ("migration.event_hook", "prepare_on and sync_on_activate need the event hook")
        )
    if api is not None and (api.token is None) == (api.oauth is None):
        problems.append(("okta.api", "give exactly one of token or oauth"))
    if migration.ledger is not None:
        from gateway.ledger.url import ledger_extra_problem  # SQLAlchemy: only with a ledger set

        extra = ledger_extra_problem(migration.ledger)
        if extra is not None:
            problems.append(("migration.ledger", extra))
    return problems


Action = Literal["created", "native", "existing", "skipped", "failed"]
