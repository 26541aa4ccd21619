"""Reloads under a steady load: a real `gateway serve`, 50 concurrent hook calls, three reloads.

Add a second Entra source with a route (`gateway reload -c`, through the admin listener), remove
it again (SIGHUP), then offer a broken file (`POST /admin/reload`): not one call may fail, get a
non-200 answer or lose its connection, and the reload metrics must tell what happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import yaml

from emulators.demo import okta_payload
from emulators.entra import RunningEmulator
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, credential
from tests.redis_server import free_port
from tests.test_redis import _GatewayProcess, _hook
from tests.test_reload import ADMIN_SECRET, NINA, ConfigFile, northwind, reload

__all__ = ["northwind"]  # the fixture, shared with tests/test_reload.py

CONCURRENCY = 50
LOAD_USERS = ["alice@contoso.com", "zoë@contoso.com", "kate@contoso.com", "iris@contoso.com"]


class SteadyLoad:
    """CONCURRENCY workers sending hook calls back to back over kept-alive connections."""

    def __init__(self, url: str) -> None:
        self.url = url + HOOK_PATH
        self.outcomes: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        self._http = aiohttp.ClientSession(connector=connector)
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(CONCURRENCY)]

    async def _worker(self, index: int) -> None:
        assert self._http is not None
        n = index
        while not self._stop.is_set():
            user = LOAD_USERS[n % len(LOAD_USERS)]
            n += 1
            try:
                async with self._http.post(
                    self.url,
                    json=okta_payload(user, USERS[user]),
                    headers={"Authorization": HOOK_SECRET},
                ) as response:
                    body = await response.json()
                    if response.status != 200:
                        self.outcomes[f"http_{response.status}"] += 1
                    else:
                        self.outcomes[credential(body)] += 1
            except (aiohttp.ClientError, OSError) as err:
                self.outcomes[type(err).__name__] += 1

    async def stop(self) -> Counter[str]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._http is not None:
            await self._http.close()
        return self.outcomes


async def _metrics(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
    samples = {}
    for line in text.splitlines():
        if line.startswith("gateway_config"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def _wait_for(url: str, sample: str, value: float) -> dict[str, float]:
    for _ in range(100):
        samples = await _metrics(url)
        if samples.get(sample) == value:
            return samples
        await asyncio.sleep(0.1)
    raise AssertionError(f"{sample} never reached {value}: {samples}")


async def test_add_remove_and_refuse_sources_under_load(
    entra: RunningEmulator, northwind: RunningEmulator, tmp_path: Path
) -> None:
    entra.emulator.set_fault(mode="none", latency_ms=20)
    config = ConfigFile(
        tmp_path / "config.yaml",
        entra.url,
        extra={"cache": {"verified_ttl_seconds": 0}},  # every call reaches the emulator
    )
    port = free_port()
    config.data["server"]["port"] = port
    config.data["server"]["pid_file"] = str(tmp_path / "gateway.pid")
    config.data["logging"]["level"] = "warning"
    config.write()
    gateway = _GatewayProcess(config.path, port)
    await gateway.start()
    load = SteadyLoad(gateway.url)
    try:
        await load.start()
        await asyncio.sleep(1.0)

        # 1. Add a source and its route; reload through the CLI (admin listener).
        config.add_northwind(northwind.url)
        config.write()
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "reload", "-c", str(config.path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await cli.communicate()
        assert cli.returncode == 0, (out, err)
        assert b'"added": [\n    "northwind"' in out
        assert await _hook(gateway.url, NINA, "Nina#Pass-2468") == "VERIFIED"
        await asyncio.sleep(0.5)

        # 2. Remove it again; reload with SIGHUP to the pid in server.pid_file.
        config.data["sources"] = config.data["sources"][:1]
        config.data["routes"] = config.data["routes"][:1]
        config.write()
        second_hash = config.digest
        pid = int((tmp_path / "gateway.pid").read_text(encoding="ascii"))
        assert gateway.process is not None and pid == gateway.process.pid
        os.kill(pid, signal.SIGHUP)
        await _wait_for(gateway.url, 'gateway_config_reload_total{result="success"}', 2)
        assert await _hook(gateway.url, NINA, "Nina#Pass-2468") == "UNVERIFIED"  # no route
        await asyncio.sleep(0.5)

        # 3. A broken file: refused, the running config stays.
        broken = yaml.safe_load(config.path.read_text(encoding="utf-8"))
        broken["rate_limits"] = {"per_username": {"failures": "many"}}
        config.write(yaml.safe_dump(broken, allow_unicode=True))
        status, answer = await reload(config, ADMIN_SECRET)
        assert (status, answer["result"]) == (422, "failure")
        assert any("rate_limits.per_username" in p for p in answer["problems"])
        await asyncio.sleep(1.0)
    finally:
        outcomes = await load.stop()
        samples = await _metrics(gateway.url)
        await gateway.stop()

    print(f"\nsteady load during three reloads: {dict(outcomes)}")
    assert set(outcomes) == {"VERIFIED"}, outcomes
    assert outcomes["VERIFIED"] > 200
    assert samples['gateway_config_reload_total{result="success"}'] == 2
    assert samples['gateway_config_reload_total{result="failure"}'] == 1
    assert samples["gateway_config_last_reload_successful"] == 0
    assert samples[f'gateway_config_info{{hash="{second_hash}"}}'] == 1
    assert [k for k in samples if k.startswith("gateway_config_info")] == [
        f'gateway_config_info{{hash="{second_hash}"}}'
    ]
