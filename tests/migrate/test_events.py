"""Event deliveries -> ledger and actions, without HTTP (gateway/migrate/events.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import GatewayConfig, parse_config
from gateway.ledger import Decision, Ledger, UserState, open_ledger
from gateway.migrate.events import (
    Action,
    ActionQueue,
    ActionResult,
    BadEnvelope,
    Delivery,
    EventProcessor,
    Snapshot,
    parse_delivery,
)
from gateway.routing import Router
from tests.conftest import gateway_yaml
from tests.migrate.event_envelopes import PUBLISHED, envelope, event, okta_id

IMPORT = "user.import.password"
APP = "0oa_office365"


def _config(**migration: Any) -> GatewayConfig:
    extra: dict[str, Any] = {
        "migration": {
            "event_hook": {"auth": {"secrets": ["event-hook-secret-1"]}},
            **migration,
        }
    }
    if migration.get("prepare_on") or migration.get("sync_on_activate"):
        extra["okta"] = {
            "auth": {"secrets": ["okta-hook-secret-1"]},
            "org_url": "http://127.0.0.1:9",
            "api": {"token": "not-called-in-these-tests"},
        }
    return parse_config(gateway_yaml("http://127.0.0.1:9", extra=extra), env={})


def _snapshot(config: GatewayConfig) -> Snapshot:
    # Only the names of the sources matter here; nothing is verified.
    return Snapshot(config, Router(config.routes), {"entra": object(), "second": object()})  # type: ignore[dict-item]


def _delivery(*events: dict[str, Any]) -> Delivery:
    return parse_delivery(json.dumps(envelope(list(events))).encode())


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = await open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield opened
    finally:
        await opened.close()


class Recorded:
    """An ActionQueue stand-in that keeps what it is given."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    def put(self, action: Action) -> bool:
        self.actions.append(action)
        return True


def _processor(recorded: Recorded | None = None) -> EventProcessor:
    return EventProcessor(recorded)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"data": {}}',
        b'{"data": {"events": {}}}',
        b"[" * 100_000,
    ],
)
def test_what_is_not_an_event_envelope_is_refused(body: bytes) -> None:
    with pytest.raises(BadEnvelope):
        parse_delivery(body)


@pytest.mark.parametrize(
    "raw",
    [1, {"eventType": "user.lifecycle.create"}, {"uuid": "u1"}, {"uuid": 7, "eventType": "x"},
     {"uuid": "u" * 65, "eventType": "x"}],
)  # fmt: skip
def test_an_event_without_a_usable_uuid_or_type_is_left_out_not_the_delivery(raw: Any) -> None:
    good = event(IMPORT, okta_id(1))
    delivery = parse_delivery(json.dumps(envelope([raw, good])).encode())
    assert [e.uuid for e in delivery.events] == [good["uuid"]]
    assert len(delivery.unusable) == 1


def test_extra_and_missing_fields_are_accepted() -> None:
    delivery = parse_delivery(
        json.dumps(
            {"data": {"events": [{"uuid": "u1", "eventType": "x", "new": {"a": 1}}]}, "z": 1}
        ).encode()
    )
    (only,) = delivery.events
    assert (only.uuid, only.type, only.outcome, only.user_id, only.published) == (
        "u1", "x", None, None, None,
    )  # fmt: skip
    assert only.label == "other"


def test_the_user_target_is_found_by_type_not_by_position() -> None:
    first = _delivery(event("application.user_membership.add", okta_id(1), "a@contoso.com",
                            app_id=APP, user_first=True))  # fmt: skip
    last = _delivery(event("application.user_membership.add", okta_id(1), "a@contoso.com",
                           app_id=APP))  # fmt: skip
    for delivery in (first, last):
        (parsed,) = delivery.events
        assert (parsed.user_id, parsed.user_login, parsed.app_ids) == (
            okta_id(1), "a@contoso.com", (APP,),
        )  # fmt: skip
    assert parse_delivery(json.dumps(envelope([event(IMPORT, okta_id(2))])).encode()).events[
        0
    ].published == datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def test_import_success_marks_the_user_migrated_at_its_published_time(
    ledger: Ledger,
) -> None:
    await ledger.record_user("entra", "a@contoso.com", UserState.ACTIVATED, okta_id=okta_id(1))
    outcome = await _processor().process(
        ledger, _delivery(event(IMPORT, okta_id(1), "a@contoso.com")), _snapshot(_config())
    )
    assert outcome.counts == {(IMPORT, "recorded"): 1}
    user = await ledger.get_user("entra", "a@contoso.com")
    assert user is not None
    assert user.state is UserState.MIGRATED
    assert user.migrated_at == datetime.fromisoformat(PUBLISHED)


