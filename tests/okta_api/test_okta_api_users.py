"""The users and hooks calls the migration commands make, against the emulator."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from emulators.okta import Credential, RunningOktaEmulator, Status
from gateway.okta_api import (
    PASSWORD_IMPORT_HOOK_TYPE,
    OAuthServiceApp,
    OktaApiClient,
    OktaApiError,
    event_hook_body,
    http_channel,
    password_import_hook_body,
)
from tests.okta_api.conftest import (
    GROUP_ID,
    ClientFactory,
    FaultProxy,
    oauth_app,
    profile_of,
)


async def test_create_sets_the_hook_activates_without_email_and_joins_groups(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    user = await client.create_user(profile_of("a@contoso.com"), group_ids=[GROUP_ID])
    assert user["status"] == "ACTIVE"
    assert user["credentials"]["provider"]["type"] == "IMPORT"
    record = okta.emulator.users[user["id"]]
    assert record.credential is Credential.HOOK
    assert record.group_ids == [GROUP_ID]
    assert okta.emulator.stats()["activation_emails_total"] == 0


async def test_get_user_by_login_or_id_and_none_when_missing(client: OktaApiClient) -> None:
    user = await client.create_user(profile_of("jane+test@contoso.com"))
    by_login = await client.get_user("jane+test@contoso.com")
    by_id = await client.get_user(user["id"])
    assert by_login is not None and by_id is not None
    assert by_login["id"] == by_id["id"] == user["id"]
    assert await client.get_user("nobody@contoso.com") is None
    assert await client.get_user("a/b?c#d@contoso.com") is None  # encoded, not a path


async def test_prepare_a_staged_user_hook_then_activate(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    staged = await client.create_user(profile_of("s@contoso.com"), hook=False, activate=False)
    assert staged["status"] == "STAGED"
    hooked = await client.put_password_hook(staged["id"])
    assert hooked["status"] == "STAGED"
    await client.activate(staged["id"])
    record = okta.emulator.users[staged["id"]]
    assert (record.status, record.credential) == (Status.ACTIVE, Credential.HOOK)
    assert okta.emulator.stats()["activation_emails_total"] == 0


async def test_update_profile_sends_only_the_changed_attributes(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    user = await client.create_user(profile_of("a@contoso.com", title="Engineer"))
    updated = await client.update_profile(user["id"], {"department": "R&D"})
    assert updated["profile"]["title"] == "Engineer"  # untouched attributes stay
    assert updated["profile"]["department"] == "R&D"
    assert okta.emulator.profile_updates[-1]["method"] == "POST"
    assert okta.emulator.profile_updates[-1]["attributes"] == ["department"]


async def test_deactivate_then_delete_removes_the_user(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    user = await client.create_user(profile_of("a@contoso.com"))
    await client.deactivate(user["id"])
    assert okta.emulator.users[user["id"]].status is Status.DEPROVISIONED
    await client.delete_user(user["id"])
    assert await client.get_user(user["id"]) is None
    assert okta.emulator.stats()["deactivation_emails_total"] == 0


async def test_inline_hook_create_list_update_activate(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    body = password_import_hook_body(
        "Password import gateway",
        http_channel(
            "https://gw.contoso.com/okta/password-import",
            auth_header="Authorization",
            auth_value="Basic c2VjcmV0",
        ),
    )
    created = await client.create_inline_hook(body)
    assert created["status"] == "ACTIVE"
    assert created["channel"]["config"]["authScheme"] == {"type": "HEADER", "key": "authorization"}
    listed = await client.list_inline_hooks(PASSWORD_IMPORT_HOOK_TYPE)
    assert [hook["id"] for hook in listed] == [created["id"]]
    moved = dict(body, channel=dict(body["channel"]))
    moved["channel"]["config"] = dict(body["channel"]["config"], uri="https://gw2.contoso.com/h")
    updated = await client.update_inline_hook(created["id"], {"channel": moved["channel"]})
    assert updated["channel"]["config"]["uri"] == "https://gw2.contoso.com/h"
    okta.emulator.inline_hooks[created["id"]]["status"] = "INACTIVE"
    assert (await client.activate_inline_hook(created["id"]))["status"] == "ACTIVE"


@pytest.fixture
async def event_endpoint() -> AsyncIterator[str]:
    """A loopback endpoint answering Okta's one-time verification challenge."""

    async def answer(request: web.Request) -> web.Response:
        challenge = request.headers["x-okta-verification-challenge"]
        return web.json_response({"verification": challenge})

    app = web.Application()
    app.router.add_get("/okta/events", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/okta/events"
    finally:
        await runner.cleanup()


async def test_event_hook_create_update_verify_activate(
    client: OktaApiClient, event_endpoint: str
) -> None:
    body = event_hook_body(
        "Migration events",
        event_endpoint,
        ["user.import.password"],
        auth_header="Authorization",
        auth_value="Basic c2VjcmV0",
    )
    created = await client.create_event_hook(body)
    assert created["verificationStatus"] == "UNVERIFIED"
    replaced = await client.update_event_hook(
        created["id"],
        event_hook_body(
            "Migration events",
            event_endpoint,
            ["user.import.password", "user.lifecycle.activate"],
            auth_header="Authorization",
            auth_value="Basic c2VjcmV0",
        ),
    )
    assert replaced["events"]["items"] == ["user.import.password", "user.lifecycle.activate"]
    verified = await client.verify_event_hook(created["id"])
    assert verified["verificationStatus"] == "VERIFIED"
    assert (await client.activate_event_hook(created["id"]))["status"] == "ACTIVE"
    assert [hook["id"] for hook in await client.list_event_hooks()] == [created["id"]]


async def test_errors_name_the_endpoint_and_causes_never_the_body(
    client: OktaApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.create_user(profile_of("a@contoso.com"))
    with pytest.raises(OktaApiError) as caught:
        await client.create_user(profile_of("a@contoso.com", title="marker-7319-in-the-body"))
    error = caught.value
    assert (error.status, error.code) == (400, "E0000001")
    assert error.one_line() == (
        "POST /api/v1/users -> 400 E0000001: Api validation failed: login "
        "(login: An object with this field already exists in the current organization)"
    )
    assert error.error_id is not None and error.error_id.startswith("oae")
    assert error.request_id
    assert "marker-7319" not in repr(error) + str(error)
    assert all("marker-7319" not in record.getMessage() for record in caplog.records)


async def test_a_non_json_gateway_error_keeps_only_its_reason(
    make_client: ClientFactory, proxy: FaultProxy
) -> None:
    client = await make_client(url=proxy.url)
    proxy.lose_next("POST", "/api/v1/inlineHooks")
    with pytest.raises(OktaApiError) as caught:
        await client.create_inline_hook({"name": "x"})
    assert caught.value.one_line() == (
        "POST /api/v1/inlineHooks -> 502 http_502: Bad Gateway "
        "[the request may have been carried out]"
    )


async def test_check_scopes_with_ssws_probes_reads(client: OktaApiClient) -> None:
    checks = {check.scope: check.status for check in await client.check_scopes()}
    assert checks == {
        "okta.users.read": "ok",
        "okta.inlineHooks.read": "ok",
        "okta.eventHooks.read": "ok",
        "okta.users.manage": "unknown",
        "okta.inlineHooks.manage": "unknown",
        "okta.eventHooks.manage": "unknown",
    }


async def test_check_scopes_with_oauth_names_what_is_missing(
    make_client: ClientFactory, key_file: Path
) -> None:
    client = await make_client(oauth_app(key_file, ["okta.users.manage"]))
    checks = {check.scope: check for check in await client.check_scopes()}
    assert checks["okta.users.read"].status == "ok"  # .manage includes .read
    assert checks["okta.users.manage"].status == "ok"
    assert checks["okta.inlineHooks.read"].status == "missing"
    assert "okta.inlineHooks.read" in checks["okta.inlineHooks.read"].detail
    assert checks["okta.eventHooks.manage"].status == "missing"


async def test_create_refuses_to_activate_a_user_without_the_hook(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    with pytest.raises(ValueError, match="without the password hook"):
        await client.create_user(profile_of("a@contoso.com"), hook=False)
    assert okta.emulator.stats()["requests_total"] == 0


async def test_check_scopes_when_okta_refuses_the_service_app(
    make_client: ClientFactory, key_file: Path
) -> None:
    app = OAuthServiceApp(client_id="0oaunknownclient", private_key_file=key_file, scopes=["x"])
    client = await make_client(app)
    checks = await client.check_scopes()
    assert {check.status for check in checks} == {"error", "unknown"}
    assert "invalid_client" in checks[0].detail
