"""`make bench` / `python -m bench.run`: the gateway's speed, as ratios to two references.

Every scenario starts the Entra emulator(s) and the server under test in their own processes
(own process groups, killed on exit, Ctrl-C or error), then drives the Okta hook from this
process with exactly C requests in flight for a fixed window after a warm-up.

Scenario (a), C=75 and L=150 ms with fresh users, runs three servers with the same load, in
interleaved rounds (gateway, peer, floor, gateway, peer, floor, ...):
  gateway  `gateway serve`, default configuration (logging at warning: see --log-level);
  peer     a typical hook sample: aiohttp + msal in a thread pool, msal's defaults (bench.peer);
  floor    one aiohttp POST to the token endpoint per hook call, nothing else (bench.floor).
Each figure of (a) is printed with its ratio to the peer and to the floor (median of the
per-round ratios), and (a)'s targets are ratios to the floor, which travel between machines.
Scenarios (b)-(e) run the gateway alone against absolute targets (see the README).

Absolute figures are for this machine only, and noisy when anything else runs on it (the load
average at start is printed for that reason). Exit status: 0 when every target is met, 1 when
one is not, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import secrets
import signal
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from types import FrameType
from typing import Any

import aiohttp
import yaml

from bench import procs
from bench.hook_server import HOOK_PATH
from bench.load import LoadGroup, RequestSource, client_session, percentile
from bench.users import FreshUsers, HotUsers, users_needed
from emulators.entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID

SCENARIOS = ("a", "b", "c", "d", "e")
DEFAULT_SECONDS = {"a": 15.0, "b": 20.0, "c": 15.0, "e": 15.0}
D_CAP_SECONDS = 600.0  # scenario d runs until its users are done, at most this long
DEFAULT_ROUNDS = 3
GATEWAY, PEER, FLOOR = "gateway", "peer", "floor"
SERVERS = (GATEWAY, PEER, FLOOR)
# --ledger: (a) also runs the gateway with the migration ledger (SQLite) and the event hook on,
# interleaved with the others, and compares it with the plain gateway: the hook only queues
# its VERIFIED decisions, so latency and CPU must not move.
GATEWAY_LEDGER = "gateway+ledger"
LEDGER = False
LEDGER_RATIO = f"{GATEWAY_LEDGER} / {GATEWAY}"
LEDGER_TARGETS: dict[str, tuple[str, float]] = {
    "cpu_ms_per_verification": ("<=", 1.05),
    "p99_ms": ("<=", 1.05),
}
REFERENCE_MODULES = {PEER: "bench.peer", FLOOR: "bench.floor"}
# (a)'s targets: the gateway's figure divided by the floor's, median over the rounds.
RATIO_TARGETS: dict[str, tuple[str, float]] = {
    "cpu_ms_per_verification": ("<=", 1.15),
    "p99_overhead_ms": ("<=", 1.30),
    "efficiency": (">=", 0.97),
}
REDIS_URL: str | None = None  # --redis: run the gateway with the shared Redis backend
# --log-level: the gateway's logging.level. Warning by default: at info (the gateway's default)
# it writes one hook_decision line per call, which the references have no counterpart for.
LOG_LEVEL = "warning"


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
    """A running server under test (and its emulators) for one scenario."""

    url: str
    headers: dict[str, str]
    server: procs.Child
    emulators: list[procs.Child]
    kind: str = GATEWAY


@dataclass
class Window:
    """The measured window: its bounds and what the processes spent in it."""

    start: float
    end: float
    server_cpu: float
    emulator_cpu: float
    loadgen_cpu: float
    hwm_mb: float
    rss_mb: float
    loadavg: float = math.nan  # 1-minute load average at the end: others' load shows here

    @property
    def seconds(self) -> float:
        """Length of the window."""
        return self.end - self.start


@dataclass
class Row:
    """One table row: one server, one scenario, one round."""

    scenario: str
    server: str
    round: int | None
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
    cpu_ms_per_verification: float
    server_cpu_percent: float
    emulator_cpu_percent: float
    loadgen_cpu_percent: float
    server_hwm_mb: float
    server_rss_mb: float
    non_200: int
    wrong: int
    targets: dict[str, bool] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What the first column shows."""
        if self.round is not None:  # (a): three servers, several rounds
            return f"{self.scenario} {self.server} r{self.round}"
        return self.scenario if self.server == GATEWAY else f"{self.scenario} {self.server}"


