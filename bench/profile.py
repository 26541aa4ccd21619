"""Where a hook server's CPU goes under scenario (a)'s load: py-spy samples, grouped by cost centre.

    python -m bench.profile                       # the gateway, 20 s at C=75, L=150 ms
    python -m bench.profile --server floor        # the same load on a reference (peer, floor)
    python -m bench.profile --raw /tmp/gw.txt     # also keep py-spy's collapsed stacks

py-spy (`pip install py-spy`) attaches to the server process; reading another process needs
root or ptrace permission. Sampling slows the server a little, so the CPU figure printed beside
the profile is a bit higher than an unprofiled run's; the shares are what the profile is for.
Each sample goes to the first cost centre that matches its stack; msal's code runs in greenlets
(`plugins.sync_bridge`), whose stacks start at the bridged function, so it gets a centre of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import procs
from bench.load import LoadGroup
from bench.run import (
    GATEWAY,
    SERVERS,
    EmulatorSpec,
    _fresh_requests,
    environment,
    format_row,
    make_row,
    measure,
)
from bench.users import FreshUsers, users_needed

_UPSTREAM = (
    "ClientSession._request",
    "ClientSession.request",
    "_BaseRequestContextManager",
    "ClientResponse.",
)
Stack = list[str]


def _under(stack: Stack, *names: str) -> bool:
    return any(frame.startswith(names) for frame in stack)


def _within(stack: Stack, *parts: str) -> bool:
    return any(part in frame for frame in stack for part in parts)


COST_CENTRES: tuple[tuple[str, Callable[[Stack], bool]], ...] = (
    ("msal, in its greenlet (plus our http_client glue)", lambda s: s[0].startswith(
        ("AzureAdSource._verify_bridged", "_BridgedCall"))),
    ("upstream HTTP request and response (aiohttp client)", lambda s: _within(s, *_UPSTREAM)),
    ("greenlet bridge (run_sync)", lambda s: _under(s, "run_sync")),
    ("gateway service: route, limits, verdict cache, guard, metrics",
     lambda s: _under(s, "PasswordImportService.decide")),
    ("hook: read and parse the body", lambda s: _under(
        s, "read_body", "parse_password_import", "BaseRequest.read", "BaseRequest.json", "loads")),
    ("hook: decision log line (username HMAC)", lambda s: _under(s, "_log_decision")),
    ("hook: auth, metrics, deadline, reply", lambda s: _under(
        s, "handle_password_import", "handle_hook", "_never_5xx_to_okta")),
    ("aiohttp server: parse, dispatch, write", lambda s: _within(
        s, "aiohttp/web_", "aiohttp/http_", "aiohttp/base_protocol", "aiohttp/streams")),
    ("aiohttp client: connection callbacks", lambda s: _within(
        s, "aiohttp/client", "aiohttp/connector")),
    ("event loop and everything else", lambda s: True),
)  # fmt: skip


def cost_centres(raw: str) -> tuple[int, collections.Counter[str]]:
    """Samples per cost centre from py-spy's `--format raw` output (collapsed stacks)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rstrip().rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        stack = [frame for frame in stack_text.split(";") if frame]
        if not stack:
            counts["event loop and everything else"] += count
            continue
        name = next(name for name, matches in COST_CENTRES if matches(stack))
        counts[name] += count
    return total, counts


def top_frames(raw: str, limit: int) -> list[tuple[str, int]]:
    """The functions with the most samples of their own (leaf frames), file lines folded."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack_text, _, count_text = line.rstrip().rpartition(" ")
        if count_text.isdigit() and stack_text:
            leaf = stack_text.split(";")[-1]
            name, _, where = leaf.partition(" (")
            counts[f"{name} ({where.rpartition(':')[0].rsplit('site-packages/', 1)[-1]})"] += int(
                count_text
            )
    return counts.most_common(limit)


async def profile(server: str, seconds: float, rate: int, raw_path: Path | None) -> None:
    """Run (a)'s load on `server`, sample it with py-spy, print the row and the cost centres."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    warmup = 3.0
    normal, mfa = users_needed(_fresh_requests(75, 150, warmup + seconds + 4))
    spec = EmulatorSpec("entra", "contoso.com", normal, mfa, 150)
    with tempfile.TemporaryDirectory(prefix="gateway-profile-") as tmp:
        out = raw_path or Path(tmp) / "stacks.txt"
        async with environment([spec], server) as env:
            group = LoadGroup("a", env.url, env.headers, 75, FreshUsers(spec.domain))

            async def sample() -> None:
                await asyncio.sleep(warmup)
                args = ["record", "-p", str(env.server.pid), "-d", str(round(seconds))]
                args += ["-r", str(rate), "--nonblocking", "--format", "raw", "-o", str(out)]
                spy = await asyncio.create_subprocess_exec(
                    py_spy, *args, stdout=asyncio.subprocess.DEVNULL
                )
                await spy.wait()

            sampler = asyncio.create_task(sample())
            window = await measure(env, [group], warmup, seconds)
            await sampler
        raw = out.read_text(encoding="utf-8") if out.exists() else ""
    print(format_row(make_row("a", group, 150, window, server=server)))
    total, counts = cost_centres(raw)
    if not total:
        raise SystemExit("py-spy recorded nothing (it needs root or ptrace permission)")
    print(f"{server}: {total} samples at {rate}/s; share of the server's CPU by cost centre")
    for name, _ in COST_CENTRES:
        if counts[name]:
            print(f"  {100 * counts[name] / total:5.1f}%  {name}")
    print("functions with the most samples of their own:")
    for name, count in top_frames(raw, 15):
        print(f"  {100 * count / total:5.1f}%  {name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, profile, and make sure no child outlives this process."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--server", choices=SERVERS, default=GATEWAY)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds sampled")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--raw", type=Path, help="also write py-spy's collapsed stacks here")
    args = parser.parse_args(argv)
    try:
        asyncio.run(profile(args.server, args.seconds, args.rate, args.raw))
    except KeyboardInterrupt:
        return 130
    finally:
        procs.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
