"""`make demo`: a rehearsal of the whole migration on this machine, then serving for manual tries.

1. The gateway answers Okta's password import hook from the bundled Entra emulator: one call with
   the right password (VERIFIED) and one with a wrong one (UNVERIFIED), sent straight to it.
2. The Okta emulator plays the org: `gateway migrate register-hooks` registers the password hook
   and the event hook against the running gateway, `gateway migrate import` creates the Entra
   users in Okta with the hook, and users sign in through the Okta emulator, which calls the hook
   exactly as Okta does (3 s timeout, one retry) and delivers `user.import.password` events to
   the gateway; `gateway migrate status` then shows who moved.

Everything runs on 127.0.0.1 in a private temporary directory (config, ledger, payload), removed
when the demo stops; nothing reaches Microsoft or Okta.
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

from emulators.entra import EmulatedDirectory, load_directory, start_emulator
from emulators.okta import DEFAULT_API_TOKEN, RunningOktaEmulator, start_okta_emulator
from gateway.app import create_app
from gateway.config import load_config
from gateway.logs import configure_logging
from gateway.serve_ledger import SERVE_LEDGER

DEMO_USERS = Path(__file__).parent / "demo_users.yaml"
DEMO_USER = "alice@contoso.com"
HOOK_SECRET = "Basic " + base64.b64encode(b"okta:demo-hook-secret").decode()
EVENT_SECRET = "Basic " + base64.b64encode(b"okta:demo-event-secret").decode()
ADMIN_SECRET = "Bearer demo-admin-secret"  # noqa: S105 - the demo's own, printed on purpose

CONFIG_TEMPLATE = """
server: {{host: 127.0.0.1, port: {port}}}
okta:
  hook_path: /okta/password-import
  auth: {{header: Authorization, secrets: ["{secret}"]}}
  org_url: {okta_url}           # the Okta emulator; production: https://<org>.okta.com
  hook_url: http://127.0.0.1:{port}/okta/password-import
  api: {{token: {okta_token}}}
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
admin:
  host: 127.0.0.1
  port: {admin_port}
  auth: {{header: Authorization, secrets: ["{admin_secret}"]}}
migration:
  ledger: sqlite:///{ledger}
  sources: {{entra: {{}}}}
  event_hook: {{path: /okta/events, auth: {{secrets: ["{event_secret}"]}}}}
logging: {{format: text, level: warning}}
"""

# Who signs in through the Okta emulator, and with what: (login, typed password or None for the
# right one, what it shows).
SIGN_INS: tuple[tuple[str, str | None, str], ...] = (
    ("alice@contoso.com", None, "right password"),
    ("zoë@contoso.com", None, "right password, non-ASCII login"),
    ("bob@contoso.com", None, "right password, MFA required in Entra (policy: verified)"),
    ("carol@contoso.com", "not-her-password", "wrong password"),
)


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


def _write_config(
    private: Path, port: int, admin_port: int, directory: EmulatedDirectory, entra_url: str,
    okta: RunningOktaEmulator,
) -> Path:  # fmt: skip
    path = private / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(
        CONFIG_TEMPLATE.format(
            port=port,
            admin_port=admin_port,
            secret=HOOK_SECRET,
            event_secret=EVENT_SECRET,
            admin_secret=ADMIN_SECRET,
            okta_url=okta.url,
            okta_token=DEFAULT_API_TOKEN,
            tenant=directory.tenant_id,
            client_id=directory.client_id,
            client_secret=directory.client_secret,
            authority=entra_url,
            ledger=private / "ledger.db",
        ),
        encoding="utf-8",
    )
    return path


async def _gateway_cli(*argv: str) -> tuple[int, list[str]]:
    """`gateway ARGV...` as an admin would run it; its output lines (stderr included)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace").rstrip().splitlines()


async def _show(title: str, *argv: str, last_only: bool = False) -> bool:
    print(f"\n$ gateway {' '.join(argv)}   # {title}")
    code, lines = await _gateway_cli(*argv)
    for line in lines[-1:] if last_only else lines:
        print(f"  {line}")
    return code == 0


async def _direct_hook_calls(url: str, password: str) -> None:
    """Part 1: the hook answers, called directly as Okta would."""
    print("1. The password import hook, called directly with Okta's payload:")
    async with aiohttp.ClientSession(headers={"Authorization": HOOK_SECRET}) as http:
        for label, typed in (("right password", password), ("wrong password", "not-the-password")):
            async with http.post(url, json=okta_payload(DEMO_USER, typed)) as response:
                body = await response.json()
            credential = body["commands"][0]["value"]["credential"]
            print(f"  {DEMO_USER} with the {label}: HTTP {response.status} -> {credential}")
            print(f"    {json.dumps(body)}")


