"""Time as the Okta API client sees it: wall time, a monotonic clock and sleeping, injectable.

Tests hand the client a clock they also give the Okta emulator, so a 60-second rate-limit window
or an hour-long access token passes without anyone waiting (STYLE.md: time in tests is injected).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """What the client needs from time."""

    def time(self) -> float:
        """Wall-clock epoch seconds (client assertions' ``iat``/``exp``)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes back (schedules, token expiry)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
