"""``POST /api/v1/authn``: Okta's Classic Authentication API, primary authentication only.

Shapes from Okta's Authentication API reference ("Primary authentication", "Transaction state"):
a public application (no API token) posts ``{"username", "password"}`` and gets either a
transaction (200) or ``401 E0000004 Authentication failed``. What the emulator answers:

* unknown user, wrong password, a user who is not ACTIVE or PASSWORD_EXPIRED (STAGED,
  PROVISIONED, SUSPENDED, DEPROVISIONED, RECOVERY), or one with no Okta password the emulator
  knows: 401 E0000004 (Okta never tells an unknown user from a wrong password);
* LOCKED_OUT: after ``lockout_threshold`` consecutive wrong passwords (default 10, Okta's
  default password policy) the user becomes LOCKED_OUT, whatever password comes next; Okta's
  default *hides* lockout failures (401 E0000004), ``show_lockout_failures`` answers 200
  ``{"status": "LOCKED_OUT"}`` instead, including for the attempt that locked the account;
* right password: ``MFA_REQUIRED`` for a user with an enrolled factor, ``MFA_ENROLL`` for one whose
  policy requires enrolling one (Okta challenges MFA before ``PASSWORD_EXPIRED``), then
  ``PASSWORD_EXPIRED`` (status PASSWORD_EXPIRED, or the per-user flag), else ``SUCCESS`` with a
  one-time ``sessionToken`` (and the user's ``lastLogin``); a success resets the failure count.

Rate limits, faults, latency and the concurrency cap come from ``gate`` (bucket ``authn``); no
API token is needed. The emulator's Users API keeps no password values, so the passwords this
endpoint checks are set through the control plane, as are factors and the lockout settings:

* ``PUT /_emulator/authn``: ``{"lockout_threshold": int | null, "show_lockout_failures": bool}``;
* ``PUT /_emulator/authn/users/{login}``: ``{"password", "mfa": "none" | "enrolled" |
  "enroll_required", "password_expired"}`` (each optional); a password gives the user an Okta
  password credential. Only an HMAC of it is kept, under a key of this process.

Not emulated (UNCONFIRMED or out of scope): per-username authn limits (Okta: 4 per second),
``token`` (activation) and ``stateToken`` requests, the factor verify/cancel endpoints, and the
400 Okta answers to a request without a username or password (the emulator answers E0000001).
"""

from __future__ import annotations

import collections
import hmac
import secrets
import weakref
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulators.okta import errors
from emulators.okta.models import Credential, Status, UserRecord, iso
from emulators.okta.state import EMULATOR_KEY, OktaEmulator
from emulators.okta.wire import base_url, read_object

__all__ = [
    "DEFAULT_LOCKOUT_THRESHOLD",
    "AuthnDirectory",
    "authentication_failed",
    "directory_of",
    "handle_authn",
    "handle_put_settings",
    "handle_put_user",
]

DEFAULT_LOCKOUT_THRESHOLD: Final = 10  # Okta's default password policy
TRANSACTION_SECONDS: Final = 300  # expiresAt of a transaction: five minutes
MAX_ISSUED_TOKENS: Final = 1000

Mfa = Literal["none", "enrolled", "enroll_required"]


def authentication_failed() -> errors.OktaApiError:
    """401 E0000004, the one answer for an unknown user, a wrong password or a refused user."""
    return errors.OktaApiError(401, "E0000004", "Authentication failed")


@dataclass(slots=True)
class AuthnUser:
    """What primary authentication knows about one user beyond its record."""

    # The record these facts belong to: a full reset rebuilds records, which forgets the facts.
    record: UserRecord
    digest: bytes | None = None
    mfa: Mfa = "none"
    password_expired: bool = False
    failures: int = 0


class AuthnDirectory:
    """Password digests, factors and lockout counters of one emulated org."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._users: dict[str, AuthnUser] = {}
        self.lockout_threshold: int | None = DEFAULT_LOCKOUT_THRESHOLD
        self.show_lockout_failures = False
        # Tokens handed out, so tests can check that a client never logs or keeps them.
        self.issued_tokens: collections.deque[str] = collections.deque(maxlen=MAX_ISSUED_TOKENS)

    def digest(self, password: str) -> bytes:
        """HMAC-SHA256 of a password under this process's key (never the password itself)."""
        return hmac.digest(self._key, password.encode("utf-8", "surrogatepass"), "sha256")

    def facts(self, user: UserRecord) -> AuthnUser:
        """The user's facts, fresh when the record was rebuilt (reset) since they were set."""
        known = self._users.get(user.id)
        if known is None or known.record is not user:
            known = self._users[user.id] = AuthnUser(user)
        return known

    def issue(self, prefix: str) -> str:
        """A new one-time token shaped like Okta's (``00`` + 40 URL-safe characters)."""
        token = prefix + secrets.token_urlsafe(30)
        self.issued_tokens.append(token)
        return token


