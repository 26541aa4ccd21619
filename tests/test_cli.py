"""The command line and the demo, run as a user would run them (subprocesses)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from gateway.emulators.entra import RunningEmulator
from tests.conftest import USERS, SecretScan, gateway_yaml

REPO = Path(__file__).parent.parent


async def _run(*args: str, stdin: str = "", limit_seconds: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args,
        cwd=REPO,
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
    code, out = await _run("gateway.demo", "--once", "--port", str(_free_port()))
    secret_scan.add_output(out)
    assert code == 0, out
    assert "alice@contoso.com with the right password: HTTP 200 -> VERIFIED" in out
    assert "alice@contoso.com with the wrong password: HTTP 200 -> UNVERIFIED" in out
    assert "curl -s -X POST http://127.0.0.1:" in out


async def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("okta: {}\n", encoding="utf-8")
    code, out = await _run("gateway", "serve", "-c", str(config))
    assert code == 1
    assert "okta.auth: missing" in out
