"""Lifecycle rules: activation with and without a credential, emails, deactivation, delete, sign-in."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from emulators.okta import RunningOktaEmulator
from tests.emulators.okta.conftest import OktaApi, assert_okta_error

HOOK_SECRET = "Basic aG9vazpzZWNyZXQ="


async def test_staged_user_with_hook_activates_to_active_without_email(api: OktaApi) -> None:
    user = (await api.create("h@example.com", activate=False)).body
    answer = await api.call(
        "POST", f"/api/v1/users/{user['id']}/lifecycle/activate", params={"sendEmail": "false"}
    )
    assert answer.status == 200
    assert set(answer.body) == {"activationUrl", "activationToken"}
    assert answer.body["activationUrl"].endswith(f"/tokens/{answer.body['activationToken']}/verify")
    shown = await api.call("GET", f"/api/v1/users/{user['id']}")
    assert shown.body["status"] == "ACTIVE"
    assert shown.body["credentials"]["provider"]["type"] == "IMPORT"
    assert (await api.stats())["activation_emails_total"] == 0


async def test_staged_user_without_credential_becomes_provisioned(api: OktaApi) -> None:
    user = (await api.create("n@example.com", hook=False, activate=False)).body
    answer = await api.call(
        "POST", f"/api/v1/users/{user['id']}/lifecycle/activate", params={"sendEmail": "false"}
    )
    assert answer.status == 200
    shown = await api.call("GET", f"/api/v1/users/{user['id']}")
    assert shown.body["status"] == "PROVISIONED"


async def test_provisioned_user_cannot_be_activated_again(api: OktaApi) -> None:
    user = (await api.create("n@example.com", hook=False, activate=False)).body
    path = f"/api/v1/users/{user['id']}/lifecycle/activate"
    await api.call("POST", path, params={"sendEmail": "false"})
    # Setting the hook afterwards does not help: the user is no longer STAGED.
    await api.call(
        "POST",
        f"/api/v1/users/{user['id']}",
        json={"credentials": {"password": {"hook": {"type": "default"}}}},
    )
    again = await api.call("POST", path, params={"sendEmail": "false"})
    body = assert_okta_error(again, 403, "E0000016")
    assert body["errorSummary"] == "Activation failed because the user is already active"


async def test_active_user_cannot_be_activated(api: OktaApi) -> None:
    user = (await api.create("a@example.com")).body
    answer = await api.call("POST", f"/api/v1/users/{user['id']}/lifecycle/activate")
    assert_okta_error(answer, 403, "E0000016")


async def test_activation_email_is_sent_by_default_and_counted_per_user(api: OktaApi) -> None:
    first = (await api.create("e1@example.com", activate=False)).body
    second = (await api.create("e2@example.com", hook=False, activate=False)).body
    for user in (first, second):
        answer = await api.call("POST", f"/api/v1/users/{user['id']}/lifecycle/activate")
        assert answer.status == 200
        assert answer.body == {}  # sendEmail=true answers an empty object
    stats = await api.stats()
    assert stats["activation_emails"] == {"e1@example.com": 1, "e2@example.com": 1}
    assert stats["activation_emails_total"] == 2


async def test_create_and_activate_with_hook_sends_no_email(api: OktaApi) -> None:
    assert (await api.create("c@example.com")).body["status"] == "ACTIVE"
    assert (await api.stats())["activation_emails_total"] == 0


async def test_create_and_activate_without_credential_mails_a_token(api: OktaApi) -> None:
    answer = await api.create("c@example.com", hook=False)
    assert answer.body["status"] == "PROVISIONED"
    assert (await api.stats())["activation_emails"] == {"c@example.com": 1}


async def test_deactivate_answers_200_empty_and_deprovisions(api: OktaApi) -> None:
    user = (await api.create("d@example.com")).body
    answer = await api.call("POST", f"/api/v1/users/{user['id']}/lifecycle/deactivate")
    assert answer.status == 200
    assert answer.body is None
    shown = await api.call("GET", f"/api/v1/users/{user['id']}")
    assert shown.body["status"] == "DEPROVISIONED"
    assert "delete" in shown.body["_links"]


async def test_deprovisioned_user_can_be_activated_again(api: OktaApi) -> None:
    user = (await api.create("d@example.com")).body
    await api.call("POST", f"/api/v1/users/{user['id']}/lifecycle/deactivate")
    answer = await api.call(
        "POST", f"/api/v1/users/{user['id']}/lifecycle/activate", params={"sendEmail": "false"}
    )
    assert answer.status == 200
    assert (await api.call("GET", f"/api/v1/users/{user['id']}")).body["status"] == "ACTIVE"


async def test_delete_deactivates_first_then_deletes(api: OktaApi) -> None:
    user = (await api.create("x@example.com")).body
    first = await api.call("DELETE", f"/api/v1/users/{user['id']}")
    assert first.status == 204
    shown = await api.call("GET", f"/api/v1/users/{user['id']}")
    assert shown.body["status"] == "DEPROVISIONED"
    second = await api.call("DELETE", f"/api/v1/users/{user['id']}")
    assert second.status == 204
    assert_okta_error(await api.call("GET", f"/api/v1/users/{user['id']}"), 404, "E0000007")
    # The login is free again once the user is gone.
    assert (await api.create("x@example.com")).status == 200
    events = (await api.stats())["events"]
    assert events["users_deactivated"] == 1
    assert events["users_deleted"] == 1


async def test_simulated_sign_in_flips_provider_to_okta(api: OktaApi) -> None:
    user = (await api.create("s@example.com")).body
    answer = await api.call("POST", "/_emulator/users/S@example.com/sign-in")
    assert answer.status == 200
    assert answer.body == {
        "login": "s@example.com",
        "result": "VERIFIED",
        "reason": "simulated",
        "provider": "OKTA",
    }
    shown = (await api.call("GET", f"/api/v1/users/{user['id']}")).body
    assert shown["credentials"]["provider"] == {"type": "OKTA", "name": "OKTA"}
    assert shown["lastLogin"] is not None


async def test_staged_user_cannot_sign_in(api: OktaApi) -> None:
    await api.create("s@example.com", activate=False)
    answer = await api.call("POST", "/_emulator/users/s@example.com/sign-in")
    assert answer.status == 409


@pytest.fixture
async def hook_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny password import hook: VERIFIED for the password "right", else UNVERIFIED."""
    calls: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append({"auth": request.headers.get("Authorization"), "body": body})
        if request.headers.get("Authorization") != HOOK_SECRET:
            return web.Response(status=401)
        credential = body["data"]["context"]["credential"]
        verdict = "VERIFIED" if credential["password"] == "right" else "UNVERIFIED"
        return web.json_response(
            {"commands": [{"type": "com.okta.action.update", "value": {"credential": verdict}}]}
        )

    app = web.Application()
    app.router.add_post("/okta/password-import", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/okta/password-import", calls
    finally:
        await runner.cleanup()


async def register_hook(api: OktaApi, uri: str) -> None:
    """Register the password import inline hook at ``uri`` with header auth."""
    body = {
        "name": "Password import gateway",
        "type": "com.okta.user.credential.password.import",
        "version": "1.0.0",
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": uri,
                "method": "POST",
                "authScheme": {"type": "HEADER", "key": "Authorization", "value": HOOK_SECRET},
            },
        },
    }
    assert (await api.call("POST", "/api/v1/inlineHooks", json=body)).status == 200


