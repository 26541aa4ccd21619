"""The org's System Log: the ``LogEvent`` records the emulator publishes, kept in publish order.

Shapes follow the OpenAPI ``LogEvent`` schema, its ``ListLogs`` example and the event hook sample
in reference/okta-hooks.md §3.2: ``uuid``, ``published``, ``eventType``, ``version: "0"``,
``displayMessage``, ``severity``, ``actor``, ``client``, ``outcome {result, reason}``, typed
``target[]`` entries (``User`` with ``alternateId`` = login), ``transaction``,
``debugContext.debugData`` and ``legacyEventType``. Targets keep the order Okta's samples show
(``application.user_membership.add``: AppUser, AppInstance, User); consumers should still match
on ``type``, since Okta does not promise an order.

``displayMessage`` and ``legacyEventType`` come from Okta's event type catalogue where the
reference quotes it (lifecycle create/activate/deactivate, ``application.user_membership.add``);
the others, and every ``outcome.reason``, are the emulator's wording (UNCONFIRMED).

Nothing here does I/O: ``OktaEmulator.publish`` builds an event, appends it to the log and hands
it to ``delivery.EventDelivery``; ``logs`` serves ``GET /api/v1/logs`` from ``SystemLog.query``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextvars
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from emulators.okta.models import UserRecord, iso

__all__ = [
    "ADMIN_ACTOR",
    "CATALOGUE",
    "MAX_EVENTS",
    "REQUEST_CONTEXT",
    "SYSTEM_ACTOR",
    "EventKind",
    "RequestContext",
    "SystemLog",
    "build_event",
    "user_actor",
    "user_target",
]

MAX_EVENTS: Final = 200_000  # the oldest go first past this (Okta keeps 90 days)


@dataclass(frozen=True, slots=True)
class EventKind:
    """One catalogue entry: what Okta shows for the event and whether event hooks may carry it."""

    display_message: str
    legacy_event_type: str | None
    hook_eligible: bool = True  # tagged ``event-hook-eligible`` in Okta's catalogue


CATALOGUE: Final[dict[str, EventKind]] = {
    "user.lifecycle.create": EventKind(
        "Create Okta user", "core.user.config.user_creation.success"
    ),
    "user.lifecycle.activate": EventKind("Activate Okta user", "core.user.config.user_activated"),
    "user.lifecycle.deactivate": EventKind(
        "Deactivate Okta user", "core.user.config.user_deactivated"
    ),
    "user.lifecycle.delete.initiated": EventKind("Delete Okta user", None),
    "user.import.password": EventKind("Import user password", None),
    "user.account.reset_password": EventKind("Reset Okta user password", None),
    "user.account.expire_password": EventKind("Expire Okta user password", None),
    "application.user_membership.add": EventKind(
        "Add user to application membership", "app.generic.provision.assign_user_to_app"
    ),
    "inline_hook.executed": EventKind("Inline hook execution failed", None),
    # Tagged ``event-hook`` only: visible in the System Log, never delivered by an event hook.
    "event_hook.delivery": EventKind("Event hook delivery failed", None, hook_eligible=False),
}

# The admin behind the emulator's API tokens (also ``createdBy`` of event hooks).
ADMIN_ACTOR: Final[dict[str, Any]] = {
    "id": "00uemulatoradmin0000",
    "type": "User",
    "alternateId": "admin@emulator.okta.invalid",
    "displayName": "Emulator Admin",
    "detailEntry": None,
}
SYSTEM_ACTOR: Final[dict[str, Any]] = {
    "id": "0oaemulatorsystem000",
    "type": "SystemPrincipal",
    "alternateId": "system@okta.com",
    "displayName": "Okta System",
    "detailEntry": None,
}


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The API request an event happens in: its ``X-Okta-Request-Id`` and path."""

    request_id: str
    path: str


# Set by the API middleware, so events name the request that caused them without every state
# method taking it as an argument (contextvars follow the handler's task).
REQUEST_CONTEXT: Final[contextvars.ContextVar[RequestContext | None]] = contextvars.ContextVar(
    "okta_request_context", default=None
)


def _display_name(user: UserRecord) -> str:
    """``firstName lastName`` as Okta shows a user, else the login."""
    parts = [user.profile.get("firstName"), user.profile.get("lastName")]
    name = " ".join(str(part) for part in parts if isinstance(part, str) and part)
    return name or user.login


def user_target(user: UserRecord) -> dict[str, Any]:
    """A ``User`` target: ``id`` is the Okta user id, ``alternateId`` the login."""
    return {
        "id": user.id,
        "type": "User",
        "alternateId": user.login,
        "displayName": _display_name(user),
        "detailEntry": None,
    }


