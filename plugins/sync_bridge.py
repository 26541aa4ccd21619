"""Run blocking-style library code (msal) on the event loop, with its I/O awaited, not blocking.

msal is synchronous: it calls `http_client.post(...)` and waits. Run in a thread pool, every
verification costs thread hand-offs, GIL contention and a Python HTTP parser; measured here, that
was two thirds of the gateway's CPU per verification. Instead, `run_sync` runs the function in a
greenlet on the loop's own thread, and the HTTP client calls `await_only(coroutine)`, which
suspends the greenlet while the event loop awaits the coroutine (aiohttp), then resumes it with
the result. The same pattern as SQLAlchemy's asyncio bridge.

Rules this relies on: the bridged code must not hold a lock across an I/O call (msal does not),
and everything it waits on goes through `await_only`.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import greenlet

T = TypeVar("T")


class _BridgedCall(greenlet.greenlet):  # type: ignore[misc]
    """One bridged call; `state` holds what its I/O learned (e.g. the last HTTP status)."""

    def __init__(self, fn: Callable[..., Any], parent: greenlet.greenlet) -> None:
        super().__init__(fn, parent)
        self.state: dict[str, Any] = {}


def await_only(awaitable: Awaitable[T]) -> T:
    """From bridged code: wait for `awaitable` on the event loop and return its result."""
    current = greenlet.getcurrent()
    if not isinstance(current, _BridgedCall):
        raise RuntimeError("await_only() called outside run_sync()")
    result: T = current.parent.switch(awaitable)
    return result


def call_state() -> dict[str, Any]:
    """Per-call scratch space of the current bridged call (empty dict outside one)."""
    current = greenlet.getcurrent()
    return current.state if isinstance(current, _BridgedCall) else {}


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on this thread; its `await_only` calls are awaited here.

    Cancellation (e.g. the hook's deadline) is thrown into the bridged code at its pending
    `await_only`, so it unwinds like any exception and the task sees the cancellation.
    """
    call = _BridgedCall(fn, greenlet.getcurrent())
    result: Any = call.switch(*args)
    while not call.dead:
        try:
            value = await result
        except BaseException:  # noqa: BLE001 - every outcome, cancellation too, goes back in
            result = call.throw(*sys.exc_info())
        else:
            result = call.switch(value)
    return result  # type: ignore[no-any-return]
