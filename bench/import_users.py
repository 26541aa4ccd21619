"""`python -m bench.import_users`: `gateway migrate import` against rate-limited Okta (issue 10).

Starts the Entra emulator (N generated users) and the Okta emulator (`python -m emulators.okta`,
every bucket limited to --limit-per-minute, default concurrency limit) in their own processes,
then runs `gateway migrate import` as a subprocess, polling the Okta emulator's stats to sample
the import's RSS (/proc/<pid>/status VmRSS) at 1,000 and at N created users. Prints:

  created per second over the whole run, and as a ratio to the limit (limit / 60);
  429s as a share of every API request the emulator counted;
  RSS at 1,000 and at N users, and the growth;
  PASS/FAIL against the targets: rate >= 0.9 x limit, 429s <= 1%, growth < 30 MB.

Figures are for this machine only. Exit status: 0 when every target is met, 1 when one is not
(or the import fails), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import yaml

from bench import procs
from emulators.entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from emulators.okta import BUCKETS, DEFAULT_API_TOKEN

DOMAIN = "contoso.com"
OKTA_READY_PREFIX = "Okta emulator listening on "
FIRST_SAMPLE = 1_000  # RSS is compared between this many created users and all of them
RATE_TARGET = 0.9  # created/s >= this x (limit / 60)
SHARE_429_TARGET = 0.01  # 429s <= this share of all requests
GROWTH_TARGET_MB = 30.0  # RSS growth from FIRST_SAMPLE to N users < this
POLL_SECONDS = 0.1


@dataclass
class Sample:
    """The import's RSS when the Okta emulator first counted at least `users` users."""

    users: int
    rss_mb: float


@dataclass
class Result:
    """What one import run measured."""

    last_line: str
    exit_code: int
    seconds: float
    created: int
    first: Sample | None
    last: Sample | None
    stats: dict[str, Any]


async def _start_okta(workdir: Path) -> tuple[procs.Child, str]:
    """`python -m emulators.okta` on a free port; the child and its URL."""
    port = procs.free_port()
    args = ["-m", "emulators.okta", "--port", str(port)]
    child = await procs.spawn("okta", args, workdir, stdout=asyncio.subprocess.PIPE)
    rest = await procs._await_ready_line(child, OKTA_READY_PREFIX)  # same package
    return child, rest.split()[0]


