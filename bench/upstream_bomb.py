"""What a hostile upstream costs the gateway now: a token answer that is a gzip bomb, and Graph pages.

    python -m bench.upstream_bomb

One process: the Entra emulator behind a hostile proxy (tests/hostile_upstream.py), and the
gateway serving the hook on a real socket. It prints the bombed sign-in's time, the /healthz
latency while it runs (polled every 20 ms), the peak RSS growth (VmHWM before and after), and
the size of a Graph page of 999 users with the import's default attributes, from the emulator
(the figure the `max_response_bytes` default of azure_ad sources is chosen against).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from emulators.demo import okta_payload
from emulators.entra import EmulatedDirectory, load_directory, start_emulator
from gateway.app import create_app
from gateway.config import parse_config
from gateway.migrate.mapping import graph_attributes
from gateway.migrate.settings import MigrationSourceConfig
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, USERS_FILE, gateway_yaml
from tests.hostile_upstream import GIB, bomb, hostile

ALICE = "alice@contoso.com"


def vm_hwm_kib() -> int:
    """Peak resident set size of this process so far (kB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def bombed_sign_in(inflated: int) -> None:
    """Time one sign-in answered by a gzip bomb of `inflated` bytes, /healthz polled meanwhile."""
    emulator = await start_emulator(load_directory(USERS_FILE))
    async with hostile(forward_to=emulator.url) as proxy:
        config = parse_config(gateway_yaml(proxy.url, budget=2.5), env={})
        runner = web.AppRunner(create_app(config))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession(headers={"Authorization": HOOK_SECRET}) as http:

            async def hook(username: str, password: str) -> str:
                async with http.post(base + HOOK_PATH, json=okta_payload(username, password)) as r:
                    body = await r.json()
                return str(body["commands"][0]["value"]["credential"])

            await hook("carol@contoso.com", "Wrong#Pass-0000")  # discovery and realm warm
            proxy.rules["*/oauth2/v2.0/token"] = bomb(inflated)
            before = vm_hwm_kib()
            health: list[float] = []
            done = asyncio.Event()

            async def probe() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    async with http.get(base + "/healthz") as r:
                        await r.read()
                    health.append(time.perf_counter() - started)
                    await asyncio.sleep(0.02)

            prober = asyncio.create_task(probe())
            started = time.perf_counter()
            answer = await hook(ALICE, USERS[ALICE])
            elapsed = time.perf_counter() - started
            done.set()
            await prober
            after = vm_hwm_kib()
        await runner.cleanup()
    await emulator.close()
    health.sort()
    print(
        f"sign-in answered by a bomb inflating to {inflated // 2**20} MiB: {answer} in {elapsed * 1000:.0f} ms"
    )
    print(
        f"/healthz during it: {len(health)} probes, median {health[len(health) // 2] * 1000:.1f} ms,"
        f" max {health[-1] * 1000:.1f} ms"
    )
    print(f"peak RSS (VmHWM): {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
          f"(+{(after - before) / 1024:.1f} MiB)")  # fmt: skip


async def graph_page_size() -> None:
    """Bytes of one Graph page of 999 users with the import's default attributes."""
    directory = EmulatedDirectory.with_generated_users(999)
    emulator = await start_emulator(directory)
    form = {
        "grant_type": "client_credentials",
        "client_id": directory.client_id,
        "client_secret": directory.client_secret,
        "scope": "https://graph.microsoft.com/.default",
    }
    select = ",".join(graph_attributes(MigrationSourceConfig()))
    query = urlencode({"$select": select, "$top": "999"})
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.url}/{directory.tenant_id}/oauth2/v2.0/token"
        async with http.post(url, data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
        async with http.get(f"{emulator.url}/v1.0/users?{query}", headers=headers) as response:
            body = await response.read()
    await emulator.close()
    print(f"Graph page of 999 users ($select={select}): {len(body) / 1024:.0f} KiB")


async def main() -> None:
    """Both measurements."""
    await graph_page_size()
    await bombed_sign_in(2 * GIB)  # about 2 MB as sent: over the 1 MiB cap before inflating
    await bombed_sign_in(256 * 2**20)  # about 260 KB as sent: stopped by the inflated cap


if __name__ == "__main__":
    asyncio.run(main())
