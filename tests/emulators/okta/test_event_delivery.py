"""Event hook deliveries, the System Log API, and the lifecycle calls that end a migration."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from emulators.okta import Credential, OktaEmulator, OktaOrg, RunningOktaEmulator
from emulators.okta.models import iso
from tests.emulators.okta.conftest import FakeClock, OktaApi, assert_okta_error, profile_of

SECRET = "Basic ZXZlbnRzOnNlY3JldA=="
HOOK_SECRET = "Basic aG9vazpzZWNyZXQ="
ENVELOPE_KEYS = {
    "eventType",
    "eventTypeVersion",
    "cloudEventsVersion",
    "source",
    "eventId",
    "eventTime",
    "contentType",
    "data",
}


@dataclass
class Posted:
    """One delivery the receiver got."""

    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """An event hook endpoint: answers the challenge, records POSTs, answers as scripted."""

    uri: str
    posts: list[Posted] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # next answers; 200 when empty
    delay: float = 0.0
    hold: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self) -> list[dict[str, Any]]:
        """Every delivered event, in delivery order."""
        return [event for post in self.posts for event in post.body["data"]["events"]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """The receiver on a real loopback socket."""
    state = Receiver(uri="")

    async def handle_get(request: web.Request) -> web.Response:
        return web.json_response(
            {"verification": request.headers.get("x-okta-verification-challenge", "")}
        )

    async def handle_post(request: web.Request) -> web.Response:
        state.posts.append(Posted(dict(request.headers), await request.json()))
        state.arrived.set()
        if state.hold is not None:
            await state.hold.wait()
        if state.delay:
            await asyncio.sleep(state.delay)
        return web.Response(status=state.statuses.pop(0) if state.statuses else 200)

    app = web.Application()
    app.router.add_get("/okta/events", handle_get)
    app.router.add_post("/okta/events", handle_post)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.uri = f"http://127.0.0.1:{runner.addresses[0][1]}/okta/events"
    try:
        yield state
    finally:
        await runner.cleanup()


async def subscribe(api: OktaApi, uri: str, *items: str, verify: bool = True) -> str:
    """Register (and verify) an event hook for ``items`` at ``uri``; its id."""
    body = {
        "name": "Gateway events",
        "events": {"type": "EVENT_TYPE", "items": list(items)},
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": uri,
                "headers": [{"key": "X-Other-Header", "value": "my-header-value"}],
                "authScheme": {"type": "HEADER", "key": "Authorization", "value": SECRET},
            },
        },
    }
    created = await api.call("POST", "/api/v1/eventHooks", json=body)
    assert created.status == 200, created.body
    hook_id: str = created.body["id"]
    if verify:
        verified = await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/verify")
        assert verified.body["verificationStatus"] == "VERIFIED"
    return hook_id


async def flush(api: OktaApi) -> dict[str, Any]:
    """``POST /_emulator/events/flush``."""
    answer = await api.call("POST", "/_emulator/events/flush")
    assert answer.status == 200, answer.body
    assert answer.body["timed_out"] is False
    result: dict[str, Any] = answer.body
    return result


async def deliveries(api: OktaApi, **params: str) -> list[dict[str, Any]]:
    """The delivery log, optionally filtered."""
    answer = await api.call("GET", "/_emulator/events/deliveries", params=params)
    assert answer.status == 200
    rows: list[dict[str, Any]] = answer.body["deliveries"]
    return rows


def closed_port_uri() -> str:
    """A loopback URL nothing listens on (the connection is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/okta/events"


# -- delivery shape ----------------------------------------------------------------------------


async def test_delivery_is_okta_envelope_with_log_events(
    api: OktaApi, okta: RunningOktaEmulator, receiver: Receiver
) -> None:
    hook_id = await subscribe(api, receiver.uri, "user.lifecycle.create")
    user = (await api.create("new@example.com", activate=False)).body
    assert (await flush(api))["delivered"] == 1
    [post] = receiver.posts
    envelope = post.body
    assert set(envelope) == ENVELOPE_KEYS
    assert envelope["eventType"] == "com.okta.event_hook"
    assert (envelope["eventTypeVersion"], envelope["cloudEventsVersion"]) == ("1.0", "0.1")
    assert envelope["source"] == f"{okta.url}/api/v1/eventHooks/{hook_id}"
    assert envelope["contentType"] == "application/json"
    [event] = envelope["data"]["events"]
    assert event["eventType"] == "user.lifecycle.create"
    assert event["displayMessage"] == "Create Okta user"
    assert event["outcome"] == {"result": "SUCCESS", "reason": None}
    assert event["uuid"] != envelope["eventId"]
    assert event["published"].endswith("Z")
    assert event["target"] == [
        {
            "id": user["id"],
            "type": "User",
            "alternateId": "new@example.com",
            "displayName": "Test User",
            "detailEntry": None,
        }
    ]
    assert event["debugContext"]["debugData"]["requestUri"] == "/api/v1/users"


async def test_delivery_sends_the_auth_and_custom_headers(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    await api.create("h@example.com")
    await flush(api)
    headers = receiver.posts[0].headers
    assert headers["Authorization"] == SECRET
    assert headers["X-Other-Header"] == "my-header-value"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"


async def test_only_subscribed_event_types_are_delivered(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.activate")
    await api.create("a@example.com")  # create + activate
    await flush(api)
    assert [e["eventType"] for e in receiver.events()] == ["user.lifecycle.activate"]


async def test_unverified_and_inactive_hooks_get_nothing(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create", verify=False)
    inactive = await subscribe(api, receiver.uri, "user.lifecycle.create")
    await api.call("POST", f"/api/v1/eventHooks/{inactive}/lifecycle/deactivate")
    await api.create("a@example.com")
    result = await flush(api)
    assert result["deliveries"] == 0
    assert receiver.posts == []
    assert await deliveries(api) == []  # never queued for them, not merely discarded later


async def test_every_matching_hook_gets_its_own_delivery(api: OktaApi, receiver: Receiver) -> None:
    first = await subscribe(api, receiver.uri, "user.lifecycle.create")
    second = await subscribe(api, receiver.uri, "user.lifecycle.create")
    await api.create("a@example.com")
    await flush(api)
    sources = sorted(post.body["source"].rsplit("/", 1)[1] for post in receiver.posts)
    assert sources == sorted([first, second])
    assert len({post.body["eventId"] for post in receiver.posts}) == 2
    assert len({post.body["data"]["events"][0]["uuid"] for post in receiver.posts}) == 1


# -- batching and background delivery -------------------------------------------------------------


async def test_events_waiting_together_share_one_delivery_in_publish_order(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create", "user.lifecycle.activate")
    await api.call("POST", "/_emulator/events/pause")
    for i in range(3):
        await api.create(f"u{i}@example.com")
    await api.call("POST", "/_emulator/events/resume")
    await flush(api)
    assert len(receiver.posts) == 1
    assert [(e["eventType"], e["target"][0]["alternateId"]) for e in receiver.events()] == [
        (kind, f"u{i}@example.com")
        for i in range(3)
        for kind in ("user.lifecycle.create", "user.lifecycle.activate")
    ]


async def test_batches_never_exceed_the_max_batch_size(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create", "user.lifecycle.activate")
    answer = await api.call("PUT", "/_emulator/events/settings", json={"max_batch_size": 4})
    assert answer.body["max_batch_size"] == 4
    await api.call("POST", "/_emulator/events/pause")
    for i in range(5):
        await api.create(f"u{i}@example.com")
    await api.call("POST", "/_emulator/events/resume")
    result = await flush(api)
    assert [len(post.body["data"]["events"]) for post in receiver.posts] == [4, 4, 2]
    assert result["deliveries"] == 3
    assert result["delivered"] == 10


async def test_events_are_delivered_without_a_flush_after_the_batch_delay(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    await api.create("a@example.com", activate=False)
    await asyncio.wait_for(receiver.arrived.wait(), timeout=10)
    assert len(receiver.events()) == 1


async def test_a_slow_hook_never_holds_up_the_api_call(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    receiver.hold = asyncio.Event()
    await api.create("first@example.com", activate=False)
    await asyncio.wait_for(receiver.arrived.wait(), timeout=10)  # the delivery is stuck there
    second = await api.create("second@example.com", activate=False)
    assert second.status == 200
    assert (await api.stats())["event_delivery"]["pending"] == 2
    receiver.hold.set()
    await flush(api)
    logins = [e["target"][0]["alternateId"] for e in receiver.events()]
    assert logins == ["first@example.com", "second@example.com"]


async def test_concurrent_changes_are_each_delivered_exactly_once(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create", "user.lifecycle.activate")
    await api.call("PUT", "/_emulator/events/settings", json={"max_batch_size": 7})
    answers = await asyncio.gather(*(api.create(f"c{i}@example.com") for i in range(60)))
    assert {answer.status for answer in answers} == {200}
    await flush(api)
    uuids = [event["uuid"] for event in receiver.events()]
    assert len(uuids) == 120
    assert len(set(uuids)) == 120
    assert all(len(post.body["data"]["events"]) <= 7 for post in receiver.posts)


# -- retries -------------------------------------------------------------------------------------


async def test_a_5xx_is_retried_once_with_the_same_delivery(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    receiver.statuses = [503]
    await api.create("a@example.com", activate=False)
    result = await flush(api)
    assert result["delivered"] == 1
    assert len(receiver.posts) == 2
    assert receiver.posts[0].body == receiver.posts[1].body  # same eventId, same events
    [row] = await deliveries(api)
    assert (row["status"], row["attempts"], row["http_status"]) == ("delivered", 2, 200)


async def test_a_second_5xx_gives_up_and_logs_event_hook_delivery(
    api: OktaApi, okta: RunningOktaEmulator, receiver: Receiver
) -> None:
    hook_id = await subscribe(api, receiver.uri, "user.lifecycle.create")
    receiver.statuses = [500, 502, 200]
    await api.create("a@example.com", activate=False)
    result = await flush(api)
    assert (result["failed"], result["delivered"]) == (1, 0)
    assert len(receiver.posts) == 2  # the call and one retry, never a third
    [row] = await deliveries(api, hook_id=hook_id)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 2, "http_502")
    failures = [
        e for e in okta.emulator.system_log.events if e["eventType"] == "event_hook.delivery"
    ]
    assert [(f["outcome"]["result"], f["target"][0]["id"]) for f in failures] == [
        ("FAILURE", hook_id)
    ]


async def test_a_4xx_is_not_retried(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    receiver.statuses = [401]
    await api.create("a@example.com", activate=False)
    await flush(api)
    assert len(receiver.posts) == 1
    [row] = await deliveries(api)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 1, "http_401")


async def test_a_timeout_is_retried_once(
    api: OktaApi, okta: RunningOktaEmulator, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    okta.emulator.hook_timeout = 0.1  # Okta allows 3 s; the test keeps the rule, not the wait
    receiver.delay = 5.0
    await api.create("a@example.com", activate=False)
    await flush(api)
    assert len(receiver.posts) == 2
    [row] = await deliveries(api)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 2, "timeout")


async def test_a_refused_connection_is_retried_once(
    api: OktaApi, okta: RunningOktaEmulator, receiver: Receiver
) -> None:
    hook_id = await subscribe(api, receiver.uri, "user.lifecycle.create")
    okta.emulator.event_hooks[hook_id]["channel"]["config"]["uri"] = closed_port_uri()
    await api.create("a@example.com", activate=False)
    await flush(api)
    [row] = await deliveries(api)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 2, "connection_error")


async def test_a_hook_deactivated_while_events_wait_gets_none_of_them(
    api: OktaApi, receiver: Receiver
) -> None:
    hook_id = await subscribe(api, receiver.uri, "user.lifecycle.create")
    await api.call("POST", "/_emulator/events/pause")
    await api.create("a@example.com", activate=False)
    await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/deactivate")
    await api.call("POST", "/_emulator/events/resume")
    result = await flush(api)
    assert (result["discarded"], receiver.posts) == (1, [])


# -- control: pause, drop, delivery log, settings ---------------------------------------------------


async def test_pause_holds_deliveries_and_flush_reports_them_pending(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    paused = await api.call("POST", "/_emulator/events/pause")
    assert paused.body == {"paused": True, "pending": 0}
    await api.create("a@example.com", activate=False)
    held = await flush(api)
    assert (held["paused"], held["pending"], held["deliveries"]) == (True, 1, 0)
    assert receiver.posts == []
    resumed = await api.call("POST", "/_emulator/events/resume")
    assert resumed.body == {"paused": False, "pending": 1}
    assert (await flush(api))["delivered"] == 1


async def test_dropped_events_skip_the_hooks_but_stay_in_the_system_log(
    api: OktaApi, okta: RunningOktaEmulator, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    plan = await api.call("PUT", "/_emulator/events/drop", json={"next": 2})
    assert plan.body == {"next": 2, "rate": 0.0, "event_types": [], "dropped_total": 0}
    for i in range(3):
        await api.create(f"u{i}@example.com", activate=False)
    await flush(api)
    assert [e["target"][0]["alternateId"] for e in receiver.events()] == ["u2@example.com"]
    assert [row["status"] for row in await deliveries(api)] == ["dropped", "dropped", "delivered"]
    logged = [
        e for e in okta.emulator.system_log.events if e["eventType"] == "user.lifecycle.create"
    ]
    assert len(logged) == 3
    shown = await api.call("GET", "/_emulator/events/drop")
    assert (shown.body["next"], shown.body["dropped_total"]) == (0, 2)


async def test_a_drop_rate_drops_exactly_that_fraction_of_one_type(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create", "user.lifecycle.activate")
    await api.call(
        "PUT",
        "/_emulator/events/drop",
        json={"rate": 0.5, "event_types": ["user.lifecycle.activate"]},
    )
    for i in range(4):
        await api.create(f"u{i}@example.com")
    await flush(api)
    kinds = [e["eventType"] for e in receiver.events()]
    assert kinds.count("user.lifecycle.create") == 4
    assert kinds.count("user.lifecycle.activate") == 2


async def test_delivery_log_filters_by_uuid_and_status(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create", "user.lifecycle.activate")
    await api.create("a@example.com")
    await flush(api)
    rows = await deliveries(api)
    assert [row["eventType"] for row in rows] == [
        "user.lifecycle.create",
        "user.lifecycle.activate",
    ]
    one = await deliveries(api, uuid=rows[1]["uuid"])
    assert one == [rows[1]]
    assert await deliveries(api, status="failed") == []
    assert rows[0]["delivery_id"] == receiver.posts[0].body["eventId"]


async def test_settings_change_only_what_is_given_and_refuse_nonsense(api: OktaApi) -> None:
    before = (await api.call("GET", "/_emulator/events/settings")).body
    assert before == {
        "max_batch_size": 50,
        "batch_delay_ms": 100,
        "timeout_ms": 3000,
        "seed": None,
        "paused": False,
    }
    after = await api.call(
        "PUT", "/_emulator/events/settings", json={"batch_delay_ms": 0, "seed": 7}
    )
    assert after.body == {**before, "batch_delay_ms": 0, "seed": 7}
    bad = await api.call("PUT", "/_emulator/events/settings", json={"max_batch_size": 0})
    assert bad.status == 400
    unknown = await api.call("PUT", "/_emulator/events/drop", json={"every": 3})
    assert unknown.status == 400


def test_a_seed_makes_event_uuids_reproducible() -> None:
    def uuids(seed: int | None) -> list[str]:
        emulator = OktaEmulator(OktaOrg(), seed=seed)
        for i in range(3):
            emulator.create_user(
                profile_of(f"u{i}@example.com"), Credential.HOOK, activate=True, group_ids=[]
            )
        return [event["uuid"] for event in emulator.system_log.events]

    assert uuids(11) == uuids(11)
    assert uuids(11) != uuids(12)
    assert uuids(None) != uuids(None)


async def test_flush_events_delivers_from_python_without_the_control_api(
    api: OktaApi, okta: RunningOktaEmulator, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    okta.emulator.delivery.batch_delay = 60.0  # only a flush can send it in time
    okta.emulator.create_user(
        profile_of("py@example.com"), Credential.HOOK, activate=False, group_ids=[]
    )
    result = await okta.emulator.flush_events()
    assert (result["deliveries"], result["delivered"]) == (1, 1)
    assert receiver.events()[0]["target"][0]["alternateId"] == "py@example.com"


async def test_a_full_reset_forgets_the_system_log_and_queued_events(
    api: OktaApi, okta: RunningOktaEmulator, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.create")
    await api.call("POST", "/_emulator/events/pause")
    await api.create("a@example.com", activate=False)
    await api.call("POST", "/_emulator/reset", json={"users": True})
    assert (await api.stats())["event_delivery"]["pending"] == 0
    await api.call("POST", "/_emulator/events/resume")
    result = await flush(api)
    assert (result["delivered"], receiver.posts) == (0, [])
    assert okta.emulator.system_log.events == []


# -- events the migration cares about ------------------------------------------------------------


@pytest.fixture
async def import_hook(api: OktaApi) -> AsyncIterator[list[str]]:
    """A password import inline hook: VERIFIED for "right", UNVERIFIED (200) else, 500 for "boom"."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        password = (await request.json())["data"]["context"]["credential"]["password"]
        seen.append(password)
        if password == "boom":
            return web.Response(status=500)
        verdict = "VERIFIED" if password == "right" else "UNVERIFIED"
        return web.json_response(
            {"commands": [{"type": "com.okta.action.update", "value": {"credential": verdict}}]}
        )

    app = web.Application()
    app.router.add_post("/okta/password-import", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    body = {
        "name": "Password import gateway",
        "type": "com.okta.user.credential.password.import",
        "version": "1.0.0",
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": f"http://127.0.0.1:{runner.addresses[0][1]}/okta/password-import",
                "authScheme": {"type": "HEADER", "key": "Authorization", "value": HOOK_SECRET},
            },
        },
    }
    assert (await api.call("POST", "/api/v1/inlineHooks", json=body)).status == 200
    try:
        yield seen
    finally:
        await runner.cleanup()


async def test_password_import_publishes_failure_then_success(
    api: OktaApi, receiver: Receiver, import_hook: list[str]
) -> None:
    await subscribe(api, receiver.uri, "user.import.password")
    user = (await api.create("h@example.com")).body
    for password in ("wrong", "right"):
        await api.call(
            "POST", "/_emulator/users/h@example.com/sign-in", json={"password": password}
        )
    await flush(api)
    events = receiver.events()
    assert [e["outcome"]["result"] for e in events] == ["FAILURE", "SUCCESS"]
    for event in events:
        assert event["eventType"] == "user.import.password"
        assert event["actor"]["id"] == user["id"]
        assert [(t["type"], t["id"], t["alternateId"]) for t in event["target"]] == [
            ("User", user["id"], "h@example.com")
        ]
        assert "right" not in str(event) and "wrong" not in str(event)


async def test_a_failing_import_hook_logs_inline_hook_executed_and_failure(
    api: OktaApi, okta: RunningOktaEmulator, import_hook: list[str]
) -> None:
    await api.create("h@example.com")
    answer = await api.call(
        "POST", "/_emulator/users/h@example.com/sign-in", json={"password": "boom"}
    )
    assert answer.body["result"] == "HOOK_ERROR"
    kinds = [(e["eventType"], e["outcome"]["result"]) for e in okta.emulator.system_log.events]
    assert kinds[-2:] == [("inline_hook.executed", "FAILURE"), ("user.import.password", "FAILURE")]


async def test_sign_in_without_the_hook_publishes_no_import_event(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    await api.create("h@example.com")
    answer = await api.call(
        "POST", "/_emulator/users/h@example.com/sign-in", json={"password": "x"}
    )
    assert answer.body["reason"] == "no_active_password_import_hook"
    kinds = {e["eventType"] for e in okta.emulator.system_log.events}
    assert "user.import.password" not in kinds


async def test_app_assignment_publishes_membership_add_once(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "application.user_membership.add")
    user = (await api.create("m@example.com")).body
    path = "/_emulator/apps/0oaoffice365000000001/users/m@example.com"
    first = await api.call("POST", path, json={"label": "Microsoft Office 365"})
    assert first.body == {"appId": "0oaoffice365000000001", "userId": user["id"], "assigned": True}
    again = await api.call("POST", path)
    assert again.body["assigned"] is False
    assert (await api.call("POST", "/_emulator/apps/0oa1/users/nobody@example.com")).status == 404
    await flush(api)
    [event] = receiver.events()
    assert event["displayMessage"] == "Add user to application membership"
    assert [(t["type"], t["id"], t["alternateId"]) for t in event["target"]] == [
        ("AppUser", user["id"], "m@example.com"),
        ("AppInstance", "0oaoffice365000000001", "Microsoft Office 365"),
        ("User", user["id"], "m@example.com"),
    ]


async def test_deactivation_is_delivered_with_the_login(api: OktaApi, receiver: Receiver) -> None:
    await subscribe(api, receiver.uri, "user.lifecycle.deactivate")
    user = (await api.create("d@example.com")).body
    await api.call("POST", f"/api/v1/users/{user['id']}/lifecycle/deactivate")
    await flush(api)
    [event] = receiver.events()
    assert event["target"][0]["alternateId"] == "d@example.com"


# -- lifecycle operations of `migrate finish` ----------------------------------------------------


async def test_reset_password_without_email_answers_a_link_and_moves_to_recovery(
    api: OktaApi,
) -> None:
    user = (await api.create("r@example.com")).body
    answer = await api.call(
        "POST",
        f"/api/v1/users/{user['id']}/lifecycle/reset_password",
        params={"sendEmail": "false"},
    )
    assert answer.status == 200
    assert set(answer.body) == {"resetPasswordUrl"}
    assert "/reset_password/" in answer.body["resetPasswordUrl"]
    shown = (await api.call("GET", f"/api/v1/users/{user['id']}")).body
    assert shown["status"] == "RECOVERY"
    assert shown["credentials"]["provider"]["type"] == "OKTA"  # the import hook is over
    stats = await api.stats()
    assert stats["emails_total"] == 0
    signin = await api.call("POST", "/_emulator/users/r@example.com/sign-in")
    assert signin.status == 409


async def test_reset_password_with_email_counts_one_email_per_user(api: OktaApi) -> None:
    for i in range(3):
        user = (await api.create(f"r{i}@example.com")).body
        answer = await api.call(
            "POST",
            f"/api/v1/users/{user['id']}/lifecycle/reset_password",
            params={"sendEmail": "true"},
        )
        assert (answer.status, answer.body) == (200, {})
    stats = await api.stats()
    assert stats["password_reset_emails_total"] == 3
    assert stats["password_reset_emails"]["r1@example.com"] == 1
    assert stats["activation_emails_total"] == 0
    assert stats["emails_total"] == 3


async def test_reset_password_needs_send_email(api: OktaApi) -> None:
    user = (await api.create("r@example.com")).body
    answer = await api.call("POST", f"/api/v1/users/{user['id']}/lifecycle/reset_password")
    assert_okta_error(answer, 400, "E0000028")


async def test_reset_password_of_a_staged_user_is_refused(api: OktaApi) -> None:
    user = (await api.create("s@example.com", activate=False)).body
    answer = await api.call(
        "POST",
        f"/api/v1/users/{user['id']}/lifecycle/reset_password",
        params={"sendEmail": "false"},
    )
    body = assert_okta_error(answer, 403, "E0000038")
    assert body["errorSummary"] == "This operation is not allowed in the user's current status."


async def test_expire_password_answers_the_user_as_password_expired(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.account.expire_password")
    user = (await api.create("x@example.com")).body
    answer = await api.call("POST", f"/api/v1/users/{user['id']}/lifecycle/expire_password")
    assert answer.status == 200
    assert (answer.body["id"], answer.body["status"]) == (user["id"], "PASSWORD_EXPIRED")
    staged = (await api.create("s@example.com", activate=False)).body
    refused = await api.call("POST", f"/api/v1/users/{staged['id']}/lifecycle/expire_password")
    assert_okta_error(refused, 403, "E0000038")
    await flush(api)
    assert [e["target"][0]["id"] for e in receiver.events()] == [user["id"]]
    assert (await api.stats())["emails_total"] == 0


async def test_expire_with_temp_password_replaces_the_import_hook(api: OktaApi) -> None:
    user = (await api.create("t@example.com")).body
    answer = await api.call(
        "POST", f"/api/v1/users/{user['id']}/lifecycle/expire_password_with_temp_password"
    )
    assert set(answer.body) == {"tempPassword"}
    shown = (await api.call("GET", f"/api/v1/users/{user['id']}")).body
    assert (shown["status"], shown["credentials"]["provider"]["type"]) == (
        "PASSWORD_EXPIRED",
        "OKTA",
    )


async def test_reset_password_is_delivered_as_user_account_reset_password(
    api: OktaApi, receiver: Receiver
) -> None:
    await subscribe(api, receiver.uri, "user.account.reset_password")
    user = (await api.create("r@example.com")).body
    await api.call(
        "POST",
        f"/api/v1/users/{user['id']}/lifecycle/reset_password",
        params={"sendEmail": "false"},
    )
    await flush(api)
    [event] = receiver.events()
    assert (event["eventType"], event["target"][0]["alternateId"]) == (
        "user.account.reset_password",
        "r@example.com",
    )


# -- System Log API ------------------------------------------------------------------------------


def next_link(answer: Any) -> str | None:
    """The ``rel="next"`` URL among the Link headers, if any."""
    for value in answer.headers.getall("Link", []):
        url, _, rel = value.partition(";")
        if 'rel="next"' in rel:
            return url.strip().strip("<>")
    return None


async def test_logs_filter_by_event_type(api: OktaApi, okta: RunningOktaEmulator) -> None:
    await api.create("a@example.com")
    await api.call("POST", "/_emulator/users/a@example.com/sign-in")
    answer = await api.call(
        "GET", "/api/v1/logs", params={"filter": 'eventType eq "user.import.password"'}
    )
    assert answer.status == 200
    assert [e["eventType"] for e in answer.body] == ["user.import.password"]
    assert answer.body[0]["target"][0]["alternateId"] == "a@example.com"
    assert "X-Rate-Limit-Remaining" in answer.headers


async def test_logs_filter_on_outcome_and_target(api: OktaApi) -> None:
    a = (await api.create("a@example.com")).body
    await api.create("b@example.com")
    answer = await api.call(
        "GET",
        "/api/v1/logs",
        params={"filter": f'target.id eq "{a["id"]}" and outcome.result eq "SUCCESS"'},
    )
    assert [e["eventType"] for e in answer.body] == [
        "user.lifecycle.create",
        "user.lifecycle.activate",
    ]


async def test_logs_pages_follow_the_next_link_until_a_bounded_query_ends(
    api: OktaApi, clock: FakeClock
) -> None:
    for i in range(5):
        await api.create(f"u{i}@example.com", activate=False)
    until = "2100-01-01T00:00:00Z"
    seen: list[str] = []
    params = {"limit": "2", "since": "2020-01-01T00:00:00Z", "until": until}
    answer = await api.call("GET", "/api/v1/logs", params=params)
    pages = 1
    while True:
        seen.extend(e["target"][0]["alternateId"] for e in answer.body)
        link = next_link(answer)
        if link is None:
            break
        assert URL(link).query["until"] == until
        answer = await api.call("GET", "", url=link)
        pages += 1
    assert seen == [f"u{i}@example.com" for i in range(5)]
    assert pages == 3


async def test_a_polling_query_always_has_a_next_link_that_finds_new_events(
    api: OktaApi, clock: FakeClock
) -> None:
    await api.create("old@example.com", activate=False)
    first = await api.call("GET", "/api/v1/logs")
    assert len(first.body) == 1
    link = next_link(first)
    assert link is not None
    empty = await api.call("GET", "", url=link)
    assert empty.body == []
    assert next_link(empty) == link  # nothing new: poll the same link again
    clock.advance(5)
    await api.create("new@example.com", activate=False)
    fresh = await api.call("GET", "", url=link)
    assert [e["target"][0]["alternateId"] for e in fresh.body] == ["new@example.com"]


async def test_logs_since_and_until_bound_the_published_time(
    api: OktaApi, clock: FakeClock
) -> None:
    await api.create("before@example.com", activate=False)
    clock.advance(60)
    await api.create("inside@example.com", activate=False)
    clock.advance(60)
    await api.create("after@example.com", activate=False)
    start = clock.now - 90
    answer = await api.call(
        "GET",
        "/api/v1/logs",
        params={"since": str(iso(start)), "until": str(iso(start + 60))},
    )
    assert [e["target"][0]["alternateId"] for e in answer.body] == ["inside@example.com"]
    assert next_link(answer) is None


async def test_logs_descending_returns_newest_first(api: OktaApi, clock: FakeClock) -> None:
    for i in range(3):
        await api.create(f"u{i}@example.com", activate=False)
        clock.advance(1)
    answer = await api.call("GET", "/api/v1/logs", params={"sortOrder": "DESCENDING"})
    assert [e["target"][0]["alternateId"] for e in answer.body] == [
        "u2@example.com",
        "u1@example.com",
        "u0@example.com",
    ]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"filter": 'nosuch eq "x"'}, "E0000031"),
        ({"filter": "eventType eq"}, "E0000031"),
        ({"limit": "1001"}, "E0000001"),
        ({"since": "yesterday"}, "E0000001"),
        ({"after": "not-a-cursor"}, "E0000001"),
        ({"sortOrder": "RANDOM"}, "E0000001"),
    ],
)
async def test_logs_refuse_bad_parameters(api: OktaApi, params: dict[str, str], code: str) -> None:
    answer = await api.call("GET", "/api/v1/logs", params=params)
    assert_okta_error(answer, 400, code)


async def test_logs_need_an_api_token(api: OktaApi) -> None:
    assert_okta_error(await api.call("GET", "/api/v1/logs", auth=""), 401, "E0000011")
