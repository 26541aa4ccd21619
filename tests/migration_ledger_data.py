"""A ledger filled with known users across states and days, and what the progress page must show.

Used by tests/test_progress_page.py and tests/test_progress_page_browser.py. Times are offsets
from `now`, so the expected numbers hold whatever `now` is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from gateway.ledger import Decision, Ledger, UserRecord, UserState

ENTRA = "entra"
HOSTILE = "<script>alert(1)</script>"  # a source name that must stay text on the page
HOSTILE_LOGIN = "<img src=x onerror=alert(2)>@evil.test"
LEGACY = "legacy"  # in the ledger only, not configured: every user migrated
NORTHWIND = "northwind"  # configured, no users

# entra: hours before `now` each non-native user migrated.
MIGRATED_HOURS = [1, 2, 3, 30, 31, 75, 75, 75, 75, *[240] * 6, *[960] * 5]
NATIVE_HOURS = [1000, 1000]
VERIFIED_HOURS = [5, 6, 7]  # the hook said VERIFIED, no event confirmed it
# Never signed in; logins a spreadsheet would run as formulas, or that need CSV quoting.
PENDING_LOGINS = [
    '=HYPERLINK("http://evil.test","x")@contoso.com',
    "+15551234@contoso.com",
    "-2+3@contoso.com",
    "@sum@contoso.com",
    'o\'brien,"q"@contoso.com',
    "plain@contoso.com",
]
DENIED_LOGIN = "denied@contoso.com"  # a wrong password keeps a user pending
# Never signed in, and `migrate finish` acted on them: finished, neither pending nor stragglers.
FINISHED_USERS = {
    "reset@contoso.com": "finish_reset_password",
    "expired@contoso.com": "finish_expire_password",
    "deactivated@contoso.com": "finish_deactivate",
}
FINISH_FAILED_LOGIN = "retry@contoso.com"  # `migrate finish` failed: still pending
PENDING_IMPORTED_HOURS = 12 * 24


@dataclass(frozen=True)
class Expected:
    """What the page shows for `entra`."""

    imported: int
    migrated: int
    native: int
    verified_unconfirmed: int
    pending: int
    finished: int
    last_24h: int
    daily_rate_7d: float
    eta_days: float
    last_verified_at: datetime
    daily: dict[date, int]  # the last 30 UTC days, oldest first
    stragglers: list[tuple[str, str, str, str]]  # CSV rows as a spreadsheet-safe list, by login


def okta_id(login: str) -> str:
    """A stable fake Okta user id for a login."""
    return "00u" + hashlib.sha256(login.encode()).hexdigest()[:17]


async def fill_ledger(ledger: Ledger, now: datetime) -> Expected:
    """Record the users above; what the page must show for `entra`."""
    records: list[UserRecord] = []
    for n, hours in enumerate(MIGRATED_HOURS):
        records.append(
            UserRecord(
                ENTRA,
                f"m{n:02d}@contoso.com",
                UserState.MIGRATED,
                okta_id=okta_id(f"m{n}"),
                imported_at=now - timedelta(days=50),
                migrated_at=now - timedelta(hours=hours),
            )
        )
    for n, hours in enumerate(NATIVE_HOURS):
        at = now - timedelta(hours=hours)
        records.append(
            UserRecord(
                ENTRA, f"native{n}@contoso.com", UserState.MIGRATED, native=True,
                imported_at=at, migrated_at=at,
            )
        )  # fmt: skip
    hooked = [f"v{n}@contoso.com" for n in range(len(VERIFIED_HOURS))]
    imported_at = now - timedelta(hours=PENDING_IMPORTED_HOURS)
    reasons = {**FINISHED_USERS, FINISH_FAILED_LOGIN: "finish_reset_password_failed"}
    for login in [*hooked, *PENDING_LOGINS, DENIED_LOGIN, *reasons]:
        records.append(
            UserRecord(
                ENTRA, login, UserState.ACTIVATED, okta_id=okta_id(login),
                reason=reasons.get(login), imported_at=imported_at, activated_at=imported_at,
            )
        )  # fmt: skip
    # Neither migrated nor pending: not counted anywhere.
    records.append(
        UserRecord(ENTRA, "failed@contoso.com", UserState.FAILED, reason="okta_e0000001")
    )
    records.append(UserRecord(ENTRA, "skipped@contoso.com", UserState.SKIPPED, reason="no_route"))
    records.append(UserRecord(ENTRA, "listed@contoso.com", UserState.LISTED))
    records.append(
        UserRecord(HOSTILE, HOSTILE_LOGIN, UserState.CREATED, imported_at=now - timedelta(days=3))
    )
    for n in range(4):
        at = now - timedelta(days=20, hours=n)
        records.append(UserRecord(LEGACY, f"l{n}@legacy.test", UserState.MIGRATED, migrated_at=at))
    await ledger.record_users(records)
    await ledger.record_decisions(
        [
            *(
                Decision(ENTRA, login, "verified", now - timedelta(hours=hours))
                for login, hours in zip(hooked, VERIFIED_HOURS, strict=True)
            ),
            Decision(ENTRA, DENIED_LOGIN, "denied", now - timedelta(hours=1)),
        ]
    )
    migrated_at = [now - timedelta(hours=h) for h in MIGRATED_HOURS + NATIVE_HOURS]
    first_day = now.date() - timedelta(days=29)
    daily = {first_day + timedelta(days=n): 0 for n in range(30)}
    for at in migrated_at:
        if at.date() >= first_day:
            daily[at.date()] += 1
    week = sum(1 for at in migrated_at if at >= now - timedelta(days=7))
    pending = [*PENDING_LOGINS, DENIED_LOGIN, FINISH_FAILED_LOGIN]
    stamp = imported_at.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    stragglers = [
        (("'" + login) if login[0] in "=+-@" else login, okta_id(login), ENTRA, stamp)
        for login in sorted(pending)
    ]
    return Expected(
        imported=len(migrated_at) + len(hooked) + len(pending) + len(FINISHED_USERS),
        migrated=len(migrated_at),
        native=len(NATIVE_HOURS),
        verified_unconfirmed=len(hooked),
        pending=len(pending),
        finished=len(FINISHED_USERS),
        last_24h=sum(1 for at in migrated_at if at >= now - timedelta(hours=24)),
        daily_rate_7d=week / 7,
        eta_days=(len(hooked) + len(pending)) / (week / 7),
        last_verified_at=now - timedelta(hours=min(VERIFIED_HOURS)),
        daily=daily,
        stragglers=stragglers,
    )
