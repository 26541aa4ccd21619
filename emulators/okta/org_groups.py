"""The org's groups (``/api/v1/groups``) and the memberships both sides record."""

from __future__ import annotations

from collections.abc import Callable

from emulators.okta import errors
from emulators.okta.models import GroupRecord, UserRecord, new_id

__all__ = ["OrgGroups"]


class OrgGroups:
    """``OKTA_GROUP`` groups and their members."""

    clock: Callable[[], float]
    groups: dict[str, GroupRecord]

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
