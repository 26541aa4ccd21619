"""Okta event hook deliveries for tests, shaped as reference/okta-hooks.md §3.2 shows them."""

from __future__ import annotations

import uuid as uuids
from typing import Any

PUBLISHED = "2025-03-01T09:00:00.000Z"


def user_target(okta_id: str, login: str) -> dict[str, Any]:
    """The `User` target of an event."""
    return {
        "id": okta_id, "type": "User", "alternateId": login, "displayName": "F L",
        "detailEntry": None,
    }  # fmt: skip


def event(
    event_type: str,
    okta_id: str | None = None,
    login: str | None = None,
    *,
    result: str = "SUCCESS",
    uuid: str | None = None,
    published: str = PUBLISHED,
    app_id: str | None = None,
    user_first: bool = False,
) -> dict[str, Any]:
    """One System Log event; targets in the order Okta's samples show unless `user_first`."""
    targets: list[dict[str, Any]] = []
    if app_id is not None:
        targets += [
            {"id": "0ua1", "type": "AppUser", "alternateId": "x", "displayName": "x"},
            {"id": app_id, "type": "AppInstance", "alternateId": "Office 365"},
        ]
    if okta_id is not None:
        user = user_target(okta_id, login or f"{okta_id}@contoso.com")
        targets = [user, *targets] if user_first else [*targets, user]
    if event_type == "user.import.password":
        targets.append({"id": "imp1", "type": "PasswordImportResourceDetails"})
    return {
        "uuid": uuid or str(uuids.uuid4()),
        "published": published,
        "eventType": event_type,
        "version": "0",
        "displayMessage": "emulated",
        "severity": "INFO",
        "client": {"ipAddress": "142.126.158.61"},
        "actor": {"id": "00uadmin", "type": "User", "alternateId": "admin@okta.com"},
        "outcome": {"result": result, "reason": None},
        "target": targets,
        "transaction": {"type": "WEB", "id": "ZCCzm8j2wTvzwele2NwLnwAADSc", "detail": {}},
        "debugContext": {"debugData": {"requestUri": "/api/v1/users"}},
    }


def envelope(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A delivery carrying `events`."""
    return {
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/who7hphp39JoHLni81d7",
        "eventId": str(uuids.uuid4()),
        "eventTime": PUBLISHED,
        "contentType": "application/json",
        "data": {"events": events},
    }


def okta_id(index: int) -> str:
    """A made-up Okta user id, 20 characters as Okta's are."""
    return f"00u{index:017d}"
