"""Inline hooks and event hooks management, and Okta's one-time event hook verification."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from emulators.okta import RunningOktaEmulator
from tests.emulators.okta.conftest import OktaApi, assert_okta_error

SECRET = "Basic ZXZlbnRzOnNlY3JldA=="
PASSWORD_IMPORT = "com.okta.user.credential.password.import"


def inline_body(uri: str = "https://gw.example.com/okta/password-import", **extra: Any) -> Any:
    """A password import inline hook registration with header auth."""
    return {
        "name": "Password import gateway",
        "type": PASSWORD_IMPORT,
        "version": "1.0.0",
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": uri,
                "method": "POST",
                "headers": [{"key": "X-Gateway", "value": "1"}],
                "authScheme": {"type": "HEADER", "key": "Authorization", "value": SECRET},
            },
        },
        **extra,
    }


def event_body(uri: str, **extra: Any) -> Any:
    """An event hook registration for ``user.import.password``."""
    return {
        "name": "Password import results",
        "events": {"type": "EVENT_TYPE", "items": ["user.import.password"]},
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": uri,
                "headers": [{"key": "X-Other-Header", "value": "my-header-value"}],
                "authScheme": {"type": "HEADER", "key": "Authorization", "value": SECRET},
            },
        },
        **extra,
    }


async def test_inline_hook_is_created_active_without_its_secret(api: OktaApi) -> None:
    answer = await api.call("POST", "/api/v1/inlineHooks", json=inline_body())
    assert answer.status == 200
    hook = answer.body
    assert hook["id"].startswith("cal")
    assert hook["status"] == "ACTIVE"
    assert hook["type"] == PASSWORD_IMPORT
    assert hook["version"] == "1.0.0"
    config = hook["channel"]["config"]
    assert config["authScheme"] == {"type": "HEADER", "key": "authorization"}
    assert config["uri"] == "https://gw.example.com/okta/password-import"
    assert config["method"] == "POST"
    assert SECRET not in str(answer.body)
    assert set(hook["_links"]) == {"self", "deactivate", "execute"}


async def test_only_one_password_import_hook_per_org(api: OktaApi) -> None:
    assert (await api.call("POST", "/api/v1/inlineHooks", json=inline_body())).status == 200
    second = await api.call("POST", "/api/v1/inlineHooks", json=inline_body())
    assert_okta_error(second, 400, "E0000001")


@pytest.mark.parametrize(
    "uri",
    [
        "http://gw.example.com/hook",
        "https://gw.example.com/a b",
        "ftp://gw/x",
        "https://" + "a" * 1020,
    ],
)
async def test_hook_uri_must_be_https_short_and_without_spaces(api: OktaApi, uri: str) -> None:
    answer = await api.call("POST", "/api/v1/inlineHooks", json=inline_body(uri))
    assert_okta_error(answer, 400, "E0000001")


async def test_http_is_accepted_for_loopback_rehearsals(api: OktaApi) -> None:
    answer = await api.call(
        "POST", "/api/v1/inlineHooks", json=inline_body("http://127.0.0.1:8080/h")
    )
    assert answer.status == 200


async def test_inline_hook_list_get_update_and_type_filter(api: OktaApi) -> None:
    created = (await api.call("POST", "/api/v1/inlineHooks", json=inline_body())).body
    token_hook = inline_body(type="com.okta.oauth2.tokens.transform")
    await api.call("POST", "/api/v1/inlineHooks", json=token_hook)
    only = await api.call("GET", "/api/v1/inlineHooks", params={"type": PASSWORD_IMPORT})
    assert [h["id"] for h in only.body] == [created["id"]]
    renamed = await api.call(
        "POST", f"/api/v1/inlineHooks/{created['id']}", json={"name": "Renamed"}
    )
    assert renamed.body["name"] == "Renamed"
    assert renamed.body["channel"] == created["channel"]
    moved = inline_body("https://gw2.example.com/okta/password-import")
    del moved["type"]
    replaced = await api.call("PUT", f"/api/v1/inlineHooks/{created['id']}", json=moved)
    assert (
        replaced.body["channel"]["config"]["uri"] == "https://gw2.example.com/okta/password-import"
    )
    fetched = await api.call("GET", f"/api/v1/inlineHooks/{created['id']}")
    assert fetched.body == replaced.body


async def test_inline_hook_type_cannot_change(api: OktaApi) -> None:
    created = (await api.call("POST", "/api/v1/inlineHooks", json=inline_body())).body
    answer = await api.call(
        "PUT",
        f"/api/v1/inlineHooks/{created['id']}",
        json=inline_body(type="com.okta.import.transform"),
    )
    assert_okta_error(answer, 400, "E0000001")


async def test_inline_hook_lifecycle_and_delete_only_when_inactive(api: OktaApi) -> None:
    hook_id = (await api.call("POST", "/api/v1/inlineHooks", json=inline_body())).body["id"]
    assert_okta_error(await api.call("DELETE", f"/api/v1/inlineHooks/{hook_id}"), 400, "E0000001")
    off = await api.call("POST", f"/api/v1/inlineHooks/{hook_id}/lifecycle/deactivate")
    assert off.body["status"] == "INACTIVE"
    on = await api.call("POST", f"/api/v1/inlineHooks/{hook_id}/lifecycle/activate")
    assert on.body["status"] == "ACTIVE"
    await api.call("POST", f"/api/v1/inlineHooks/{hook_id}/lifecycle/deactivate")
    assert (await api.call("DELETE", f"/api/v1/inlineHooks/{hook_id}")).status == 204
    assert_okta_error(await api.call("GET", f"/api/v1/inlineHooks/{hook_id}"), 404, "E0000007")


def _oauth_hook_body(**config: object) -> dict[str, Any]:
    """A client_secret_post OAUTH password import hook, its channel config changed by `config`."""
    channel_config = {
        "authType": "client_secret_post",
        "clientId": "0oahookclient",
        "clientSecret": "hook-client-secret",
        "uri": "https://gw.example.com/okta/password-import",
        "tokenUrl": "https://example.okta.com/oauth2/default/v1/token",
        "scope": "okta.hooks.password",
        **config,
    }
    channel = {"type": "OAUTH", "version": "1.0.0", "config": channel_config}
    return {"name": "OAuth hook", "type": PASSWORD_IMPORT, "version": "1.0.0", "channel": channel}


async def test_oauth_inline_hook_keeps_client_secret_write_only(api: OktaApi) -> None:
    answer = await api.call("POST", "/api/v1/inlineHooks", json=_oauth_hook_body())
    assert answer.status == 200
    config = answer.body["channel"]["config"]
    assert config["authScheme"] is None
    assert config["clientId"] == "0oahookclient"
    assert config["authType"] == "client_secret_post"
    assert "hook-client-secret" not in str(answer.body)


@pytest.mark.parametrize(
    "token_url", ["http://example.okta.com/oauth2/default/v1/token", "not a url", 42]
)
async def test_oauth_inline_hook_needs_an_https_token_url(api: OktaApi, token_url: object) -> None:
    answer = await api.call(
        "POST", "/api/v1/inlineHooks", json=_oauth_hook_body(tokenUrl=token_url)
    )
    assert_okta_error(answer, 400, "E0000001")
    assert "tokenUrl" in str(answer.body)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, str]], Callable[[str], None]]]:
    """A tiny event hook endpoint; ``set_mode`` picks how it answers the challenge."""
    seen: list[dict[str, str]] = []
    mode = {"value": "echo"}

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        if mode["value"] == "fail_once" and len(seen) == 1:
            return web.Response(status=503)
        if mode["value"] == "wrong":
            return web.json_response({"verification": "not-the-challenge"})
        if mode["value"] == "slow":
            await asyncio.sleep(0.3)
        challenge = request.headers.get("x-okta-verification-challenge", "")
        return web.json_response({"verification": challenge})

    app = web.Application()
    app.router.add_get("/okta/events", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]

    def set_mode(value: str) -> None:
        mode["value"] = value

    try:
        yield f"http://127.0.0.1:{port}/okta/events", seen, set_mode
    finally:
        await runner.cleanup()


async def test_event_hook_is_created_active_and_unverified(api: OktaApi) -> None:
    answer = await api.call(
        "POST", "/api/v1/eventHooks", json=event_body("https://gw.example.com/e")
    )
    assert answer.status == 200
    hook = answer.body
    assert hook["id"].startswith("who")
    assert (hook["status"], hook["verificationStatus"]) == ("ACTIVE", "UNVERIFIED")
    assert hook["events"] == {
        "type": "EVENT_TYPE",
        "items": ["user.import.password"],
        "filter": None,
    }
    assert hook["channel"]["config"]["authScheme"] == {"type": "HEADER", "key": "authorization"}
    assert hook["channel"]["config"]["headers"] == [
        {"key": "X-Other-Header", "value": "my-header-value"}
    ]
    assert "verify" in hook["_links"]
    assert SECRET not in str(hook)


async def test_verify_sends_the_challenge_get_and_marks_verified(
    api: OktaApi, receiver: tuple[str, list[dict[str, str]], Callable[[str], None]]
) -> None:
    uri, seen, _ = receiver
    hook_id = (await api.call("POST", "/api/v1/eventHooks", json=event_body(uri))).body["id"]
    answer = await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/verify")
    assert answer.status == 200
    assert answer.body["verificationStatus"] == "VERIFIED"
    assert len(seen) == 1
    assert seen[0]["Authorization"] == SECRET
    assert seen[0]["X-Other-Header"] == "my-header-value"
    assert seen[0]["x-okta-verification-challenge"]


async def test_wrong_verification_answer_is_400_and_stays_unverified(
    api: OktaApi, receiver: tuple[str, list[dict[str, str]], Callable[[str], None]]
) -> None:
    uri, seen, set_mode = receiver
    set_mode("wrong")
    hook_id = (await api.call("POST", "/api/v1/eventHooks", json=event_body(uri))).body["id"]
    answer = await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/verify")
    assert_okta_error(answer, 400, "E0000001")
    assert len(seen) == 1  # a wrong answer is not retried
    shown = await api.call("GET", f"/api/v1/eventHooks/{hook_id}")
    assert shown.body["verificationStatus"] == "UNVERIFIED"


async def test_verification_is_retried_once_after_a_5xx(
    api: OktaApi, receiver: tuple[str, list[dict[str, str]], Callable[[str], None]]
) -> None:
    uri, seen, set_mode = receiver
    set_mode("fail_once")
    hook_id = (await api.call("POST", "/api/v1/eventHooks", json=event_body(uri))).body["id"]
    answer = await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/verify")
    assert answer.body["verificationStatus"] == "VERIFIED"
    assert len(seen) == 2


async def test_verification_times_out_like_okta(
    api: OktaApi,
    okta: RunningOktaEmulator,
    receiver: tuple[str, list[dict[str, str]], Callable[[str], None]],
) -> None:
    uri, seen, set_mode = receiver
    set_mode("slow")
    okta.emulator.hook_timeout = 0.1  # Okta allows 3 s; the test keeps the ratio, not the wait
    hook_id = (await api.call("POST", "/api/v1/eventHooks", json=event_body(uri))).body["id"]
    answer = await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/verify")
    assert_okta_error(answer, 400, "E0000001")
    assert len(seen) == 2


async def test_changing_the_channel_needs_verifying_again(
    api: OktaApi, receiver: tuple[str, list[dict[str, str]], Callable[[str], None]]
) -> None:
    uri, _, _ = receiver
    hook_id = (await api.call("POST", "/api/v1/eventHooks", json=event_body(uri))).body["id"]
    await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/verify")
    renamed = await api.call(
        "PUT", f"/api/v1/eventHooks/{hook_id}", json=event_body(uri, name="New")
    )
    assert renamed.body["verificationStatus"] == "VERIFIED"  # same channel: still verified
    moved = await api.call("PUT", f"/api/v1/eventHooks/{hook_id}", json=event_body(uri + "/v2"))
    assert moved.body["verificationStatus"] == "UNVERIFIED"


async def test_event_hook_list_lifecycle_and_delete(api: OktaApi) -> None:
    hook_id = (
        await api.call("POST", "/api/v1/eventHooks", json=event_body("https://gw.example.com/e"))
    ).body["id"]
    assert [h["id"] for h in (await api.call("GET", "/api/v1/eventHooks")).body] == [hook_id]
    assert_okta_error(await api.call("DELETE", f"/api/v1/eventHooks/{hook_id}"), 400, "E0000001")
    off = await api.call("POST", f"/api/v1/eventHooks/{hook_id}/lifecycle/deactivate")
    assert off.body["status"] == "INACTIVE"
    assert (await api.call("DELETE", f"/api/v1/eventHooks/{hook_id}")).status == 204
    assert (await api.call("GET", "/api/v1/eventHooks")).body == []
