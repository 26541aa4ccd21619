"""`gateway migrate prepare` end to end: STAGED users in the Okta emulator -> gateway CLI -> ledger."""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulators.okta import (
    DEFAULT_API_TOKEN,
    OktaOrg,
    RunningOktaEmulator,
    SeedUser,
    start_okta_emulator,
)
from gateway.config import load_config
from gateway.ledger import UserState, open_ledger
from gateway.migrate.prepare import Preparer
from tests.conftest import HOOK_SECRET

ROUTED = 1000
UNROUTED = ("a@elsewhere.org", "b@elsewhere.org", "c@elsewhere.org")  # no route: skipped


def _seed(login: str, credential: Any = "none") -> SeedUser:
    profile = {"login": login, "email": login, "firstName": "F", "lastName": "L"}
    return SeedUser(profile=profile, credential=credential)


async def _started(org: OktaOrg) -> RunningOktaEmulator:
    running = await start_okta_emulator(org)
    # Fast buckets for a test: pacing is the client's business, tested with import.
    running.emulator.set_limits({bucket: None for bucket in running.emulator.limiter.limits})
    return running


@pytest.fixture
async def okta() -> AsyncIterator[RunningOktaEmulator]:
    base = OktaOrg(users=[_seed(login) for login in UNROUTED])
    running = await _started(OktaOrg.with_staged_users(ROUTED, "contoso.com", base=base))
    try:
        yield running
    finally:
        await running.close()


def _config(path: Path, okta_url: str, ledger: str) -> Path:
    data: dict[str, Any] = {
        "okta": {
            "auth": {"secrets": [HOOK_SECRET]},
            "org_url": okta_url,
            "hook_url": "https://gw.example.com/okta/password-import",
            "api": {"token": DEFAULT_API_TOKEN},
        },
        "sources": [
            {
                "name": "entra",
                "type": "azure_ad",
                "tenant_id": "11111111-2222-3333-4444-555555555555",
                "client_id": "66666666-7777-8888-9999-000000000000",
                "client_secret": "not-used-by-prepare",
                "authority": "http://127.0.0.1:9",  # prepare never calls Entra
            }
        ],
        "routes": [{"match": {"domains": ["contoso.com"]}, "sources": ["entra"]}],
        "migration": {"ledger": ledger, "sources": {"entra": {}}},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def _prepare(config: Path, *extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "migrate", "prepare", "-c", str(config), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_prepare_hooks_then_activates_every_routed_user_without_email(
    okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'l.db'}"
    config = _config(tmp_path / "c.yaml", okta.url, ledger_url)
    code, out, err = await _prepare(config, "--report", str(tmp_path / "r.csv"))
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"prepare: staged={ROUTED + 3} hooked={ROUTED} activated={ROUTED} skipped=3 failed=0"
    )
    stats = okta.emulator.stats()
    assert stats["activation_emails_total"] == 0
    # ACTIVE with provider IMPORT: the hook was set before activation (else PROVISIONED).
    assert stats["users_by_status"] == {"ACTIVE": ROUTED, "STAGED": 3}
    assert stats["users_by_provider"] == {"IMPORT": ROUTED, "OKTA": 3}
    with (tmp_path / "r.csv").open(encoding="utf-8") as report:
        rows = list(csv.reader(report))
    assert rows[0] == ["login", "okta_id", "result", "reason"]
    assert sorted((r[0], r[2], r[3]) for r in rows[1:]) == [
        (login, "skipped", "no_route") for login in UNROUTED
    ]
    assert all(r[1].startswith("00u") for r in rows[1:])

    ledger = await open_ledger(ledger_url)
    try:
        user = await ledger.get_user("entra", "user7@contoso.com")
        assert user is not None and user.state is UserState.ACTIVATED
        assert user.okta_id and user.hooked_at and user.activated_at
        assert user.imported_at is None  # not created by this tool: rollback leaves it alone
        run = await ledger.get_run(user.last_run_id or 0)
        assert run is not None and run.command == "prepare"
        assert run.counts["activated"] == ROUTED
    finally:
        await ledger.close()

    # A re-run finds only the unrouted users still STAGED and changes nothing in Okta.
    before = okta.emulator.stats()
    code, out, err = await _prepare(config)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        "prepare: staged=3 hooked=0 activated=0 skipped=3 failed=0"
    )
    after = okta.emulator.stats()
    for key in ("events", "users_by_status", "users_by_provider", "activation_emails_total"):
        assert after[key] == before[key], key


