"""Streaming users keeps memory flat: 20,000 users cost no more than 2,000."""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Iterator

import pytest

from gateway.ledger import Ledger, UserRecord, UserState

TOTAL = 20_000
PAGE = 500


@pytest.fixture
def quiet_database_loggers() -> Iterator[None]:
    """Silence the database libraries' loggers while memory is measured.

    The session logs everything at DEBUG for the secret scan, SQLAlchemy's row log included,
    and keeps it: memory that grows with the rows, but the test's, not the ledger's.
    """
    names = ("sqlalchemy", "aiosqlite", "asyncpg")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def _stream_peak(ledger: Ledger, state: UserState) -> tuple[int, int]:
    """Stream every user in `state`; how many, and the peak traced memory in bytes meanwhile."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        seen = 0
        async for _user in ledger.users_in_state("entra", state, page_size=PAGE):
            seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seen, peak


@pytest.mark.usefixtures("quiet_database_loggers")
async def test_streaming_20000_users_keeps_memory_flat(ledger: Ledger) -> None:
    small = [UserRecord("entra", f"s{i:05d}@contoso.com", UserState.HOOKED) for i in range(2_000)]
    large = [UserRecord("entra", f"u{i:05d}@contoso.com", UserState.CREATED) for i in range(TOTAL)]
    for start in range(0, TOTAL, 2_000):
        await ledger.record_users(large[start : start + 2_000])
    await ledger.record_users(small)
    del small, large
    # Warm up (pool connections, statement caches) so both measurements see the same state.
    await _stream_peak(ledger, UserState.HOOKED)
    small_count, small_peak = await _stream_peak(ledger, UserState.HOOKED)
    large_count, large_peak = await _stream_peak(ledger, UserState.CREATED)
    assert (small_count, large_count) == (2_000, TOTAL)
    # Generous bounds: one page of rows is well under a megabyte; holding all 20,000 users
    # would cost tens of megabytes and ten times the small stream's peak.
    assert large_peak < 8 * 1024 * 1024, f"peak {large_peak / 1e6:.1f} MB"
    assert large_peak < 2 * small_peak + 1024 * 1024, (small_peak, large_peak)