def _write_config(path: Path, entra_url: str, okta_url: str, ledger: str) -> None:
    """The import's config: one Entra source on the emulator, Okta on the other emulator."""
    data: dict[str, Any] = {
        "okta": {
            "auth": {"secrets": [secrets.token_urlsafe(32)]},
            "org_url": okta_url,
            "hook_url": "https://gw.example.com/okta/password-import",
            "api": {"token": DEFAULT_API_TOKEN},
        },
        "sources": [
            {
                "name": "entra",
                "type": "azure_ad",
                "tenant_id": DEFAULT_TENANT_ID,
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "authority": entra_url,
            }
        ],
        "routes": [{"match": {"domains": [DOMAIN]}, "sources": ["entra"]}],
        "migration": {"ledger": ledger, "sources": {"entra": {}}},
        "logging": {"level": "warning"},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def _rss_mb(pid: int) -> float | None:
    """VmRSS of a live process in MB, or None once it has exited."""
    with contextlib.suppress(OSError, ValueError):
        return procs.memory_mb(pid)[1] or None
    return None


async def _import(workdir: Path, config: Path, okta_url: str, users: int) -> Result:
    """Run the import, sampling its RSS from the emulator's user count until it exits."""
    out_path = workdir / "import.out"
    first: Sample | None = None
    last: Sample | None = None
    with out_path.open("wb") as out:
        started = time.monotonic()
        child = await procs.spawn(
            "import",
            ["-m", "gateway", "migrate", "import", "-c", str(config), "--source", "entra"],
            workdir,
            stdout=out.fileno(),
        )
        try:
            async with aiohttp.ClientSession() as http:
                while child.process.returncode is None:
                    async with http.get(okta_url + "/_emulator/stats") as response:
                        created = int((await response.json())["users"])
                    rss = _rss_mb(child.pid)
                    if rss is not None and child.process.returncode is None:
                        if first is None and created >= min(FIRST_SAMPLE, users):
                            first = Sample(created, rss)
                        if last is None or created > last.users:
                            last = Sample(created, rss)  # the final one is at (or near) N
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(child.process.wait(), POLL_SECONDS)
                seconds = time.monotonic() - started
                async with http.get(okta_url + "/_emulator/stats") as response:
                    stats = await response.json()
        finally:
            await child.stop()
    lines = out_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    last_line = lines[-1] if lines else ""
    if child.process.returncode != 0:
        print(child.log_tail(), file=sys.stderr)
    counts = dict(part.split("=", 1) for part in last_line.split()[1:] if "=" in part)
    return Result(
        last_line=last_line,
        exit_code=child.process.returncode or 0,
        seconds=seconds,
        created=int(counts.get("created", 0)),
        first=first,
        last=last,
        stats=stats,
    )


async def run(args: argparse.Namespace) -> Result:
    """Start both emulators, limit Okta's buckets, run the import; children stopped after."""
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        workdir = Path(tmp)
        entra, entra_url = await procs.start_emulator_process(
            "entra", workdir, domain=DOMAIN, users=args.users, mfa_users=0, latency_ms=0
        )
        try:
            okta, okta_url = await _start_okta(workdir)
            try:
                limits = {"limits": dict.fromkeys(BUCKETS, args.limit_per_minute)}
                async with (
                    aiohttp.ClientSession() as http,
                    http.put(okta_url + "/_emulator/limits", json=limits) as response,
                ):
                    response.raise_for_status()
                config = workdir / "config.yaml"
                ledger = args.ledger or f"sqlite:///{workdir / 'ledger.db'}"
                _write_config(config, entra_url, okta_url, ledger)
                return await _import(workdir, config, okta_url, args.users)
            finally:
                await okta.stop()
        finally:
            await entra.stop()


def report(result: Result, users: int, limit_per_minute: int) -> bool:
    """Print the figures and one PASS/FAIL line per target; True when all pass."""
    stats = result.stats
    limit_per_second = limit_per_minute / 60
    rate = result.created / result.seconds if result.seconds else 0.0
    requests = int(stats["requests_total"])
    http_429 = int(stats["http_429_total"])
    share = http_429 / requests if requests else 0.0
    print(f"import: exit={result.exit_code} {result.last_line}")
    print(
        f"created: {result.created} in {result.seconds:.1f} s = {rate:.2f}/s, "
        f"{rate / limit_per_second:.3f}x the limit ({limit_per_minute}/min = "
        f"{limit_per_second:.1f}/s)"
    )
    print(f"requests: {requests} by endpoint {stats['requests_by_endpoint']}")
    print(
        f"429s: {http_429} = {share:.2%} of requests (buckets {stats['rate_limited_by_bucket']}, "
        f"concurrency {stats['concurrency_rejections']}); peak in flight {stats['peak_in_flight']}"
    )
    growth: float | None = None
    if result.first is not None and result.last is not None:
        growth = result.last.rss_mb - result.first.rss_mb
        print(
            f"import RSS: {result.first.rss_mb:.1f} MB at {result.first.users} users, "
            f"{result.last.rss_mb:.1f} MB at {result.last.users} users: growth {growth:+.1f} MB"
        )
    else:
        print("import RSS: not sampled (the import exited before the first sample)")
    checks = {
        f"created/s >= {RATE_TARGET} x limit": rate >= RATE_TARGET * limit_per_second,
        f"429s <= {SHARE_429_TARGET:.0%} of requests": share <= SHARE_429_TARGET,
        f"RSS growth < {GROWTH_TARGET_MB:.0f} MB": growth is not None and growth < GROWTH_TARGET_MB,
        f"import exit 0, created={users}": result.exit_code == 0 and result.created == users,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    return all(checks.values())


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run, print; children never outlive the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.import_users", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--limit-per-minute", type=int, default=1_200)
    parser.add_argument(
        "--ledger", metavar="URL", help="the import's ledger (default: SQLite in a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.limit_per_minute < 1:
        parser.error("--users and --limit-per-minute must be at least 1")
    machine = procs.machine()
    print(
        f"machine: nproc={machine['nproc']} python={machine['python']} "
        f"loadavg={machine['loadavg_at_start']}; users={args.users} "
        f"limit={args.limit_per_minute}/min per bucket, pid {os.getpid()}"
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.kill_all()
    return 0 if report(result, args.users, args.limit_per_minute) else 1


if __name__ == "__main__":
    sys.exit(main())
