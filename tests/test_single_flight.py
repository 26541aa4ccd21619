"""Single flight: one upstream call for identical concurrent requests, robust to cancellation."""

from __future__ import annotations

import asyncio

import pytest

from gateway.protection import SingleFlight
from plugins.base import Result, Verdict

OK = Verdict(Result.VERIFIED, "entra", "ok")


async def test_concurrent_identical_calls_share_one_call() -> None:
    flight, calls = SingleFlight(), []

    async def call() -> Verdict:
        calls.append(1)
        await asyncio.sleep(0.02)
        return OK

    results = await asyncio.gather(*(flight.run("k", call) for _ in range(10)))
    assert len(calls) == 1
    assert [made for _, made in results].count(True) == 1
    assert all(verdict == OK for verdict, _ in results)


async def test_waiter_asks_itself_when_the_first_caller_is_cancelled() -> None:
    flight, calls = SingleFlight(), []

    async def call() -> Verdict:
        calls.append(1)
        await asyncio.sleep(0.05)
        return OK

    leader = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await waiter == (OK, True)
    assert len(calls) == 2


async def test_errors_reach_every_waiter() -> None:
    flight = SingleFlight()

    async def call() -> Verdict:
        await asyncio.sleep(0.01)
        raise RuntimeError("plugin bug")

    results = await asyncio.gather(
        *(flight.run("k", call) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
