"""Progress from the ledger: per source and state, daily migrations, who has not signed in."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from gateway.ledger import (
    FINISH_REASONS,
    Decision,
    Ledger,
    LedgerError,
    RunCommand,
    UserRecord,
    UserState,
)
from tests.ledger.conftest import Clock


async def _imported(ledger: Ledger, clock: Clock, source: str, count: int, prefix: str) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source=source)
    now = clock()
    await ledger.record_users(
        [
            UserRecord(
                source,
                f"{prefix}{i:04d}@contoso.com",
                UserState.ACTIVATED,
                okta_id=f"00u{prefix}{i}",
                run_id=run_id,
                imported_at=now,
                hooked_at=now,
                activated_at=now,
            )
            for i in range(count)
        ]
    )


async def test_progress_per_source_and_state(ledger: Ledger, clock: Clock) -> None:
    await _imported(ledger, clock, "entra", 10, "e")
    await _imported(ledger, clock, "ldap", 4, "l")
    await ledger.record_users(
        [
            UserRecord("entra", "skip@contoso.com", UserState.SKIPPED, reason="no_route"),
            UserRecord("entra", "x@contoso.com", UserState.EXISTING),
            UserRecord("entra", "f@contoso.com", UserState.FAILED, reason="okta_e0000001"),
            UserRecord(
                "entra", "n@contoso.com", UserState.MIGRATED, native=True, migrated_at=clock()
            ),
        ]
    )
    for i in range(3):
        await ledger.mark_migrated(okta_id=f"00ue{i}", at=clock.advance(minutes=1))
    verified_at = clock.advance(minutes=1)
    await ledger.record_decisions(
        [Decision("entra", f"e{i:04d}@contoso.com", "verified", verified_at) for i in (3, 4)]
    )
    progress = await ledger.progress()
    entra, ldap = progress["entra"], progress["ldap"]
    assert list(progress) == ["entra", "ldap"]
    assert entra.states == {
        UserState.ACTIVATED: 7,
        UserState.MIGRATED: 4,
        UserState.SKIPPED: 1,
        UserState.EXISTING: 1,
        UserState.FAILED: 1,
    }
    assert (entra.migrated, entra.native, entra.verified_unconfirmed, entra.pending) == (4, 1, 2, 5)
    assert entra.imported == 11
    assert entra.last_verified_at == verified_at
    assert entra.last_migrated_at == verified_at - timedelta(minutes=1)
    assert (ldap.pending, ldap.migrated, ldap.last_verified_at) == (4, 0, None)


async def test_users_migrate_finish_acted_on_are_finished_not_pending(
    ledger: Ledger, clock: Clock
) -> None:
    await _imported(ledger, clock, "entra", 7, "e")
    await _imported(ledger, clock, "ldap", 2, "l")
    reasons = {
        "e0000": "finish_reset_password",
        "e0001": "finish_expire_password",
        "e0002": "finish_deactivate",
        "e0003": "finish_reset_password",  # then signs in: verified, not confirmed
        "e0004": "finish_deactivate",  # then migrated after all
        "e0005": "finish_reset_password_failed",  # the action failed: still pending
        "l0000": "finish_expire_password",
    }
    for login, reason in reasons.items():
        source = "ldap" if login.startswith("l") else "entra"
        await ledger.record_user(
            source, f"{login}@contoso.com", UserState.ACTIVATED, okta_id=f"00u{login}",
            reason=reason,
        )  # fmt: skip
    assert set(reasons.values()) - FINISH_REASONS == {"finish_reset_password_failed"}
    await ledger.record_decisions([Decision("entra", "e0003@contoso.com", "verified", clock())])
    assert await ledger.mark_migrated(okta_id="00ue0004", at=clock()) == 1
    progress = await ledger.progress()
    entra, ldap = progress["entra"], progress["ldap"]
    assert entra.states == {UserState.ACTIVATED: 6, UserState.MIGRATED: 1}
    counts = (entra.migrated, entra.verified_unconfirmed, entra.pending, entra.finished)
    assert counts == (1, 1, 2, 3)  # pending: e0005 (failed) and e0006 (never finished)
    assert entra.imported == 7
    assert (ldap.pending, ldap.finished, ldap.imported) == (1, 1, 2)
    # The stragglers are the pending users; `finish` also reads the finished ones.
    stragglers = [u.login for u in await ledger.not_signed_in("entra")]
    assert stragglers == ["e0005@contoso.com", "e0006@contoso.com"]
    everyone = [u.login for u in await ledger.not_signed_in("entra", limit=3, finished=True)]
    assert everyone == ["e0000@contoso.com", "e0001@contoso.com", "e0002@contoso.com"]
    rest = await ledger.not_signed_in("entra", after="e0002@contoso.com", finished=True)
    assert [u.login for u in rest] == stragglers


async def test_migrated_users_per_utc_day(ledger: Ledger, clock: Clock) -> None:
    await _imported(ledger, clock, "entra", 6, "e")
    start = clock.now  # 2025-03-01 09:00 UTC
    for i, hours in enumerate((0, 1, 20, 24, 48, 49)):
        await ledger.mark_migrated(okta_id=f"00ue{i}", at=start + timedelta(hours=hours))
    days = await ledger.daily_migrations("entra", start - timedelta(days=1))
    assert days == [(date(2025, 3, 1), 2), (date(2025, 3, 2), 2), (date(2025, 3, 3), 2)]
    window = await ledger.daily_migrations(
        "entra", start + timedelta(hours=20), start + timedelta(hours=48)
    )
    assert window == [(date(2025, 3, 2), 2)]
    assert await ledger.daily_migrations("ldap", start) == []


async def test_migrated_since(ledger: Ledger, clock: Clock) -> None:
    await _imported(ledger, clock, "entra", 5, "e")
    start = clock.now
    for i in range(5):
        await ledger.mark_migrated(okta_id=f"00ue{i}", at=start + timedelta(hours=10 * i))
    assert await ledger.migrated_since("entra", start + timedelta(hours=16)) == 3
    assert await ledger.migrated_since("ldap", start) == 0


async def test_not_signed_in_pages_through_the_stragglers(ledger: Ledger, clock: Clock) -> None:
    await _imported(ledger, clock, "entra", 250, "e")
    await _imported(ledger, clock, "ldap", 5, "l")
    for i in range(0, 250, 10):
        await ledger.mark_migrated(okta_id=f"00ue{i}", at=clock())
    await ledger.record_decisions(
        [Decision("entra", f"e{i:04d}@contoso.com", "verified", clock()) for i in range(1, 250, 10)]
    )
    pages, after = [], None
    while page := await ledger.not_signed_in("entra", limit=60, after=after):
        pages.append(page)
        after = page[-1].login
    logins = [u.login for page in pages for u in page]
    expected = [f"e{i:04d}@contoso.com" for i in range(250) if i % 10 not in (0, 1)]
    assert logins == expected
    assert [len(page) for page in pages] == [60, 60, 60, 20]
    assert all(u.imported_at == clock.now and u.okta_id for page in pages for u in page)


async def test_rolled_back_and_skipped_users_are_not_stragglers(
    ledger: Ledger, clock: Clock
) -> None:
    await _imported(ledger, clock, "entra", 2, "e")
    await ledger.mark_rolled_back("entra", "e0000@contoso.com")
    await ledger.record_user("entra", "s@contoso.com", UserState.SKIPPED)
    assert [u.login for u in await ledger.not_signed_in("entra")] == ["e0001@contoso.com"]


async def test_runs_record_their_counts(ledger: Ledger, clock: Clock) -> None:
    started = clock()
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra", dry_run=True)
    finished = clock.advance(minutes=7)
    counts = {"listed": 5, "created": 3, "native": 0, "existing": 1, "skipped": 1, "failed": 0}
    await ledger.finish_run(run_id, counts)
    run = await ledger.get_run(run_id)
    assert run is not None
    assert (run.command, run.source, run.dry_run) == ("import", "entra", True)
    assert (run.started_at, run.finished_at, dict(run.counts)) == (started, finished, counts)
    assert await ledger.get_run(run_id + 1) is None


async def test_finishing_an_unknown_run_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="no run 42"):
        await ledger.finish_run(42, {})
