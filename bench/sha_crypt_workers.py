"""SHA-crypt checks in worker threads versus worker processes: throughput and event-loop lag.

`python -m bench.sha_crypt_workers [--checks 400] [--rounds 5000]`. libpass's SHA-crypt is pure
Python and holds the GIL for the whole check, so in `hashed_export`'s worker threads it competes
with the event loop that answers every hook; `hashed_export` runs those schemes in worker
processes instead (`password_hashes.GIL_BOUND_SCHEMES`). This runs the same burst of `$6$` checks
(2 workers, 50 users) through `HashedExportSource.verify` both ways, while a coroutine measures
how late the event loop wakes it every millisecond, and prints checks per second and loop lag,
with processes as a ratio to threads measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import tempfile
import time
from pathlib import Path
from unittest import mock

from passlib.hash import sha512_crypt

import plugins.password_hashes as password_hashes
from plugins.hashed_export import HashedExportConfig, HashedExportSource

USERS = 50
WORKERS = 2


def _write_export(path: Path, rounds: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "hash"])
        for i in range(USERS):
            writer.writerow([f"u{i}@contoso.com", sha512_crypt.using(rounds=rounds).hash(f"pw{i}")])


async def _burst(path: Path, checks: int, processes: bool) -> tuple[float, list[float]]:
    """Checks per second and the sorted loop lags (s) of one burst, threads or processes."""
    config = HashedExportConfig.model_validate(
        {"name": "bench", "type": "hashed_export", "file": str(path), "workers": WORKERS,
         "max_queue": checks, "max_wait_seconds": 30}
    )  # fmt: skip
    schemes = frozenset({"sha512_crypt"}) if processes else frozenset()
    with mock.patch.object(password_hashes, "GIL_BOUND_SCHEMES", schemes):
        source = HashedExportSource(config)
        await source.start()
        lags: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while not done.is_set():
                due = loop.time() + 0.001
                await asyncio.sleep(0.001)
                lags.append(max(0.0, loop.time() - due))

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        verdicts = await asyncio.gather(
            *(source.verify(f"u{i % USERS}@contoso.com", f"pw{i % USERS}") for i in range(checks))
        )
        elapsed = time.perf_counter() - started
        done.set()
        await task
        await source.close()
    if not all(v.verified for v in verdicts):
        raise SystemExit("a right password was not verified: the measurement is void")
    return checks / elapsed, sorted(lags)


def _ms(lags: list[float], fraction: float) -> float:
    return lags[min(len(lags) - 1, int(len(lags) * fraction))] * 1000


def main() -> None:
    """Print both runs and the ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.sha_crypt_workers")
    parser.add_argument("--checks", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sha-crypt-bench-") as folder:
        path = Path(folder) / "export.csv"
        _write_export(path, args.rounds)
        results = {}
        for processes in (False, True):
            rate, lags = asyncio.run(_burst(path, args.checks, processes))
            label = "processes" if processes else "threads"
            results[label] = (rate, _ms(lags, 0.5), _ms(lags, 0.99))
            print(
                f"{label:>9}: {rate:6.0f} checks/s; loop lag p50 {_ms(lags, 0.5):5.1f} ms, "
                f"p99 {_ms(lags, 0.99):5.1f} ms, max {lags[-1] * 1000:5.1f} ms"
            )
    in_threads, in_processes = results["threads"], results["processes"]
    print(
        f"processes / threads: throughput {in_processes[0] / in_threads[0]:.2f}x, "
        f"loop lag p99 {in_processes[2] / in_threads[2]:.2f}x "
        f"({WORKERS} workers, {args.checks} $6$ checks at {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
