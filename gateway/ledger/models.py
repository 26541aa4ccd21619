"""The values the ledger takes and gives: user states, runs, users, decisions, events, progress.

Nothing here has a place for a password or a password hash: the ledger records what was done to
whom and when, never a credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class UserState(StrEnum):
    """The last thing a command did with one user of one source."""

    LISTED = "listed"  # read from the source; nothing done in Okta yet
    CREATED = "created"  # created in Okta with the password hook, not yet activated
    HOOKED = "hooked"  # an existing (STAGED) Okta user got the password hook
    ACTIVATED = "activated"  # active in Okta with the hook: can sign in, not yet migrated
    EXISTING = "existing"  # the login was already in Okta: left alone
    SKIPPED = "skipped"  # never sent to Okta (no route to the source, no usable email)
    FAILED = "failed"  # Okta refused; `reason` says why
    MIGRATED = "migrated"  # Okta holds the password now (event, reconciliation or native hash)
    ROLLED_BACK = "rolled_back"  # deleted from Okta again by `migrate rollback`


# Users in Okta with the hook who have not (yet) signed in: what "pending" counts are made of.
PENDING_STATES: frozenset[UserState] = frozenset(
    {UserState.CREATED, UserState.HOOKED, UserState.ACTIVATED}
)

# The `reason` `migrate finish` (gateway/migrate/finish.py) records for a user it reset, expired
# or deactivated: `finish_<action>`; a failed action is `finish_<action>_failed`, not one of these.
# Such a user keeps its state (it never signed in) but is no longer waited for: progress counts it
# `finished`, not `pending`, unless the hook verified it since (it signed in after all).
FINISH_REASONS: frozenset[str] = frozenset(
    {"finish_reset_password", "finish_expire_password", "finish_deactivate"}
)


class RunCommand(StrEnum):
    """The commands that write a run to the ledger."""

    IMPORT = "import"
    PREPARE = "prepare"
    SYNC_ATTRIBUTES = "sync-attributes"
    ROLLBACK = "rollback"
    FINISH = "finish"
    REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a migration command."""

    id: int
    command: str
    source: str | None
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class LedgerUser:
    """What the ledger knows about one login of one source."""

    id: int
    source: str
    login: str
    okta_id: str | None
    state: UserState
    reason: str | None
    native: bool
    created_run_id: int | None
    last_run_id: int | None
    imported_at: datetime | None
    hooked_at: datetime | None
    activated_at: datetime | None
    attributes_synced_at: datetime | None
    verified_at: datetime | None
    migrated_at: datetime | None
    rolled_back_at: datetime | None
    last_decision: str | None
    last_decision_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One upsert of a user by (source, login), as `Ledger.record_users` takes it.

    Step timestamps are those of what the command just did; each is kept from the first time it
    was recorded, so a re-run does not move it (a rolled-back user starts over).
    """

    source: str
    login: str
    state: UserState
    okta_id: str | None = None
    reason: str | None = None  # a short machine code (`no_route`, `okta_e0000001`), never input
    run_id: int | None = None
    native: bool = False  # created with a password hash Okta stores itself: migrated at once
    imported_at: datetime | None = None  # created in Okta by this tool (rollback may delete it)
    hooked_at: datetime | None = None
    activated_at: datetime | None = None
    migrated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer of the password hook, as the hot path hands it over (never the password)."""

    source: str
    login: str
    result: str  # the verdict's result: verified, denied, unavailable
    at: datetime
    okta_id: str | None = None  # data.context.user.id of the hook request, when Okta sent it


@dataclass(frozen=True, slots=True)
class OktaEvent:
    """One event of an Okta event hook delivery, identified by Okta's `uuid`."""

    uuid: str
    type: str  # eventType, e.g. user.import.password
    outcome: str | None = None  # outcome.result: SUCCESS, FAILURE, ...
    okta_user_id: str | None = None  # the target User's id
    published_at: datetime | None = None  # Okta's `published`


@dataclass(frozen=True, slots=True)
class SourceProgress:
    """How far one source has come, from the ledger alone."""

    source: str
    states: Mapping[UserState, int] = field(default_factory=dict)
    migrated: int = 0  # includes `native`
    native: int = 0
    verified_unconfirmed: int = 0  # verified by the hook, no event or reconciliation yet
    pending: int = 0  # in Okta with the hook, never verified: who has not signed in yet
    finished: int = 0  # like pending, but `migrate finish` acted on them (FINISH_REASONS)
    last_verified_at: datetime | None = None
    last_migrated_at: datetime | None = None

    @property
    def imported(self) -> int:
        """Users of this source in Okta with the hook.

        migrated + verified_unconfirmed + pending + finished.
        """
        return self.migrated + self.verified_unconfirmed + self.pending + self.finished