_DIRECTORIES: weakref.WeakKeyDictionary[OktaEmulator, AuthnDirectory] = weakref.WeakKeyDictionary()


def directory_of(emulator: OktaEmulator) -> AuthnDirectory:
    """The authn state of ``emulator`` (created on first use, gone with the emulator)."""
    directory = _DIRECTORIES.get(emulator)
    if directory is None:
        directory = _DIRECTORIES[emulator] = AuthnDirectory()
    return directory


def _find(emulator: OktaEmulator, username: str) -> UserRecord | None:
    """The user a typed username names: login (any case) or unambiguous short name, not an id."""
    user = emulator.find_user(username)
    if user is not None and user.id == username and user.login.casefold() != username.casefold():
        return None
    return user


def _lock(emulator: OktaEmulator, user: UserRecord) -> None:
    """ACTIVE -> LOCKED_OUT, with Okta's timestamps."""
    user.status = Status.LOCKED_OUT
    user.status_changed = user.last_updated = emulator.clock()
    emulator.events["users_locked_out"] += 1


def _embedded_user(user: UserRecord) -> dict[str, Any]:
    """``_embedded.user`` of a transaction (the reference's example shape)."""
    profile = user.profile
    return {
        "id": user.id,
        "passwordChanged": iso(user.password_changed),
        "profile": {
            "login": user.login,
            "firstName": profile.get("firstName"),
            "lastName": profile.get("lastName"),
            "locale": profile.get("locale", "en_US"),
            "timeZone": profile.get("timezone", "America/Los_Angeles"),
        },
    }


def _link(href: str, name: str | None = None) -> dict[str, Any]:
    """One ``_links`` entry with Okta's ``hints``."""
    link: dict[str, Any] = {"href": href, "hints": {"allow": ["POST"]}}
    if name is not None:
        link = {"name": name, **link}
    return link


def _transaction(
    emulator: OktaEmulator, directory: AuthnDirectory, user: UserRecord, status: str, base: str
) -> dict[str, Any]:
    """The 200 body for a right password: SUCCESS, MFA_REQUIRED, MFA_ENROLL or PASSWORD_EXPIRED."""
    expires = iso(emulator.clock() + TRANSACTION_SECONDS)
    embedded: dict[str, Any] = {"user": _embedded_user(user)}
    cancel = {"cancel": _link(f"{base}/api/v1/authn/cancel")}
    if status == "SUCCESS":
        return {
            "expiresAt": expires,
            "status": status,
            "sessionToken": directory.issue("20111"),
            "_embedded": embedded,
        }
    body: dict[str, Any] = {"stateToken": directory.issue("00"), "expiresAt": expires}
    body["status"] = status
    if status == "MFA_REQUIRED":
        factor_id = "ost" + user.id[3:]
        embedded["factors"] = [
            {
                "id": factor_id,
                "factorType": "token:software:totp",
                "provider": "OKTA",
                "profile": {"credentialId": user.login},
                "_links": {"verify": _link(f"{base}/api/v1/authn/factors/{factor_id}/verify")},
            }
        ]
        links = cancel
    elif status == "MFA_ENROLL":
        embedded["factors"] = [
            {
                "factorType": "token:software:totp",
                "provider": "OKTA",
                "_links": {"enroll": _link(f"{base}/api/v1/authn/factors")},
                "status": "NOT_SETUP",
                "enrollment": "REQUIRED",
            }
        ]
        links = cancel
    else:  # PASSWORD_EXPIRED
        embedded["policy"] = {
            "complexity": {"minLength": 8, "minLowerCase": 1, "minUpperCase": 1, "minNumber": 1}
        }
        change = _link(f"{base}/api/v1/authn/credentials/change_password", "changePassword")
        links = {"next": change, **cancel}
    body["_embedded"] = embedded
    body["_links"] = links
    return body


def _locked_out(base: str) -> web.Response:
    """200 ``LOCKED_OUT`` (password policy set to show lockout failures)."""
    unlock = _link(f"{base}/api/v1/authn/recovery/unlock", "unlock")
    return web.json_response({"status": "LOCKED_OUT", "_links": {"next": unlock}})