@dataclass
class Comparison:
    """(a)'s summary: medians per server, ratios to each reference, the ratio targets."""

    scenario: str
    rounds: int
    medians: dict[str, dict[str, float]]  # server -> figure -> median over rounds
    ratios: dict[str, dict[str, float]]  # reference -> figure -> median of per-round ratios
    round_ratios: dict[str, dict[str, list[float]]]  # reference -> figure -> one per round
    targets: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def servers() -> tuple[str, ...]:
    """The servers of (a), in the order each round runs them."""
    return (GATEWAY, GATEWAY_LEDGER, PEER, FLOOR) if LEDGER else SERVERS


def _gateway_config(
    specs: Sequence[EmulatorSpec],
    urls: Sequence[str],
    port: int,
    secret: str,
    ledger_dir: Path | None = None,
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
        "logging": {"level": LOG_LEVEL, "format": "json"},
    }
    if REDIS_URL is not None:
        config["cache"] = {
            "backend": "redis",
            "url": REDIS_URL,
            "key_prefix": f"bench-{secrets.token_hex(4)}",
            "hmac_secret": secrets.token_hex(16),
        }
    if ledger_dir is not None:
        config["migration"] = {
            "ledger": f"sqlite:///{ledger_dir / 'ledger.db'}",
            "event_hook": {"auth": {"secrets": [secret]}},
        }
    return yaml.safe_dump(config)


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")


@contextlib.asynccontextmanager
async def environment(specs: Sequence[EmulatorSpec], kind: str = GATEWAY) -> AsyncIterator[Env]:
    """Emulator processes, then the server under test for them; all stopped at exit.

    `kind` is the gateway (`gateway serve`, any number of emulators) or a reference (one).
    """
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
            # Every server gets the same headers, so every request is byte-for-byte the same;
            # the references do not check the secret.
            secret = (
                "Basic " + base64.b64encode(b"bench:" + secrets.token_hex(16).encode()).decode()
            )
            headers = {"Authorization": secret, "Content-Type": "application/json"}
            if kind in (GATEWAY, GATEWAY_LEDGER):
                config_path = workdir / "gateway.yaml"
                ledger_dir = workdir if kind == GATEWAY_LEDGER else None
                _write_private(config_path, _gateway_config(specs, urls, port, secret, ledger_dir))
                base = f"http://127.0.0.1:{port}"
                server = await procs.start_gateway_process(workdir, config_path, base)
            else:
                (url,) = urls
                server, base = await procs.start_reference_process(
                    REFERENCE_MODULES[kind], workdir, url, port
                )
            children.append(server)
            yield Env(base + HOOK_PATH, headers, server, children[:-1], kind)
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
            srv0, emu0 = procs.cpu_seconds(env.server.pid), _emulator_cpu(env)
            own0, start = procs.own_cpu_seconds(), perf_counter()
            for group in groups:
                group.window_start = start
            if done is None:
                await asyncio.sleep(duration)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), duration)
            end = perf_counter()
            srv1, emu1, own1 = (
                procs.cpu_seconds(env.server.pid),
                _emulator_cpu(env),
                procs.own_cpu_seconds(),
            )
            hwm, rss = procs.memory_mb(env.server.pid)
            loadavg = os.getloadavg()[0]
        finally:
            stop.set()
            _, pending = await asyncio.wait(tasks, timeout=20)
            for task in pending:
                task.cancel()
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    return Window(start, end, srv1 - srv0, emu1 - emu0, own1 - own0, hwm, rss, loadavg)


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
    name: str,
    group: LoadGroup,
    latency_ms: int,
    window: Window,
    answers_all: int | None = None,
    server: str = GATEWAY,
    round_no: int | None = None,
) -> Row:
    """Figures of one group over the window (server CPU shared by all answers in the window)."""
    lat = sorted(group.window(window.start, window.end))
    seconds = window.seconds
    throughput = len(lat) / seconds
    p50, p95, p99 = (percentile(lat, q) * 1000 for q in (0.50, 0.95, 0.99))
    total = answers_all if answers_all is not None else len(lat)
    return Row(
        scenario=name,
        server=server,
        round=round_no,
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
        cpu_ms_per_verification=window.server_cpu / total * 1000 if total else math.nan,
        server_cpu_percent=window.server_cpu / seconds * 100,
        emulator_cpu_percent=window.emulator_cpu / seconds * 100,
        loadgen_cpu_percent=window.loadgen_cpu / seconds * 100,
        server_hwm_mb=window.hwm_mb,
        server_rss_mb=window.rss_mb,
        non_200=group.non_200,
        wrong=group.wrong,
        notes={"loadavg": round(window.loadavg, 2)},
    )


