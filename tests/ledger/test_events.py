"""Okta events: recorded once by uuid, whatever the redeliveries and the concurrency."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.ledger import Ledger, OktaEvent, async_ledger_url, open_ledger
from gateway.ledger.schema import events
from tests.ledger.conftest import Clock, LedgerDatabase

SUCCESS = "user.import.password"


async def _event_rows(ledger_db: LedgerDatabase) -> int:
    engine = create_async_engine(async_ledger_url(ledger_db.url))
    try:
        async with engine.connect() as connection:
            count: int = (
                await connection.execute(select(func.count()).select_from(events))
            ).scalar_one()
            return count
    finally:
        await engine.dispose()


async def test_an_event_is_new_once(ledger: Ledger, clock: Clock) -> None:
    assert await ledger.record_event("e-1", SUCCESS, outcome="SUCCESS", okta_user_id="00u1")
    assert not await ledger.record_event("e-1", SUCCESS, outcome="SUCCESS", okta_user_id="00u1")


async def test_fifty_concurrent_deliveries_of_one_event_make_one_new(
    ledger: Ledger, ledger_db: LedgerDatabase
) -> None:
    answers = await asyncio.gather(
        *(
            ledger.record_event("same-uuid", SUCCESS, outcome="SUCCESS", okta_user_id="00u1")
            for _ in range(50)
        )
    )
    assert answers.count(True) == 1
    assert await _event_rows(ledger_db) == 1


async def test_two_replicas_racing_on_a_batch_share_it_exactly(
    ledger: Ledger, ledger_db: LedgerDatabase, clock: Clock
) -> None:
    # A second Ledger on the same database: another replica with its own connection pool.
    other = await open_ledger(ledger_db.url, clock=clock)
    try:
        batch = [OktaEvent(f"e-{i}", SUCCESS, "SUCCESS", f"00u{i}") for i in range(200)]
        mine, theirs = await asyncio.gather(
            ledger.record_events(batch), other.record_events(list(reversed(batch)))
        )
    finally:
        await other.close()
    for i in range(200):
        assert mine[i] != theirs[199 - i]  # each event is new for exactly one of them
    assert await _event_rows(ledger_db) == 200


async def test_a_batch_says_which_events_are_new(ledger: Ledger) -> None:
    await ledger.record_event("old", SUCCESS, outcome="SUCCESS")
    answers = await ledger.record_events(
        [
            OktaEvent("new-1", SUCCESS, "SUCCESS", "00u1"),
            OktaEvent("old", SUCCESS, "SUCCESS"),
            OktaEvent("new-2", "user.lifecycle.activate", "SUCCESS", "00u2"),
            OktaEvent("new-1", SUCCESS, "SUCCESS", "00u1"),  # twice in one delivery
        ]
    )
    assert answers == [True, False, True, False]
    assert await ledger.record_events([]) == []


async def test_a_large_delivery_is_written_in_chunks(
    ledger: Ledger, ledger_db: LedgerDatabase
) -> None:
    batch = [OktaEvent(f"big-{i}", SUCCESS, "FAILURE") for i in range(1_234)]
    assert all(await ledger.record_events(batch))
    assert await _event_rows(ledger_db) == 1_234


async def test_event_counts_per_type_and_outcome(ledger: Ledger) -> None:
    await ledger.record_events(
        [
            OktaEvent("s1", SUCCESS, "SUCCESS"),
            OktaEvent("s2", SUCCESS, "SUCCESS"),
            OktaEvent("f1", SUCCESS, "FAILURE"),
            OktaEvent("a1", "user.lifecycle.activate", None),
        ]
    )
    await ledger.record_event("s1", SUCCESS, outcome="SUCCESS")  # a redelivery counts nothing
    assert await ledger.event_counts() == {
        (SUCCESS, "SUCCESS"): 2,
        (SUCCESS, "FAILURE"): 1,
        ("user.lifecycle.activate", None): 1,
    }


async def test_last_event_time_per_type(ledger: Ledger, clock: Clock) -> None:
    assert await ledger.last_event_at(SUCCESS) is None
    early, late = clock(), clock.advance(minutes=3)
    await ledger.record_events(
        [
            OktaEvent("l1", SUCCESS, "SUCCESS", published_at=late),
            OktaEvent("l2", SUCCESS, "SUCCESS", published_at=early),
            OktaEvent("l3", "user.lifecycle.activate", published_at=clock.advance(hours=1)),
        ]
    )
    assert await ledger.last_event_at(SUCCESS) == late
