"""The emulated Okta org's state and rules, free of HTTP: users, groups, hooks, tokens, counters.

Handlers (one module per endpoint family) parse requests and call into ``OktaEmulator``; the
lifecycle rules live here so seeds, the API and the control plane all obey the same ones
(OpenAPI ``activateUser``, ``deactivateUser``, ``deleteUser``; reference/okta-sdk-notes.md):

* create with ``activate=true`` and a credential (password, hash or hook): ACTIVE, no email;
  without a credential: PROVISIONED and an activation email (Okta mails a one-time token);
* ``lifecycle/activate`` only from STAGED or DEPROVISIONED: with a credential ACTIVE, without one
  PROVISIONED; ``sendEmail=true`` (the default) sends the activation email either way;
* ``DELETE`` on a user that is not DEPROVISIONED deactivates it; a second DELETE removes it;
* ``reset_password`` (ACTIVE, PROVISIONED, RECOVERY, PASSWORD_EXPIRED, LOCKED_OUT): RECOVERY, the
  old credential (an import hook too) no longer signs in; ``sendEmail=true`` mails a reset link;
* ``expire_password`` (ACTIVE, PASSWORD_EXPIRED): PASSWORD_EXPIRED, no email.

Every change an admin or user makes is published as a System Log event (``publish``), which
``delivery.EventDelivery`` hands to the subscribed event hooks. Seeding from the org file
publishes nothing: it is the org's past.
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from aiohttp import web

from emulators.okta import errors
from emulators.okta.delivery import EventDelivery
from emulators.okta.directory import OktaOrg, OrgFileError, SeedOAuthClient
from emulators.okta.limits import FaultMode, FaultPlan, RateLimiter
from emulators.okta.models import (
    Credential,
    GroupRecord,
    Status,
    UserRecord,
    new_id,
    profile_problems,
)
from emulators.okta.system_log import (
    ADMIN_ACTOR,
    SYSTEM_ACTOR,
    SystemLog,
    build_event,
    user_actor,
    user_target,
)

if TYPE_CHECKING:
    from emulators.okta.auth_servers import AuthorizationServer

__all__ = ["EMULATOR_KEY", "AccessToken", "HookToken", "OktaEmulator"]

MAX_GROUP_IDS: Final = 20  # groupIds at creation (OpenAPI createUser, E0000093 past it)
MAX_RECORDED_UPDATES: Final = 10_000
SIGN_IN_URI: Final = "/idp/idx/challenge/answer"  # the Identity Engine endpoint of a sign-in
RESETTABLE: Final = frozenset(
    {
        Status.ACTIVE,
        Status.PROVISIONED,
        Status.RECOVERY,
        Status.PASSWORD_EXPIRED,
        Status.LOCKED_OUT,
    }
)
EXPIRABLE: Final = frozenset({Status.ACTIVE, Status.PASSWORD_EXPIRED})


def _generator(seed: int | None) -> random.Random:
    """Seeded: the same uuids on every run; else from the OS (uuids only, nothing secret)."""
    return random.Random(seed) if seed is not None else random.SystemRandom()  # noqa: S311


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An access token the org authorization server issued to a service app."""

    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True, slots=True)
class HookToken:
    """An access token Okta fetched for an OAuth 2.0 inline hook channel, kept for reuse."""

    access_token: str = field(repr=False)
    reuse_until: float  # Okta fetches a new one shortly before it expires
    channel: str  # digest of tokenUrl, clientId, clientSecret and scope: a change refetches


