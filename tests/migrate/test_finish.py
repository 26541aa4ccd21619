"""`gateway migrate finish`: the pending users of a retired source get one action in Okta."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from emulators.okta import DEFAULT_API_TOKEN
from gateway.ledger import RunCommand, open_ledger
from gateway.metrics import GatewayMetrics
from gateway.migrate.finish import Finisher
from gateway.migration_gauges import refresh_gauges
from gateway.okta_api import OktaApiClient, SswsToken
from tests.migrate.rehearsal import SOURCE, Rehearsal, gateway_cli, rehearse

USERS = 24
SIGNED_IN = 8  # user0..user7 sign in; user8..user23 stay pending
PENDING = USERS - SIGNED_IN


async def _finish(config: Path, *extra: str) -> tuple[int, str, str]:
    return await gateway_cli("migrate", "finish", "-c", str(config), "--source", SOURCE, *extra)


def _statuses(rehearsal: Rehearsal) -> Counter[str]:
    """The pending users' Okta statuses (user8..)."""
    users = rehearsal.okta_users()
    return Counter(users[f"user{i}@contoso.com"].status.value for i in range(SIGNED_IN, USERS))


def _signed_in_untouched(rehearsal: Rehearsal) -> bool:
    users = rehearsal.okta_users()
    return all(
        users[f"user{i}@contoso.com"].status.value == "ACTIVE"
        and users[f"user{i}@contoso.com"].provider == "OKTA"
        for i in range(SIGNED_IN)
    )


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("reset_password", "RECOVERY"),
        ("expire_password", "PASSWORD_EXPIRED"),
        ("deactivate", "DEPROVISIONED"),
    ],
)
async def test_each_action_reaches_exactly_the_pending_users(
    tmp_path: Path, action: str, status: str
) -> None:
    async with rehearse(tmp_path, users=USERS, sign_ins=SIGNED_IN) as rehearsal:
        report = tmp_path / "finish.csv"
        code, out, err = await _finish(
            rehearsal.config, "--action", action, "--force", "--report", str(report)
        )
        assert code == 0, err
        assert out.strip().splitlines()[-1] == f"finish: pending={PENDING} done={PENDING} failed=0"
        assert _statuses(rehearsal) == {status: PENDING}
        assert _signed_in_untouched(rehearsal)
        emails = rehearsal.okta.emulator.stats()["password_reset_emails_total"]
        assert emails == (PENDING if action == "reset_password" else 0)
        ledger = await open_ledger(rehearsal.ledger)
        try:
            run = await ledger.get_run(2)
            user = await ledger.get_user(SOURCE, "user9@contoso.com")
            progress = (await ledger.progress())[SOURCE]
        finally:
            await ledger.close()
    assert run is not None and run.command == RunCommand.FINISH and run.source == SOURCE
    assert run.counts == {"pending": PENDING, "done": PENDING}
    assert user is not None and user.reason == f"finish_{action}" and user.last_run_id == 2
    assert progress.migrated == SIGNED_IN
    assert (progress.pending, progress.finished) == (0, PENDING)  # finished, not pending
    with report.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["login", "okta_id", "result", "reason"]
    assert len(rows) == PENDING + 1
    assert {row[2] for row in rows[1:]} == {"done"}


async def test_dry_run_changes_nothing_in_okta_or_the_ledger(tmp_path: Path) -> None:
    async with rehearse(tmp_path, users=USERS, sign_ins=SIGNED_IN) as rehearsal:
        code, out, err = await _finish(
            rehearsal.config, "--action", "deactivate", "--force", "--dry-run"
        )
        assert code == 0, err
        assert out.strip().splitlines()[-1] == (
            f"finish: pending={PENDING} done={PENDING} failed=0 dry_run=1"
        )
        assert _statuses(rehearsal) == {"ACTIVE": PENDING}
        ledger = await open_ledger(rehearsal.ledger)
        try:
            assert await ledger.get_run(2) is None
            user = await ledger.get_user(SOURCE, "user9@contoso.com")
        finally:
            await ledger.close()
    assert user is not None and user.reason is None


async def test_a_source_not_ready_to_retire_is_refused_without_force(tmp_path: Path) -> None:
    async with rehearse(tmp_path, users=USERS, sign_ins=SIGNED_IN) as rehearsal:
        code, out, err = await _finish(rehearsal.config, "--action", "reset_password")
        assert code == 1
        assert "is not ready to retire" in err and "--force" in err
        assert out == ""
        assert _statuses(rehearsal) == {"ACTIVE": PENDING}


async def test_a_user_whose_sign_in_was_missed_is_marked_migrated_not_reset(
    tmp_path: Path,
) -> None:
    async with rehearse(tmp_path, users=USERS, sign_ins=SIGNED_IN) as rehearsal:
        # user20 signs in without the gateway hearing of it (no hook call, no event).
        async with aiohttp.ClientSession() as session:
            url = f"{rehearsal.okta.url}/_emulator/users/user20@contoso.com/sign-in"
            async with session.post(url) as resp:
                assert resp.status == 200
        code, out, err = await _finish(rehearsal.config, "--action", "reset_password", "--force")
        assert code == 0, err
        last = PENDING - 1
        assert out.strip().splitlines()[-1] == f"finish: pending={last} done={last} failed=0"
        assert "1 users had signed in after all" in err
        user20 = rehearsal.okta_users()["user20@contoso.com"]
        assert user20.status.value == "ACTIVE" and user20.provider == "OKTA"
        ledger = await open_ledger(rehearsal.ledger)
        try:
            progress = (await ledger.progress())[SOURCE]
        finally:
            await ledger.close()
    assert progress.migrated == SIGNED_IN + 1


