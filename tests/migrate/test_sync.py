"""`gateway migrate sync-attributes` end to end: import, edit the Entra emulator, sync to Okta."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulators.entra import EmulatedDirectory, RunningEmulator, start_emulator
from emulators.okta import RunningOktaEmulator
from gateway.ledger import RunCommand, open_ledger
from tests.migrate.test_import import _config, _migrate
from tests.migrate.test_import import okta as okta  # the fixture, re-exported for pytest

USERS = 50
# Okta attribute each edited user's update must carry, alone (the default mapping's names).
EDITS: dict[str, tuple[str, dict[str, Any]]] = {
    "user1@contoso.com": ("department", {"department": "Legal"}),
    "user2@contoso.com": ("title", {"job_title": "Manager"}),
    "user3@contoso.com": ("mobilePhone", {"mobile_phone": "+1 555 0100"}),
    "user6@contoso.com": ("department", {"department": None}),  # emptied: removed in Okta
}
DISABLED = "user4@contoso.com"
DELETED = "user5@contoso.com"
GONE = {DISABLED, DELETED}
FIRST_SYNC = "sync-attributes: checked=50 updated=4 unchanged=44 gone=2 failed=0"
IN_SYNC = "sync-attributes: checked=50 updated=0 unchanged=48 gone=2 failed=0"
DEACTIVATE = "POST /api/v1/users/{id}/lifecycle/deactivate"


@pytest.fixture
async def small_tenant() -> AsyncIterator[RunningEmulator]:
    """An Entra tenant of 50 users on the routed domain."""
    running = await start_emulator(EmulatedDirectory.with_generated_users(USERS))
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def bodies(
    okta: RunningOktaEmulator, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, list[str]]]:
    """(login, attribute names) of every profile update body the Okta emulator receives.

    The emulator's own record lists the attributes an update changed, which a body carrying the
    whole profile would also produce; this records what was sent.
    """
    sent: list[tuple[str, list[str]]] = []
    original = okta.emulator.update_profile

    def record(user: Any, profile: dict[str, Any], **kwargs: Any) -> None:
        sent.append((user.login, sorted(profile)))
        original(user, profile, **kwargs)

    monkeypatch.setattr(okta.emulator, "update_profile", record)
    return sent


async def _sync(config: Path, *extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "migrate", "sync-attributes", "-c", str(config),
        "--source", "entra", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _imported_and_edited(
    tmp_path: Path, entra: RunningEmulator, okta: RunningOktaEmulator
) -> tuple[Path, str]:
    """Import the tenant, then edit, disable and delete users in the source; (config, ledger)."""
    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    config = _config(tmp_path / "c.yaml", entra, okta, ledger)
    code, out, err = await _migrate(config)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"import: listed={USERS} created={USERS} native=0 existing=0 skipped=0 failed=0"
    )
    directory = entra.emulator.directory
    for login, (_, change) in EDITS.items():
        user = directory.find(login)
        assert user is not None
        directory.put_user(user.model_copy(update=change))
    disabled = directory.find(DISABLED)
    assert disabled is not None
    directory.put_user(disabled.model_copy(update={"account_enabled": False}))
    directory.users = [u for u in directory.users if u.username != DELETED]
    return config, ledger


def _okta_profile(okta: RunningOktaEmulator, login: str) -> dict[str, Any]:
    (user,) = [u for u in okta.emulator.users.values() if u.login == login]
    return dict(user.profile)


def _statuses(okta: RunningOktaEmulator) -> dict[str, str]:
    return {u.login: u.status.value for u in okta.emulator.users.values()}


async def _synced_logins(ledger_url: str) -> set[str]:
    ledger = await open_ledger(ledger_url)
    try:
        logins = {f"user{i}@contoso.com" for i in range(USERS)}
        synced = set()
        for login in logins:
            user = await ledger.get_user("entra", login)
            if user is not None and user.attributes_synced_at is not None:
                synced.add(login)
        return synced
    finally:
        await ledger.close()


async def test_sync_sends_only_changed_attributes_and_a_rerun_sends_nothing(
    small_tenant: RunningEmulator,
    okta: RunningOktaEmulator,
    bodies: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    config, ledger_url = await _imported_and_edited(tmp_path, small_tenant, okta)

    code, out, err = await _sync(config)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == FIRST_SYNC
    # One body per edited user, each carrying only the attribute edited in the source.
    assert sorted(bodies) == sorted((login, [name]) for login, (name, _) in EDITS.items())
    assert sorted(u["attributes"] for u in okta.emulator.profile_updates) == sorted(
        [name] for name, _ in EDITS.values()
    )
    assert _okta_profile(okta, "user1@contoso.com")["department"] == "Legal"
    assert _okta_profile(okta, "user2@contoso.com")["title"] == "Manager"
    assert _okta_profile(okta, "user3@contoso.com")["mobilePhone"] == "+1 555 0100"
    assert "department" not in _okta_profile(okta, "user6@contoso.com")
    assert set(_statuses(okta).values()) == {"ACTIVE"}  # gone, but not asked to deactivate
    # The ledger records a sync for everyone checked against the source, not the gone ones.
    everyone = {f"user{i}@contoso.com" for i in range(USERS)}
    assert await _synced_logins(ledger_url) == everyone - GONE
    ledger = await open_ledger(ledger_url)
    try:
        run = await ledger.get_run(2)  # run 1 is the import
        assert run is not None and run.command == RunCommand.SYNC_ATTRIBUTES
        assert run.counts["updated"] == 4
    finally:
        await ledger.close()

    code, out, err = await _sync(config)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == IN_SYNC
    assert len(bodies) == len(EDITS)  # nothing sent the second time


async def test_deactivate_gone_deactivates_disabled_and_deleted_users_once(
    small_tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config, _ = await _imported_and_edited(tmp_path, small_tenant, okta)

    code, out, err = await _sync(config, "--deactivate-gone")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == FIRST_SYNC
    statuses = _statuses(okta)
    assert {login for login, s in statuses.items() if s == "DEPROVISIONED"} == GONE
    assert okta.emulator.stats()["requests_by_endpoint"][DEACTIVATE] == 2
    assert okta.emulator.stats()["deactivation_emails_total"] == 0

    code, out, err = await _sync(config, "--deactivate-gone")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == IN_SYNC
    assert okta.emulator.stats()["requests_by_endpoint"][DEACTIVATE] == 2  # not again


async def test_login_syncs_that_user_only(
    small_tenant: RunningEmulator,
    okta: RunningOktaEmulator,
    bodies: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    config, ledger_url = await _imported_and_edited(tmp_path, small_tenant, okta)

    code, out, err = await _sync(config, "--login", "user2@contoso.com")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        "sync-attributes: checked=1 updated=1 unchanged=0 gone=0 failed=0"
    )
    assert bodies == [("user2@contoso.com", ["title"])]
    assert await _synced_logins(ledger_url) == {"user2@contoso.com"}

    code, out, err = await _sync(config, "--login", DELETED, "--deactivate-gone")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        "sync-attributes: checked=1 updated=0 unchanged=0 gone=1 failed=0"
    )
    assert {login for login, s in _statuses(okta).items() if s != "ACTIVE"} == {DELETED}

    code, out, err = await _sync(config, "--login", "nobody@contoso.com")
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        "sync-attributes: nobody@contoso.com was not put in Okta by an import of entra"
    ]


async def test_dry_run_writes_nothing_but_counts_the_same(
    small_tenant: RunningEmulator,
    okta: RunningOktaEmulator,
    bodies: list[tuple[str, list[str]]],
    tmp_path: Path,
) -> None:
    config, ledger_url = await _imported_and_edited(tmp_path, small_tenant, okta)
    before = okta.emulator.stats()["requests_by_endpoint"]

    code, out, err = await _sync(config, "--dry-run", "--deactivate-gone")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == FIRST_SYNC
    assert bodies == []
    assert set(_statuses(okta).values()) == {"ACTIVE"}
    writes = {
        endpoint: n - before.get(endpoint, 0)
        for endpoint, n in okta.emulator.stats()["requests_by_endpoint"].items()
        if not endpoint.startswith("GET ")
    }
    assert not any(writes.values()), writes
    assert await _synced_logins(ledger_url) == set()
    ledger = await open_ledger(ledger_url)
    try:
        assert await ledger.get_run(2) is None  # no sync run recorded
    finally:
        await ledger.close()
