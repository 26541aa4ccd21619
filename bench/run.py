"""`make bench` / `python -m bench.run`: the Performance issue's scenarios, one table row each.

Each scenario starts the Entra emulator(s) and the gateway in their own processes (own process
groups, killed on exit, Ctrl-C or error), then drives the hook from this process with exactly C
requests in flight for a fixed window after a warm-up. Figures are for this machine only and are
noisy when anything else runs on it (the load average at start is printed for that reason).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import secrets
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from types import FrameType
from typing import Any

import aiohttp
import yaml

from bench import procs
from bench.load import LoadGroup, RequestSource, client_session, percentile
from bench.users import FreshUsers, HotUsers, users_needed
from gateway.emulators.entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID

HOOK_PATH = "/okta/password-import"
SCENARIOS = ("a", "b", "c", "d", "e")
DEFAULT_DURATION = {"a": 20.0, "b": 20.0, "c": 15.0, "e": 15.0}
D_CAP_SECONDS = 600.0  # scenario d runs until its users are done, at most this long
REDIS_URL: str | None = None  # --redis: run the gateway with the shared Redis backend


@dataclass(frozen=True)
class EmulatorSpec:
    """One emulator process: its source name, domain, users and fixed latency."""

    source: str
    domain: str
    users: int
    mfa_users: int
    latency_ms: int


@dataclass
class Env:
    """A running gateway (and its emulators) for one scenario."""

    url: str
    headers: dict[str, str]
    gateway: procs.Child
    emulators: list[procs.Child]


@dataclass
class Window:
    """The measured window: its bounds and what the processes spent in it."""

    start: float
    end: float
    gateway_cpu: float
    emulator_cpu: float
    loadgen_cpu: float
    hwm_mb: float
    rss_mb: float

    @property
    def seconds(self) -> float:
        """Length of the window."""
        return self.end - self.start


@dataclass
class Row:
    """One table row."""

    scenario: str
    concurrency: int
    latency_ms: int
    seconds: float
    answers: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p99_overhead_ms: float
    efficiency: float
    gateway_cpu_ms_per_verification: float
    gateway_cpu_percent: float
    emulator_cpu_percent: float
    loadgen_cpu_percent: float
    gateway_hwm_mb: float
    gateway_rss_mb: float
    non_200: int
    wrong: int
    targets: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def _gateway_config(
    specs: Sequence[EmulatorSpec], urls: Sequence[str], port: int, secret: str
) -> str:
    sources = [
        {
            "name": spec.source,
            "type": "azure_ad",
            "tenant_id": DEFAULT_TENANT_ID,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "authority": url,
            "startup_retry_max_seconds": 1,
        }
        for spec, url in zip(specs, urls, strict=True)
    ]
    routes = [{"match": {"domains": [spec.domain]}, "sources": [spec.source]} for spec in specs]
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "okta": {"hook_path": HOOK_PATH, "auth": {"header": "Authorization", "secrets": [secret]}},
        "budget_seconds": 2.5,
        "sources": sources,
        "routes": routes,
        "logging": {"level": "warning", "format": "json"},
    }
    if REDIS_URL is not None:
        config["cache"] = {
            "backend": "redis",
            "url": REDIS_URL,
            "key_prefix": f"bench-{secrets.token_hex(4)}",
            "hmac_secret": secrets.token_hex(16),
        }
    return yaml.safe_dump(config)


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")


@contextlib.asynccontextmanager
async def environment(specs: Sequence[EmulatorSpec]) -> AsyncIterator[Env]:
    """Emulator processes, then the gateway process configured for them; all stopped at exit."""
    children: list[procs.Child] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        workdir = Path(tmp)
        try:
            urls = []
            for spec in specs:
                child, url = await procs.start_emulator_process(
                    f"emulator-{spec.source}",
                    workdir,
                    domain=spec.domain,
                    users=spec.users,
                    mfa_users=spec.mfa_users,
                    latency_ms=spec.latency_ms,
                )
                children.append(child)
                urls.append(url)
            port = procs.free_port()
            secret = (
                "Basic " + base64.b64encode(b"bench:" + secrets.token_hex(16).encode()).decode()
            )
            config_path = workdir / "gateway.yaml"
            _write_private(config_path, _gateway_config(specs, urls, port, secret))
            base = f"http://127.0.0.1:{port}"
            gateway = await procs.start_gateway_process(workdir, config_path, base)
            children.append(gateway)
            headers = {"Authorization": secret, "Content-Type": "application/json"}
            yield Env(base + HOOK_PATH, headers, gateway, children[:-1])
        finally:
            for child in reversed(children):
                await child.stop()


async def measure(
    env: Env,
    groups: Sequence[LoadGroup],
    warmup: float,
    duration: float,
    done: asyncio.Event | None = None,
) -> Window:
    """Run `groups` together: warm up, measure for `duration` (or until `done`), then drain."""
    stop = asyncio.Event()
    async with client_session(sum(g.concurrency for g in groups)) as session:
        tasks = [asyncio.create_task(g.run(session, stop)) for g in groups]
        try:
            await asyncio.sleep(warmup)
            gw0, emu0 = procs.cpu_seconds(env.gateway.pid), _emulator_cpu(env)
            own0, start = procs.own_cpu_seconds(), perf_counter()
            for group in groups:
                group.window_start = start
            if done is None:
                await asyncio.sleep(duration)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), duration)
            end = perf_counter()
            gw1, emu1, own1 = (
                procs.cpu_seconds(env.gateway.pid),
                _emulator_cpu(env),
                procs.own_cpu_seconds(),
            )
            hwm, rss = procs.memory_mb(env.gateway.pid)
        finally:
            stop.set()
            _, pending = await asyncio.wait(tasks, timeout=20)
            for task in pending:
                task.cancel()
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    return Window(start, end, gw1 - gw0, emu1 - emu0, own1 - own0, hwm, rss)


async def verdict_cache_counts(env: Env) -> tuple[int | None, int | None]:
    """Verdict-cache hits and misses from the gateway's /metrics (None when it has no cache)."""
    counts: dict[str, int] = {}
    url = env.url.removesuffix(HOOK_PATH) + "/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("gateway_cache_requests_total{") and 'cache="verdict"' in line:
            result = line.partition('result="')[2].partition('"')[0]
            counts[result] = int(float(line.rpartition(" ")[2]))
    return counts.get("hit"), counts.get("miss")


def _emulator_cpu(env: Env) -> float:
    return sum(procs.cpu_seconds(child.pid) for child in env.emulators)


def make_row(
    name: str, group: LoadGroup, latency_ms: int, window: Window, answers_all: int | None = None
) -> Row:
    """Figures of one group over the window (gateway CPU shared by all answers in the window)."""
    lat = sorted(group.window(window.start, window.end))
    seconds = window.seconds
    throughput = len(lat) / seconds
    p50, p95, p99 = (percentile(lat, q) * 1000 for q in (0.50, 0.95, 0.99))
    total = answers_all if answers_all is not None else len(lat)
    return Row(
        scenario=name,
        concurrency=group.concurrency,
        latency_ms=latency_ms,
        seconds=round(seconds, 2),
        answers=len(lat),
        throughput=throughput,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        p99_overhead_ms=p99 - latency_ms,
        efficiency=throughput / (group.concurrency / (latency_ms / 1000)),
        gateway_cpu_ms_per_verification=window.gateway_cpu / total * 1000 if total else math.nan,
        gateway_cpu_percent=window.gateway_cpu / seconds * 100,
        emulator_cpu_percent=window.emulator_cpu / seconds * 100,
        loadgen_cpu_percent=window.loadgen_cpu / seconds * 100,
        gateway_hwm_mb=window.hwm_mb,
        gateway_rss_mb=window.rss_mb,
        non_200=group.non_200,
        wrong=group.wrong,
    )


def _fresh_requests(concurrency: int, latency_ms: int, seconds: float) -> int:
    """The most fresh requests C workers can send in `seconds` (each takes at least L)."""
    return math.ceil(concurrency / (latency_ms / 1000) * seconds) + 2 * concurrency


def _correct(row: Row) -> None:
    row.targets["non-200 = 0"] = row.non_200 == 0
    row.targets["wrong = 0"] = row.wrong == 0


async def fresh_scenario(
    name: str, concurrency: int, latency_ms: int, warmup: float, duration: float
) -> Row:
    """(a)/(b): C workers, every request a user never used before in the run."""
    normal, mfa = users_needed(_fresh_requests(concurrency, latency_ms, warmup + duration + 2))
    spec = EmulatorSpec("entra", "contoso.com", normal, mfa, latency_ms)
    async with environment([spec]) as env:
        group = LoadGroup(name, env.url, env.headers, concurrency, FreshUsers(spec.domain))
        window = await measure(env, [group], warmup, duration)
    row = make_row(name, group, latency_ms, window)
    row.notes["users_in_directory"] = normal + mfa
    if name == "a":
        row.targets["efficiency >= 0.9"] = row.efficiency >= 0.9
        row.targets["p99 overhead <= 30 ms"] = row.p99_overhead_ms <= 30
        row.targets["gateway CPU <= 1 ms/verification"] = row.gateway_cpu_ms_per_verification <= 1
    else:
        row.targets["efficiency >= 0.8"] = row.efficiency >= 0.8
    _correct(row)
    return row


async def cache_scenario(warmup: float, duration: float) -> Row:
    """(c): the same few (user, password) pairs over and over, inside any verdict-cache TTL."""
    concurrency, latency_ms = 75, 150
    hot = HotUsers("contoso.com", concurrency)
    spec = EmulatorSpec("entra", "contoso.com", hot.size, hot.size, latency_ms)
    async with environment([spec]) as env:
        group = LoadGroup("c", env.url, env.headers, concurrency, hot)
        window = await measure(env, [group], warmup, duration)
        hits, misses = await verdict_cache_counts(env)
    row = make_row("c", group, latency_ms, window)
    row.notes["distinct_pairs"] = hot.size
    if hits is None:
        row.notes["verdict_cache"] = "no cache metric: this measured the uncached path"
    else:
        row.notes |= {"verdict_cache_hits": hits, "verdict_cache_misses": misses}
    row.targets[">= 3000 answers/s"] = row.throughput >= 3000
    _correct(row)
    return row


async def long_scenario(warmup: float, users: int, cap: float) -> Row:
    """(d): `users` distinct users at L=20 ms; gateway RSS after users/10 and after all of them."""
    concurrency, latency_ms = 75, 20
    normal, mfa = users_needed(users)
    spec = EmulatorSpec("entra", "contoso.com", normal, mfa, latency_ms)
    checkpoint = max(1, users // 10)
    rss: dict[int, float] = {}
    done = asyncio.Event()
    async with environment([spec]) as env:
        pid = env.gateway.pid

        def on_answer(group: LoadGroup) -> None:
            if group.answered in (checkpoint, users):
                rss[group.answered] = procs.memory_mb(pid)[1]
            if group.answered >= users:
                done.set()

        source = FreshUsers(spec.domain, limit=users)
        group = LoadGroup("d", env.url, env.headers, concurrency, source, on_answer=on_answer)
        window = await measure(env, [group], warmup, cap, done)
    row = make_row("d", group, latency_ms, window)
    row.notes |= {
        "distinct_users": group.answered,
        "checkpoint_users": checkpoint,
        "rss_mb_at_checkpoint": rss.get(checkpoint),
        "rss_mb_at_end": rss.get(users),
        "completed": group.answered >= users,
    }
    if checkpoint in rss and users in rss:
        growth = rss[users] - rss[checkpoint]
        row.notes["rss_growth_mb"] = growth
        row.targets[f"RSS growth < 20 MB ({checkpoint}->{users} users)"] = growth < 20
    else:
        row.targets[f"reached {users} users within {cap:.0f} s"] = False
    _correct(row)
    return row


async def two_sources_scenario(warmup: float, duration: float) -> list[Row]:
    """(e): fast source alone, then fast together with a slow source; the fast one must not suffer."""
    concurrency, fast_ms, slow_ms = 75, 150, 2000
    warmup = max(warmup, 3.0)
    fast_requests = 2 * _fresh_requests(concurrency, fast_ms, warmup + duration + 2)
    slow_requests = _fresh_requests(concurrency, slow_ms, warmup + duration + 4)
    fast_spec = EmulatorSpec("fast", "fast.example", *users_needed(fast_requests), fast_ms)
    slow_spec = EmulatorSpec("slow", "slow.example", *users_needed(slow_requests), slow_ms)
    async with environment([fast_spec, slow_spec]) as env:
        fast_users: RequestSource = FreshUsers(fast_spec.domain)
        alone = LoadGroup("e fast alone", env.url, env.headers, concurrency, fast_users)
        window_alone = await measure(env, [alone], warmup, duration)
        fast = LoadGroup("e fast+slow", env.url, env.headers, concurrency, fast_users)
        slow = LoadGroup("e slow", env.url, env.headers, concurrency, FreshUsers(slow_spec.domain))
        window_both = await measure(env, [fast, slow], warmup, duration)
    both_answers = len(fast.window(window_both.start, window_both.end)) + len(
        slow.window(window_both.start, window_both.end)
    )
    rows = [
        make_row("e fast alone", alone, fast_ms, window_alone),
        make_row("e fast +slow", fast, fast_ms, window_both, both_answers),
        make_row("e slow", slow, slow_ms, window_both, both_answers),
    ]
    ratio = rows[1].throughput / rows[0].throughput if rows[0].throughput else math.nan
    rows[1].notes["fast_throughput_ratio_with_slow_vs_alone"] = ratio
    rows[1].targets["fast with slow load within 10% of alone"] = ratio >= 0.9
    for row in rows:
        _correct(row)
    return rows


COLUMNS = (
    ("scenario", "{:<13}", "scenario"),
    ("C", "{:>4}", "concurrency"),
    ("L ms", "{:>5}", "latency_ms"),
    ("secs", "{:>6.1f}", "seconds"),
    ("answers", "{:>7}", "answers"),
    ("ans/s", "{:>7.1f}", "throughput"),
    ("p50", "{:>6.0f}", "p50_ms"),
    ("p95", "{:>6.0f}", "p95_ms"),
    ("p99", "{:>6.0f}", "p99_ms"),
    ("p99-L", "{:>6.0f}", "p99_overhead_ms"),
    ("eff", "{:>5.2f}", "efficiency"),
    ("gwCPU ms/v", "{:>10.2f}", "gateway_cpu_ms_per_verification"),
    ("HWM MB", "{:>7.1f}", "gateway_hwm_mb"),
    ("RSS MB", "{:>7.1f}", "gateway_rss_mb"),
    ("non200", "{:>6}", "non_200"),
    ("wrong", "{:>5}", "wrong"),
)


def header() -> str:
    """The table header line."""
    cells = []
    for title, fmt, _ in COLUMNS:
        width = fmt.split(":")[1].strip("<>}").split(".")[0].rstrip("fd")
        align = "<" if "<" in fmt else ">"
        cells.append(f"{title:{align}{width}}")
    return " ".join(cells)


def format_row(row: Row) -> str:
    """One table row, then its CPU shares and PASS/FAIL markers."""
    values = asdict(row)
    line = " ".join(fmt.format(values[key]) for _, fmt, key in COLUMNS)
    cpu = (
        f"    cpu (% of one core): gateway {row.gateway_cpu_percent:.0f}, "
        f"emulator(s) {row.emulator_cpu_percent:.0f}, load generator {row.loadgen_cpu_percent:.0f}"
    )
    lines = [line, cpu]
    notes = {k: v for k, v in row.notes.items() if v is not None}
    if notes:
        lines.append("    " + ", ".join(f"{k}={_short(v)}" for k, v in notes.items()))
    if row.targets:
        marks = [f"[{'PASS' if ok else 'FAIL'}] {name}" for name, ok in row.targets.items()]
        lines.append("    " + "  ".join(marks))
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


async def run(args: argparse.Namespace) -> list[Row]:
    """Run the chosen scenarios in order, printing each row as it is measured."""
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    rows: list[Row] = []
    print(header(), flush=True)
    for name in chosen:
        duration = args.duration if args.duration is not None else DEFAULT_DURATION.get(name)
        print(f"# running ({name}) ...", file=sys.stderr, flush=True)
        if name in ("a", "b"):
            new = [
                await fresh_scenario(name, 75 if name == "a" else 200, 150, args.warmup, duration)
            ]
        elif name == "c":
            new = [await cache_scenario(args.warmup, duration)]
        elif name == "d":
            cap = args.duration if args.duration is not None else D_CAP_SECONDS
            new = [await long_scenario(args.warmup, args.d_users, cap)]
        else:
            new = await two_sources_scenario(args.warmup, duration)
        for row in new:
            print(format_row(row), flush=True)
        rows.extend(new)
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument(
        "--duration",
        type=float,
        help="measured seconds per run (default: a/b 20, c 15, e 15 per phase; "
        f"d runs until its users are done, at most {D_CAP_SECONDS:.0f} s, or this many)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--d-users", type=int, default=100_000, help="distinct users of scenario d")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--redis", metavar="URL", help="use cache.backend redis at URL (default: memory)"
    )
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print the machine, run, print rows, write JSON; children never outlive it."""
    args = _parser().parse_args(argv)
    global REDIS_URL
    REDIS_URL = args.redis
    machine = procs.machine()
    print(
        f"machine: nproc={machine['nproc']} cpu={machine['cpu_model']!r} "
        f"python={machine['python']} loadavg={machine['loadavg_at_start']}"
    )
    print("(emulator, gateway and load generator share these cores; other load adds noise)")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rows = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.kill_all()
    failed = [f"{r.scenario}: {name}" for r in rows for name, ok in r.targets.items() if not ok]
    passed = sum(len(r.targets) for r in rows) - len(failed)
    print(f"targets: {passed} PASS, {len(failed)} FAIL" + "".join(f"\n  FAIL {f}" for f in failed))
    if args.json is not None:
        payload = {"machine": machine, "results": [asdict(r) for r in rows]}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
