"""Users in the ledger: idempotent upserts, states that do not regress, streams, rollback."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.ledger import (
    Decision,
    Ledger,
    RunCommand,
    UserRecord,
    UserState,
    async_ledger_url,
    open_ledger,
)
from gateway.ledger.schema import users
from tests.ledger.conftest import Clock, LedgerDatabase


async def _row_count(ledger_db: LedgerDatabase) -> int:
    engine = create_async_engine(async_ledger_url(ledger_db.url))
    try:
        async with engine.connect() as connection:
            count: int = (
                await connection.execute(select(func.count()).select_from(users))
            ).scalar_one()
            return count
    finally:
        await engine.dispose()


async def _import(ledger: Ledger, clock: Clock, login: str, run_id: int, okta_id: str) -> None:
    """What `migrate import` records for a user it created and activated in one call."""
    now = clock()
    await ledger.record_user(
        "entra",
        login,
        UserState.ACTIVATED,
        okta_id=okta_id,
        run_id=run_id,
        imported_at=now,
        hooked_at=now,
        activated_at=now,
    )


async def test_the_same_record_twice_is_one_row(
    ledger: Ledger, ledger_db: LedgerDatabase, clock: Clock
) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    first = await ledger.get_user("entra", "alice@contoso.com")
    clock.advance(minutes=5)
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    again = await ledger.get_user("entra", "alice@contoso.com")
    assert await _row_count(ledger_db) == 1
    assert first is not None and again is not None
    assert again.imported_at == first.imported_at  # a re-run does not move the step times
    assert again.state is UserState.ACTIVATED
    assert again.updated_at == clock.now


async def test_the_same_user_from_many_coroutines_is_one_row(
    ledger: Ledger, ledger_db: LedgerDatabase, clock: Clock
) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await asyncio.gather(
        *(_import(ledger, clock, "race@contoso.com", run_id, "00urace") for _ in range(30))
    )
    assert await _row_count(ledger_db) == 1


async def test_a_login_is_unique_per_source_not_globally(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    await ledger.record_user("ldap", "alice@contoso.com", UserState.EXISTING, okta_id="00u1")
    entra = await ledger.get_user("entra", "alice@contoso.com")
    ldap = await ledger.get_user("ldap", "alice@contoso.com")
    assert entra is not None and entra.state is UserState.ACTIVATED
    assert ldap is not None and ldap.state is UserState.EXISTING


async def test_logins_are_kept_exactly_as_given(ledger: Ledger) -> None:
    for login in ("zoë@contoso.com", "名前@contoso.com", "Zoë@Contoso.com"):
        await ledger.record_user("entra", login, UserState.LISTED)
    for login in ("zoë@contoso.com", "名前@contoso.com", "Zoë@Contoso.com"):
        user = await ledger.get_user("entra", login)
        assert user is not None and user.login == login
    assert await ledger.get_user("entra", "ZOË@contoso.com") is None


async def test_a_rerun_seeing_our_own_user_as_existing_does_not_demote_it(
    ledger: Ledger, clock: Clock
) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    rerun = await ledger.start_run(RunCommand.IMPORT, source="entra")
    for state in (UserState.EXISTING, UserState.LISTED, UserState.SKIPPED):
        await ledger.record_user(
            "entra", "alice@contoso.com", state, okta_id="00u1", run_id=rerun, reason="x"
        )
    user = await ledger.get_user("entra", "alice@contoso.com")
    assert user is not None
    assert (user.state, user.reason) == (UserState.ACTIVATED, None)
    assert (user.created_run_id, user.last_run_id) == (run_id, rerun)


async def test_migrated_is_final_for_record_user(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    await ledger.mark_migrated(okta_id="00u1", at=clock())
    for state in (UserState.FAILED, UserState.ACTIVATED, UserState.EXISTING):
        await ledger.record_user("entra", "alice@contoso.com", state, reason="late")
    user = await ledger.get_user("entra", "alice@contoso.com")
    assert user is not None and user.state is UserState.MIGRATED


async def test_a_failure_is_recorded_with_its_reason(ledger: Ledger, clock: Clock) -> None:
    await ledger.record_user("entra", "carol@contoso.com", UserState.LISTED)
    await ledger.record_user("entra", "carol@contoso.com", UserState.FAILED, reason="okta_e0000001")
    user = await ledger.get_user("entra", "carol@contoso.com")
    assert user is not None
    assert (user.state, user.reason) == (UserState.FAILED, "okta_e0000001")


async def test_prepare_hooks_then_activates_keeping_both_times(
    ledger: Ledger, clock: Clock
) -> None:
    run_id = await ledger.start_run(RunCommand.PREPARE)
    hooked = clock()
    await ledger.record_user(
        "entra",
        "staged@contoso.com",
        UserState.HOOKED,
        okta_id="00us",
        run_id=run_id,
        hooked_at=hooked,
    )
    activated = clock.advance(seconds=2)
    await ledger.record_user(
        "entra", "staged@contoso.com", UserState.ACTIVATED, run_id=run_id, activated_at=activated
    )
    user = await ledger.get_user("entra", "staged@contoso.com")
    assert user is not None
    assert (user.state, user.okta_id) == (UserState.ACTIVATED, "00us")
    assert (user.hooked_at, user.activated_at, user.imported_at) == (hooked, activated, None)
    assert user.created_run_id is None  # prepare creates nobody: rollback must not delete them


async def test_migrated_record_needs_its_time(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="migrated_at"):
        await ledger.record_user("entra", "x@contoso.com", UserState.MIGRATED)


async def test_native_import_counts_as_migrated_at_once(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="hashes")
    now = clock()
    await ledger.record_user(
        "hashes",
        "n@contoso.com",
        UserState.MIGRATED,
        okta_id="00un",
        run_id=run_id,
        native=True,
        imported_at=now,
        activated_at=now,
        migrated_at=now,
    )
    user = await ledger.get_user("hashes", "n@contoso.com")
    assert user is not None and user.native and user.state is UserState.MIGRATED


async def test_record_users_writes_a_batch(ledger: Ledger, ledger_db: LedgerDatabase) -> None:
    await ledger.record_users(
        [UserRecord("entra", f"u{i}@contoso.com", UserState.LISTED) for i in range(250)]
    )
    await ledger.record_users([])
    assert await _row_count(ledger_db) == 250


async def test_users_in_state_streams_every_user_once_in_login_order(ledger: Ledger) -> None:
    await ledger.record_users(
        [UserRecord("entra", f"u{i:04d}@contoso.com", UserState.CREATED) for i in range(1050)]
        + [UserRecord("entra", f"h{i:04d}@contoso.com", UserState.HOOKED) for i in range(30)]
        + [UserRecord("other", f"o{i:04d}@contoso.com", UserState.CREATED) for i in range(10)]
    )
    logins = [
        u.login async for u in ledger.users_in_state("entra", UserState.CREATED, page_size=100)
    ]
    assert logins == sorted(f"u{i:04d}@contoso.com" for i in range(1050))
    both = [
        u.login
        async for u in ledger.users_in_state(
            "entra", [UserState.CREATED, UserState.HOOKED], page_size=7
        )
    ]
    assert len(both) == len(set(both)) == 1080


async def test_changing_users_while_streaming_skips_nobody(ledger: Ledger, clock: Clock) -> None:
    await ledger.record_users(
        [UserRecord("entra", f"u{i:03d}@contoso.com", UserState.CREATED) for i in range(95)]
    )
    seen = []
    async for user in ledger.users_in_state("entra", UserState.CREATED, page_size=10):
        seen.append(user.login)
        # What an import resuming its created-but-not-activated users does.
        await ledger.record_user("entra", user.login, UserState.ACTIVATED, activated_at=clock())
    assert len(seen) == len(set(seen)) == 95
    assert [u async for u in ledger.users_in_state("entra", UserState.CREATED)] == []


async def test_created_by_run_lists_only_what_that_run_created(
    ledger: Ledger, clock: Clock
) -> None:
    first = await ledger.start_run(RunCommand.IMPORT, source="entra")
    second = await ledger.start_run(RunCommand.IMPORT, source="entra")
    now = clock()
    await ledger.record_users(
        [
            UserRecord(
                "entra",
                f"{prefix}{i:03d}@contoso.com",
                UserState.ACTIVATED,
                okta_id=f"00u{prefix}{i}",
                run_id=run_id,
                imported_at=now,
            )
            for prefix, run_id, count in (("a", first, 120), ("b", second, 5))
            for i in range(count)
        ]
    )
    # Seen again by the second run: still created by the first.
    await ledger.record_user("entra", "a000@contoso.com", UserState.EXISTING, run_id=second)
    created = [u.login async for u in ledger.created_by_run(first, page_size=50)]
    assert sorted(created) == [f"a{i:03d}@contoso.com" for i in range(120)]
    assert len([u async for u in ledger.created_by_run(second)]) == 5
    assert len([u async for u in ledger.created_by_run(second + 1)]) == 0


async def test_rollback_never_touches_a_migrated_user(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "stay@contoso.com", run_id, "00u1")
    await _import(ledger, clock, "go@contoso.com", run_id, "00u2")
    await ledger.mark_migrated(okta_id="00u1", at=clock())
    rollback = await ledger.start_run(RunCommand.ROLLBACK, source="entra")
    assert not await ledger.mark_rolled_back("entra", "stay@contoso.com", run_id=rollback)
    assert await ledger.mark_rolled_back("entra", "go@contoso.com", run_id=rollback)
    assert not await ledger.mark_rolled_back("entra", "nobody@contoso.com", run_id=rollback)
    stay = await ledger.get_user("entra", "stay@contoso.com")
    gone = await ledger.get_user("entra", "go@contoso.com")
    assert stay is not None and stay.state is UserState.MIGRATED
    assert gone is not None and gone.state is UserState.ROLLED_BACK
    assert gone.rolled_back_at == clock.now and gone.last_run_id == rollback


async def test_a_rolled_back_user_imported_again_starts_over(ledger: Ledger, clock: Clock) -> None:
    first = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "again@contoso.com", first, "00uold")
    await ledger.mark_rolled_back("entra", "again@contoso.com")
    clock.advance(days=1)
    second = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "again@contoso.com", second, "00unew")
    user = await ledger.get_user("entra", "again@contoso.com")
    assert user is not None
    assert (user.state, user.okta_id) == (UserState.ACTIVATED, "00unew")
    assert (user.created_run_id, user.imported_at) == (second, clock.now)
    assert [u.login async for u in ledger.created_by_run(first)] == []


async def test_mark_migrated_by_okta_id_keeps_the_first_time(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    first = clock.advance(hours=1)
    assert await ledger.mark_migrated(okta_id="00u1", at=first) == 1
    assert await ledger.mark_migrated(okta_id="00u1", at=clock.advance(hours=1)) == 1
    user = await ledger.get_user("entra", "alice@contoso.com")
    assert user is not None
    assert (user.state, user.migrated_at) == (UserState.MIGRATED, first)


async def test_mark_migrated_prefers_the_source_that_put_the_user_in_okta(
    ledger: Ledger, clock: Clock
) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    await ledger.record_user("ldap", "alice@contoso.com", UserState.EXISTING, okta_id="00u1")
    assert await ledger.mark_migrated(okta_id="00u1", at=clock()) == 1
    ldap = await ledger.get_user("ldap", "alice@contoso.com")
    assert ldap is not None and ldap.state is UserState.EXISTING


async def test_mark_migrated_records_an_unknown_user_under_the_given_source(
    ledger: Ledger, clock: Clock
) -> None:
    assert await ledger.mark_migrated(okta_id="00u9", at=clock()) == 0
    marked = await ledger.mark_migrated(
        okta_id="00u9", source="entra", login="o365@contoso.com", at=clock()
    )
    assert marked == 1
    user = await ledger.get_user("entra", "o365@contoso.com")
    assert user is not None
    assert (user.state, user.okta_id, user.migrated_at) == (UserState.MIGRATED, "00u9", clock.now)


async def test_mark_migrated_by_source_and_login(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    assert await ledger.mark_migrated(source="entra", login="alice@contoso.com", at=clock()) == 1
    with pytest.raises(ValueError, match="okta_id, or source and login"):
        await ledger.mark_migrated(login="alice@contoso.com")


async def test_attribute_sync_is_timestamped(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    synced = clock.advance(days=2)
    assert await ledger.mark_attributes_synced("entra", "alice@contoso.com", at=synced)
    assert not await ledger.mark_attributes_synced("entra", "nobody@contoso.com")
    user = await ledger.get_user("entra", "alice@contoso.com")
    assert user is not None and user.attributes_synced_at == synced


async def test_users_by_okta_id(ledger: Ledger, clock: Clock) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await _import(ledger, clock, "alice@contoso.com", run_id, "00u1")
    assert [u.login for u in await ledger.users_by_okta_id("00u1")] == ["alice@contoso.com"]
    assert await ledger.users_by_okta_id("00unknown") == []


async def test_naive_times_are_refused(ledger: Ledger, clock: Clock) -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        await ledger.record_user(
            "entra", "t@contoso.com", UserState.HOOKED, hooked_at=clock().replace(tzinfo=None)
        )


async def test_two_replicas_recording_overlapping_batches_do_not_deadlock(
    ledger: Ledger, ledger_db: LedgerDatabase, clock: Clock
) -> None:
    other = await open_ledger(ledger_db.url, clock=clock)
    try:
        batch = [UserRecord("entra", f"r{i:04d}@contoso.com", UserState.LISTED) for i in range(400)]
        decisions = [Decision("entra", r.login, "verified", clock()) for r in batch]
        for _ in range(3):
            await asyncio.gather(
                ledger.record_users(batch), other.record_users(list(reversed(batch)))
            )
            await asyncio.gather(
                ledger.record_decisions(decisions),
                other.record_decisions(list(reversed(decisions))),
            )
    finally:
        await other.close()
    assert await _row_count(ledger_db) == 400