def _fresh_requests(concurrency: int, latency_ms: int, seconds: float) -> int:
    """The most fresh requests C workers can send in `seconds` (each takes at least L)."""
    return math.ceil(concurrency / (latency_ms / 1000) * seconds) + 2 * concurrency


def _correct(row: Row) -> None:
    row.targets["non-200 = 0"] = row.non_200 == 0
    row.targets["wrong = 0"] = row.wrong == 0


async def fresh_run(
    name: str,
    concurrency: int,
    latency_ms: int,
    warmup: float,
    duration: float,
    server: str = GATEWAY,
    round_no: int | None = None,
) -> Row:
    """One server under C workers, every request a user never used before in the run."""
    normal, mfa = users_needed(_fresh_requests(concurrency, latency_ms, warmup + duration + 2))
    spec = EmulatorSpec("entra", "contoso.com", normal, mfa, latency_ms)
    async with environment([spec], server) as env:
        group = LoadGroup(name, env.url, env.headers, concurrency, FreshUsers(spec.domain))
        window = await measure(env, [group], warmup, duration)
    row = make_row(name, group, latency_ms, window, server=server, round_no=round_no)
    row.notes["users_in_directory"] = normal + mfa
    if group.transport_errors:
        row.notes["transport_errors"] = group.transport_errors
    return row