async def test_import_failure_is_counted_and_marks_nobody(ledger: Ledger) -> None:
    await ledger.record_user("entra", "a@contoso.com", UserState.ACTIVATED, okta_id=okta_id(1))
    outcome = await _processor().process(
        ledger,
        _delivery(event(IMPORT, okta_id(1), "a@contoso.com", result="FAILURE")),
        _snapshot(_config()),
    )
    assert outcome.counts == {(IMPORT, "import_failed"): 1}
    user = await ledger.get_user("entra", "a@contoso.com")
    assert user is not None and user.state is UserState.ACTIVATED
    assert await ledger.event_counts() == {(IMPORT, "FAILURE"): 1}


async def test_a_redelivered_event_changes_nothing(ledger: Ledger) -> None:
    await ledger.record_user("entra", "a@contoso.com", UserState.ACTIVATED, okta_id=okta_id(1))
    delivery = _delivery(
        event(IMPORT, okta_id(1), "a@contoso.com"),
        event(IMPORT, okta_id(2), "b@contoso.com"),  # unknown id: recorded under the route
    )
    snapshot = _snapshot(_config())
    await _processor().process(ledger, delivery, snapshot)
    before = [await ledger.get_user("entra", f"{x}@contoso.com") for x in "ab"]
    again = await _processor().process(ledger, delivery, snapshot)
    assert again.counts == {(IMPORT, "duplicate"): 2}
    assert [await ledger.get_user("entra", f"{x}@contoso.com") for x in "ab"] == before
    assert await ledger.event_counts() == {(IMPORT, "SUCCESS"): 2}


async def test_an_unknown_okta_id_goes_to_the_source_of_the_verified_decision(
    ledger: Ledger,
) -> None:
    # The route's first source is `entra`; the hook verified this login against `second`.
    at = datetime(2025, 2, 1, tzinfo=UTC)
    await ledger.record_decisions([Decision("second", "a@contoso.com", "verified", at)])
    outcome = await _processor().process(
        ledger, _delivery(event(IMPORT, okta_id(1), "a@contoso.com")), _snapshot(_config())
    )
    assert outcome.counts == {(IMPORT, "recorded"): 1}
    migrated = await ledger.get_user("second", "a@contoso.com")
    assert migrated is not None
    assert (migrated.state, migrated.okta_id) == (UserState.MIGRATED, okta_id(1))
    assert await ledger.get_user("entra", "a@contoso.com") is None


async def test_an_unknown_okta_id_without_a_decision_goes_to_the_routes_first_source(
    ledger: Ledger,
) -> None:
    outcome = await _processor().process(
        ledger, _delivery(event(IMPORT, okta_id(1), "a@fabrikam.com")), _snapshot(_config())
    )
    assert outcome.counts == {(IMPORT, "recorded"): 1}
    migrated = await ledger.get_user("entra", "a@fabrikam.com")
    assert migrated is not None and migrated.state is UserState.MIGRATED
    assert migrated.okta_id == okta_id(1)


async def test_a_login_without_a_route_is_ignored(ledger: Ledger) -> None:
    outcome = await _processor().process(
        ledger, _delivery(event(IMPORT, okta_id(1), "a@elsewhere.org")), _snapshot(_config())
    )
    assert outcome.counts == {(IMPORT, "ignored"): 1}
    assert await ledger.progress() == {}


async def test_an_import_event_without_a_user_target_is_failed_not_an_error(
    ledger: Ledger,
) -> None:
    outcome = await _processor().process(
        ledger, _delivery(event(IMPORT), event("user.session.start")), _snapshot(_config())
    )
    assert outcome.counts == {(IMPORT, "failed"): 1, ("other", "ignored"): 1}
    assert sum((await ledger.event_counts()).values()) == 2


