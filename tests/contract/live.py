"""A gateway (every endpoint on) and the Entra emulator on real sockets, in a background thread.

Synchronous clients (schemathesis sends with `requests`) drive it from the test's thread; the
gateway keeps its own event loop in another thread, as it would in its own process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml
from aiohttp import web

from emulators.entra import load_directory, start_emulator
from gateway.app import create_app
from gateway.config import load_config
from tests.conftest import USERS_FILE
from tests.contract.gateway_config import full_config
from tests.redis_server import free_port

_START_SECONDS = 60.0


@dataclass(frozen=True)
class LiveGateway:
    """Where the running gateway answers."""

    url: str  # the hook port: hooks, probes, metrics
    admin_url: str  # the admin listener


@contextmanager
def live_gateway(workdir: Path) -> Iterator[LiveGateway]:
    """Start emulator and gateway, wait for /readyz 200 (sources started, ledger open), stop both."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    failure: list[BaseException] = []
    urls: list[LiveGateway] = []

    async def serve() -> None:
        emulator = await start_emulator(load_directory(USERS_FILE))
        try:
            port, admin_port = free_port(), free_port()
            path = workdir / "gateway.yaml"
            data = full_config(
                emulator.url, workdir / "ledger.db", port=port, admin_port=admin_port
            )
            path.write_text(yaml.safe_dump(data), encoding="utf-8")
            # From the file, so that POST /admin/reload has a file to read again.
            app = create_app(load_config(path, env={}), config_path=str(path))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", port).start()
                urls.append(
                    LiveGateway(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}")
                )
                started.set()
                await stop.wait()
            finally:
                await runner.cleanup()
        finally:
            await emulator.close()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            failure.append(err)
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=run, name="live-gateway", daemon=True)
    thread.start()
    try:
        started.wait(_START_SECONDS)
        if failure or not urls:
            raise AssertionError(f"the gateway did not start: {failure!r}")
        gateway = urls[0]
        _wait_ready(gateway.url)
        yield gateway
    finally:
        if loop.is_running():
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        assert not thread.is_alive(), "the gateway did not stop"
        if failure:
            raise failure[0]


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError("the gateway's /readyz did not answer 200")
