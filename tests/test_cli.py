"""The command line and the demo, run as a user would run them (subprocesses)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from emulators.entra import RunningEmulator
from gateway.cli import probe_target
from gateway.config import ServerConfig, TlsConfig
from tests.certs import self_signed
from tests.conftest import USERS, SecretScan, credential, gateway_yaml
from tests.serve_process import ServeProcess

REPO = Path(__file__).parent.parent


async def _run(
    *args: str, stdin: str = "", limit_seconds: float = 60, env: dict[str, str] | None = None
) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args,
        cwd=REPO, env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(stdin.encode()), limit_seconds)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_verify_command_checks_one_user(
    entra: RunningEmulator, tmp_path: Path, secret_scan: SecretScan
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_yaml(entra.url), encoding="utf-8")
    alice = "alice@contoso.com"
    args = ("gateway", "verify", "-c", str(config), "--source", "entra", "--password-stdin", alice)
    code_ok, out_ok = await _run(*args, stdin=USERS[alice] + "\n")
    code_bad, out_bad = await _run(*args, stdin="Wrong#Pass-0000\n")
    secret_scan.add_output(out_ok + out_bad)
    assert (code_ok, out_ok.strip().splitlines()[-1]) == (0, "verified (ok)")
    assert (code_bad, out_bad.strip().splitlines()[-1]) == (2, "denied (aadsts_50126)")


async def test_verify_command_refuses_unknown_source(
    entra: RunningEmulator, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_yaml(entra.url), encoding="utf-8")
    code, out = await _run(
        "gateway", "verify", "-c", str(config), "--source", "ghost", "--password-stdin", "a@b.c",
        stdin="x\n",
    )  # fmt: skip
    assert code == 1
    assert "ghost" in out


async def test_verify_command_has_no_password_argument() -> None:
    code, out = await _run("gateway", "verify", "--help")
    assert code == 0
    assert "--password " not in out
    assert "--password-stdin" in out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_demo_shows_verified_and_unverified(secret_scan: SecretScan) -> None:
    code, out = await _run("emulators.demo", "--once", "--port", str(_free_port()))
    secret_scan.add_output(out)
    assert code == 0, out
    assert "alice@contoso.com with the right password: HTTP 200 -> VERIFIED" in out
    assert "alice@contoso.com with the wrong password: HTTP 200 -> UNVERIFIED" in out
    # The rehearsal: hooks registered against the running gateway, users imported, sign-ins
    # through the Okta emulator calling the hook, their events, and the status.
    assert "register-hooks: created=2 updated=0 unchanged=0 failed=0" in out
    assert "import: listed=16 created=16 native=0 existing=0 skipped=0 failed=0" in out
    sign_ins = out.split("Sign-ins through the Okta emulator", 1)[1].split("Okta delivered")[0]
    results = [line.rsplit(": ", 1)[1] for line in sign_ins.strip().splitlines()[1:]]
    assert results == ["VERIFIED", "VERIFIED", "VERIFIED", "UNVERIFIED"], out
    assert (
        "status: sources=1 imported=16 migrated=3 verified_unconfirmed=0 pending=13 finished=0"
        in out
    )
    assert "curl -s -X POST http://127.0.0.1:" in out
    payload = Path(out.split(" -d @", 1)[1].split()[0])
    assert not payload.parent.exists()  # removed when the demo stopped


def _read_private_payload(payload: Path) -> bytes:
    """The demo's payload file, after checking only its owner can read it or enter its folder."""
    assert stat.S_IMODE(payload.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(payload.stat().st_mode) == 0o600
    return payload.read_bytes()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_demo_payload_is_private_usable_while_serving_and_removed_at_stop(
    secret_scan: SecretScan, signum: int
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulators.demo", "--port", str(_free_port()),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not output or not output[-1].startswith("Serving"):
                line = (await process.stdout.readline()).decode()
                assert line, "".join(output)
                output.append(line)
        curl = next(line for line in output if "curl -s -X POST" in line)
        found = re.search(r"POST (\S+) -H 'Authorization: ([^']+)' .* -d @(\S+)", curl)
        assert found is not None, curl
        url, authorization, path = found.groups()
        payload = Path(path)
        body = _read_private_payload(payload)
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=body, headers=headers) as response,
        ):
            assert response.status == 200
            assert credential(await response.json()) == "VERIFIED"
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert not payload.parent.exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        output.append((await process.stdout.read()).decode())
        secret_scan.add_output("".join(output))