RATIO_FIGURES = (
    ("answers/s", "throughput", "{:.1f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p95 ms", "p95_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("p99 - L ms", "p99_overhead_ms", "{:.1f}"),
    ("efficiency", "efficiency", "{:.3f}"),
    ("CPU ms/verification", "cpu_ms_per_verification", "{:.2f}"),
    ("CPU % of one core", "server_cpu_percent", "{:.0f}"),
    ("RSS MB", "server_rss_mb", "{:.1f}"),
)


def compare(rows: Sequence[Row], scenario: str) -> Comparison:
    """Medians per server and, per reference, the median of the per-round ratios."""
    by_round: dict[int, dict[str, Row]] = {}
    for row in rows:
        assert row.round is not None
        by_round.setdefault(row.round, {})[row.server] = row
    rounds = [r for _, r in sorted(by_round.items()) if all(s in r for s in servers())]
    medians = {
        server: {key: statistics.median(getattr(r[server], key) for r in rounds)
                 for _, key, _ in RATIO_FIGURES}
        for server in servers()
    }  # fmt: skip
    round_ratios = {
        ref: {key: [_ratio(getattr(r[GATEWAY], key), getattr(r[ref], key)) for r in rounds]
              for _, key, _ in RATIO_FIGURES}
        for ref in (PEER, FLOOR)
    }  # fmt: skip
    ratios = {
        ref: {key: statistics.median(values) for key, values in figures.items()}
        for ref, figures in round_ratios.items()
    }
    if LEDGER:
        round_ratios[LEDGER_RATIO] = {
            key: [_ratio(getattr(r[GATEWAY_LEDGER], key), getattr(r[GATEWAY], key)) for r in rounds]
            for _, key, _ in RATIO_FIGURES
        }
        ratios[LEDGER_RATIO] = {
            key: statistics.median(values) for key, values in round_ratios[LEDGER_RATIO].items()
        }
    comparison = Comparison(scenario, len(rounds), medians, ratios, round_ratios)
    if LEDGER:
        for key, (op, limit) in LEDGER_TARGETS.items():
            value = ratios[LEDGER_RATIO][key]
            met = value <= limit if op == "<=" else value >= limit
            comparison.targets[f"{_title(key)} {op} {limit:.2f}x {GATEWAY} (ledger on)"] = met
    for key, (op, limit) in RATIO_TARGETS.items():
        value = ratios[FLOOR][key]
        met = value <= limit if op == "<=" else value >= limit
        comparison.targets[f"{_title(key)} {op} {limit:.2f}x floor"] = met
    loads = [
        row.notes["loadavg"] for row in rows if not math.isnan(row.notes.get("loadavg", math.nan))
    ]
    cores = len(os.sched_getaffinity(0))
    if loads and statistics.median(loads) > cores:
        comparison.notes.append(
            f"load average {statistics.median(loads):.1f} on {cores} cores (median at the end of "
            "each run): other processes competed for the CPU, which costs the server that needs "
            "more of it most; run again on a quieter machine before trusting the ratios"
        )
    for row in rows:
        if row.server != GATEWAY and (row.non_200 or row.wrong):
            comparison.notes.append(
                f"{row.label}: {row.non_200} non-200 and {row.wrong} wrong answers "
                "(the reference failed some calls; its figures include those answers)"
            )
    return comparison


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference else math.nan


def _title(key: str) -> str:
    return next(title for title, k, _ in RATIO_FIGURES if k == key)


def format_comparison(comparison: Comparison) -> str:
    """Medians, ratios to the peer and the floor, the per-round ratios to the floor, targets."""
    head = (
        f"({comparison.scenario}) median of {comparison.rounds} interleaved rounds "
        f"(gateway, peer, floor); ratios are gateway / reference, median of the per-round ratios"
    )
    columns = (
        f"    {'figure':<21}{'gateway':>10}{'peer':>10}{'floor':>10}{'/ peer':>9}{'/ floor':>9}"
    )
    if LEDGER:
        columns += f"{'ledger':>10}{'/ gw':>9}"
        head += f"; ledger = {GATEWAY_LEDGER}, / gw = {LEDGER_RATIO}"
    lines = [head, columns]
    for title, key, fmt in RATIO_FIGURES:
        values = "".join(f"{fmt.format(comparison.medians[s][key]):>10}" for s in SERVERS)
        ratios = "".join(f"{comparison.ratios[ref][key]:>8.2f}x" for ref in (PEER, FLOOR))
        if LEDGER:  # after the ratios, as the header says
            ledger = comparison.ratios[LEDGER_RATIO][key]
            ratios += f"{fmt.format(comparison.medians[GATEWAY_LEDGER][key]):>10}{ledger:>8.2f}x"
        per_round = " ".join(f"{v:.2f}" for v in comparison.round_ratios[FLOOR][key])
        target = RATIO_TARGETS.get(key)
        mark = f"  target {target[0]} {target[1]:.2f}x" if target else ""
        lines.append(f"    {title:<21}{values}{ratios}   (rounds / floor: {per_round}){mark}")
    lines.extend(f"    note: {note}" for note in comparison.notes)
    marks = [f"[{'PASS' if ok else 'FAIL'}] {name}" for name, ok in comparison.targets.items()]
    lines.append("    " + "  ".join(marks))
    return "\n".join(lines)


async def reference_scenario(
    warmup: float, duration: float, rounds: int, show: Callable[[Row], None]
) -> tuple[list[Row], Comparison]:
    """(a): gateway, peer and floor under the same load, interleaved, `rounds` times."""
    rows: list[Row] = []
    for round_no in range(1, rounds + 1):
        for server in servers():
            print(f"# running (a) {server}, round {round_no}/{rounds} ...", file=sys.stderr)
            row = await fresh_run("a", 75, 150, warmup, duration, server, round_no)
            if server in (GATEWAY, GATEWAY_LEDGER):
                _correct(row)
            show(row)
            rows.append(row)
    return rows, compare(rows, "a")


async def above_cap_scenario(warmup: float, duration: float) -> Row:
    """(b): C=200, above Okta's concurrency cap."""
    row = await fresh_run("b", 200, 150, warmup, duration)
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
        pid = env.server.pid

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
    ("scenario", "{:<16}", "label"),
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
    ("CPU ms/v", "{:>8.2f}", "cpu_ms_per_verification"),
    ("HWM MB", "{:>7.1f}", "server_hwm_mb"),
    ("RSS MB", "{:>7.1f}", "server_rss_mb"),
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
    values = asdict(row) | {"label": row.label}
    line = " ".join(fmt.format(values[key]) for _, fmt, key in COLUMNS)
    cpu = (
        f"    cpu (% of one core): {row.server} {row.server_cpu_percent:.0f}, "
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


def _show(row: Row) -> None:
    print(format_row(row), flush=True)


async def run(args: argparse.Namespace) -> tuple[list[Row], list[Comparison]]:
    """Run the chosen scenarios in order, printing each row as it is measured."""
    rows: list[Row] = []
    comparisons: list[Comparison] = []
    print(header(), flush=True)
    for name in args.scenarios:
        seconds = args.seconds if args.seconds is not None else DEFAULT_SECONDS.get(name, 0.0)
        if name == "a":
            new, comparison = await reference_scenario(args.warmup, seconds, args.rounds, _show)
            rows.extend(new)
            comparisons.append(comparison)
            print(format_comparison(comparison), flush=True)
            continue
        print(f"# running ({name}) ...", file=sys.stderr, flush=True)
        if name == "b":
            new = [await above_cap_scenario(args.warmup, seconds)]
        elif name == "c":
            new = [await cache_scenario(args.warmup, seconds)]
        elif name == "d":
            cap = args.seconds if args.seconds is not None else D_CAP_SECONDS
            new = [await long_scenario(args.warmup, args.d_users, cap)]
        else:
            new = await two_sources_scenario(args.warmup, seconds)
        for row in new:
            _show(row)
        rows.extend(new)
    return rows, comparisons


def _scenario_list(text: str) -> list[str]:
    names = list(SCENARIOS) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SCENARIOS)} or all")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenarios",
        "--scenario",
        type=_scenario_list,
        default=list(SCENARIOS),
        metavar="LIST",
        help="comma-separated scenarios to run, e.g. a or a,c (default: all)",
    )
    parser.add_argument(
        "--seconds",
        "--duration",
        type=float,
        help="measured seconds per run (default: a 15 per server and round, b 20, c 15, "
        f"e 15 per phase; d runs until its users are done, at most {D_CAP_SECONDS:.0f} s, "
        "or this many)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"interleaved rounds of gateway, peer, floor in (a) (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--d-users", type=int, default=100_000, help="distinct users of scenario d")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--redis", metavar="URL", help="run the gateway with cache.backend redis at URL"
    )
    parser.add_argument(
        "--ledger",
        action="store_true",
        help=f"(a) also runs {GATEWAY_LEDGER!r}: the gateway with migration.ledger (SQLite) "
        f"and the event hook, compared with the plain gateway (targets <= 1.05x)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=LOG_LEVEL,
        help="the gateway's logging.level (default warning; info writes the per-call "
        "hook_decision line)",
    )
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print the machine, run, print rows, write JSON; children never outlive it."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    global REDIS_URL, LOG_LEVEL, LEDGER
    REDIS_URL, LOG_LEVEL, LEDGER = args.redis, args.log_level, args.ledger
    machine = procs.machine()
    print(
        f"machine: nproc={machine['nproc']} cpu={machine['cpu_model']!r} "
        f"python={machine['python']} loadavg={machine['loadavg_at_start']}"
    )
    print(
        "(emulator, server under test and load generator share these cores; other load adds noise)"
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rows, comparisons = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.kill_all()
    failed = [f"{r.label}: {name}" for r in rows for name, ok in r.targets.items() if not ok]
    failed += [
        f"({c.scenario}) {name}" for c in comparisons for name, ok in c.targets.items() if not ok
    ]
    total = sum(len(r.targets) for r in rows) + sum(len(c.targets) for c in comparisons)
    print(
        f"targets: {total - len(failed)} PASS, {len(failed)} FAIL"
        + "".join(f"\n  FAIL {f}" for f in failed)
    )
    if args.json is not None:
        payload = {
            "machine": machine,
            "results": [asdict(r) for r in rows],
            "comparisons": [asdict(c) for c in comparisons],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
