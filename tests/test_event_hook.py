"""The event hook endpoint of `gateway serve` (gateway/event_hook.py), through real sockets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway.app import METRICS, create_app
from gateway.config import ConfigError, parse_config
from gateway.ledger import UserState, open_ledger
from gateway.runtime import RUNTIME
from gateway.serve_ledger import SERVE_LEDGER
from tests.conftest import SecretScan, gateway_yaml
from tests.migrate.event_envelopes import envelope, event, okta_id
from tests.redis_server import free_port

EVENTS_PATH = "/okta/events"
EVENT_SECRET = "Basic ZXZlbnRzOmV2ZW50LWhvb2stc2VjcmV0LTQ0"
OLD_EVENT_SECRET = "Basic ZXZlbnRzOm9sZC1ldmVudC1zZWNyZXQtNDQ="
AUTH = {"Authorization": EVENT_SECRET}
IMPORT = "user.import.password"
MAX_BODY = 1024 * 1024

Client = TestClient[Any, Any]


def _yaml(ledger: str, **event_hook: Any) -> str:
    hook = {"auth": {"secrets": [EVENT_SECRET, OLD_EVENT_SECRET]}, "max_body_bytes": MAX_BODY}
    return gateway_yaml(
        "http://127.0.0.1:9",  # no verification in these tests: the source never answers
        extra={"migration": {"ledger": ledger, "event_hook": {**hook, **event_hook}}},
    )


@pytest.fixture
def secrets_scanned(secret_scan: SecretScan) -> None:
    secret_scan.secrets |= {EVENT_SECRET, OLD_EVENT_SECRET}


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
async def client(aiohttp_client: Any, ledger_url: str, secrets_scanned: None) -> Client:
    app = create_app(parse_config(_yaml(ledger_url), env={}))
    started: Client = await aiohttp_client(app)
    async with asyncio.timeout(30):
        await app[SERVE_LEDGER].wait_open()
    return started


async def _post(client: Client, body: Any, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    # A BytesIO, not bytes: aiohttp warns about sending a large body from bytes.
    return await client.post(EVENTS_PATH, data=io.BytesIO(data), headers=sent)


def _count(client: Client, event_type: str, outcome: str) -> float | None:
    registry = client.app[METRICS].registry
    return registry.get_sample_value(
        "gateway_okta_events_total", {"type": event_type, "outcome": outcome}
    )


@pytest.fixture
async def ledger_users(ledger_url: str) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def read() -> dict[str, Any]:
        ledger = await open_ledger(ledger_url)
        try:
            return {
                "events": await ledger.event_counts(),
                "users": [await ledger.get_user("entra", f"u{i}@contoso.com") for i in range(3)],
            }
        finally:
            await ledger.close()

    return read


async def test_verification_echoes_the_challenge_whatever_the_header_case(
    client: Client,
) -> None:
    for name in ("x-okta-verification-challenge", "X-Okta-Verification-Challenge"):
        response = await client.get(EVENTS_PATH, headers={name: "dGhlIGNoYWxsZW5nZQ", **AUTH})
        assert response.status == 200
        assert await response.json() == {"verification": "dGhlIGNoYWxsZW5nZQ"}


async def test_verification_needs_the_auth_header(client: Client) -> None:
    challenge = {"x-okta-verification-challenge": "abc"}
    assert (await client.get(EVENTS_PATH, headers=challenge)).status == 401
    wrong = {**challenge, "Authorization": EVENT_SECRET + "x"}
    assert (await client.get(EVENTS_PATH, headers=wrong)).status == 401
    old = {**challenge, "Authorization": OLD_EVENT_SECRET}  # rotation: both secrets work
    assert (await client.get(EVENTS_PATH, headers=old)).status == 200


async def test_verification_without_a_challenge_is_400(client: Client) -> None:
    assert (await client.get(EVENTS_PATH, headers=AUTH)).status == 400


async def test_a_delivery_is_recorded_then_answered_200_empty(
    client: Client, ledger_users: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    body = envelope([event(IMPORT, okta_id(i), f"u{i}@contoso.com") for i in range(3)])
    response = await _post(client, body)
    assert response.status == 200
    assert await response.read() == b""
    state = await ledger_users()
    assert state["events"] == {(IMPORT, "SUCCESS"): 3}
    assert all(u is not None and u.state is UserState.MIGRATED for u in state["users"])
    assert _count(client, IMPORT, "recorded") == 3


async def test_a_redelivered_event_changes_nothing(
    client: Client, ledger_users: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    body = envelope([event(IMPORT, okta_id(i), f"u{i}@contoso.com") for i in range(3)])
    assert (await _post(client, body)).status == 200
    before = await ledger_users()
    assert (await _post(client, body)).status == 200
    assert await ledger_users() == before  # every timestamp included
    assert _count(client, IMPORT, "recorded") == 3
    assert _count(client, IMPORT, "duplicate") == 3


async def test_an_import_failure_is_recorded_and_counted(client: Client) -> None:
    body = envelope([event(IMPORT, okta_id(1), "u1@contoso.com", result="FAILURE")])
    assert (await _post(client, body)).status == 200
    assert _count(client, IMPORT, "import_failed") == 1
    assert _count(client, IMPORT, "failed") == 0  # not confused with an event it cannot use
    assert _count(client, IMPORT, "recorded") == 0


async def test_a_malformed_event_in_a_valid_envelope_is_counted_not_refused(
    client: Client,
) -> None:
    body = envelope([event(IMPORT), event("user.session.start", okta_id(1))])
    assert (await _post(client, body)).status == 200
    assert _count(client, IMPORT, "failed") == 1
    assert _count(client, "other", "ignored") == 1


async def test_without_auth_the_answer_is_401_before_the_body_is_read(client: Client) -> None:
    oversized = b"x" * (MAX_BODY * 4)  # would be 413 (and not JSON) if the body were looked at
    for headers in ({"Authorization": ""}, {"Authorization": "Basic wrong-secret-0001"}):
        response = await _post(client, oversized, headers)
        assert response.status == 401
    assert _count(client, "other", "recorded") == 0


async def test_two_auth_headers_are_refused(client: Client) -> None:
    response = await client.post(
        EVENTS_PATH,
        data=json.dumps(envelope([])).encode(),
        headers=[("Content-Type", "application/json"), ("Authorization", EVENT_SECRET),
                 ("Authorization", EVENT_SECRET)],
    )  # fmt: skip
    assert response.status == 401


async def test_a_body_over_the_cap_is_413_declared_or_chunked(client: Client) -> None:
    big = json.dumps(envelope([event(IMPORT, okta_id(i)) for i in range(2000)])).encode()
    assert len(big) > MAX_BODY
    assert (await _post(client, big)).status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    response = await client.post(
        EVENTS_PATH, data=chunks(), headers={"Content-Type": "application/json", **AUTH}
    )
    assert response.status == 413


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
     {"Content-Encoding": "compress"}],
)  # fmt: skip
async def test_what_is_not_json_is_415(client: Client, headers: dict[str, str]) -> None:
    assert (await _post(client, envelope([]), headers)).status == 415


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"data": {"events": "no"}}', b'{"data": [{"uuid": "x"}]}', b"[]"],
)
async def test_what_is_not_an_event_envelope_is_400(client: Client, body: bytes) -> None:
    response = await _post(client, body)
    assert response.status == 400
    assert "errorSummary" in (await response.json())["error"]


async def test_known_series_are_exported_at_zero(client: Client) -> None:
    text = await (await client.get("/metrics")).text()
    types = (IMPORT, "user.lifecycle.activate", "user.lifecycle.create",
             "application.user_membership.add", "other")  # fmt: skip
    for event_type in types:
        for outcome in ("recorded", "duplicate", "ignored", "import_failed", "failed"):
            line = f'gateway_okta_events_total{{outcome="{outcome}",type="{event_type}"}} 0.0'
            assert line in text


async def test_hundreds_of_events_are_answered_within_oktas_timeout(client: Client) -> None:
    body = envelope([event(IMPORT, okta_id(i), f"u{i}@contoso.com") for i in range(500)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client.post(
        EVENTS_PATH, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **AUTH},
    )  # fmt: skip
    assert response.status == 200
    assert loop.time() - started < 3.0  # Okta's limit; a generous bound on a loaded machine
    assert _count(client, IMPORT, "recorded") == 500


async def test_one_event_hook_line_per_delivery_with_counts_and_no_logins(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.event_hook")
    body = envelope([event(IMPORT, okta_id(1), "secretive.person@contoso.com"),
                     event("user.session.start", okta_id(2))])  # fmt: skip
    assert (await _post(client, body)).status == 200
    assert (await _post(client, body)).status == 200
    lines = [r for r in caplog.records if r.getMessage() == "event_hook"]
    assert [(r.status, r.events, r.__dict__.get("duplicate")) for r in lines] == [  # type: ignore[attr-defined]
        (200, 2, None), (200, 2, 2),
    ]  # fmt: skip
    assert all("secretive" not in str(r.__dict__) for r in caplog.records)


async def test_503_while_the_ledger_cannot_be_opened(
    aiohttp_client: Any, secrets_scanned: None
) -> None:
    closed = f"postgresql://gw@127.0.0.1:{free_port()}/ledger"
    client: Client = await aiohttp_client(create_app(parse_config(_yaml(closed), env={})))
    response = await _post(client, envelope([event(IMPORT, okta_id(1), "u1@contoso.com")]))
    assert response.status == 503  # Okta retries a 5xx once; the uuid makes that safe
    assert _count(client, IMPORT, "recorded") == 0


async def test_changing_the_event_hook_at_reload_needs_a_restart(
    aiohttp_client: Any, ledger_url: str, tmp_path: Path, secrets_scanned: None
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_yaml(ledger_url), encoding="utf-8")
    app = create_app(parse_config(path.read_text(), env={}), config_path=str(path))
    client: Client = await aiohttp_client(app)
    changed = yaml.safe_load(path.read_text())
    changed["migration"]["event_hook"]["path"] = "/elsewhere"
    path.write_text(yaml.safe_dump(changed), encoding="utf-8")
    result = await app[RUNTIME].reload()
    assert result.ok
    assert "migration.event_hook" in result.needs_restart
    assert app[RUNTIME].current.config.migration.event_hook is not None
    assert app[RUNTIME].current.config.migration.event_hook.path == EVENTS_PATH
    assert (
        await client.get(EVENTS_PATH, headers={**AUTH, "x-okta-verification-challenge": "a"})
    ).status == 200


@pytest.mark.parametrize("setting", [{"prepare_on": ["user.lifecycle.create"]},
                                     {"sync_on_activate": True}])  # fmt: skip
def test_event_actions_without_okta_api_are_a_config_problem(
    ledger_url: str, setting: dict[str, Any]
) -> None:
    data = yaml.safe_load(_yaml(ledger_url))
    data["migration"].update(setting)
    with pytest.raises(ConfigError) as raised:
        parse_config(yaml.safe_dump(data), env={})
    text = "\n".join(raised.value.lines())
    assert "okta.api" in text and "okta.org_url" in text


async def test_an_odd_timestamp_beside_a_good_event_is_counted_failed_and_answered_200(
    client: Client, ledger_users: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    # Valid ISO 8601, but out of range once moved to UTC: it raised OverflowError (a 500).
    odd = event(IMPORT, okta_id(1), "u1@contoso.com", published="0001-01-01T00:00:00+14:00")
    response = await _post(client, envelope([odd, event(IMPORT, okta_id(0), "u0@contoso.com")]))
    assert response.status == 200
    state = await ledger_users()
    assert state["events"] == {(IMPORT, "SUCCESS"): 1}
    assert state["users"][0] is not None and state["users"][0].state is UserState.MIGRATED
    assert state["users"][1] is None  # the odd event marked nobody
    assert _count(client, IMPORT, "failed") == 1


async def test_a_dripped_delivery_is_answered_400_within_its_budget_and_the_next_is_recorded(
    aiohttp_client: Any, ledger_url: str, secrets_scanned: None
) -> None:
    app = create_app(parse_config(_yaml(ledger_url, budget_seconds=0.5), env={}))
    client: Client = await aiohttp_client(app)
    async with asyncio.timeout(30):
        await app[SERVE_LEDGER].wait_open()
    body = json.dumps(envelope([event(IMPORT, okta_id(1), "u1@contoso.com")])).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    head = (
        f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {EVENT_SECRET}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body[:10])  # and then nothing more: a client holding the handler
    try:
        answer = await asyncio.wait_for(reader.read(), 10)  # closed after the answer
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {
        "error": {"errorSummary": "body not received within 0.5 s"}
    }
    response = await _post(client, json.loads(body))
    assert response.status == 200
    assert _count(client, IMPORT, "recorded") == 1