async def test_a_user_already_hooked_but_staged_is_only_activated(tmp_path: Path) -> None:
    # An earlier run interrupted between the hook and the activation left this one behind.
    base = OktaOrg(users=[_seed("resumed@contoso.com", credential="hook")])
    running = await _started(OktaOrg.with_staged_users(5, "contoso.com", base=base))
    try:
        ledger_url = f"sqlite:///{tmp_path / 'l.db'}"
        config = _config(tmp_path / "c.yaml", running.url, ledger_url)
        code, out, err = await _prepare(config)
        assert code == 0, err
        assert out.strip().splitlines()[-1] == (
            "prepare: staged=6 hooked=5 activated=6 skipped=0 failed=0"
        )
        stats = running.emulator.stats()
        assert stats["users_by_status"] == {"ACTIVE": 6}
        assert stats["activation_emails_total"] == 0
    finally:
        await running.close()
    ledger = await open_ledger(ledger_url)
    try:
        resumed = await ledger.get_user("entra", "resumed@contoso.com")
        assert resumed is not None and resumed.state is UserState.ACTIVATED
        assert resumed.hooked_at is None  # this run set no hook on it
    finally:
        await ledger.close()


async def test_dry_run_changes_nothing(okta: RunningOktaEmulator, tmp_path: Path) -> None:
    config = _config(tmp_path / "c.yaml", okta.url, f"sqlite:///{tmp_path / 'l.db'}")
    code, out, err = await _prepare(config, "--dry-run")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"prepare: staged={ROUTED + 3} hooked={ROUTED} activated={ROUTED} skipped=3 failed=0"
        " dry_run=1"
    )
    stats = okta.emulator.stats()
    assert stats["users_by_status"] == {"STAGED": ROUTED + 3}
    assert stats["users_by_provider"] == {"OKTA": ROUTED + 3}
    assert not (tmp_path / "l.db").exists()


class _OffsetPagedOkta:
    """An Okta whose search pages by offset over live results.

    The emulator's cursor (`after` = the last id) happens to survive users leaving a search;
    Okta promises no such thing, and here each activation shifts every later page by one.
    """

    PAGE = 20

    def __init__(self, n: int) -> None:
        self.users = {
            f"00u{i:017d}": {
                "id": f"00u{i:017d}",
                "status": "STAGED",
                "profile": {"login": f"user{i}@contoso.com"},
                "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            }
            for i in range(n)
        }
        self.lagging: set[str] = set()  # still listed by the search, whatever their status

    async def list_users(self, *, search: str) -> AsyncIterator[dict[str, Any]]:
        assert search == 'status eq "STAGED"'
        offset = 0
        while True:
            staged = [
                u for u in self.users.values() if u["status"] == "STAGED" or u["id"] in self.lagging
            ]
            page = staged[offset : offset + self.PAGE]
            if not page:
                return
            for user in page:
                yield dict(user)
            offset += self.PAGE
            await asyncio.sleep(0)  # the next page is fetched later: activations run meanwhile

    async def get_user(self, okta_id: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        return dict(self.users[okta_id])

    async def put_password_hook(self, okta_id: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.users[okta_id]["credentials"] = {"provider": {"type": "IMPORT", "name": "IMPORT"}}
        return dict(self.users[okta_id])

    async def activate(self, okta_id: str, *, send_email: bool = False) -> None:
        await asyncio.sleep(0)
        assert not send_email
        self.users[okta_id]["status"] = "ACTIVE"


async def test_no_user_is_missed_when_activations_shift_the_search_pages(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path / "c.yaml", "http://127.0.0.1:9", "sqlite://"))
    fake = _OffsetPagedOkta(250)
    outcome = await Preparer(config, fake, None, concurrency=8).run()  # type: ignore[arg-type]
    assert outcome.last_line(False) == (
        "prepare: staged=250 hooked=250 activated=250 skipped=0 failed=0"
    )
    assert {u["status"] for u in fake.users.values()} == {"ACTIVE"}


async def test_a_user_no_longer_staged_is_left_alone_though_the_search_lags(
    tmp_path: Path,
) -> None:
    config = load_config(_config(tmp_path / "c.yaml", "http://127.0.0.1:9", "sqlite://"))
    fake = _OffsetPagedOkta(3)
    signed_in = fake.users["00u00000000000000001"]
    signed_in["status"] = "ACTIVE"  # has its own Okta password: a hook would replace it
    fake.lagging.add(signed_in["id"])  # search results are eventually consistent
    outcome = await Preparer(config, fake, None).run()  # type: ignore[arg-type]
    assert outcome.last_line(False) == ("prepare: staged=3 hooked=2 activated=2 skipped=1 failed=0")
    assert outcome.report == [("user1@contoso.com", signed_in["id"], "skipped", "not_staged")]
    assert signed_in["credentials"]["provider"]["type"] == "OKTA"
