"""`gateway migrate status`: the ledger's numbers against Okta's ground truth, refresh, output."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulators.okta import DEFAULT_API_TOKEN
from gateway.ledger import RunCommand, UserState, open_ledger
from gateway.migrate.reconcile import ReconcileOutcome, Reconciler
from gateway.migrate.reconcile import _time as reconcile_time
from gateway.okta_api import OktaApiClient, SswsToken
from tests.migrate.rehearsal import SOURCE, gateway_cli, rehearse

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def _status(config: Path, *extra: str) -> tuple[int, Any, str]:
    """`migrate status --json ...`: (exit code, the parsed object, stderr)."""
    code, out, err = await gateway_cli("migrate", "status", "-c", str(config), "--json", *extra)
    return code, json.loads(out) if out.strip() else None, err


async def test_status_equals_okta_after_a_rehearsal_of_1000_users_and_600_sign_ins(
    tmp_path: Path,
) -> None:
    async with rehearse(tmp_path, users=1000, sign_ins=600) as rehearsal:
        truth = rehearsal.providers()
        assert truth == {"OKTA": 600, "IMPORT": 400}
        code, status, err = await _status(rehearsal.config)
    assert code == 0, err
    entra = status["sources"][SOURCE]
    assert entra["imported"] == sum(truth.values())
    assert entra["migrated"] == truth["OKTA"]
    assert entra["verified_unconfirmed"] + entra["pending"] == truth["IMPORT"]
    assert entra["pending"] == 400 and entra["verified_unconfirmed"] == 0
    assert entra["native"] == 0
    assert entra["last_24h"] == 600
    assert entra["last_verified_at"] is not None
    assert entra["ready_to_retire"] is False


async def test_refresh_gets_the_numbers_right_when_every_event_was_dropped(
    tmp_path: Path,
) -> None:
    async with rehearse(tmp_path, users=1000, sign_ins=600, drop_events=True) as rehearsal:
        truth = rehearsal.providers()
        _, before, _ = await _status(rehearsal.config)
        code, after, err = await _status(rehearsal.config, "--refresh")
    # Without the events, the hook's decisions are all the ledger knows.
    assert before["sources"][SOURCE]["pending"] == 400
    assert before["sources"][SOURCE]["migrated"] == 0
    assert before["sources"][SOURCE]["verified_unconfirmed"] == 600
    assert code == 0, err
    entra = after["sources"][SOURCE]
    assert entra["migrated"] == truth["OKTA"] == 600
    assert entra["verified_unconfirmed"] + entra["pending"] == truth["IMPORT"] == 400
    assert entra["verified_unconfirmed"] == 0
    assert entra["last_24h"] == 600
    assert "refresh: " in err and "failed=0" in err


async def test_provider_reconciliation_alone_marks_the_signed_in_users_and_keeps_natives(
    tmp_path: Path,
) -> None:
    # No System Log backfill: only credentials.provider.type says who migrated.
    async with rehearse(tmp_path, users=100, sign_ins=60, drop_events=True) as rehearsal:
        ledger = await open_ledger(rehearsal.ledger)
        try:
            # A native-hash user: Okta shows IMPORT for it, and it stays migrated.
            someone = rehearsal.okta_users()["user99@contoso.com"]
            await ledger.record_user(
                SOURCE,
                "native@contoso.com",
                UserState.MIGRATED,
                okta_id=someone.id,
                native=True,
                migrated_at=datetime.now(UTC),
            )
            async with OktaApiClient(rehearsal.okta.url, SswsToken(DEFAULT_API_TOKEN)) as okta:
                outcome = ReconcileOutcome()
                reconciler = Reconciler(okta, ledger, batch_size=7, strategy="ids")
                await reconciler.reconcile_source(SOURCE, outcome)
                searches = rehearsal.okta.emulator.stats()
            progress = (await ledger.progress())[SOURCE]
        finally:
            await ledger.close()
    assert outcome.counts == {"checked": 100, "migrated": 60, "pending": 40}
    assert progress.migrated == 61 and progress.native == 1
    assert progress.pending == 40 and progress.verified_unconfirmed == 0
    # 100 users in batches of 7: 15 searches, not one read per user.
    listed = searches["requests_by_endpoint"].get("GET /api/v1/users", 0)
    assert listed == 15, searches["requests_by_endpoint"]


async def test_refresh_records_a_refresh_run(tmp_path: Path) -> None:
    async with rehearse(tmp_path, users=20, sign_ins=5, drop_events=True) as rehearsal:
        code, _, err = await _status(rehearsal.config, "--refresh")
        ledger = await open_ledger(rehearsal.ledger)
        try:
            run = await ledger.get_run(2)  # run 1 is the import
        finally:
            await ledger.close()
    assert code == 0, err
    assert run is not None and run.command == RunCommand.REFRESH and run.finished_at is not None
    assert run.counts["failed"] == 0
    assert run.counts["events"] + run.counts["migrated"] >= 5


# Output contract: a ledger seeded directly, no Okta needed.


def _config(tmp_path: Path, ledger: str) -> Path:
    path = tmp_path / "c.yaml"
    data = {
        "okta": {"auth": {"secrets": ["Basic dGVzdDp0ZXN0LXNlY3JldA=="]}},
        "sources": [
            {
                "name": SOURCE,
                "type": "azure_ad",
                "tenant_id": "00000000-0000-0000-0000-000000000001",
                "client_id": "00000000-0000-0000-0000-000000000002",
                "client_secret": "not-used-here",
            }
        ],
        "routes": [{"match": {"domains": ["contoso.com"]}, "sources": [SOURCE]}],
        "migration": {"ledger": ledger, "sources": {SOURCE: {}}},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def _seeded(tmp_path: Path) -> Path:
    """3 migrated (1 native), 1 verified not confirmed, 3 pending, 2 finished.

    One pending login looks like a formula; another had a `migrate finish` action fail (still
    pending); the finished ones were reset and deactivated by `migrate finish`.
    """
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = await open_ledger(url)
    now = datetime.now(UTC)
    day_ago = now - timedelta(days=2)
    try:
        for i, login in enumerate(["b@contoso.com", "=cmd|'/c calc'!A1@contoso.com", "a@c.com"]):
            await ledger.record_user(
                SOURCE, login, UserState.ACTIVATED, okta_id=f"00u{i}", imported_at=day_ago,
                reason="finish_reset_password_failed" if login == "a@c.com" else None,
            )  # fmt: skip
        for i, reason in enumerate(["finish_reset_password", "finish_deactivate"]):
            await ledger.record_user(
                SOURCE, f"f{i}@contoso.com", UserState.ACTIVATED, okta_id=f"00uf{i}",
                imported_at=day_ago, reason=reason,
            )  # fmt: skip
        await ledger.record_user(SOURCE, "v@contoso.com", UserState.ACTIVATED, okta_id="00uv")
        for i in range(3):
            await ledger.record_user(
                SOURCE,
                f"m{i}@contoso.com",
                UserState.MIGRATED,
                okta_id=f"00um{i}",
                native=i == 0,
                migrated_at=now - timedelta(hours=1),
            )
        from gateway.ledger import Decision

        await ledger.record_decisions(
            [Decision(SOURCE, "v@contoso.com", "verified", now - timedelta(minutes=5))]
        )
    finally:
        await ledger.close()
    return _config(tmp_path, url)


async def test_json_is_one_object_with_the_documented_schema(tmp_path: Path) -> None:
    config = await _seeded(tmp_path)
    code, status, _ = await _status(config)
    assert code == 0
    assert set(status) == {"generated_at", "sources"}
    assert ISO.match(status["generated_at"])
    entra = status["sources"][SOURCE]
    types = {
        "imported": int,
        "migrated": int,
        "native": int,
        "verified_unconfirmed": int,
        "pending": int,
        "finished": int,
        "last_24h": int,
        "daily_rate_7d": float,
        "eta_days": float,
        "last_verified_at": str,
        "ready_to_retire": bool,
    }
    assert set(entra) == set(types)
    assert {key: type(value) for key, value in entra.items()} == types
    assert ISO.match(entra["last_verified_at"])
    assert (entra["imported"], entra["migrated"], entra["native"]) == (9, 3, 1)
    assert (entra["verified_unconfirmed"], entra["pending"], entra["finished"]) == (1, 3, 2)
    assert entra["last_24h"] == 3
    assert entra["daily_rate_7d"] == round(3 / 7, 3)
    assert entra["eta_days"] == round(4 / (3 / 7), 1)  # the finished are not waited for
    assert entra["ready_to_retire"] is False


async def test_eta_is_null_when_nobody_migrated_for_a_week(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = await open_ledger(url)
    await ledger.record_user(SOURCE, "p@contoso.com", UserState.ACTIVATED, okta_id="00up")
    await ledger.close()
    code, status, _ = await _status(_config(tmp_path, url))
    assert code == 0
    assert status["sources"][SOURCE]["eta_days"] is None
    assert status["sources"][SOURCE]["last_verified_at"] is None


async def test_the_table_lists_each_source_and_ends_with_the_totals(tmp_path: Path) -> None:
    config = await _seeded(tmp_path)
    code, out, _ = await gateway_cli("migrate", "status", "-c", str(config))
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:7] == [
        "SOURCE", "IMPORTED", "MIGRATED", "NATIVE", "UNCONFIRMED", "PENDING", "FINISHED"
    ]  # fmt: skip
    assert lines[1].split()[:8] == [SOURCE, "9", "3", "(33%)", "1", "1", "3", "2"]
    # Right-aligned under its header, like the other numbers.
    end = lines[0].index(" FINISHED ") + len(" FINISHED")
    assert lines[1][:end].endswith(" 2") and lines[1][end] == " "
    assert lines[-1] == (
        "status: sources=1 imported=9 migrated=3 verified_unconfirmed=1 pending=3 finished=2"
    )


async def test_stragglers_are_the_pending_users_written_safely(tmp_path: Path) -> None:
    config = await _seeded(tmp_path)
    path = tmp_path / "stragglers.csv"
    code, _, err = await _status(config, "--stragglers", str(path))
    assert code == 0
    assert "stragglers: 3 users" in err  # not the 2 finished ones
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["login", "okta_id", "source", "imported_at"]
    assert [row[:3] for row in rows[1:]] == [
        ["'=cmd|'/c calc'!A1@contoso.com", "00u1", SOURCE],  # never run as a formula
        ["a@c.com", "00u2", SOURCE],
        ["b@contoso.com", "00u0", SOURCE],
    ]
    assert all(ISO.match(row[3]) for row in rows[1:])


async def test_refresh_without_okta_api_settings_is_refused(tmp_path: Path) -> None:
    config = await _seeded(tmp_path)
    code, out, err = await gateway_cli("migrate", "status", "-c", str(config), "--refresh")
    assert code == 1
    assert out == ""
    assert "--refresh needs okta.org_url and okta.api" in err


@pytest.mark.parametrize(
    "published", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "not a time", 17]
)
def test_a_system_log_time_out_of_range_in_utc_is_no_time(published: object) -> None:
    # Valid ISO 8601 but out of range once moved to UTC: storing it raised OverflowError.
    assert reconcile_time(published) is None


def test_a_system_log_time_is_read_in_utc() -> None:
    assert reconcile_time("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
