"""`python -m emulators.entra`: the stand-alone Entra emulator, as the README runs it."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
DEMO_USERS = REPO / "emulators" / "demo_users.yaml"
TENANT = "11111111-2222-3333-4444-555555555555"


async def test_python_m_emulators_entra_serves_the_users_file() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulators.entra", "--port", "0", "--users", str(DEMO_USERS),
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("Entra emulator listening on http://127.0.0.1:"), line
        assert f"tenant={TENANT}" in line
        url = line.split()[4]
        discovery = f"{url}/{TENANT}/v2.0/.well-known/openid-configuration"
        async with aiohttp.ClientSession() as http, http.get(discovery) as resp:
            assert resp.status == 200
            assert (await resp.json())["token_endpoint"].endswith("/oauth2/v2.0/token")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_python_m_emulators_entra_refuses_a_bad_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("colour: blue", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulators.entra", "--port", "0", "--users", str(path),
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"colour" in stderr
    assert b"Traceback" not in stderr
