"""A migration rehearsal on one machine: Entra emulator -> import -> gateway -> Okta emulator.

Users are imported with `gateway migrate import` (a subprocess, as an admin runs it), the
gateway serves the password hook and the event hook on a real socket with the ledger, both
hooks are registered in the Okta emulator, and some users sign in through the emulator with
their right password, which calls the gateway's password hook as Okta does. The ground truth
is what the emulator's users say: `credentials.provider.type`.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from emulators.entra import EmulatedDirectory, RunningEmulator, start_emulator
from emulators.okta import DEFAULT_API_TOKEN, RunningOktaEmulator, start_okta_emulator
from gateway.app import create_app
from gateway.config import load_config
from gateway.okta_api import (
    OktaApiClient,
    SswsToken,
    event_hook_body,
    http_channel,
    password_import_hook_body,
)
from gateway.serve_ledger import SERVE_LEDGER
from tests.conftest import HOOK_SECRET

EVENT_SECRET = "Basic ZXZlbnRzOnJlaGVhcnNhbC1ldmVudC1zZWNyZXQ="
PASSWORD = "Pw-{i}!"
SOURCE = "entra"


@dataclass
class Rehearsal:
    """A finished rehearsal: its config, ledger and the Okta emulator (still running)."""

    config: Path
    ledger: str
    okta: RunningOktaEmulator
    entra: RunningEmulator

    def providers(self) -> Counter[str]:
        """Ground truth: the emulator's users by `credentials.provider.type`."""
        return Counter(user.provider for user in self.okta.emulator.users.values())

    def okta_users(self) -> dict[str, Any]:
        """The emulator's users by login (lower-cased)."""
        return {user.login.lower(): user for user in self.okta.emulator.users.values()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_config(
    path: Path, entra: RunningEmulator, okta: RunningOktaEmulator, ledger: str, port: int
) -> Path:
    """The gateway's config: the Entra source, Okta API, the ledger and the event hook."""
    directory = entra.emulator.directory
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "okta": {
            "auth": {"secrets": [HOOK_SECRET]},
            "org_url": okta.url,
            "hook_url": f"http://127.0.0.1:{port}/okta/password-import",
            "api": {"token": DEFAULT_API_TOKEN},
        },
        "sources": [
            {
                "name": SOURCE,
                "type": "azure_ad",
                "tenant_id": directory.tenant_id,
                "client_id": directory.client_id,
                "client_secret": directory.client_secret,
                "authority": entra.url,
            }
        ],
        "routes": [{"match": {"domains": ["contoso.com"]}, "sources": [SOURCE]}],
        "logging": {"level": "warning"},
        "migration": {
            "ledger": ledger,
            "sources": {SOURCE: {}},
            "event_hook": {"path": "/okta/events", "auth": {"secrets": [EVENT_SECRET]}},
        },
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def gateway_cli(*argv: str) -> tuple[int, str, str]:
    """`python -m gateway ARGV...` as a subprocess: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _register_hooks(okta: RunningOktaEmulator, port: int) -> None:
    """The password import hook and the event hook, pointed at the gateway, active, verified."""
    async with OktaApiClient(okta.url, SswsToken(DEFAULT_API_TOKEN)) as client:
        inline = await client.create_inline_hook(
            password_import_hook_body(
                "gateway",
                http_channel(
                    f"http://127.0.0.1:{port}/okta/password-import",
                    auth_header="Authorization",
                    auth_value=HOOK_SECRET,
                ),
            )
        )
        if inline.get("status") != "ACTIVE":
            await client.activate_inline_hook(inline["id"])
        events = await client.create_event_hook(
            event_hook_body(
                "gateway events",
                f"http://127.0.0.1:{port}/okta/events",
                ["user.import.password"],
                auth_header="Authorization",
                auth_value=EVENT_SECRET,
            )
        )
        verified = await client.verify_event_hook(events["id"])
        assert verified.get("verificationStatus") == "VERIFIED", verified


async def sign_in(okta: RunningOktaEmulator, numbers: Sequence[int]) -> Counter[str]:
    """Sign `user{i}@contoso.com` in with the right password; results by `result`."""
    slots = asyncio.Semaphore(25)
    results: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            async with (
                slots,
                session.post(
                    f"{okta.url}/_emulator/users/user{i}@contoso.com/sign-in",
                    json={"password": PASSWORD.format(i=i)},
                ) as resp,
            ):
                assert resp.status == 200, await resp.text()
                results[(await resp.json())["result"]] += 1

        await asyncio.gather(*(one(i) for i in numbers))
    return results


async def _control(okta: RunningOktaEmulator, method: str, path: str, body: Any) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{okta.url}{path}", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


@asynccontextmanager
async def rehearse(
    tmp_path: Path, *, users: int, sign_ins: int, drop_events: bool = False
) -> AsyncIterator[Rehearsal]:
    """Import `users`, sign the first `sign_ins` in; with `drop_events` Okta delivers no event."""
    entra = await start_emulator(EmulatedDirectory.with_generated_users(users))
    okta = await start_okta_emulator()
    okta.emulator.set_limits({bucket: None for bucket in okta.emulator.limiter.limits})
    try:
        port = _free_port()
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
        config = write_config(tmp_path / "config.yaml", entra, okta, ledger, port)
        code, out, err = await gateway_cli(
            "migrate", "import", "-c", str(config), "--source", SOURCE
        )
        assert code == 0, err
        assert f"created={users} " in out.splitlines()[-1], out
        app = create_app(load_config(config))
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            # Okta's deliveries get 503 until the ledger is open (in the background): wait.
            async with asyncio.timeout(60):
                await app[SERVE_LEDGER].wait_open()
            await _register_hooks(okta, port)
            if drop_events:
                await _control(
                    okta,
                    "PUT",
                    "/_emulator/events/drop",
                    {"rate": 1.0, "event_types": ["user.import.password"]},
                )
            # Events wait until the sign-ins are done: all in one event loop, a delivery racing
            # 25 concurrent sign-ins can miss Okta's 3 s timeout, and this rehearsal is about
            # the events arriving (the dropped case is `drop_events`).
            await _control(okta, "POST", "/_emulator/events/pause", None)
            results = await sign_in(okta, range(sign_ins))
            assert results == Counter({"VERIFIED": sign_ins}), results
            await _control(okta, "POST", "/_emulator/events/resume", None)
            flushed = await _control(okta, "POST", "/_emulator/events/flush", {"timeout": 60})
            assert flushed["pending"] == 0 and not flushed["timed_out"], flushed
        finally:
            await runner.cleanup()  # the decision recorder writes what it holds
        yield Rehearsal(config, ledger, okta, entra)
    finally:
        await okta.close()
        await entra.close()