async def _rehearsal(config: Path, okta: RunningOktaEmulator, directory: EmulatedDirectory) -> bool:
    """Part 2: hooks registered, users imported, sign-ins through Okta, events, status."""
    print("\n2. A rehearsal of the migration, with the Okta emulator as the org:")
    ok = await _show(
        "the password hook and the event hook", "migrate", "register-hooks", "-c", str(config)
    )
    ok &= await _show(
        "Entra users into Okta, with the hook", "migrate", "import", "-c", str(config),
        "--source", "entra", last_only=True,
    )  # fmt: skip
    passwords = {user.username: user.password for user in directory.users}
    print("\n  Sign-ins through the Okta emulator (it calls the gateway's hook as Okta does):")
    async with aiohttp.ClientSession() as http:
        for login, typed, label in SIGN_INS:
            answer = {"password": typed if typed is not None else passwords[login]}
            async with http.post(f"{okta.url}/_emulator/users/{login}/sign-in", json=answer) as r:
                result = (await r.json()).get("result", f"HTTP {r.status}")
            print(f"  {login:<20} {label}: {result}")
    flushed = await okta.emulator.flush_events(max_wait=30)
    delivered = flushed.get("delivered", 0)
    print(f"  Okta delivered {delivered} event(s) to the gateway's event hook")
    ok &= await _show("who moved", "migrate", "status", "-c", str(config))
    return ok


async def run_demo(port: int, once: bool) -> int:
    """Start emulators and gateway, rehearse the migration, then serve until interrupted."""
    directory = load_directory(DEMO_USERS)
    entra = await start_emulator(directory)
    okta = await start_okta_emulator(seed=2026)
    # The demo org's API answers at once (the real rate limits are the Okta client's business).
    okta.emulator.set_limits({bucket: None for bucket in okta.emulator.limiter.limits})
    runner: web.AppRunner | None = None
    # Config, ledger and payload: a directory only this user can enter (mkdtemp: mode 700),
    # removed when the demo stops, never a fixed shared path.
    with tempfile.TemporaryDirectory(prefix="okta-password-import-demo-") as folder:
        private = Path(folder)
        try:
            port = _port_or_free(port)
            admin_port = _port_or_free(0)
            config_path = _write_config(private, port, admin_port, directory, entra.url, okta)
            config = load_config(config_path)
            app = create_app(config, config_path=str(config_path))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            # The event hook answers 503 until the ledger is open (in the background).
            async with asyncio.timeout(60):
                await app[SERVE_LEDGER].wait_open()
            url = f"http://127.0.0.1:{port}{config.okta.hook_path}"
            password = next(u.password for u in directory.users if u.username == DEMO_USER)
            print(f"Entra emulator: {entra.url}  (tenant {directory.tenant_id})")
            print(f"Okta emulator:  {okta.url}")
            print(f"Gateway hook:   {url}\n")
            await _direct_hook_calls(url, password)
            ok = await _rehearsal(config_path, okta, directory)
            payload_file = private / "payload.json"
            payload_file.touch(mode=0o600)
            payload_file.write_text(json.dumps(okta_payload(DEMO_USER, password)), encoding="utf-8")
            print("\nTry it yourself while the demo runs (these files hold demo passwords and")
            print("secrets of the emulators only; they are deleted when the demo stops):")
            print(
                f"  curl -s -X POST {url} -H 'Authorization: {HOOK_SECRET}' "
                f"-H 'Content-Type: application/json' -d @{payload_file}"
            )
            sign_in_file = private / "sign-in.json"
            sign_in_file.touch(mode=0o600)
            erin = next(u.password for u in directory.users if u.username == "erin@contoso.com")
            sign_in_file.write_text(json.dumps({"password": erin}), encoding="utf-8")
            print(
                f"  curl -s -X POST {okta.url}/_emulator/users/erin@contoso.com/sign-in "
                f"-H 'Content-Type: application/json' -d @{sign_in_file}"
            )
            print(f"  .venv/bin/gateway migrate status -c {config_path}")
            print(
                f"  the progress page: http://127.0.0.1:{admin_port}/migration "
                f"(header 'Authorization: {ADMIN_SECRET}')\n"
            )
            if once:
                return 0 if ok else 1
            print("Serving; press Ctrl-C to stop.", flush=True)
            await _stop_signal()
            return 0
        finally:
            if runner is not None:
                await runner.cleanup()
            await okta.close()
            await entra.close()


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
    parser = argparse.ArgumentParser(prog="python -m emulators.demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the rehearsal")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (a free one if taken)")
    args = parser.parse_args(argv)
    configure_logging("warning", "text")
    try:
        return asyncio.run(run_demo(args.port, args.once))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
