"""`make demo`: the bundled Entra emulator plus the gateway, and two hook calls to show the answers.

Everything runs on 127.0.0.1; nothing reaches Microsoft or Okta.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.config import parse_config
from gateway.emulators.entra import load_directory, start_emulator
from gateway.logs import configure_logging

DEMO_USERS = Path(__file__).parent / "emulators" / "demo_users.yaml"
DEMO_USER = "alice@contoso.com"
HOOK_SECRET = "Basic " + base64.b64encode(b"okta:demo-hook-secret").decode()

CONFIG_TEMPLATE = """
server: {{host: 127.0.0.1, port: {port}}}
okta:
  hook_path: /okta/password-import
  auth: {{header: Authorization, secrets: ["{secret}"]}}
budget_seconds: 2.5
sources:
  - name: entra
    type: azure_ad
    tenant_id: {tenant}
    client_id: {client_id}
    client_secret: {client_secret}
    authority: {authority}      # the emulator; production uses https://login.microsoftonline.com
routes:
  - match: {{domains: [contoso.com, fabrikam.com]}}
    sources: [entra]
logging: {{format: text, level: info}}
"""


def okta_payload(username: str, password: str) -> dict[str, Any]:
    """The documentation payload of Okta's password import hook (Identity Engine variant)."""
    return {
        "eventId": "3o9jBzq1SmOGmmsDsqyyeQ",
        "eventTime": "2020-01-17T21:23:56.000Z",
        "eventType": "com.okta.user.credential.password.import",
        "eventTypeVersion": "1.0",
        "contentType": "application/json",
        "cloudEventVersion": "0.1",
        "source": "https://example.okta.com/api/v1/inlineHooks/cbl2ad6phv9fsPLcF0g7",
        "data": {
            "context": {
                "request": {
                    "id": "XiIl6wn7005Rr@fjYqeC7CCDBxw",
                    "method": "POST",
                    "url": {"value": "/idp/idx/challenge/answer"},
                    "ipAddress": "66.124.153.138",
                },
                "credential": {"username": username, "password": password},
            },
            "action": {"credential": "UNVERIFIED"},
        },
    }


def _port_or_free(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run_demo(port: int, once: bool) -> int:
    """Start emulator and gateway, show VERIFIED and UNVERIFIED, then serve until interrupted."""
    directory = load_directory(DEMO_USERS)
    emulator = await start_emulator(directory)
    port = _port_or_free(port)
    config = parse_config(
        CONFIG_TEMPLATE.format(
            port=port,
            secret=HOOK_SECRET,
            tenant=directory.tenant_id,
            client_id=directory.client_id,
            client_secret=directory.client_secret,
            authority=emulator.url,
        ),
        env={},
    )
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}{config.okta.hook_path}"
    password = next(u.password for u in directory.users if u.username == DEMO_USER)
    try:
        print(f"Entra emulator: {emulator.url}  (tenant {directory.tenant_id})")
        print(f"Gateway hook:   {url}\n")
        async with aiohttp.ClientSession(headers={"Authorization": HOOK_SECRET}) as http:
            for label, typed in (
                ("right password", password),
                ("wrong password", "not-the-password"),
            ):
                async with http.post(url, json=okta_payload(DEMO_USER, typed)) as response:
                    body = await response.json()
                credential = body["commands"][0]["value"]["credential"]
                print(f"{DEMO_USER} with the {label}: HTTP {response.status} -> {credential}")
                print(f"  {json.dumps(body)}")
        # The payload holds the demo user's password: a directory only this user can enter
        # (mkdtemp: mode 700), removed when the demo stops, never a fixed shared path.
        with tempfile.TemporaryDirectory(prefix="okta-password-import-demo-") as private:
            payload_file = Path(private) / "payload.json"
            payload_file.touch(mode=0o600)
            payload_file.write_text(json.dumps(okta_payload(DEMO_USER, password)), encoding="utf-8")
            print("\nTry it yourself while the demo runs (the payload file holds the demo user's")
            print("emulator password; it is deleted when the demo stops):")
            print(
                f"  curl -s -X POST {url} -H 'Authorization: {HOOK_SECRET}' "
                f"-H 'Content-Type: application/json' -d @{payload_file}\n"
            )
            if once:
                return 0
            print("Serving; press Ctrl-C to stop.", flush=True)
            await _stop_signal()
        return 0
    finally:
        await runner.cleanup()
        await emulator.close()


async def _stop_signal() -> None:
    """Wait for Ctrl-C, SIGTERM or a closed terminal (SIGHUP), so the cleanup always runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `--once` / `--port` and run the demo."""
    parser = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after showing the two answers")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (a free one if taken)")
    args = parser.parse_args(argv)
    configure_logging("info", "text")
    try:
        return asyncio.run(run_demo(args.port, args.once))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