async def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("okta: {}\n", encoding="utf-8")
    code, out = await _run("gateway", "serve", "-c", str(config))
    assert code == 1
    assert "okta.auth: missing" in out


async def test_verify_command_refuses_an_empty_password_without_asking_the_directory(
    entra: RunningEmulator, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_yaml(entra.url), encoding="utf-8")
    before = sum(entra.emulator.requests_by_kind.values())
    code, out = await _run(
        "gateway", "verify", "-c", str(config), "--source", "entra", "--password-stdin",
        "alice@contoso.com", stdin="\n",
    )  # fmt: skip
    assert (code, out.strip().splitlines()[-1]) == (2, "denied (empty_password)")
    assert sum(entra.emulator.requests_by_kind.values()) == before  # not even discovery


def _serving_config(tmp_path: Path, name: str, authority: str, server: dict[str, Any]) -> Path:
    config = yaml.safe_load(gateway_yaml(authority))
    config["server"] = server
    config["logging"]["level"] = "warning"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def test_healthcheck_probes_a_plain_http_gateway_and_fails_once_it_is_gone(
    entra: RunningEmulator, tmp_path: Path, secret_scan: SecretScan
) -> None:
    port = _free_port()
    config = _serving_config(tmp_path, "plain", entra.url, {"host": "127.0.0.1", "port": port})
    gateway = ServeProcess(config, f"http://127.0.0.1:{port}")
    await gateway.start()
    try:
        code, out = await _run("gateway", "healthcheck", "-c", str(config))
        assert (code, out.strip()) == (0, f"healthy: http://127.0.0.1:{port}/healthz")
    finally:
        gateway.send(signal.SIGTERM)
        assert await gateway.wait() == 0
        secret_scan.add_output(gateway.output())
    code, out = await _run("gateway", "healthcheck", "-c", str(config), "--timeout", "1")
    assert code == 1
    assert out.startswith(f"unhealthy: http://127.0.0.1:{port}/healthz: ConnectionRefusedError")


async def test_healthcheck_follows_tls_a_wildcard_host_and_an_env_port(
    entra: RunningEmulator, tmp_path: Path, secret_scan: SecretScan
) -> None:
    cert, key = self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    tls = {"cert_file": str(tmp_path / "cert.pem"), "key_file": str(tmp_path / "key.pem")}
    port = _free_port()
    server = {"host": "0.0.0.0", "port": "${GATEWAY_PORT}", "tls": tls}
    config = _serving_config(tmp_path, "tls", entra.url, server)
    env = {"GATEWAY_PORT": str(port)}
    # The same listener with another self-signed certificate: what a probe must not accept.
    other_cert, other_key = self_signed()
    (tmp_path / "other.pem").write_bytes(other_cert)
    (tmp_path / "other-key.pem").write_bytes(other_key)
    other_tls = {
        "cert_file": str(tmp_path / "other.pem"),
        "key_file": str(tmp_path / "other-key.pem"),
    }
    impostor = _serving_config(tmp_path, "other", entra.url, {**server, "tls": other_tls})
    gateway = ServeProcess(config, f"https://127.0.0.1:{port}", env=env)
    await gateway.start()
    try:
        code, out = await _run("gateway", "healthcheck", "-c", str(config), env=env)
        assert (code, out.strip()) == (0, f"healthy: https://127.0.0.1:{port}/healthz")
        code, out = await _run("gateway", "healthcheck", "-c", str(impostor), env=env)
        assert code == 1
        assert "CERTIFICATE_VERIFY_FAILED" in out
    finally:
        gateway.send(signal.SIGTERM)
        assert await gateway.wait() == 0
        secret_scan.add_output(gateway.output())


@pytest.mark.parametrize(
    ("host", "expected"),
    [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("127.0.0.1", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")],
)
def test_healthcheck_reaches_a_wildcard_listener_on_loopback(host: str, expected: str) -> None:
    tls = TlsConfig(cert_file="c.pem", key_file="k.pem")
    assert probe_target(ServerConfig(host=host, port=8443, tls=tls)) == ("https", expected, 8443)
    assert probe_target(ServerConfig(host=host))[0] == "http"


async def test_healthcheck_reports_an_unusable_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("server:\n  port: ${NO_SUCH_PORT}\n", encoding="utf-8")
    code, out = await _run("gateway", "healthcheck", "-c", str(config))
    assert code == 1
    assert out.strip().splitlines() == [
        f"unhealthy: {config}: server.port: environment variable NO_SUCH_PORT is not set"
    ]
