"""The org's users (``/api/v1/users``): profiles, credentials, creation order, app assignments."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, Final

from emulators.okta import errors
from emulators.okta.models import Credential, Status, UserRecord, new_id, profile_problems
from emulators.okta.org_groups import OrgGroups
from emulators.okta.org_lifecycle import OrgLifecycle
from emulators.okta.system_log import user_target

__all__ = ["OrgUsers"]

MAX_GROUP_IDS: Final = 20  # groupIds at creation (OpenAPI createUser, E0000093 past it)
MAX_RECORDED_UPDATES: Final = 10_000


class OrgUsers(OrgLifecycle, OrgGroups):
    """Users by id, login and creation position, with Okta's profile rules."""

    users: dict[str, UserRecord]
    _by_login: dict[str, str]
    _seq_of: dict[str, int]
    _order: list[int]
    _by_seq: dict[int, UserRecord]
    _next_seq: int
    custom_attributes: frozenset[str]
    app_users: dict[str, dict[str, str]]
    profile_updates: list[dict[str, Any]]

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
