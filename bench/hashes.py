"""Password hash costs on this machine, and what they do to the rest of the gateway.

Prints, with no pass/fail (timings belong here, not in tests):

1. argon2id (argon2-cffi's defaults: m=64 MiB, t=3, p=4) and bcrypt (cost 12) verifications
   per second, one thread and one per core; and libpass's overhead over calling argon2-cffi and
   bcrypt directly (why libpass: it covers every format at no measurable cost).
2. Unknown-user versus known-user time per format, through `HashedExportSource.verify` on a
   file of that format at realistic cost (ratio ~1.0 is the goal).
3. The latency of cached answers of another source while bursts of 20 argon2id verifications
   run at once (the next burst as soon as one has answered), against the gateway app in-process
   (a second, cheap `hashed_export` source answers from the verdict cache), with the default
   pool and with 20 threads; and how many of the heavy calls were checked or shed.

    .venv/bin/python -m bench.hashes [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import argon2
import bcrypt
import yaml
from aiohttp import web
from passlib import hash as passlib_hash

from emulators.demo import okta_payload
from gateway.app import METRICS, create_app
from gateway.config import load_config
from plugins.hashed_export import HashedExportConfig, HashedExportSource

SECRET = "Basic YmVuY2g6aGFzaGVzLWJlbmNoLXNlY3JldA=="
FIREBASE = {
    "signer_key": "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==",
    "salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}
CORES = os.cpu_count() or 1


def _rate(check: Callable[[], object], seconds: float, threads: int = 1) -> float:
    """Calls per second of `check` over about `seconds`, from `threads` threads."""

    def loop(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            check()
            done += 1
        return done

    begun = time.perf_counter()
    deadline = begun + seconds
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(loop, [deadline] * threads))
    return total / (time.perf_counter() - begun)


def throughput(seconds: float) -> None:
    """Verifications per second, and libpass against the libraries it drives."""
    hasher = argon2.PasswordHasher()
    a_hash = hasher.hash("password")
    b_hash = bcrypt.hashpw(b"password", bcrypt.gensalt(12))

    def raw_argon2() -> bool:
        return hasher.verify(a_hash, "password")

    def libpass_argon2() -> bool:
        return bool(passlib_hash.argon2.verify("password", a_hash))

    def raw_bcrypt() -> bool:
        return bcrypt.checkpw(b"password", b_hash)

    def libpass_bcrypt() -> bool:
        return bool(passlib_hash.bcrypt.verify("password", b_hash.decode()))

    print(f"1. verifications per second ({CORES} cores)")
    rows = [
        ("argon2id m=64MiB t=3 p=4", raw_argon2, libpass_argon2),
        ("bcrypt cost 12", raw_bcrypt, libpass_bcrypt),
    ]
    for name, raw, lib in rows:
        one = _rate(lib, seconds)
        many = _rate(lib, seconds, threads=CORES)
        direct = _rate(raw, seconds)
        print(
            f"   {name:26} libpass 1 thread {one:6.2f}/s, {CORES} threads {many:6.2f}/s "
            f"(x{many / one:.2f}); library direct {direct:6.2f}/s "
            f"-> libpass/direct {one / direct:.2f}"
        )


def _formats() -> dict[str, dict[str, Any]]:
    """One row per format at a realistic cost (the library's defaults where it has them)."""
    salt = secrets.token_bytes(16)
    key = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 310_000, 32)
    return {
        "bcrypt (12)": {"hash": bcrypt.hashpw(b"pw", bcrypt.gensalt(12)).decode()},
        "argon2id (default)": {"hash": argon2.PasswordHasher().hash("pw")},
        "{SSHA512}": {"hash": passlib_hash.ldap_salted_sha512.hash("pw")},
        "django pbkdf2_sha256": {"hash": passlib_hash.django_pbkdf2_sha256.hash("pw")},
        "salted sha256": {
            "hash": hashlib.sha256(salt + b"pw").hexdigest(),
            "algorithm": "sha256",
            "salt": base64.b64encode(salt).decode(),
            "salt_order": "PREFIX",
        },
        "pbkdf2 sha256 310k": {
            "hash": base64.b64encode(key).decode(),
            "algorithm": "pbkdf2",
            "salt": base64.b64encode(salt).decode(),
            "iterations": 310_000,
            "digest": "sha256",
        },
        "$6$ sha512_crypt": {"hash": passlib_hash.sha512_crypt.hash("pw")},
        "scrypt (ln=16)": {"hash": passlib_hash.scrypt.hash("pw")},
        "firebase scrypt": {
            "hash": "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==",
            "algorithm": "firebase_scrypt",
            "salt": "42xEC+ixf3L2lw==",
        },
    }


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    import csv

    columns = sorted({key for row in rows for key in row}, key=lambda k: (k != "username", k))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


async def unknown_versus_known(rounds: int, folder: Path) -> None:
    """Mean time of a wrong password for a known user and any password for an unknown one."""
    print("2. unknown user / known user, per format (mean of alternating calls)")
    for name, fields in _formats().items():
        path = _write(folder / "one.csv", [{"username": "known@contoso.com", **fields}])
        config = HashedExportConfig.model_validate(
            {
                "name": "b",
                "type": "hashed_export",
                "file": str(path),
                "firebase_scrypt": FIREBASE,
                "workers": 1,
                "max_wait_seconds": 30.0,
            }
        )
        source = HashedExportSource(config)
        await source.start()
        known: list[float] = []
        unknown: list[float] = []
        try:
            for i in range(rounds):
                for username, times in (
                    ("known@contoso.com", known),
                    (f"nobody{i}@contoso.com", unknown),
                ):
                    begun = time.perf_counter()
                    await source.verify(username, "wrong password")
                    times.append(time.perf_counter() - begun)
        finally:
            await source.close()
        k, u = statistics.mean(known), statistics.mean(unknown)
        print(
            f"   {name:22} known {k * 1000:8.2f} ms  unknown {u * 1000:8.2f} ms  ratio {u / k:.2f}"
        )