class OktaEmulator:
    """All state of one emulated org, its counters and its rate limiter."""

    def __init__(
        self,
        org: OktaOrg,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.org = org
        self.clock = clock
        self.seed = seed
        self.org_url = "http://127.0.0.1"  # set to the listening URL by start_okta_emulator
        # Event uuids: reproducible with a seed; random by default, so two runs of a demo
        # against one persistent consumer never share uuids (it dedupes on them).
        self._rng = _generator(seed)
        self.system_log = SystemLog()
        self.delivery = EventDelivery(self)
        self.limiter = RateLimiter(org.rate_limits, clock=clock)
        self.concurrency_limit = org.concurrency_limit
        self.fault = FaultPlan()
        self.latency_ms = 0
        self.hook_timeout = 3.0  # Okta's limit for inline hook calls and event hook verification
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests_by_endpoint: Counter[str] = Counter()
        self.responses_by_status: Counter[int] = Counter()
        self.rate_limited_by_bucket: Counter[str] = Counter()
        self.concurrency_rejections = 0
        self.faults_injected: Counter[str] = Counter()
        self.events: Counter[str] = Counter()  # users_created, users_activated, ...
        self.activation_emails: Counter[str] = Counter()  # login -> emails that would be sent
        self.deactivation_emails: Counter[str] = Counter()
        self.password_reset_emails: Counter[str] = Counter()
        self.profile_updates: list[dict[str, Any]] = []  # {"id", "method", "attributes"}
        self._load(org)

    # -- seeding and reset ------------------------------------------------------------------
    def _load(self, org: OktaOrg) -> None:
        """(Re)build every store from the org file."""
        self.users: dict[str, UserRecord] = {}
        self._by_login: dict[str, str] = {}
        self._seq_of: dict[str, int] = {}  # kept after deletion so an ``after`` cursor still works
        self._order: list[int] = []
        self._by_seq: dict[int, UserRecord] = {}
        self._next_seq = 0
        self.groups: dict[str, GroupRecord] = {}
        self.inline_hooks: dict[str, dict[str, Any]] = {}
        self.event_hooks: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.used_assertion_ids: dict[str, float] = {}
        self.api_tokens = frozenset(org.api_tokens)
        self.app_users: dict[str, dict[str, str]] = {}  # app id -> {user id: app label}
        self.oauth_clients: dict[str, SeedOAuthClient] = {c.client_id: c for c in org.oauth_clients}
        # auth_servers imports this module (EMULATOR_KEY), so it is imported here, not at the top.
        from emulators.okta.auth_servers import AuthorizationServer

        self.authorization_servers: dict[str, AuthorizationServer] = {
            server.id: AuthorizationServer(server) for server in org.authorization_servers
        }
        self.hook_tokens: dict[str, HookToken] = {}  # inline hook id -> its cached access token
        self.custom_attributes = frozenset(org.custom_attributes)
        for seed_group in org.groups:
            self.add_group(seed_group.name, seed_group.description, group_id=seed_group.id)
        names = {group.name: group.id for group in self.groups.values()}
        for index, seed in enumerate(org.users):
            group_ids = [names.get(ref, ref) for ref in seed.groups]
            try:
                self._check_groups(group_ids)
                self.validate_profile(seed.profile)
            except errors.OktaApiError as err:
                raise OrgFileError(
                    f"users[{index}]: {'; '.join(err.causes) or err.summary}"
                ) from None
            user = self._insert(seed.profile, Credential(seed.credential), seed.id)
            self.add_memberships(user, group_ids)
            if seed.status != "STAGED":
                self._set_status(user, Status(seed.status))

    def reset_counters(self) -> None:
        """Zero every counter and rate-limit window (users, hooks and settings stay)."""
        for counter in (
            self.requests_by_endpoint,
            self.responses_by_status,
            self.rate_limited_by_bucket,
            self.faults_injected,
            self.events,
            self.activation_emails,
            self.deactivation_emails,
            self.password_reset_emails,
        ):
            counter.clear()
        self.delivery.reset_counters()
        self.profile_updates.clear()
        self.concurrency_rejections = 0
        self.peak_in_flight = self.in_flight
        self.limiter.reset()

    def reset_all(self) -> None:
        """Back to the org file: counters zeroed; users, groups, hooks, tokens as seeded."""
        self.reset_counters()
        self.fault = FaultPlan()
        self.latency_ms = 0
        self.delivery.discard_pending()
        self.system_log.clear()
        self._load(self.org)

    def rotate_authorization_server_key(self, server_id: str) -> str:
        """A new signing key and ``kid`` for the server (the old key is dropped); the new kid.

        Cached hook tokens are forgotten, so the next hook call carries a token signed with the
        new key. KeyError for an unknown server id.
        """
        kid = self.authorization_servers[server_id].rotate_key()
        self.hook_tokens.clear()
        return kid

    def reseed(self, seed: int | None) -> None:
        """Restart event uuids from ``seed`` (None: random)."""
        self.seed = seed
        self._rng = _generator(seed)

    # -- events -----------------------------------------------------------------------------
    def new_uuid(self) -> str:
        """A version 4 UUID from the emulator's generator (seeded: reproducible)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def publish(
        self,
        event_type: str,
        targets: list[dict[str, Any]],
        *,
        actor: dict[str, Any] = ADMIN_ACTOR,
        result: str = "SUCCESS",
        reason: str | None = None,
        request_uri: str | None = None,
    ) -> dict[str, Any]:
        """Write an event to the System Log and queue it for the event hooks that want it."""
        now = self.clock()
        event = build_event(
            self.new_uuid(),
            event_type,
            now,
            actor=actor,
            targets=targets,
            result=result,
            reason=reason,
            request_uri=request_uri,
        )
        self.system_log.append(event, now)
        self.delivery.submit(event)
        return event

    async def flush_events(self, max_wait: float = 30.0) -> dict[str, Any]:
        """Deliver every queued event now and wait for the deliveries (see ``EventDelivery``)."""
        return await self.delivery.flush(max_wait)

    def log_delivery_failure(self, hook: dict[str, Any], error: str) -> None:
        """``event_hook.delivery`` FAILURE: in the System Log only, never delivered itself."""
        target = {
            "id": hook["id"],
            "type": "EventHook",
            "alternateId": hook["channel"]["config"]["uri"],
            "displayName": hook["name"],
            "detailEntry": None,
        }
        self.publish(
            "event_hook.delivery",
            [target],
            actor=SYSTEM_ACTOR,
            result="FAILURE",
            reason=error,
            request_uri="",
        )

    def set_fault(
        self,
        mode: FaultMode,
        rate: float = 1.0,
        retry_after: int = 1,
        buckets: Iterable[str] = (),
        latency_ms: int | None = None,
    ) -> None:
        """Inject an outage on API requests; ``latency_ms=None`` keeps the current latency."""
        self.fault = FaultPlan.build(mode, rate, retry_after, buckets)
        if latency_ms is not None:
            if latency_ms < 0:
                raise ValueError("latency_ms must be >= 0")
            self.latency_ms = latency_ms

    def set_limits(
        self,
        limits: dict[str, int | None],
        *,
        concurrency_limit: int | Literal["keep"] | None = "keep",
    ) -> None:
        """Change per-bucket per-minute limits (None = unlimited) and optionally the concurrency cap."""
        self.limiter.set_limits(limits)
        if concurrency_limit != "keep":
            if concurrency_limit is not None and concurrency_limit < 1:
                raise ValueError("concurrency_limit must be >= 1 or None")
            self.concurrency_limit = concurrency_limit

    # -- users ------------------------------------------------------------------------------
    def validate_profile(self, profile: dict[str, Any], *, user_id: str | None = None) -> None:
        """Okta's default profile schema: required attributes, email-shaped login, unique login."""
        causes = profile_problems(profile, self.custom_attributes)
        login = profile.get("login")
        if isinstance(login, str) and login:
            existing = self._by_login.get(login.casefold())
            if existing is not None and existing != user_id:
                causes.append(("login", errors.DUPLICATE_LOGIN_CAUSE))
        if causes:
            raise errors.validation_failed(causes[0][0], *(cause for _, cause in causes))

    def _insert(
        self, profile: dict[str, Any], credential: Credential, user_id: str | None = None
    ) -> UserRecord:
        """Store a new STAGED user (profile already validated)."""
        now = self.clock()
        user = UserRecord(
            id=user_id or new_id("00u"),
            seq=self._next_seq,
            profile=dict(profile),
            status=Status.STAGED,
            credential=credential,
            created=now,
            last_updated=now,
            password_changed=now if credential is not Credential.NONE else None,
        )
        self._next_seq += 1
        self.users[user.id] = user
        self._by_login[user.login.casefold()] = user.id
        self._seq_of[user.id] = user.seq
        self._order.append(user.seq)  # seqs only grow, so the list stays sorted
        self._by_seq[user.seq] = user
        return user

    def create_user(
        self,
        profile: dict[str, Any],
        credential: Credential,
        *,
        activate: bool,
        group_ids: list[str],
        recovery_question: str | None = None,
        password_hash: dict[str, Any] | None = None,
    ) -> UserRecord:
        """``POST /api/v1/users``: validate, store, join groups, activate if asked."""
        if len(group_ids) > MAX_GROUP_IDS:
            raise errors.OktaApiError(
                400,
                "E0000093",
                "Target count limit exceeded",
                ("The number of group targets is too large",),
            )
        self.validate_profile(profile)
        self._check_groups(group_ids)
        user = self._insert(profile, credential)
        user.recovery_question = recovery_question
        user.password_hash = password_hash if credential is Credential.HASH else None
        self.add_memberships(user, group_ids)
        self.events["users_created"] += 1
        self.publish("user.lifecycle.create", [user_target(user)])
        if activate:
            # Create-and-activate mails a token only when the user has no password to sign in with.
            self.activate(user, send_email=credential is Credential.NONE)
        return user

    def find_user(self, id_or_login: str) -> UserRecord | None:
        """By id, login (case-insensitive) or unambiguous login short name, as Okta resolves them."""
        user = self.users.get(id_or_login)
        if user is not None:
            return user
        by_login = self._by_login.get(id_or_login.casefold())
        if by_login is not None:
            return self.users[by_login]
        if "@" in id_or_login:
            return None
        short = id_or_login.casefold()
        matches = [u for u in self.users.values() if u.login.casefold().partition("@")[0] == short]
        return matches[0] if len(matches) == 1 else None

    def require_user(self, id_or_login: str) -> UserRecord:
        """``find_user`` or 404 E0000007."""
        user = self.find_user(id_or_login)
        if user is None:
            raise errors.not_found(id_or_login, "User")
        return user

    def cursor_seq(self, after: str) -> int:
        """The creation position an ``after`` cursor (a user id) names; 400 for an unknown one."""
        seq = self._seq_of.get(after)
        if seq is None:
            raise errors.validation_failed("after", "after: The cursor is not valid")
        return seq

    def users_after(self, seq: int) -> Iterator[UserRecord]:
        """Users in creation order, starting after position ``seq`` (-1 = from the start)."""
        start = bisect.bisect_right(self._order, seq)
        for position in range(start, len(self._order)):
            yield self._by_seq[self._order[position]]

    def update_profile(
        self, user: UserRecord, profile: dict[str, Any], *, replace: bool, method: str
    ) -> None:
        """Partial (POST: merge, ``null`` removes) or full (PUT: replace) profile update."""
        if replace:
            merged = dict(profile)
        else:
            merged = dict(user.profile)
            for name, value in profile.items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
        self.validate_profile(merged, user_id=user.id)
        changed = sorted(
            name
            for name in set(merged) | set(user.profile)
            if merged.get(name) != user.profile.get(name)
        )
        if len(self.profile_updates) < MAX_RECORDED_UPDATES:
            self.profile_updates.append({"id": user.id, "method": method, "attributes": changed})
        self._by_login.pop(user.login.casefold(), None)
        user.profile = merged
        self._by_login[user.login.casefold()] = user.id
        user.last_updated = self.clock()
        self.events["profile_updates"] += 1

    def set_credential(self, user: UserRecord, credential: Credential) -> None:
        """Replace the password credential (hook, hash or password); the provider follows."""
        if credential is Credential.HOOK and user.credential is not Credential.HOOK:
            self.events["hooks_set"] += 1
        user.credential = credential
        user.password_changed = user.last_updated = self.clock()

    def _set_status(self, user: UserRecord, status: Status) -> None:
        """Move to ``status`` with Okta's timestamps."""
        now = self.clock()
        user.status = status
        user.status_changed = user.last_updated = now
        if status in (Status.ACTIVE, Status.PROVISIONED):
            user.activated = now

    def activate(self, user: UserRecord, *, send_email: bool) -> None:
        """STAGED/DEPROVISIONED -> ACTIVE (credential) or PROVISIONED (none); else 403 E0000016."""
        if user.status not in (Status.STAGED, Status.DEPROVISIONED):
            raise errors.already_active()
        has_credential = user.credential is not Credential.NONE
        self._set_status(user, Status.ACTIVE if has_credential else Status.PROVISIONED)
        self.events["users_activated" if has_credential else "users_provisioned"] += 1
        if send_email:
            self.activation_emails[user.login] += 1
        self.publish("user.lifecycle.activate", [user_target(user)])

    def deactivate(self, user: UserRecord, *, send_email: bool) -> None:
        """Any status -> DEPROVISIONED (a no-op when already there)."""
        if user.status is Status.DEPROVISIONED:
            return
        self._set_status(user, Status.DEPROVISIONED)
        self.events["users_deactivated"] += 1
        if send_email:
            self.deactivation_emails[user.login] += 1
        self.publish("user.lifecycle.deactivate", [user_target(user)])

    def reset_password(self, user: UserRecord, *, send_email: bool) -> None:
        """RECOVERY until the user sets a new password; the old credential stops working."""
        if user.status not in RESETTABLE:
            raise errors.wrong_status()
        # A reset ends a password import: Okta stops calling the hook once the password is
        # reset in Okta (okta-hooks.md §4.2), so the provider is OKTA from here on.
        user.credential = Credential.NONE
        self._set_status(user, Status.RECOVERY)
        self.events["passwords_reset"] += 1
        if send_email:
            self.password_reset_emails[user.login] += 1
        self.publish("user.account.reset_password", [user_target(user)])

    def expire_password(self, user: UserRecord) -> None:
        """PASSWORD_EXPIRED: the user must change the password at the next sign-in."""
        if user.status not in EXPIRABLE:
            raise errors.wrong_status()
        self._set_status(user, Status.PASSWORD_EXPIRED)
        self.events["passwords_expired"] += 1
        self.publish("user.account.expire_password", [user_target(user)])

    def assign_app(self, app_id: str, user: UserRecord, label: str) -> bool:
        """Assign ``user`` to the app; False when already assigned (no event then)."""
        members = self.app_users.setdefault(app_id, {})
        if user.id in members:
            return False
        members[user.id] = label
        self.events["app_assignments"] += 1
        app_user = {**user_target(user), "type": "AppUser"}
        app = {
            "id": app_id,
            "type": "AppInstance",
            "alternateId": label,
            "displayName": label,
            "detailEntry": None,
        }
        self.publish("application.user_membership.add", [app_user, app, user_target(user)])
        return True

    def delete(self, user: UserRecord) -> None:
        """Remove a DEPROVISIONED user and its memberships (the cursor position is kept)."""
        del self.users[user.id]
        self._by_login.pop(user.login.casefold(), None)
        del self._order[bisect.bisect_left(self._order, user.seq)]
        del self._by_seq[user.seq]
        for group_id in user.group_ids:
            group = self.groups.get(group_id)
            if group is not None:
                group.member_ids.discard(user.id)
        for members in self.app_users.values():
            members.pop(user.id, None)
        self.events["users_deleted"] += 1
        self.publish("user.lifecycle.delete.initiated", [user_target(user)])

    def sign_in(self, user: UserRecord) -> None:
        """A successful first sign-in: an imported credential becomes an Okta password."""
        hooked = user.credential is Credential.HOOK
        if user.credential in (Credential.HOOK, Credential.HASH):
            user.credential = Credential.PASSWORD
            user.password_hash = None  # Okta rehashes the password it now holds
            user.password_changed = self.clock()
            self.events["passwords_imported"] += 1
        user.last_login = user.last_updated = self.clock()
        self.events["sign_ins"] += 1
        if hooked:
            self.publish(
                "user.import.password",
                [user_target(user)],
                actor=user_actor(user),
                request_uri=SIGN_IN_URI,
            )

    def password_import_failed(
        self, user: UserRecord, reason: str, *, hook: dict[str, Any] | None = None
    ) -> None:
        """The hook fired and did not verify: ``user.import.password`` FAILURE.

        Okta writes that event every time the hook fires (OpenAPI password import description);
        a hook that gave no usable answer also gets ``inline_hook.executed`` (okta-hooks.md §1.5).
        """
        if hook is not None:
            target = {
                "id": hook["id"],
                "type": "InlineHook",
                "alternateId": hook["name"],
                "displayName": hook["name"],
                "detailEntry": None,
            }
            self.publish(
                "inline_hook.executed",
                [target],
                actor=user_actor(user),
                result="FAILURE",
                reason=reason,
                request_uri=SIGN_IN_URI,
            )
        self.publish(
            "user.import.password",
            [user_target(user)],
            actor=user_actor(user),
            result="FAILURE",
            reason=reason,
            request_uri=SIGN_IN_URI,
        )

    # -- groups -----------------------------------------------------------------------------
    def add_group(
        self, name: str, description: str | None = None, *, group_id: str | None = None
    ) -> GroupRecord:
        """Create an ``OKTA_GROUP``."""
        now = self.clock()
        group = GroupRecord(group_id or new_id("00g"), name, description, now, now, now)
        self.groups[group.id] = group
        return group

    def _check_groups(self, group_ids: list[str]) -> None:
        """Every ``groupIds`` entry must exist (404 E0000007 otherwise)."""
        for group_id in group_ids:
            if group_id not in self.groups:
                raise errors.not_found(group_id, "UserGroup")

    def add_memberships(self, user: UserRecord, group_ids: list[str]) -> None:
        """Record memberships on both sides."""
        now = self.clock()
        for group_id in dict.fromkeys(group_ids):
            group = self.groups[group_id]
            group.member_ids.add(user.id)
            group.last_membership_updated = now
            if group_id not in user.group_ids:
                user.group_ids.append(group_id)

    # -- stats ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters, settings and a census of users, as JSON-ready data."""
        by_status = Counter(user.status.value for user in self.users.values())
        by_provider = Counter(user.provider for user in self.users.values())
        return {
            "requests_by_endpoint": dict(self.requests_by_endpoint),
            "requests_total": sum(self.requests_by_endpoint.values()),
            "responses_by_status": {str(k): v for k, v in sorted(self.responses_by_status.items())},
            "rate_limited_by_bucket": dict(self.rate_limited_by_bucket),
            "rate_limited_total": sum(self.rate_limited_by_bucket.values()),
            "http_429_total": self.responses_by_status[429],  # buckets, concurrency and faults
            "concurrency_rejections": self.concurrency_rejections,
            "faults_injected": dict(self.faults_injected),
            "events": dict(self.events),
            "activation_emails": dict(self.activation_emails),
            "activation_emails_total": sum(self.activation_emails.values()),
            "deactivation_emails_total": sum(self.deactivation_emails.values()),
            "password_reset_emails": dict(self.password_reset_emails),
            "password_reset_emails_total": sum(self.password_reset_emails.values()),
            "emails_total": sum(self.activation_emails.values())
            + sum(self.deactivation_emails.values())
            + sum(self.password_reset_emails.values()),
            "system_log_events": len(self.system_log),
            "event_delivery": self.delivery.totals(),
            "app_assignments": sum(len(users) for users in self.app_users.values()),
            "profile_updates": len(self.profile_updates),
            "users": len(self.users),
            "users_by_status": dict(by_status),
            "users_by_provider": dict(by_provider),
            "groups": len(self.groups),
            "inline_hooks": len(self.inline_hooks),
            "event_hooks": len(self.event_hooks),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "rate_limits": dict(self.limiter.limits),
            "concurrency_limit": self.concurrency_limit,
            "fault": self.fault.to_json(),
            "latency_ms": self.latency_ms,
        }


EMULATOR_KEY: Final = web.AppKey("okta_emulator", OktaEmulator)
