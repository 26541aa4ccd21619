"""Hook decisions: batched into the ledger off the hot path, never blocking, nothing lost on close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from gateway.ledger import Decision, DecisionRecorder, Ledger, RunCommand, UserState
from tests.ledger.conftest import Clock


class SlowSink:
    """A ledger that takes its time (or fails) on every batch, and keeps what it got."""

    def __init__(self, delay: float = 0.0, failures: int = 0) -> None:
        self.delay = delay
        self.failures = failures
        self.batches: list[list[Decision]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def record_decisions(self, decisions: Sequence[Decision]) -> None:
        await self.release.wait()
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("ledger away")
        self.batches.append(list(decisions))

    @property
    def logins(self) -> list[str]:
        return [d.login for batch in self.batches for d in batch]


def _decision(clock: Clock, i: int, result: str = "verified") -> Decision:
    return Decision("entra", f"user{i}@contoso.com", result, clock(), okta_id=f"00u{i}")


async def _eventually(condition: object, seconds: float = 10.0) -> None:
    """Wait until `condition()` holds (a generous deadline, not a timing assert)."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_verified_decision_marks_the_user_verified_not_migrated(
    ledger: Ledger, clock: Clock
) -> None:
    run_id = await ledger.start_run(RunCommand.IMPORT, source="entra")
    await ledger.record_user(
        "entra",
        "alice@contoso.com",
        UserState.ACTIVATED,
        okta_id="00u1",
        run_id=run_id,
        imported_at=clock(),
        hooked_at=clock(),
        activated_at=clock(),
    )
    at = clock.advance(days=1)
    await ledger.record_decisions([Decision("entra", "alice@contoso.com", "verified", at)])
    user = await ledger.get_user("entra", "alice@contoso.com")
    assert user is not None
    assert (user.state, user.verified_at, user.last_decision) == (
        UserState.ACTIVATED,
        at,
        "verified",
    )
    progress = (await ledger.progress())["entra"]
    assert (progress.verified_unconfirmed, progress.pending, progress.migrated) == (1, 0, 0)


async def test_a_later_denial_keeps_the_verification_time(ledger: Ledger, clock: Clock) -> None:
    verified = clock()
    denied = clock.advance(minutes=1)
    await ledger.record_decisions(
        [
            Decision("entra", "bob@contoso.com", "verified", verified, okta_id="00ub"),
            Decision("entra", "bob@contoso.com", "denied", denied),
        ]
    )
    user = await ledger.get_user("entra", "bob@contoso.com")
    assert user is not None
    assert (user.last_decision, user.last_decision_at, user.verified_at) == (
        "denied",
        denied,
        verified,
    )


async def test_an_older_decision_arriving_late_does_not_win(ledger: Ledger, clock: Clock) -> None:
    late = clock.advance(minutes=5)
    await ledger.record_decisions([Decision("entra", "bob@contoso.com", "verified", late)])
    await ledger.record_decisions(
        [Decision("entra", "bob@contoso.com", "unavailable", late.replace(minute=0))]
    )
    user = await ledger.get_user("entra", "bob@contoso.com")
    assert user is not None and user.last_decision == "verified"


