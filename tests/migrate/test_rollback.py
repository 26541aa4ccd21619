"""`gateway migrate rollback` end to end: import into the Okta emulator, sign some in, roll back."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from emulators.entra import EmulatedDirectory, RunningEmulator, start_emulator
from emulators.okta import RunningOktaEmulator
from gateway.ledger import RunCommand, UserState, open_ledger
from tests.migrate.test_import import _config, _migrate
from tests.migrate.test_import import okta as okta  # the fixture, re-exported for pytest

USERS = 100
SIGNED_IN = ["user3@contoso.com", "user50@contoso.com", "user99@contoso.com"]


@pytest.fixture
async def small_tenant() -> AsyncIterator[RunningEmulator]:
    """An Entra tenant of 100 users on the routed domain: an import of a second or two."""
    running = await start_emulator(EmulatedDirectory.with_generated_users(USERS))
    try:
        yield running
    finally:
        await running.close()


async def _rollback(config: Path, *extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "migrate", "rollback", "-c", str(config), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _imported(
    tmp_path: Path, entra: RunningEmulator, okta: RunningOktaEmulator
) -> tuple[Path, str, str]:
    """Import the tenant; (config, ledger URL, the run id the import printed)."""
    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    config = _config(tmp_path / "c.yaml", entra, okta, ledger)
    code, out, err = await _migrate(config)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"import: listed={USERS} created={USERS} native=0 existing=0 skipped=0 failed=0"
    )
    found = re.search(r"^run (\d+) ", out, re.MULTILINE)
    assert found is not None, out
    return config, ledger, found.group(1)


async def _sign_in(okta: RunningOktaEmulator, logins: list[str]) -> None:
    """Each login's first sign-in through the emulator: provider IMPORT becomes OKTA."""
    async with aiohttp.ClientSession() as session:
        for login in logins:
            async with session.post(f"{okta.url}/_emulator/users/{login}/sign-in") as resp:
                assert resp.status == 200
                assert (await resp.json())["provider"] == "OKTA"


def _deletes(okta: RunningOktaEmulator) -> int:
    """How many DELETE /api/v1/users/{id} the emulator has answered."""
    requests = okta.emulator.stats()["requests_by_endpoint"]
    return sum(n for endpoint, n in requests.items() if endpoint.startswith("DELETE "))


async def test_rollback_deletes_only_users_who_never_signed_in_and_reruns_harmlessly(
    small_tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config, ledger_url, run_id = await _imported(tmp_path, small_tenant, okta)
    await _sign_in(okta, SIGNED_IN)

    code, out, err = await _rollback(config, "--run", run_id)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "rollback: candidates=100 deleted=97 kept=3 failed=0"
    stats = okta.emulator.stats()
    assert stats["users"] == 3
    assert stats["users_by_status"] == {"ACTIVE": 3}
    assert stats["users_by_provider"] == {"OKTA": 3}
    assert {u.login for u in okta.emulator.users.values()} == set(SIGNED_IN)
    assert stats["deactivation_emails_total"] == 0
    deletes = _deletes(okta)

    ledger = await open_ledger(ledger_url)
    try:
        progress = await ledger.progress()
        assert progress["entra"].states[UserState.ROLLED_BACK] == 97
        assert progress["entra"].states[UserState.ACTIVATED] == 3  # signed in: not ours to mark
    finally:
        await ledger.close()

    # A second rollback of the same run: the 97 are already gone (counted deleted, no DELETE
    # sent), the 3 who signed in are still kept, and nothing fails.
    code, out, err = await _rollback(config, "--run", run_id)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "rollback: candidates=100 deleted=97 kept=3 failed=0"
    assert _deletes(okta) == deletes
    assert okta.emulator.stats()["users_by_status"] == {"ACTIVE": 3}


async def test_dry_run_deletes_nothing_and_the_ledger_keeps_migrated_users(
    small_tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config, ledger_url, run_id = await _imported(tmp_path, small_tenant, okta)
    await _sign_in(okta, SIGNED_IN[:1])
    # Migrated by the ledger's account (an event) while Okta still says IMPORT: kept all the same.
    ledger = await open_ledger(ledger_url)
    try:
        assert await ledger.mark_migrated(source="entra", login="user7@contoso.com") == 1
    finally:
        await ledger.close()

    code, out, err = await _rollback(config, "--run", run_id, "--dry-run")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "rollback: candidates=100 deleted=98 kept=2 failed=0"
    stats = okta.emulator.stats()
    assert stats["users_by_status"] == {"ACTIVE": USERS}
    assert _deletes(okta) == 0
    ledger = await open_ledger(ledger_url)
    try:
        assert UserState.ROLLED_BACK not in (await ledger.progress())["entra"].states
        assert await ledger.get_run(int(run_id) + 1) is None  # no rollback run recorded
    finally:
        await ledger.close()

    code, out, err = await _rollback(config, "--run", run_id)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "rollback: candidates=100 deleted=98 kept=2 failed=0"
    assert {u.login for u in okta.emulator.users.values()} == {
        SIGNED_IN[0],
        "user7@contoso.com",
    }


async def test_an_unknown_or_non_import_run_is_refused_in_one_line(
    small_tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'l.db'}"
    config = _config(tmp_path / "c.yaml", small_tenant, okta, ledger_url)
    ledger = await open_ledger(ledger_url)
    try:
        prepare_run = await ledger.start_run(RunCommand.PREPARE)
    finally:
        await ledger.close()

    code, out, err = await _rollback(config, "--run", "999")
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == ["rollback: no run 999 in the ledger"]

    code, out, err = await _rollback(config, "--run", str(prepare_run))
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        f"rollback: run {prepare_run} is a prepare run; only an import run can be rolled back"
    ]
    assert okta.emulator.stats()["requests_total"] == 0  # refused before any call to Okta