async def test_failed_users_are_counted_and_a_rerun_finishes_them(tmp_path: Path) -> None:
    async with rehearse(tmp_path, users=USERS, sign_ins=SIGNED_IN) as rehearsal:
        okta = rehearsal.okta
        # Every other lifecycle call answers 500, and this client does not retry.
        okta.emulator.set_fault("http_500", rate=0.5, buckets=["user_lifecycle"])
        ledger = await open_ledger(rehearsal.ledger)
        try:
            async with OktaApiClient(okta.url, SswsToken(DEFAULT_API_TOKEN), max_retries=0) as c:
                first = await Finisher(c, ledger, SOURCE, "reset_password").run()
            assert first.counts == {"done": PENDING // 2, "failed": PENDING // 2}
            assert first.last_line(False) == (
                f"finish: pending={PENDING} done={PENDING // 2} failed={PENDING // 2}"
            )
            assert _statuses(rehearsal) == {"RECOVERY": PENDING // 2, "ACTIVE": PENDING // 2}
            progress = (await ledger.progress())[SOURCE]
            # The failed ones (`finish_reset_password_failed`) are still pending.
            assert (progress.pending, progress.finished) == (PENDING // 2, PENDING // 2)
            failed = {login for login, _, result, _ in first.report if result == "failed"}
            okta.emulator.set_fault("none")
            async with OktaApiClient(okta.url, SswsToken(DEFAULT_API_TOKEN), max_retries=0) as c:
                second = await Finisher(c, ledger, SOURCE, "reset_password").run()
        finally:
            await ledger.close()
        assert second.counts == {"done": PENDING // 2}
        assert second.already_done == PENDING // 2
        assert {login for login, _, _, _ in second.report} == failed
        assert _statuses(rehearsal) == {"RECOVERY": PENDING}


async def test_a_429_that_outlasts_the_retries_fails_the_cli_run_and_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    async with rehearse(tmp_path, users=12, sign_ins=4) as rehearsal:
        rehearsal.okta.emulator.set_fault(
            "http_429", rate=1.0, retry_after=0, buckets=["user_lifecycle"]
        )
        code, out, err = await _finish(rehearsal.config, "--action", "expire_password", "--force")
        assert code == 1
        assert out.strip().splitlines()[-1] == "finish: pending=8 done=0 failed=8"
        assert "expire_password 429=" in err  # the request counts of the run, on stderr
        rehearsal.okta.emulator.set_fault("none")
        code, out, err = await _finish(rehearsal.config, "--action", "expire_password", "--force")
        assert code == 0, err
        assert out.strip().splitlines()[-1] == "finish: pending=8 done=8 failed=0"
        statuses = Counter(
            rehearsal.okta_users()[f"user{i}@contoso.com"].status.value for i in range(4, 12)
        )
        assert statuses == {"PASSWORD_EXPIRED": 8}


async def test_after_finish_status_and_gauges_count_those_users_finished_not_pending(
    tmp_path: Path,
) -> None:
    async with rehearse(tmp_path, users=USERS, sign_ins=SIGNED_IN) as rehearsal:
        config = str(rehearsal.config)
        code, out, err = await gateway_cli("migrate", "status", "-c", config, "--json")
        assert code == 0, err
        before = json.loads(out)["sources"][SOURCE]
        code, out, err = await _finish(rehearsal.config, "--action", "reset_password", "--force")
        assert code == 0, err
        stragglers = tmp_path / "stragglers.csv"
        code, out, err = await gateway_cli(
            "migrate", "status", "-c", config, "--json", "--stragglers", str(stragglers)
        )
        assert code == 0, err
        after = json.loads(out)["sources"][SOURCE]
        assert "stragglers: 0 users" in err
        _, table, _ = await gateway_cli("migrate", "status", "-c", config)
        ledger = await open_ledger(rehearsal.ledger)
        try:
            metrics = GatewayMetrics()
            await refresh_gauges(ledger, metrics, [SOURCE])
        finally:
            await ledger.close()
        # Ready to retire now (nobody pending), so another action needs no --force, and it
        # still reaches the finished users.
        code, out, err = await _finish(rehearsal.config, "--action", "deactivate")
        assert code == 0, err
        assert out.strip().splitlines()[-1] == f"finish: pending={PENDING} done={PENDING} failed=0"
        assert _statuses(rehearsal) == {"DEPROVISIONED": PENDING}
    assert (before["pending"], before["finished"], before["ready_to_retire"]) == (PENDING, 0, False)
    assert (after["imported"], after["migrated"], after["verified_unconfirmed"]) == (
        USERS,
        SIGNED_IN,
        0,
    )
    assert (after["pending"], after["finished"]) == (0, PENDING)
    assert after["ready_to_retire"] is True
    assert after["eta_days"] == 0  # nobody left to wait for
    assert table.strip().splitlines()[-1] == (
        f"status: sources=1 imported={USERS} migrated={SIGNED_IN} verified_unconfirmed=0 "
        f"pending=0 finished={PENDING}"
    )

    def gauge(state: str) -> float | None:
        labels = {"source": SOURCE, "state": state}
        return metrics.registry.get_sample_value("gateway_migration_users", labels)

    assert gauge("finished") == after["finished"] == PENDING
    assert gauge("pending") == 0
    assert gauge("imported") == USERS
