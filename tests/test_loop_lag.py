"""`gateway_event_loop_lag_seconds`: the worst event-loop lateness of the last 15 s."""

from __future__ import annotations

import asyncio
import re
import time

from prometheus_client import CollectorRegistry, Gauge

from gateway.loop_lag import TICK_SECONDS, LoopLagMonitor
from tests.conftest import GatewayFactory

LAG_LINE = re.compile(r"^gateway_event_loop_lag_seconds ([0-9.e+-]+)$", re.MULTILINE)


def test_the_gauge_holds_the_worst_lateness_of_the_window_only() -> None:
    gauge = Gauge("lag", "test", registry=CollectorRegistry())
    monitor = LoopLagMonitor(gauge, window_seconds=15.0)
    for now, lateness, worst in [
        (0.0, 0.01, 0.01),
        (1.0, 0.5, 0.5),
        (2.0, 0.02, 0.5),  # smaller and later: the spike stays the worst
        (16.0, 0.03, 0.5),  # the spike at 1.0 is still inside [1.0, 16.0]
        (16.5, 0.001, 0.03),  # now it has left the window
        (40.0, 0.0, 0.0),
    ]:
        monitor.record(now, lateness)
        assert (monitor.worst, gauge._value.get()) == (worst, worst)


async def test_a_blocked_loop_shows_in_the_metric(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    await asyncio.sleep(3 * TICK_SECONDS)  # the monitor has started ticking
    time.sleep(0.5)  # noqa: ASYNC251 - on purpose: what a blocking call does to every request
    await asyncio.sleep(2 * TICK_SECONDS)  # the monitor wakes, late, and records it
    text = await (await client.get("/metrics")).text()
    match = LAG_LINE.search(text)
    assert match is not None, "gateway_event_loop_lag_seconds is not exported"
    assert float(match.group(1)) >= 0.4
