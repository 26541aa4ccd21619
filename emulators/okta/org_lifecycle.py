"""User lifecycle rules (``/api/v1/users/{id}/lifecycle/...``), its emails and the first sign-in.

One place for them, so seeds, the API and the control plane all obey the same ones (OpenAPI
``activateUser``, ``deactivateUser``, ``deleteUser``):

* create with ``activate=true`` and a credential (password, hash or hook): ACTIVE, no email;
  without a credential: PROVISIONED and an activation email (Okta mails a one-time token);
* ``lifecycle/activate`` only from STAGED or DEPROVISIONED: with a credential ACTIVE, without one
  PROVISIONED; ``sendEmail=true`` (the default) sends the activation email either way;
* ``DELETE`` on a user that is not DEPROVISIONED deactivates it; a second DELETE removes it;
* ``reset_password`` (ACTIVE, PROVISIONED, RECOVERY, PASSWORD_EXPIRED, LOCKED_OUT): RECOVERY, the
  old credential (an import hook too) no longer signs in; ``sendEmail=true`` mails a reset link;
* ``expire_password`` (ACTIVE, PASSWORD_EXPIRED): PASSWORD_EXPIRED, no email.

Every change an admin or user makes is published as a System Log event (``org_events``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from emulators.okta import errors
from emulators.okta.models import Credential, Status, UserRecord
from emulators.okta.org_events import OrgEvents
from emulators.okta.system_log import user_actor, user_target

__all__ = ["SIGN_IN_URI", "OrgLifecycle"]

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


class OrgLifecycle(OrgEvents):
    """Status transitions with Okta's timestamps, the emails they send and their events."""

    events: Counter[str]
    activation_emails: Counter[str]
    deactivation_emails: Counter[str]
    password_reset_emails: Counter[str]

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