async def handle_authn(request: web.Request) -> web.Response:
    """``POST /api/v1/authn`` with ``{"username", "password"}`` (see the module docstring)."""
    emulator = request.app[EMULATOR_KEY]
    directory = directory_of(emulator)
    body = await read_object(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username:
        raise errors.validation_failed("username", "username: The field cannot be left blank")
    if not isinstance(password, str) or not password:
        raise errors.validation_failed("password", "password: The field cannot be left blank")
    base = base_url(request)
    user = _find(emulator, username)
    if user is None:
        emulator.events["authn_failed"] += 1
        raise authentication_failed()
    facts = directory.facts(user)
    if user.status is Status.LOCKED_OUT:
        emulator.events["authn_locked_out"] += 1
        if directory.show_lockout_failures:
            return _locked_out(base)
        raise authentication_failed()
    usable = (
        user.status in (Status.ACTIVE, Status.PASSWORD_EXPIRED)
        and user.credential is Credential.PASSWORD
        and facts.digest is not None
    )
    # Compared even when the user cannot sign in, so timing says little about why it failed.
    right = hmac.compare_digest(directory.digest(password), facts.digest or bytes(32))
    if not (usable and right):
        emulator.events["authn_failed"] += 1
        if not usable:
            raise authentication_failed()
        facts.failures += 1
        threshold = directory.lockout_threshold
        if threshold is not None and facts.failures >= threshold:
            _lock(emulator, user)
            if directory.show_lockout_failures:
                return _locked_out(base)
        raise authentication_failed()
    facts.failures = 0
    if facts.mfa == "enrolled":
        status = "MFA_REQUIRED"
    elif facts.mfa == "enroll_required":
        status = "MFA_ENROLL"
    elif facts.password_expired or user.status is Status.PASSWORD_EXPIRED:
        status = "PASSWORD_EXPIRED"
    else:
        status = "SUCCESS"
        emulator.sign_in(user)
    emulator.events[f"authn_{status.lower()}"] += 1
    return web.json_response(_transaction(emulator, directory, user, status, base))


class _SettingsRequest(BaseModel):
    """Body of ``PUT /_emulator/authn``; keys omitted keep their value."""

    model_config = ConfigDict(extra="forbid")

    lockout_threshold: int | None = Field(default=DEFAULT_LOCKOUT_THRESHOLD, ge=1, le=100)
    show_lockout_failures: bool = False


class _UserRequest(BaseModel):
    """Body of ``PUT /_emulator/authn/users/{login}``; keys omitted keep their value."""

    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(default=None, min_length=1, repr=False)
    mfa: Mfa = "none"
    password_expired: bool = False


def _problems(exc: ValidationError) -> web.Response:
    """400 listing what was wrong, by location (input values never echoed)."""
    problems = [
        {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
        for e in exc.errors(include_input=False, include_url=False)
    ]
    return web.json_response({"error": "invalid body", "problems": problems}, status=400)


def _settings(directory: AuthnDirectory) -> dict[str, Any]:
    return {
        "lockout_threshold": directory.lockout_threshold,
        "show_lockout_failures": directory.show_lockout_failures,
    }


async def handle_put_settings(request: web.Request) -> web.Response:
    """``PUT /_emulator/authn``: the org's lockout threshold and whether lockouts show."""
    directory = directory_of(request.app[EMULATOR_KEY])
    try:
        settings = _SettingsRequest.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _problems(exc)
    given = settings.model_fields_set
    if "lockout_threshold" in given:
        directory.lockout_threshold = settings.lockout_threshold
    if "show_lockout_failures" in given:
        directory.show_lockout_failures = settings.show_lockout_failures
    return web.json_response(_settings(directory))


async def handle_put_user(request: web.Request) -> web.Response:
    """``PUT /_emulator/authn/users/{login}``: a user's password, factor and expiry for authn."""
    emulator = request.app[EMULATOR_KEY]
    directory = directory_of(emulator)
    user = emulator.find_user(request.match_info["login"])
    if user is None:
        return web.json_response({"error": "no such user"}, status=404)
    try:
        settings = _UserRequest.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _problems(exc)
    facts = directory.facts(user)
    given = settings.model_fields_set
    if settings.password is not None:
        facts.digest = directory.digest(settings.password)
        facts.failures = 0
        if user.credential is not Credential.PASSWORD:
            emulator.set_credential(user, Credential.PASSWORD)
    if "mfa" in given:
        facts.mfa = settings.mfa
    if "password_expired" in given:
        facts.password_expired = settings.password_expired
    return web.json_response(
        {
            "login": user.login,
            "status": user.status.value,
            "provider": user.provider,
            "has_password": facts.digest is not None,
            "mfa": facts.mfa,
            "password_expired": facts.password_expired,
            "failures": facts.failures,
        }
    )