def _gateway_config(folder: Path, workers: int) -> Path:
    hasher = argon2.PasswordHasher()
    heavy = [{"username": f"a{i}@heavy.test", "hash": hasher.hash(f"pw{i}")} for i in range(20)]
    salt = secrets.token_bytes(8)
    light = [
        {
            "username": f"c{i}@light.test",
            "hash": hashlib.sha256(salt + f"pw{i}".encode()).hexdigest(),
            "algorithm": "sha256",
            "salt": base64.b64encode(salt).decode(),
            "salt_order": "PREFIX",
        }
        for i in range(20)
    ]
    config = {
        "server": {"host": "127.0.0.1", "port": 8080},  # unused: the bench binds port 0
        "okta": {"auth": {"secrets": [SECRET]}},
        "budget_seconds": 2.5,
        "sources": [
            {
                "name": "heavy",
                "type": "hashed_export",
                "file": str(_write(folder / "heavy.csv", heavy)),
                "workers": workers,
            },
            {
                "name": "light",
                "type": "hashed_export",
                "file": str(_write(folder / "light.csv", light)),
            },
        ],
        "routes": [
            {"match": {"domains": ["heavy.test"]}, "sources": ["heavy"]},
            {"match": {"domains": ["light.test"]}, "sources": ["light"]},
        ],
        "rate_limits": {
            "per_username": {"failures": 1_000_000, "window_seconds": 60},
            "per_ip": {"failures": 1_000_000, "window_seconds": 60},
        },
        "logging": {"level": "warning"},
    }
    path = folder / f"gateway-{workers}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


app_registry: list[Any] = []  # the metrics registry of the app being served


@contextlib.asynccontextmanager
async def _serving(path: Path) -> AsyncIterator[str]:
    app = create_app(load_config(path))
    app_registry[:] = [app[METRICS].registry]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/okta/password-import"
    finally:
        await runner.cleanup()


async def _hook(session: aiohttp.ClientSession, url: str, username: str, password: str) -> str:
    async with session.post(
        url, json=okta_payload(username, password), headers={"Authorization": SECRET}
    ) as response:
        body = await response.json()
    return str(body["commands"][0]["value"]["credential"])


def _heavy_count(code: str) -> int:
    """`gateway_upstream_errors_total` of the heavy source for one reason code."""
    value = app_registry[0].get_sample_value(
        "gateway_upstream_errors_total", {"source": "heavy", "code": code}
    )
    return int(value or 0)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def cached_latency_under_argon2(samples: int, burst_count: int, folder: Path) -> None:
    """p50/p99 of cached answers, idle and with 20 argon2id verifications kept in flight."""
    print("3. cached answers of another source during bursts of 20 argon2id verifications")
    for workers in (min(4, CORES), 20):
        async with (
            _serving(_gateway_config(folder, workers)) as url,
            aiohttp.ClientSession() as session,
        ):
            for i in range(20):  # warm the verdict cache of the light source
                await _hook(session, url, f"c{i}@light.test", f"pw{i}")

            async def measure(until: asyncio.Task[int] | None = None) -> list[float]:
                out: list[float] = []
                n = 0
                while (n < samples) if until is None else not until.done():
                    n += 1
                    begun = time.perf_counter()
                    await _hook(session, url, f"c{n % 20}@light.test", f"pw{n % 20}")
                    out.append(time.perf_counter() - begun)
                return out

            idle = await measure()

            async def bursts() -> int:
                """20 argon2id checks at once, again as soon as all 20 have answered."""
                count = 0
                while count < burst_count:
                    # New wrong passwords each time: never a cached answer.
                    await asyncio.gather(
                        *(
                            _hook(session, url, f"a{i}@heavy.test", secrets.token_hex(8))
                            for i in range(20)
                        )
                    )
                    count += 1
                return count

            loader = asyncio.create_task(bursts())
            loaded = await measure(until=loader)
            rounds = await loader
            outcomes = {
                code: _heavy_count(code) for code in ("wrong_password", "overloaded", "timeout")
            }
            outcomes["other"] = 20 * rounds - sum(outcomes.values())
            outcomes["bursts"] = rounds
            i50, i99 = _percentiles(idle)
            l50, l99 = _percentiles(loaded)
            print(
                f"   heavy source workers={workers:2}: idle p50 {i50 * 1000:6.2f} ms p99 "
                f"{i99 * 1000:6.2f} ms | loaded p50 {l50 * 1000:6.2f} ms p99 {l99 * 1000:6.2f} ms"
                f" | ratio p50 x{l50 / i50:.1f} p99 x{l99 / i99:.1f} | heavy answers {outcomes}"
            )


async def main_async(args: argparse.Namespace) -> None:
    """Parts 2 and 3 (they need an event loop)."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        await unknown_versus_known(3 if args.quick else 8, folder)
        await cached_latency_under_argon2(
            100 if args.quick else 400, 2 if args.quick else 5, folder
        )


def main() -> None:
    """Run the three measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    throughput(2.0 if args.quick else 5.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
