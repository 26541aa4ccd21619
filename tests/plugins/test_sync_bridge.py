"""The greenlet bridge that lets msal's blocking-style code await on the event loop."""

from __future__ import annotations

import asyncio

import pytest

from plugins.sync_bridge import await_only, call_state, run_sync


async def _double_later(value: int) -> int:
    await asyncio.sleep(0.01)
    return value * 2


def _sync_caller(value: int) -> int:
    return await_only(_double_later(value)) + await_only(_double_later(1))


async def test_bridged_code_gets_awaited_results() -> None:
    assert await run_sync(_sync_caller, 5) == 12


async def test_many_bridged_calls_interleave_without_mixing_state() -> None:
    def remember(tag: int) -> int:
        call_state()["tag"] = tag
        await_only(asyncio.sleep(0.01 * (tag % 3)))
        return int(call_state()["tag"])

    results = await asyncio.gather(*(run_sync(remember, i) for i in range(50)))
    assert results == list(range(50))


async def test_exceptions_from_awaited_code_reach_the_bridged_code() -> None:
    async def fail() -> None:
        raise ValueError("upstream broke")

    def caller() -> str:
        try:
            await_only(fail())
        except ValueError:
            return "caught"
        return "not caught"

    assert await run_sync(caller) == "caught"


async def test_exceptions_from_bridged_code_reach_the_caller() -> None:
    def broken() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await run_sync(broken)


async def test_deadline_cancels_the_pending_await_and_unwinds_bridged_code() -> None:
    unwound: list[str] = []

    def slow() -> None:
        try:
            await_only(asyncio.sleep(10))
        finally:
            unwound.append("finally ran")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await run_sync(slow)
    assert unwound == ["finally ran"]


def test_await_only_outside_a_bridged_call_is_an_error() -> None:
    coroutine = _double_later(1)
    try:
        with pytest.raises(RuntimeError):
            await_only(coroutine)
    finally:
        coroutine.close()
