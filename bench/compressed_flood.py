"""Hook latency while unauthenticated clients flood the gateway with gzip bombs.

    python -m bench.compressed_flood                    # C=75, L=150 ms, 4 attackers, 10 s windows
    python -m bench.compressed_flood --attackers 8 --duration 20
    python -m bench.compressed_flood --attackers 0      # the noise floor: two windows, no flood

As `bench.run` does, the Entra emulator and the gateway run in their own processes; the attackers
run in a third (`--attack PORT`), so their work never slows the load generator's clock. One stream
of normal hook calls (C in flight, fresh users) is measured twice in the same run: alone, then
while the attackers keep sending 1 MB gzip bodies that inflate to 1 GiB, with no credentials.
The ratios (flood / alone) are the result: 1.00 means the flood costs the real calls nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import struct
import sys
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from time import perf_counter

import aiohttp

from bench import procs
from bench.load import LoadGroup, percentile
from bench.run import HOOK_PATH, EmulatorSpec, Env, Window, environment, measure
from bench.users import FreshUsers, users_needed

MIB = 1 << 20


def gzip_bomb(mib: int) -> bytes:
    """`mib` MiB of zeros gzipped at level 9 (~1 KB per MiB): one full-flushed MiB, repeated."""
    chunk = bytes(MIB)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = deflater.compress(chunk) + deflater.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    trailer = struct.pack("<II", crc, (mib * MIB) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + piece * mib + deflater.flush() + trailer


async def _send_bomb(port: int, request: bytes) -> None:
    """One unauthenticated request: write it all, wait for the status line, hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()  # the gateway answers 401 and closes without reading it all
        await reader.readline()
    finally:
        writer.close()


async def attack(port: int, attackers: int) -> None:
    """Child mode: `attackers` loops sending gzip bombs back to back until SIGTERM."""
    bomb = gzip_bomb(1024)
    head = (
        f"POST {HOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
    )
    request = head.encode() + bomb

    async def loop() -> None:
        while True:
            with contextlib.suppress(OSError):
                await _send_bomb(port, request)

    await asyncio.gather(*(loop() for _ in range(attackers)), asyncio.Event().wait())


async def _unauthorized_count(env: Env) -> float:
    """`gateway_hook_requests_total{outcome="unauthorized"}` from the gateway's /metrics."""
    url = env.url.removesuffix(HOOK_PATH) + "/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('gateway_hook_requests_total{outcome="unauthorized"}'):
            return float(line.rpartition(" ")[2])
    return math.nan


def _figures(group: LoadGroup, window: Window) -> dict[str, float | int]:
    lat = sorted(group.window(window.start, window.end))
    return {
        "answers/s": len(lat) / window.seconds,
        "p50 ms": percentile(lat, 0.50) * 1000,
        "p99 ms": percentile(lat, 0.99) * 1000,
        "gateway CPU %": window.server_cpu / window.seconds * 100,
        "non-200": group.non_200,
        "wrong": group.wrong,
    }


async def run(args: argparse.Namespace) -> None:
    """Measure the stream alone, then under the flood, and print both with their ratios."""
    machine = procs.machine()  # others' load on the shared cores makes the figures noisy
    print(f"machine: nproc={machine['nproc']} loadavg at start={machine['loadavg_at_start']}")
    seconds = 2 * (args.warmup + args.duration) + 4
    spec = EmulatorSpec(
        "entra", "contoso.com", *users_needed(math.ceil(args.c / 0.15 * seconds)), 150
    )
    async with environment([spec]) as env:
        users = FreshUsers(spec.domain)
        alone = LoadGroup("alone", env.url, env.headers, args.c, users)
        window_alone = await measure(env, [alone], args.warmup, args.duration)
        port = int(env.url.split(":")[2].split("/")[0])
        with tempfile.TemporaryDirectory(prefix="gateway-flood-") as tmp:
            flood_args = ["-m", "bench.compressed_flood", "--attack", str(port)]
            flood_args += ["--attackers", str(args.attackers)]
            attackers = await procs.spawn("attackers", flood_args, Path(tmp))
            try:
                before, started = await _unauthorized_count(env), perf_counter()
                cpu_before = procs.cpu_seconds(attackers.pid)
                flooded = LoadGroup("flood", env.url, env.headers, args.c, users)
                window_flood = await measure(env, [flooded], args.warmup, args.duration)
                bombs = await _unauthorized_count(env) - before
                elapsed = perf_counter() - started
                attacker_cpu = (procs.cpu_seconds(attackers.pid) - cpu_before) / elapsed * 100
            finally:
                await attackers.stop()
    rows = {"alone": _figures(alone, window_alone), "flood": _figures(flooded, window_flood)}
    print(f"hook calls: C={args.c}, L=150 ms, {args.duration:.0f} s per window")
    print(
        f"flood: {args.attackers} attackers, unauthenticated {len(gzip_bomb(1024)) / 1e6:.2f} MB "
        f"gzip bodies inflating to 1 GiB; {bombs:.0f} answered 401 ({bombs / elapsed:.0f}/s); "
        f"attacker process CPU {attacker_cpu:.0f}%"
    )
    names = list(rows["alone"])
    print(f"{'':<8}" + "".join(f"{n:>15}" for n in names))
    for label, row in rows.items():
        print(f"{label:<8}" + "".join(f"{_cell(row[n]):>15}" for n in names))
    ratios = {n: rows["flood"][n] / rows["alone"][n] for n in ("p50 ms", "p99 ms", "answers/s")}
    print("flood / alone: " + ", ".join(f"{n.split()[0]} {r:.2f}x" for n, r in ratios.items()))


def _cell(value: float | int) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; children never outlive it."""
    parser = argparse.ArgumentParser(prog="python -m bench.compressed_flood", description=__doc__)
    parser.add_argument("--c", type=int, default=75, help="hook calls in flight")
    parser.add_argument("--attackers", type=int, default=4, help="concurrent bomb senders")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--attack", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        asyncio.run(attack(args.attack, args.attackers) if args.attack else run(args))
    except KeyboardInterrupt:
        return 130
    finally:
        procs.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