async def test_a_redelivery_after_a_crash_before_the_mark_applies_it(ledger: Ledger) -> None:
    """Killed after recording the events, before marking: the redelivery must still mark."""
    await ledger.record_user("entra", "a@contoso.com", UserState.ACTIVATED, okta_id=okta_id(1))
    delivery = _delivery(event(IMPORT, okta_id(1), "a@contoso.com"))
    await ledger.record_events([e.ledger_row() for e in delivery.events])  # the first attempt
    outcome = await _processor().process(ledger, delivery, _snapshot(_config()))
    assert outcome.counts == {(IMPORT, "duplicate"): 1}
    user = await ledger.get_user("entra", "a@contoso.com")
    assert user is not None and user.state is UserState.MIGRATED


async def test_prepare_is_queued_for_the_configured_app_only(ledger: Ledger) -> None:
    config = _config(
        prepare_on=["application.user_membership.add", "user.lifecycle.create"],
        prepare_app_id=APP,
    )
    recorded = Recorded()
    add = "application.user_membership.add"
    delivery = _delivery(
        event(add, okta_id(1), "a@contoso.com", app_id=APP),
        event(add, okta_id(2), "b@contoso.com", app_id="0oa_other_app"),
        event("user.lifecycle.create", okta_id(3), "c@contoso.com"),
        event("user.lifecycle.activate", okta_id(4), "d@contoso.com"),  # no sync_on_activate
    )
    outcome = await _processor(recorded).process(ledger, delivery, _snapshot(config))
    assert sorted((a.kind, a.okta_id) for a in recorded.actions) == [
        ("prepare", okta_id(1)), ("prepare", okta_id(3)),
    ]  # fmt: skip
    assert outcome.counts == {
        (add, "recorded"): 1,
        (add, "ignored"): 1,
        ("user.lifecycle.create", "recorded"): 1,
        ("user.lifecycle.activate", "ignored"): 1,
    }
    again = await _processor(recorded).process(ledger, delivery, _snapshot(config))
    assert len(recorded.actions) == 2  # a redelivery queues nothing
    assert set(again.by_outcome()) == {"duplicate"}


async def test_activate_queues_a_sync_with_sync_on_activate(ledger: Ledger) -> None:
    recorded = Recorded()
    delivery = _delivery(event("user.lifecycle.activate", okta_id(4), "d@contoso.com"))
    await _processor(recorded).process(ledger, delivery, _snapshot(_config(sync_on_activate=True)))
    assert [(a.kind, a.okta_id) for a in recorded.actions] == [("sync", okta_id(4))]


async def test_a_thousand_events_are_recorded_in_one_delivery(ledger: Ledger) -> None:
    events = [event(IMPORT, okta_id(i), f"u{i}@contoso.com") for i in range(1000)]
    outcome = await _processor().process(ledger, _delivery(*events), _snapshot(_config()))
    assert outcome.counts == {(IMPORT, "recorded"): 1000}
    assert (await ledger.progress())["entra"].migrated == 1000


async def test_action_queue_retries_with_backoff_then_succeeds() -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def perform(action: Action) -> ActionResult:
        attempts.append(loop.time())
        if len(attempts) < 3:
            return ActionResult("failed", "http_503", retry=True)
        return ActionResult("activated")

    queue = ActionQueue(perform, workers=1, attempts=4, backoff_seconds=0.05)
    queue.start()
    assert queue.put(Action("prepare", okta_id(1), "u1"))
    await asyncio.wait_for(queue.idle(), 10)
    await queue.close()
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.05 and attempts[2] - attempts[1] >= 0.1
    assert queue.done == {"prepare:activated": 1}


async def test_action_queue_gives_up_after_its_attempts_and_survives_exceptions() -> None:
    calls = 0

    async def perform(action: Action) -> ActionResult:
        nonlocal calls
        calls += 1
        raise ConnectionResetError

    queue = ActionQueue(perform, workers=2, attempts=3, backoff_seconds=0)
    queue.start()
    queue.put(Action("sync", okta_id(1), "u1"))
    queue.put(Action("sync", okta_id(2), "u2"))
    await asyncio.wait_for(queue.idle(), 10)
    await queue.close()
    assert calls == 6
    assert queue.done == {"sync:failed": 2}