async def test_sign_in_with_password_calls_the_hook_like_okta(
    api: OktaApi, hook_server: tuple[str, list[dict[str, Any]]]
) -> None:
    uri, calls = hook_server
    await register_hook(api, uri)
    user = (await api.create("h@example.com")).body
    wrong = await api.call(
        "POST", "/_emulator/users/H@Example.com/sign-in", json={"password": "wrong"}
    )
    assert wrong.body["result"] == "UNVERIFIED"
    assert wrong.body["provider"] == "IMPORT"
    right = await api.call(
        "POST", "/_emulator/users/H@Example.com/sign-in", json={"password": "right"}
    )
    assert right.body["result"] == "VERIFIED"
    assert right.body["provider"] == "OKTA"
    sent = calls[-1]
    assert sent["auth"] == HOOK_SECRET
    assert sent["body"]["eventType"] == "com.okta.user.credential.password.import"
    assert sent["body"]["data"]["context"]["credential"]["username"] == "H@Example.com"  # as typed
    assert sent["body"]["source"].endswith(
        f"/api/v1/inlineHooks/{(await api.call('GET', '/api/v1/inlineHooks')).body[0]['id']}"
    )
    shown = (await api.call("GET", f"/api/v1/users/{user['id']}")).body
    assert shown["credentials"]["provider"]["type"] == "OKTA"


async def test_sign_in_through_an_unreachable_hook_keeps_the_user_on_import(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await register_hook(api, f"http://127.0.0.1:{port}/okta/password-import")
    await api.create("h@example.com")
    answer = await api.call(
        "POST", "/_emulator/users/h@example.com/sign-in", json={"password": "x"}
    )
    assert answer.body["result"] == "HOOK_ERROR"
    assert answer.body["provider"] == "IMPORT"
    assert okta.emulator.events["inline_hook_calls"] == 2  # one call and Okta's single retry
