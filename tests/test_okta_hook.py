"""The Okta side of the contract: payload variants, exact replies, 401/400/413, no upstream waste."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulators.demo import okta_payload
from gateway.okta import UNVERIFIED_BODY, VERIFIED_BODY
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, GatewayFactory, credential, post_hook

ALICE = "alice@contoso.com"


@pytest.mark.parametrize("url_value", ["/api/v1/authn", "/idp/idx/challenge/answer"])
async def test_documentation_payload_right_password_is_verified(
    make_gateway: GatewayFactory, url_value: str
) -> None:
    client = await make_gateway()
    status, body = await post_hook(client, ALICE, USERS[ALICE], url_value=url_value)
    assert status == 200
    assert credential(body) == "VERIFIED"


@pytest.mark.parametrize("url_value", ["/api/v1/authn", "/idp/idx/challenge/answer"])
async def test_documentation_payload_wrong_password_is_unverified(
    make_gateway: GatewayFactory, url_value: str
) -> None:
    client = await make_gateway()
    status, body = await post_hook(client, ALICE, "Wrong#Pass-0000", url_value=url_value)
    assert status == 200
    assert credential(body) == "UNVERIFIED"


async def test_reply_bytes_are_okta_command_shape(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    payload = okta_payload(ALICE, USERS[ALICE])
    response = await client.post(HOOK_PATH, json=payload, headers={"Authorization": HOOK_SECRET})
    assert response.headers["Content-Type"].startswith("application/json")
    assert await response.read() == VERIFIED_BODY
    payload["data"]["context"]["credential"]["password"] = "nope"
    response = await client.post(HOOK_PATH, json=payload, headers={"Authorization": HOOK_SECRET})
    assert response.status == 200
    assert await response.read() == UNVERIFIED_BODY


@pytest.mark.parametrize(
    "header", [None, "", "Basic d3Jvbmc6c2VjcmV0", HOOK_SECRET + "x", HOOK_SECRET[:-1], "basic x"]
)
async def test_missing_or_wrong_hook_secret_is_401(
    make_gateway: GatewayFactory, header: str | None
) -> None:
    client = await make_gateway()
    headers = {"Authorization": header} if header is not None else {}
    response = await client.post(HOOK_PATH, json=okta_payload(ALICE, USERS[ALICE]), headers=headers)
    assert response.status == 401
    assert "error" in await response.json()


async def test_any_configured_secret_is_accepted_for_rotation(make_gateway: GatewayFactory) -> None:
    new_secret = "Bearer rotated-secret-0002"
    client = await make_gateway(
        extra={"okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET, new_secret]}}}
    )
    for secret in (HOOK_SECRET, new_secret):
        response = await client.post(
            HOOK_PATH, json=okta_payload(ALICE, USERS[ALICE]), headers={"Authorization": secret}
        )
        assert credential(await response.json()) == "VERIFIED"


async def test_custom_auth_header_name(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(
        extra={
            "okta": {
                "hook_path": HOOK_PATH,
                "auth": {"header": "X-Okta-Hook-Key", "secrets": ["custom-key-000001"]},
            }
        }
    )
    payload = okta_payload(ALICE, USERS[ALICE])
    denied = await client.post(HOOK_PATH, json=payload, headers={"Authorization": HOOK_SECRET})
    allowed = await client.post(
        HOOK_PATH, json=payload, headers={"X-Okta-Hook-Key": "custom-key-000001"}
    )
    assert denied.status == 401
    assert allowed.status == 200


def _mutated(path: list[str], value: Any) -> bytes:
    payload: Any = okta_payload(ALICE, USERS[ALICE])
    node = payload
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(payload).encode()


BAD_BODIES = {
    "not_json": b"{not json",
    "not_utf8": b'{"eventType": "\xff\xfe"}',
    "json_array": b"[]",
    "json_string": b'"hello"',
    "empty": b"",
    "event_hook_body": json.dumps(
        {"eventType": "user.lifecycle.create", "data": {"events": []}}
    ).encode(),
    "no_data": _mutated(["data"], KeyError),
    "credential_missing": _mutated(["data", "context", "credential"], KeyError),
    "username_number": _mutated(["data", "context", "credential", "username"], 12345),
    "password_null": _mutated(["data", "context", "credential", "password"], None),
    "password_object": _mutated(["data", "context", "credential", "password"], {"x": 1}),
    "username_empty": _mutated(["data", "context", "credential", "username"], "   "),
    "username_huge": _mutated(["data", "context", "credential", "username"], "a" * 5000),
    "username_nul": _mutated(
        ["data", "context", "credential", "username"], "al\x00ice@contoso.com"
    ),
    "request_not_object": _mutated(["data", "context", "request"], "x"),
    "ip_not_string": _mutated(["data", "context", "request", "ipAddress"], ["1.2.3.4"]),
    "lone_surrogate": json.dumps(okta_payload(ALICE, "x")).replace('"x"', '"\\ud800"').encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
async def test_malformed_or_non_hook_body_is_400(make_gateway: GatewayFactory, name: str) -> None:
    client = await make_gateway()
    response = await client.post(
        HOOK_PATH,
        data=BAD_BODIES[name],
        headers={"Authorization": HOOK_SECRET, "Content-Type": "application/json"},
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"]["errorSummary"]


async def test_error_reply_never_echoes_input(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    marker = "Echo#Marker-5581"
    response = await client.post(
        HOOK_PATH,
        data=_mutated(["data", "context", "credential", "username"], {"x": marker}),
        headers={"Authorization": HOOK_SECRET},
    )
    assert response.status == 400
    assert marker not in await response.text()


async def test_declared_oversize_body_is_413(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    response = await client.post(
        HOOK_PATH, data=b"x" * 70_000, headers={"Authorization": HOOK_SECRET}
    )
    assert response.status == 413


async def test_streamed_oversize_body_without_length_is_413(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()

    async def chunks() -> Any:
        for _ in range(20):
            yield b"y" * 8192

    response = await client.post(HOOK_PATH, data=chunks(), headers={"Authorization": HOOK_SECRET})
    assert response.status == 413


async def test_authentication_is_checked_before_size(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    response = await client.post(HOOK_PATH, data=b"x" * 70_000)
    assert response.status == 401


async def test_unrouted_username_is_unverified_without_upstream_call(
    make_gateway: GatewayFactory, entra: Any
) -> None:
    client = await make_gateway()
    before = entra.emulator.requests_by_kind["token"] + entra.emulator.requests_by_kind["realm"]
    status, body = await post_hook(client, "someone@elsewhere.example", "Some#Pass-1")
    assert status == 200
    assert credential(body) == "UNVERIFIED"
    after = entra.emulator.requests_by_kind["token"] + entra.emulator.requests_by_kind["realm"]
    assert after == before


async def test_empty_password_is_unverified_without_upstream_call(
    make_gateway: GatewayFactory, entra: Any
) -> None:
    client = await make_gateway()
    before = entra.emulator.requests_by_kind["token"]
    status, body = await post_hook(client, ALICE, "")
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert entra.emulator.requests_by_kind["token"] == before


async def test_gateway_keeps_serving_after_bad_input(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    for body in BAD_BODIES.values():
        await client.post(HOOK_PATH, data=body, headers={"Authorization": HOOK_SECRET})
    status, reply = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(reply)) == (200, "VERIFIED")


async def test_health_and_readiness(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    assert health.status == 200
    assert ready.status == 200
    assert (await ready.json())["sources"]["entra"]["ready"] is True