async def test_action_queue_is_bounded_and_close_cancels_what_is_left() -> None:
    started = asyncio.Event()

    async def perform(action: Action) -> ActionResult:
        started.set()
        await asyncio.sleep(3600)
        return ActionResult("activated")

    queue = ActionQueue(perform, workers=1, max_queued=2)
    queue.start()
    assert queue.put(Action("prepare", okta_id(1), "u1"))
    await started.wait()
    assert queue.put(Action("prepare", okta_id(2), "u2"))
    assert queue.put(Action("prepare", okta_id(3), "u3"))
    assert not queue.put(Action("prepare", okta_id(4), "u4"))  # full: dropped, never waits
    await asyncio.wait_for(queue.close(drain_seconds=0.1), 5)
    assert queue.dropped == 1
    assert not queue.put(Action("prepare", okta_id(5), "u5"))  # closed


_ODD_TIMES = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                     "2025-03-01T09:00:00", "garbage", "", "2025-13-01T00:00:00Z"]),
    st.integers(), st.floats(allow_nan=True), st.booleans(), st.lists(st.integers(), max_size=2),
    st.text(max_size=80),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
)  # fmt: skip
_ODD_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "published": _ODD_TIMES,
        "outcome": st.one_of(st.none(), st.integers(), st.text(max_size=5),
                             st.fixed_dictionaries({"result": st.one_of(st.none(), st.integers(),
                                                                        st.text(max_size=40))})),
        "target": st.one_of(st.none(), st.text(max_size=5), st.integers(),
                            st.lists(st.one_of(st.integers(), st.dictionaries(
                                st.sampled_from(["id", "type", "alternateId"]),
                                st.one_of(st.text(max_size=70), st.integers(), st.none()),
                            )), max_size=3)),
        "uuid": st.one_of(st.text(max_size=70), st.integers(), st.none()),
        "eventType": st.one_of(st.text(max_size=140), st.integers()),
    },
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(odd=_ODD_FIELDS)
def test_any_odd_event_is_usable_or_left_out_and_the_good_one_beside_it_stays(
    odd: dict[str, Any],
) -> None:
    good = event(IMPORT, okta_id(1), "a@contoso.com")
    raw = {**event(IMPORT, okta_id(2), "b@contoso.com"), **odd}
    delivery = parse_delivery(json.dumps(envelope([raw, good])).encode())
    assert good["uuid"] in [e.uuid for e in delivery.events]
    assert len(delivery.events) + len(delivery.unusable) == 2
    for parsed in delivery.events:
        # What the ledger and the marks are given is always storable.
        assert parsed.published is None or parsed.published.tzinfo is UTC


async def test_an_odd_timestamp_is_failed_and_the_good_event_beside_it_is_applied(
    ledger: Ledger,
) -> None:
    for i in (1, 2):
        await ledger.record_user(
            "entra", f"u{i}@contoso.com", UserState.ACTIVATED, okta_id=okta_id(i)
        )
    odd = event(IMPORT, okta_id(2), "u2@contoso.com", published="0001-01-01T00:00:00+14:00")
    good = event(IMPORT, okta_id(1), "u1@contoso.com")
    outcome = await _processor().process(ledger, _delivery(odd, good), _snapshot(_config()))
    assert outcome.counts == {(IMPORT, "failed"): 1, (IMPORT, "recorded"): 1}
    marked = await ledger.get_user("entra", "u1@contoso.com")
    assert marked is not None and marked.state is UserState.MIGRATED
    left = await ledger.get_user("entra", "u2@contoso.com")
    assert left is not None and left.state is UserState.ACTIVATED
    assert await ledger.event_counts() == {(IMPORT, "SUCCESS"): 1}


@pytest.mark.parametrize(
    "odd",
    [{"published": "2025-03-01T09:00:00"}, {"published": 12345}, {"published": 1e308},
     {"published": "garbage"}, {"published": "0001-01-01T00:00:00+14:00"},
     {"published": "9999-12-31T23:59:59-01:00"}, {"published": ["2025"]},
     {"outcome": "SUCCESS"}, {"outcome": {"result": 1}}, {"target": {"id": "x"}}, {"target": [7]}],
)  # fmt: skip
def test_a_malformed_field_makes_the_event_unusable(odd: dict[str, Any]) -> None:
    raw = {**event(IMPORT, okta_id(2), "b@contoso.com"), **odd}
    delivery = parse_delivery(json.dumps(envelope([raw])).encode())
    assert (delivery.events, [e.label for e in delivery.unusable]) == ((), [IMPORT])