async def test_a_verified_stranger_is_recorded_under_its_source(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.record_decisions(
        [Decision("entra", "o365@contoso.com", "verified", clock(), "00uo")]
    )
    user = await ledger.get_user("entra", "o365@contoso.com")
    assert user is not None
    assert (user.state, user.okta_id, user.imported_at) == (UserState.ACTIVATED, "00uo", None)


async def test_denied_strangers_are_not_kept(ledger: Ledger, clock: Clock) -> None:
    await ledger.record_decisions(
        [
            Decision("entra", "nobody@contoso.com", "denied", clock()),
            Decision("entra", "down@contoso.com", "unavailable", clock()),
        ]
    )
    assert await ledger.get_user("entra", "nobody@contoso.com") is None
    assert await ledger.progress() == {}


async def test_recorder_put_never_blocks_even_on_a_stalled_ledger(clock: Clock) -> None:
    sink = SlowSink()
    sink.release.clear()  # the ledger does not answer at all
    recorder = DecisionRecorder(sink, batch_size=10, flush_seconds=0.01, max_queued=1_000)
    recorder.start()
    slowest = 0.0
    for i in range(1_000):
        started = time.perf_counter()
        assert recorder.put(_decision(clock, i))
        slowest = max(slowest, time.perf_counter() - started)
        if i % 100 == 0:
            await asyncio.sleep(0)  # let the writer run and get stuck on the sink
    assert slowest < 0.05  # generous: a put is an append, never a wait for the database
    sink.release.set()
    await recorder.close()
    assert len(sink.logins) == 1_000


async def test_recorder_writes_when_a_batch_is_full_not_before(clock: Clock) -> None:
    sink = SlowSink()
    recorder = DecisionRecorder(sink, batch_size=50, flush_seconds=3600, max_queued=1_000)
    recorder.start()
    for i in range(49):
        recorder.put(_decision(clock, i))
    for _ in range(20):
        await asyncio.sleep(0)
    assert sink.batches == []  # one short of a batch, and the timer is an hour away
    recorder.put(_decision(clock, 49))
    await _eventually(lambda: len(sink.logins) == 50)
    assert [len(batch) for batch in sink.batches] == [50]
    await recorder.close()


async def test_recorder_writes_a_backlog_in_batches(clock: Clock) -> None:
    sink = SlowSink()
    recorder = DecisionRecorder(sink, batch_size=50, flush_seconds=3600, max_queued=1_000)
    recorder.start()
    for i in range(120):
        recorder.put(_decision(clock, i))
    await _eventually(lambda: len(sink.logins) == 120)
    assert [len(batch) for batch in sink.batches] == [50, 50, 20]
    assert sink.logins == [f"user{i}@contoso.com" for i in range(120)]
    await recorder.close()


async def test_recorder_writes_a_partial_batch_after_flush_seconds(clock: Clock) -> None:
    sink = SlowSink()
    recorder = DecisionRecorder(sink, batch_size=500, flush_seconds=0.05)
    recorder.start()
    recorder.put(_decision(clock, 1))
    await _eventually(lambda: sink.logins == ["user1@contoso.com"])
    assert recorder.recorded == 1
    await recorder.close()


async def test_recorder_drops_and_counts_when_full(clock: Clock) -> None:
    sink = SlowSink()
    sink.release.clear()
    recorder = DecisionRecorder(sink, batch_size=10, flush_seconds=3600, max_queued=100)
    recorder.start()
    accepted = [recorder.put(_decision(clock, i)) for i in range(150)]
    assert accepted.count(True) == 100
    assert recorder.dropped == 50
    sink.release.set()
    await recorder.close()
    assert sink.logins == [f"user{i}@contoso.com" for i in range(100)]


async def test_recorder_loses_nothing_on_close(ledger: Ledger, clock: Clock) -> None:
    recorder = DecisionRecorder(ledger, batch_size=64, flush_seconds=3600, max_queued=10_000)
    recorder.start()
    for i in range(1_000):
        assert recorder.put(_decision(clock, i))
    await recorder.close()
    assert (recorder.recorded, recorder.dropped, recorder.queued) == (1_000, 0, 0)
    progress = (await ledger.progress())["entra"]
    assert progress.verified_unconfirmed == 1_000
    assert not recorder.put(_decision(clock, 0))  # after close: refused and counted
    assert recorder.dropped == 1


async def test_recorder_retries_a_failed_batch(clock: Clock) -> None:
    sink = SlowSink(failures=2)
    recorder = DecisionRecorder(sink, batch_size=5, flush_seconds=0.01)
    recorder.start()
    for i in range(5):
        recorder.put(_decision(clock, i))
    await _eventually(lambda: len(sink.logins) == 5)
    assert recorder.failed_writes == 2
    await recorder.close()
    assert sink.logins == [f"user{i}@contoso.com" for i in range(5)]


async def test_recorder_closed_on_a_dead_ledger_reports_the_loss(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    sink = SlowSink(failures=1_000)
    recorder = DecisionRecorder(sink, batch_size=5, flush_seconds=0.01)
    for i in range(7):
        recorder.put(_decision(clock, i))
    await recorder.close()  # never started: close still tries to write
    assert (recorder.recorded, recorder.dropped) == (0, 7)
    assert "ledger decisions lost on close" in caplog.text
    assert "user1@contoso.com" not in caplog.text


def test_recorder_refuses_a_queue_smaller_than_a_batch() -> None:
    with pytest.raises(ValueError, match="max_queued >= batch_size"):
        DecisionRecorder(SlowSink(), batch_size=100, max_queued=10)
