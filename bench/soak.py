"""`python -m bench.soak`: an hour of C=50 hook calls against the Entra emulator, with faults.

Not part of CI. Starts the Entra emulator (20,000 users + 1,000 MFA users, L = 150 ms) and
`gateway serve` in their own processes, then keeps exactly C calls in flight from this process
with the usual mix (80% right passwords, 15% wrong, 5% MFA users), cycling through a fixed pool of
users so the verdict cache, the limiters and the protection store all see repeat traffic.

Every `--fault-every-seconds` (default 300) the emulator gets a `--fault-seconds` window
(default 30) of trouble, in turn: HTTP 500 (AADSTS50000), latency 3 s (past the gateway's 2.5 s
budget), HTTP 429 (AADSTS90055 with Retry-After: 5). During a fault, right passwords are
answered UNVERIFIED by design (never a 5xx), so `wrong` counts them; `non200` must stay 0.

Per window (`--window-seconds`, default 300) it prints: answers and answers/s, non-200 answers
(transport errors included), wrong verdicts, answer p50/p99, the p99 latency of `/healthz`
probed every 100 ms from a thread of its own (the gateway's event-loop lag as a client sees it:
the handler does no work, so its latency is the time the loop took to get to it), the gateway's
RSS and open file descriptors, and the 1-minute load average (the machine may be shared).

`python -m bench.soak` (1 hour), `--minutes 10 --window-seconds 60` for a shorter run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import aiohttp
import yaml

from bench import procs
from bench.hook_server import HOOK_PATH
from bench.load import LoadGroup, client_session, percentile
from bench.users import MIX, PayloadEncoder, Planned, client_ip, planned
from emulators.entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID

DOMAIN = "contoso.com"
USERS = 20_000
MFA_USERS = 1_000
LATENCY_MS = 150
# (label, emulator fault body): what each fault window switches on, in turn.
FAULTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("http_500", {"mode": "http_500"}),
    ("latency_3s", {"mode": "none", "latency_ms": 3000}),
    ("http_429", {"mode": "http_429", "retry_after": 5}),
)
HEALTHY: dict[str, object] = {"mode": "none", "latency_ms": LATENCY_MS}
PROBE_INTERVAL_SECONDS = 0.1


class PooledUsers:
    """A fixed pool of sign-ins in the 80/15/5 mix, sent round robin (each user comes back)."""

    def __init__(self, size: int) -> None:
        encoder = PayloadEncoder()
        self._plans: list[Planned] = []
        normal = mfa = 0
        for k in range(size):
            kind = MIX[k % len(MIX)]
            if kind == "mfa":
                index, mfa = mfa % MFA_USERS, mfa + 1
            else:
                index, normal = normal % USERS, normal + 1
            self._plans.append(planned(kind, index, DOMAIN, encoder, client_ip(k)))
        self.issued = 0

    def next(self, worker: int) -> Planned | None:
        """The next sign-in of the pool."""
        plan = self._plans[self.issued % len(self._plans)]
        self.issued += 1
        return plan


class HealthProbe(threading.Thread):
    """GET /healthz every 100 ms on a keep-alive connection; latencies kept until taken."""

    def __init__(self, url: str) -> None:
        super().__init__(name="healthz-probe", daemon=True)
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        """Probe until stopped."""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=10)
        while not self.stopping.wait(PROBE_INTERVAL_SECONDS):
            started = time.perf_counter()
            try:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(self._host, self._port, timeout=10)
            elapsed = time.perf_counter() - started
            with self._lock:
                if ok:
                    self._latencies.append(elapsed)
                else:
                    self.failures += 1
        connection.close()

    def take(self) -> list[float]:
        """The latencies measured since the last call, sorted."""
        with self._lock:
            taken, self._latencies = self._latencies, []
        return sorted(taken)


@dataclass
class Counters:
    """Cumulative counters of the load group at the end of the previous window."""

    non_200: int = 0
    transport_errors: int = 0
    wrong: int = 0


def _gateway_config(emulator_url: str, port: int, secret: str) -> str:
    source = {
        "name": "entra",
        "type": "azure_ad",
        "tenant_id": DEFAULT_TENANT_ID,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "authority": emulator_url,
        "startup_retry_max_seconds": 1,
    }
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "okta": {"hook_path": HOOK_PATH, "auth": {"header": "Authorization", "secrets": [secret]}},
        "budget_seconds": 2.5,
        "sources": [source],
        "routes": [{"match": {"domains": [DOMAIN]}, "sources": ["entra"]}],
        "logging": {"level": "warning", "format": "json"},
    }
    return yaml.safe_dump(config)


async def _set_fault(
    http: aiohttp.ClientSession, emulator_url: str, body: dict[str, object]
) -> None:
    async with http.put(emulator_url + "/_emulator/fault", json=body) as response:
        response.raise_for_status()


async def _faults(
    emulator_url: str,
    every: float,
    length: float,
    log: list[tuple[float, str]],
    stop: asyncio.Event,
) -> None:
    """Switch a fault on for `length` seconds every `every` seconds, in turn."""
    async with aiohttp.ClientSession() as http:
        for label, body in itertools.cycle(FAULTS):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every - length)
            if stop.is_set():
                return
            await _set_fault(http, emulator_url, body)
            log.append((time.perf_counter(), label))
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), length)
            finally:
                await _set_fault(http, emulator_url, HEALTHY)
            if stop.is_set():
                return


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


HEADER = (
    f"{'window':>6} {'end s':>6} {'fault':<11} {'answers':>8} {'ans/s':>6} {'non200':>6} "
    f"{'wrong':>6} {'p50 ms':>6} {'p99 ms':>6} {'lag p99':>7} {'RSS MB':>6} {'fds':>4} {'load1':>5}"
)


async def run(args: argparse.Namespace) -> int:
    """Start the processes, drive the load, print one line per window; 1 if any non-200."""
    workdir = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    emulator, emulator_url = await procs.start_emulator_process(
        "emulator", workdir, domain=DOMAIN, users=USERS, mfa_users=MFA_USERS, latency_ms=LATENCY_MS
    )
    secret = "Basic " + secrets.token_urlsafe(24)
    port = procs.free_port()
    config_path = workdir / "gateway.yaml"
    config_path.touch(mode=0o600)
    config_path.write_text(_gateway_config(emulator_url, port, secret), encoding="utf-8")
    base_url = f"http://127.0.0.1:{port}"
    gateway = await procs.start_gateway_process(workdir, config_path, base_url)
    probe = HealthProbe(base_url)
    group = LoadGroup(
        "soak", base_url + HOOK_PATH, {"Authorization": secret, "Content-Type": "application/json"},
        args.concurrency, PooledUsers(args.pool),
    )  # fmt: skip
    stop = asyncio.Event()
    fault_log: list[tuple[float, str]] = []
    total_non_200 = 0
    try:
        async with client_session(args.concurrency) as session:
            load = asyncio.create_task(group.run(session, stop))
            faults = asyncio.create_task(
                _faults(emulator_url, args.fault_every_seconds, args.fault_seconds, fault_log, stop)
            )
            probe.start()
            started = time.perf_counter()
            group.window_start = started
            end = started + args.minutes * 60
            print(HEADER, flush=True)
            previous, window_start, number = Counters(), started, 0
            while window_start < end - 1:
                window_end = min(window_start + args.window_seconds, end)
                await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
                now = time.perf_counter()
                latencies = sorted(group.latency)
                group.done_at.clear()
                group.latency.clear()
                lags = probe.take()
                non_200 = group.non_200 - previous.non_200
                wrong = group.wrong - previous.wrong
                previous = Counters(group.non_200, group.transport_errors, group.wrong)
                total_non_200 += non_200
                faults_in = ",".join(sorted({f for t, f in fault_log if window_start <= t < now}))
                _hwm, rss = procs.memory_mb(gateway.pid)
                number += 1
                print(
                    f"{number:>6} {now - started:>6.0f} {faults_in or '-':<11} {len(latencies):>8} "
                    f"{len(latencies) / (now - window_start):>6.0f} {non_200:>6} {wrong:>6} "
                    f"{_ms(percentile(latencies, 0.5)):>6} {_ms(percentile(latencies, 0.99)):>6} "
                    f"{_ms(percentile(lags, 0.99)):>7} {rss:>6.1f} {_fds(gateway.pid):>4} "
                    f"{os.getloadavg()[0]:>5.2f}",
                    flush=True,
                )
                window_start = now
            stop.set()
            await asyncio.gather(load, faults)
    finally:
        stop.set()
        probe.stopping.set()
        await gateway.stop()
        await emulator.stop()
    print(
        f"total: {group.answered} answers, {total_non_200} non-200 "
        f"({group.transport_errors} transport errors), {group.wrong} wrong verdicts, "
        f"{probe.failures} failed /healthz probes"
    )
    return 1 if total_non_200 or probe.failures else 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run, print; children never outlive the soak."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--window-seconds", type=float, default=300.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--pool", type=int, default=20_000, help="distinct sign-ins cycled through")
    parser.add_argument("--fault-every-seconds", type=float, default=300.0)
    parser.add_argument("--fault-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.fault_seconds >= args.fault_every_seconds:
        parser.error("--fault-seconds must be shorter than --fault-every-seconds")
    machine = procs.machine()
    print(
        f"soak: C={args.concurrency}, L={LATENCY_MS} ms, {args.minutes:g} min in "
        f"{args.window_seconds:g} s windows, a {args.fault_seconds:g} s fault every "
        f"{args.fault_every_seconds:g} s ({', '.join(f for f, _ in FAULTS)}); "
        f"{machine['nproc']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"load average at start {machine['loadavg_at_start']}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.kill_all()


if __name__ == "__main__":
    sys.exit(main())
