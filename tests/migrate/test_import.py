"""`gateway migrate import` end to end: Entra emulator -> gateway CLI -> Okta emulator + ledger."""

from __future__ import annotations

import asyncio
import csv
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulators.entra import EmulatedDirectory, EmulatedUser, RunningEmulator, start_emulator
from emulators.okta import DEFAULT_API_TOKEN, RunningOktaEmulator, start_okta_emulator
from tests.conftest import HOOK_SECRET

USERS = 2500


@pytest.fixture
async def entra_tenant() -> AsyncIterator[RunningEmulator]:
    base = EmulatedDirectory(
        users=[
            EmulatedUser(username="off@contoso.com", password="x", account_enabled=False),
            EmulatedUser(username="nomail@elsewhere.org", password="x"),
        ],
        managed_domains=["contoso.com", "elsewhere.org"],
    )
    running = await start_emulator(EmulatedDirectory.with_generated_users(USERS, base=base))
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def okta() -> AsyncIterator[RunningOktaEmulator]:
    running = await start_okta_emulator()
    # Fast buckets for a test; a few injected 429s still exercise the client's waits.
    running.emulator.set_limits({bucket: None for bucket in running.emulator.limiter.limits})
    try:
        yield running
    finally:
        await running.close()


def _config(path: Path, entra: RunningEmulator, okta: RunningOktaEmulator, ledger: str) -> Path:
    directory = entra.emulator.directory
    data: dict[str, Any] = {
        "okta": {
            "auth": {"secrets": [HOOK_SECRET]},
            "org_url": okta.url,
            "hook_url": "https://gw.example.com/okta/password-import",
            "api": {"token": DEFAULT_API_TOKEN},
        },
        "sources": [
            {
                "name": "entra",
                "type": "azure_ad",
                "tenant_id": directory.tenant_id,
                "client_id": directory.client_id,
                "client_secret": directory.client_secret,
                "authority": entra.url,
            }
        ],
        "routes": [{"match": {"domains": ["contoso.com"]}, "sources": ["entra"]}],
        "migration": {"ledger": ledger, "sources": {"entra": {}}},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def _migrate(config: Path, *extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "migrate", "import", "-c", str(config),
        "--source", "entra", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_import_creates_every_user_once_with_the_hook_and_no_email(
    entra_tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config = _config(tmp_path / "c.yaml", entra_tenant, okta, f"sqlite:///{tmp_path / 'l.db'}")
    okta.emulator.set_fault("http_429", rate=0.004, buckets=["users_collection"])
    code, out, err = await _migrate(config, "--report", str(tmp_path / "r.csv"))
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last == "import: listed=2501 created=2500 native=0 existing=0 skipped=1 failed=0"
    stats = okta.emulator.stats()
    assert stats["faults_injected"]  # 429s were met and waited out
    assert stats["activation_emails_total"] == 0
    assert stats["users_by_status"] == {"ACTIVE": 2500}
    assert stats["users_by_provider"] == {"IMPORT": 2500}
    with (tmp_path / "r.csv").open(encoding="utf-8") as report:
        rows = list(csv.reader(report))
    assert rows == [
        ["login", "okta_id", "result", "reason"],
        ["nomail@elsewhere.org", "", "skipped", "no_route"],
    ]
    okta.emulator.set_fault("none")
    code, out, _ = await _migrate(config)
    assert out.strip().splitlines()[-1] == (
        "import: listed=2501 created=0 native=0 existing=2500 skipped=1 failed=0"
    )
    assert okta.emulator.stats()["users"] == 2500


async def test_a_killed_import_resumes_without_duplicates(
    entra_tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config = _config(tmp_path / "c.yaml", entra_tenant, okta, f"sqlite:///{tmp_path / 'l.db'}")
    okta.emulator.set_fault("none", latency_ms=2)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "migrate", "import", "-c", str(config),
        "--source", "entra",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(600):  # poll the emulator until a fifth of the users exist
        if okta.emulator.stats()["users"] >= 500:
            break
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    assert 0 < okta.emulator.stats()["users"] < 2500
    code, out, _ = await _migrate(config)
    assert code == 0
    counts = dict(p.split("=") for p in out.strip().splitlines()[-1].split()[1:])
    assert int(counts["created"]) + int(counts["existing"]) == 2500
    assert okta.emulator.stats()["users"] == 2500


async def test_dry_run_writes_nothing(
    entra_tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config = _config(tmp_path / "c.yaml", entra_tenant, okta, f"sqlite:///{tmp_path / 'l.db'}")
    code, out, _ = await _migrate(config, "--dry-run", "--limit", "40")
    assert code == 0
    assert out.strip().splitlines()[-1] == (
        "import: listed=40 created=39 native=0 existing=0 skipped=1 failed=0 dry_run=1"
    )
    assert okta.emulator.stats()["users"] == 0
    assert not (tmp_path / "l.db").exists()


def test_report_cells_never_run_as_formulas(tmp_path: Path) -> None:
    """Logins come from the directory: the import and prepare reports quote formula cells."""
    from gateway.migrate.importer import write_report

    path = tmp_path / "r.csv"
    login = '=HYPERLINK("https://evil.example","x")@contoso.com'
    write_report(
        path, [(login, "", "skipped", "no_route"), ("a@contoso.com", "00u1", "failed", "-x")]
    )
    with path.open(encoding="utf-8") as report:
        rows = list(csv.reader(report))
    assert rows == [
        ["login", "okta_id", "result", "reason"],
        ["'" + login, "", "skipped", "no_route"],
        ["a@contoso.com", "00u1", "failed", "'-x"],
    ]