def user_actor(user: UserRecord) -> dict[str, Any]:
    """The user as the actor (their own sign-in)."""
    return user_target(user)


def build_event(
    uuid: str,
    event_type: str,
    published: float,
    *,
    actor: dict[str, Any],
    targets: Iterable[dict[str, Any]],
    result: str = "SUCCESS",
    reason: str | None = None,
    request_uri: str | None = None,
) -> dict[str, Any]:
    """A ``LogEvent`` as Okta publishes it (``result``: SUCCESS, FAILURE, SKIPPED, ...)."""
    kind = CATALOGUE[event_type]
    context = REQUEST_CONTEXT.get()
    request_id = context.request_id if context is not None else uuid.replace("-", "")[:27]
    uri = request_uri or (context.path if context is not None else None)
    return {
        "uuid": uuid,
        "published": iso(published),
        "eventType": event_type,
        "version": "0",
        "displayMessage": kind.display_message,
        "severity": "WARN" if result == "FAILURE" else "INFO",
        "legacyEventType": kind.legacy_event_type,
        "actor": dict(actor),
        "client": {
            "userAgent": None,
            "zone": "null",
            "device": "Unknown",
            "id": None,
            "ipAddress": "127.0.0.1",
            "geographicalContext": None,
        },
        "outcome": {"result": result, "reason": reason},
        "target": [dict(target) for target in targets],
        "transaction": {"type": "WEB", "id": request_id, "detail": {}},
        "debugContext": {
            "debugData": {"requestId": request_id, "requestUri": uri, "url": uri},
        },
        "authenticationContext": {
            "authenticationProvider": None,
            "credentialProvider": None,
            "credentialType": None,
            "issuer": None,
            "interface": None,
            "authenticationStep": 0,
            "externalSessionId": None,
        },
        "securityContext": {
            "asNumber": None,
            "asOrg": None,
            "isp": None,
            "domain": None,
            "isProxy": None,
        },
        "request": {"ipChain": [{"ip": "127.0.0.1", "version": "V4", "source": None}]},
    }


def _cursor(seq: int) -> str:
    """An opaque ``after`` token for the event at ``seq``."""
    return base64.urlsafe_b64encode(f"log:{seq}".encode()).decode().rstrip("=")


def parse_cursor(token: str) -> int | None:
    """The position an ``after`` token names, or None when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, number = text.partition(":")
    if prefix != "log" or not number.isdigit():
        return None
    return int(number)


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of a System Log query and the cursor of its last event (None when empty)."""

    events: list[dict[str, Any]]
    last_cursor: str | None
    more: bool


class SystemLog:
    """Published events in publish order, each with its publish time and position."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._times: list[float] = []  # published, epoch seconds (non-decreasing on a sane clock)
        self._first_seq = 0  # position of _events[0] (old events fall off past MAX_EVENTS)

    def __len__(self) -> int:
        """How many events the log holds."""
        return len(self._events)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every held event, oldest first (a copy of the list, not of the events)."""
        return list(self._events)

    def append(self, event: dict[str, Any], published: float) -> None:
        """Add an event; a clock moved backwards is clamped so the log stays ordered."""
        if self._times and published < self._times[-1]:
            published = self._times[-1]
        self._events.append(event)
        self._times.append(published)
        if len(self._events) > MAX_EVENTS:
            drop = len(self._events) - MAX_EVENTS
            del self._events[:drop]
            del self._times[:drop]
            self._first_seq += drop

    def clear(self) -> None:
        """Forget every event (positions keep growing, so old cursors stay invalid)."""
        self._first_seq += len(self._events)
        self._events.clear()
        self._times.clear()

    def query(
        self,
        *,
        since: float,
        until: float | None,
        after: int | None,
        matches: Callable[[dict[str, Any]], bool],
        limit: int,
        descending: bool = False,
    ) -> LogPage:
        """Events with ``since <= published < until`` after the cursor, oldest (or newest) first."""
        start = bisect.bisect_left(self._times, since)
        stop = len(self._times) if until is None else bisect.bisect_left(self._times, until)
        if after is not None:  # positions are sequence numbers offset by what fell off
            if descending:
                stop = min(stop, max(after - self._first_seq, 0))
            else:
                start = max(start, after - self._first_seq + 1)
        positions = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        page: list[dict[str, Any]] = []
        last: int | None = None
        more = False
        for index in positions:
            seq = self._first_seq + index
            event = self._events[index]
            if not matches(event):
                continue
            if len(page) >= limit:
                more = True
                break
            page.append(event)
            last = seq
        return LogPage(page, _cursor(last) if last is not None else None, more)
