"""OAuth 2.0 inline hook channels: custom authorization servers and Okta's token-then-call flow.

The hook server here checks the bearer token the way a gateway must (reference/okta-hooks.md §1.8 b):
RS256 against the server's published keys, ``iss``, ``aud``, ``exp`` on the emulator's clock, the
hook's scope in ``scp`` and its client in ``cid``. Without a good token it answers 401, so a sign-in
is VERIFIED only when the emulator really fetched and sent one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import jwt
import pytest
from aiohttp import web

from emulators.okta import (
    DEFAULT_HOOK_AUDIENCE,
    DEFAULT_HOOK_AUTH_SERVER,
    DEFAULT_HOOK_AUTH_SERVER_ID,
    DEFAULT_HOOK_CLIENT_ID,
    DEFAULT_HOOK_CLIENT_SECRET,
    DEFAULT_HOOK_SCOPE,
    OktaOrg,
    RunningOktaEmulator,
    SeedAuthorizationServer,
    start_okta_emulator,
)
from tests.emulators.okta.conftest import Answer, FakeClock, OktaApi, assert_okta_error

SERVER = DEFAULT_HOOK_AUTH_SERVER_ID
CLIENT = DEFAULT_HOOK_CLIENT_ID
SECRET = DEFAULT_HOOK_CLIENT_SECRET
SCOPE = DEFAULT_HOOK_SCOPE
PASSWORD = "Right-password-1"  # a test user's password
PASSWORD_IMPORT = "com.okta.user.credential.password.import"
VERIFIED = {"commands": [{"type": "com.okta.action.update", "value": {"credential": "VERIFIED"}}]}
JWK_MEMBERS = {"kty", "alg", "kid", "use", "e", "n"}


@pytest.fixture
def org() -> OktaOrg:
    """An org with the emulator's hook authorization server."""
    return OktaOrg(authorization_servers=[DEFAULT_HOOK_AUTH_SERVER])


def issuer_of(okta: RunningOktaEmulator, server: str = SERVER) -> str:
    """What the gateway would be configured with: ``{okta.url}/oauth2/{id}``."""
    return f"{okta.url}/oauth2/{server}"


async def post_token(
    api: OktaApi,
    form: dict[str, str] | None,
    *,
    server: str = SERVER,
    authorization: str | None = None,
) -> Answer:
    """``POST /oauth2/{server}/v1/token`` with form fields (and an Authorization header)."""
    headers = {"Accept": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with api.session.post(
        f"{api.base}/oauth2/{server}/v1/token", data=form, headers=headers
    ) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return Answer(resp.status, resp.headers, body)


def client_form(**changes: str) -> dict[str, str]:
    """A good client_secret_post request, with some fields changed."""
    return {
        "grant_type": "client_credentials",
        "scope": SCOPE,
        "client_id": CLIENT,
        "client_secret": SECRET,
        **changes,
    }


async def served_keys(session: aiohttp.ClientSession, issuer: str) -> jwt.PyJWKSet:
    """The server's key set, found through its metadata as a verifier finds it."""
    async with session.get(f"{issuer}/.well-known/oauth-authorization-server") as resp:
        assert resp.status == 200
        jwks_uri = (await resp.json())["jwks_uri"]
    async with session.get(jwks_uri) as resp:
        assert resp.status == 200
        return jwt.PyJWKSet.from_dict(await resp.json())


def verify(token: str, keys: jwt.PyJWKSet, issuer: str, clock: FakeClock) -> dict[str, Any]:
    """A gateway's checks; raises PyJWTError (or KeyError for an unknown kid) when one fails."""
    header = jwt.get_unverified_header(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        keys[header["kid"]].key,
        algorithms=["RS256"],
        audience=DEFAULT_HOOK_AUDIENCE,
        issuer=issuer,
        # The emulator's clock is a fake one: time claims are checked against it below.
        options={"require": ["exp", "iat"], "verify_exp": False, "verify_iat": False},
    )
    if not claims["iat"] <= clock() < claims["exp"]:
        raise jwt.ExpiredSignatureError("expired on the emulator's clock")
    if SCOPE not in claims["scp"] or claims["cid"] != CLIENT:
        raise jwt.InvalidTokenError("not the hook's scope or client")
    return claims


# -- metadata, keys, token endpoint -------------------------------------------------------------


async def test_metadata_names_the_issuer_keys_and_token_endpoint(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    issuer = issuer_of(okta)
    answer = await api.call(
        "GET", f"/oauth2/{SERVER}/.well-known/oauth-authorization-server", auth=""
    )
    assert answer.status == 200
    metadata = answer.body
    assert metadata["issuer"] == issuer
    assert metadata["token_endpoint"] == f"{issuer}/v1/token"
    assert metadata["jwks_uri"] == f"{issuer}/v1/keys"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_post",
        "client_secret_basic",
    }
    assert metadata["scopes_supported"] == [SCOPE]
    assert metadata["response_types_supported"] == []
    assert {"ver", "iss", "aud", "exp", "cid", "scp", "sub"} <= set(metadata["claims_supported"])
    keys = await api.call("GET", f"/oauth2/{SERVER}/v1/keys", auth="")
    assert keys.status == 200
    [key] = keys.body["keys"]
    assert set(key) == JWK_MEMBERS  # public members only: no d, p, q, ...
    assert (key["kty"], key["alg"], key["use"], key["e"]) == ("RSA", "RS256", "sig", "AQAB")
    assert len(base64.urlsafe_b64decode(key["n"] + "==")) == 256  # RSA 2048
    stats = await api.stats()
    assert stats["events"]["auth_server_metadata_requests"] == 1
    assert stats["events"]["auth_server_keys_requests"] == 1
    assert stats["requests_total"] == 0  # outside the API gate: not rate limited


async def test_the_default_server_id_works_too() -> None:
    server = SeedAuthorizationServer(id="default", audience="api://default", scopes=["s1", "s2"])
    async with (
        await start_okta_emulator(OktaOrg(authorization_servers=[server])) as okta,
        aiohttp.ClientSession() as session,
    ):
        url = f"{okta.url}/oauth2/default/.well-known/oauth-authorization-server"
        async with session.get(url) as resp:
            metadata = await resp.json()
    assert metadata["issuer"] == f"{okta.url}/oauth2/default"
    assert metadata["scopes_supported"] == ["s1", "s2"]


async def test_client_secret_post_gets_a_jwt_that_verifies_against_the_served_keys(
    api: OktaApi, okta: RunningOktaEmulator, clock: FakeClock
) -> None:
    answer = await post_token(api, client_form())
    assert answer.status == 200, answer.body
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.body
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, SCOPE)
    token = body["access_token"]
    keys = await served_keys(api.session, issuer_of(okta))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": keys.keys[0].key_id}
    claims = verify(token, keys, issuer_of(okta), clock)
    assert set(claims) == {"ver", "jti", "iss", "aud", "iat", "exp", "cid", "scp", "sub"}
    assert claims["ver"] == 1
    assert claims["jti"].startswith("AT.")
    assert claims["iss"] == issuer_of(okta)
    assert claims["aud"] == DEFAULT_HOOK_AUDIENCE
    assert claims["iat"] == int(clock())
    assert claims["exp"] == claims["iat"] + 3600
    assert claims["cid"] == claims["sub"] == CLIENT
    assert claims["scp"] == [SCOPE]
    second = await post_token(api, client_form())
    assert (
        jwt.decode(second.body["access_token"], options={"verify_signature": False})["jti"]
        != (claims["jti"])
    )


async def test_client_secret_basic_is_accepted(api: OktaApi, okta: RunningOktaEmulator) -> None:
    pair = f"{quote_plus(CLIENT)}:{quote_plus(SECRET)}".encode()
    basic = "Basic " + base64.b64encode(pair).decode()
    form = {"grant_type": "client_credentials", "scope": SCOPE}
    answer = await post_token(api, form, authorization=basic)
    assert answer.status == 200, answer.body
    claims = jwt.decode(answer.body["access_token"], options={"verify_signature": False})
    assert claims["cid"] == CLIENT
    wrong = "Basic " + base64.b64encode(f"{CLIENT}:not-the-secret".encode()).decode()
    refused = await post_token(api, form, authorization=wrong)
    assert (refused.status, refused.body["error"]) == (401, "invalid_client")
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    both = await post_token(api, client_form(), authorization=basic)
    assert (both.status, both.body["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (client_form(client_secret="not-the-secret"), 401, "invalid_client"),
        (client_form(client_id="0oaunknownclient0001"), 401, "invalid_client"),
        (
            {"grant_type": "client_credentials", "scope": SCOPE, "client_id": CLIENT},
            401,
            "invalid_client",
        ),
        (client_form(scope="okta.hooks.other"), 400, "invalid_scope"),
        (client_form(scope=f"{SCOPE} okta.users.read"), 400, "invalid_scope"),
        (client_form(scope=""), 400, "invalid_scope"),
        (client_form(grant_type="password"), 400, "unsupported_grant_type"),
        (client_form(grant_type=""), 400, "invalid_request"),
    ],
    ids=[
        "wrong-secret",
        "unknown-client",
        "no-secret",
        "unknown-scope",
        "one-scope-unknown",
        "no-scope",
        "password-grant",
        "no-grant-type",
    ],
)
async def test_token_errors_follow_rfc_6749(
    api: OktaApi, form: dict[str, str], status: int, error: str
) -> None:
    answer = await post_token(api, form)
    assert answer.status == status, answer.body
    assert set(answer.body) == {"error", "error_description"}
    assert answer.body["error"] == error
    assert SECRET not in json.dumps(answer.body)
    assert "auth_server_tokens_issued" not in (await api.stats())["events"]


async def test_a_json_body_is_an_invalid_request(api: OktaApi) -> None:
    answer = await api.call("POST", f"/oauth2/{SERVER}/v1/token", json=client_form(), auth="")
    assert (answer.status, answer.body["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/v1/keys"),
        ("POST", "/v1/token"),
    ],
)
async def test_an_unknown_server_is_okta_404(api: OktaApi, method: str, path: str) -> None:
    answer = await api.call(method, f"/oauth2/ausnosuchserver00001{path}", auth="")
    body = assert_okta_error(answer, 404, "E0000007")
    assert "ausnosuchserver00001" in body["errorSummary"]


async def test_rotation_publishes_only_the_new_key_and_signs_with_it(
    api: OktaApi, okta: RunningOktaEmulator, clock: FakeClock
) -> None:
    issuer = issuer_of(okta)
    before = (await served_keys(api.session, issuer)).keys[0].key_id
    old_token = (await post_token(api, client_form())).body["access_token"]
    new_kid = okta.emulator.rotate_authorization_server_key(SERVER)
    keys = await served_keys(api.session, issuer)
    assert [key.key_id for key in keys.keys] == [new_kid]
    assert new_kid != before
    new_token = (await post_token(api, client_form())).body["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    verify(new_token, keys, issuer, clock)
    with pytest.raises(KeyError):  # the old kid is no longer published
        verify(old_token, keys, issuer, clock)
    with pytest.raises(KeyError):
        okta.emulator.rotate_authorization_server_key("ausnosuchserver00001")


async def test_a_full_reset_makes_new_keys(api: OktaApi, okta: RunningOktaEmulator) -> None:
    before = (await served_keys(api.session, issuer_of(okta))).keys[0].key_id
    assert (await api.call("POST", "/_emulator/reset", json={"users": True})).status == 200
    after = (await served_keys(api.session, issuer_of(okta))).keys[0].key_id
    assert after != before


# -- the hook channel end to end ----------------------------------------------------------------


@dataclass
class HookServer:
    """A password import hook that demands a valid bearer token, plus odd token endpoints."""

    uri: str
    base: str
    calls: list[dict[str, Any]] = field(default_factory=list)  # claims, kid, headers per call
    refused: list[str] = field(default_factory=list)  # why a call got 401


@pytest.fixture
async def hook_server(okta: RunningOktaEmulator, clock: FakeClock) -> AsyncIterator[HookServer]:
    """The hook on 127.0.0.1; it fetches the keys from the emulator on every call (no cache)."""
    issuer = issuer_of(okta)
    async with aiohttp.ClientSession() as session:
        server: HookServer | None = None

        async def handle(request: web.Request) -> web.Response:
            assert server is not None
            match = re.fullmatch(r"Bearer (\S+)", request.headers.get("Authorization", ""))
            if match is None:
                server.refused.append("no bearer token")
                return web.Response(status=401)
            try:
                keys = await served_keys(session, issuer)
                claims = verify(match.group(1), keys, issuer, clock)
            except (jwt.PyJWTError, KeyError) as exc:
                server.refused.append(type(exc).__name__)
                return web.Response(status=401)
            body = await request.json()
            server.calls.append(
                {
                    "claims": claims,
                    "kid": jwt.get_unverified_header(match.group(1))["kid"],
                    "headers": dict(request.headers),
                }
            )
            password = body["data"]["context"]["credential"]["password"]
            if password != PASSWORD:
                return web.Response(status=204)
            return web.json_response(VERIFIED)

        async def not_json(request: web.Request) -> web.Response:
            return web.Response(text="<html>hello</html>", content_type="text/html")

        async def no_token(request: web.Request) -> web.Response:
            return web.json_response({"token_type": "Bearer", "expires_in": 3600})

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(2)
            return web.json_response({"access_token": "late", "expires_in": 3600})

        app = web.Application()
        app.router.add_post("/okta/password-import", handle)
        app.router.add_post("/token/not-json", not_json)
        app.router.add_post("/token/no-access-token", no_token)
        app.router.add_post("/token/slow", slow)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        server = HookServer(uri=f"{base}/okta/password-import", base=base)
        try:
            yield server
        finally:
            await runner.cleanup()


def oauth_hook(
    uri: str, token_url: str, *, auth_type: str = "client_secret_post", **config: str
) -> dict[str, Any]:
    """An OAUTH password import hook registration (§1.8 b)."""
    extra: dict[str, str] = (
        {"clientSecret": SECRET} if auth_type == "client_secret_post" else {"hookKeyId": "HKYkey"}
    )
    return {
        "name": "Password import gateway",
        "type": PASSWORD_IMPORT,
        "version": "1.0.0",
        "channel": {
            "type": "OAUTH",
            "version": "1.0.0",
            "config": {
                "authType": auth_type,
                "clientId": CLIENT,
                "uri": uri,
                "headers": [{"key": "X-Gateway", "value": "1"}],
                "method": "POST",
                "tokenUrl": token_url,
                "scope": SCOPE,
                **extra,
                **config,
            },
        },
    }


async def register(api: OktaApi, body: dict[str, Any]) -> str:
    """Register the hook through the API; its id."""
    answer = await api.call("POST", "/api/v1/inlineHooks", json=body)
    assert answer.status == 200, answer.body
    hook_id: str = answer.body["id"]
    return hook_id


async def sign_in(api: OktaApi, login: str, password: str = PASSWORD) -> dict[str, Any]:
    """Create a hooked ACTIVE user and sign it in with ``password``."""
    assert (await api.create(login)).status == 200
    answer = await api.call(
        "POST", f"/_emulator/users/{login}/sign-in", json={"password": password}
    )
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.body
    return result


def events(okta: RunningOktaEmulator) -> dict[str, int]:
    """The emulator's event counters."""
    return dict(okta.emulator.events)


async def test_oauth_hook_gets_a_token_and_sends_it_as_bearer(
    api: OktaApi, okta: RunningOktaEmulator, hook_server: HookServer
) -> None:
    await register(api, oauth_hook(hook_server.uri, f"{issuer_of(okta)}/v1/token"))
    result = await sign_in(api, "a@example.com")
    assert (result["result"], result["reason"], result["provider"]) == (
        "VERIFIED",
        "hook_answer",
        "OKTA",
    )
    assert hook_server.refused == []
    [call] = hook_server.calls
    assert call["claims"]["scp"] == [SCOPE]
    assert call["headers"]["X-Gateway"] == "1"  # the channel's custom headers go along
    assert events(okta)["hook_token_requests"] == 1
    assert events(okta)["auth_server_tokens_issued"] == 1


async def test_the_token_is_reused_until_a_minute_before_it_expires(
    api: OktaApi, okta: RunningOktaEmulator, hook_server: HookServer, clock: FakeClock
) -> None:
    await register(api, oauth_hook(hook_server.uri, f"{issuer_of(okta)}/v1/token"))
    assert (await sign_in(api, "a@example.com"))["result"] == "VERIFIED"
    assert (await sign_in(api, "b@example.com"))["result"] == "VERIFIED"
    clock.advance(3600 - 61)
    assert (await sign_in(api, "c@example.com"))["result"] == "VERIFIED"
    assert events(okta)["hook_token_requests"] == 1
    jtis = [call["claims"]["jti"] for call in hook_server.calls]
    assert len(set(jtis)) == 1
    clock.advance(1)  # 60 s before expiry: Okta fetches a new token
    assert (await sign_in(api, "d@example.com"))["result"] == "VERIFIED"
    assert events(okta)["hook_token_requests"] == 2
    assert hook_server.calls[-1]["claims"]["jti"] != jtis[0]
    assert events(okta)["inline_hook_calls"] == 4


async def test_an_unverified_answer_through_an_oauth_hook(
    api: OktaApi, okta: RunningOktaEmulator, hook_server: HookServer
) -> None:
    await register(api, oauth_hook(hook_server.uri, f"{issuer_of(okta)}/v1/token"))
    result = await sign_in(api, "a@example.com", "wrong-password")
    assert (result["result"], result["provider"]) == ("UNVERIFIED", "IMPORT")
    assert len(hook_server.calls) == 1


@pytest.mark.parametrize(
    "breakage",
    [
        "wrong-secret",
        "unknown-scope",
        "unknown-server",
        "unreachable",
        "not-json",
        "no-access-token",
        "slow",
    ],
)
async def test_a_failed_token_request_never_calls_the_hook(
    api: OktaApi, okta: RunningOktaEmulator, hook_server: HookServer, breakage: str
) -> None:
    token_url = f"{issuer_of(okta)}/v1/token"
    config: dict[str, str] = {}
    if breakage == "wrong-secret":
        config["clientSecret"] = "not-the-secret"
    elif breakage == "unknown-scope":
        config["scope"] = "okta.hooks.other"
    elif breakage == "unknown-server":
        token_url = f"{issuer_of(okta, 'ausnosuchserver00001')}/v1/token"
    elif breakage == "unreachable":
        with socket.socket() as sock:  # a port nothing listens on once it is closed
            sock.bind(("127.0.0.1", 0))
            token_url = f"http://127.0.0.1:{sock.getsockname()[1]}/token"
    else:
        token_url = f"{hook_server.base}/token/{breakage}"
    if breakage == "slow":
        okta.emulator.hook_timeout = 0.2  # Okta allows 3 s; the test keeps the rule, not the wait
    await register(api, oauth_hook(hook_server.uri, token_url, **config))
    result = await sign_in(api, "a@example.com")
    assert (result["result"], result["reason"], result["provider"]) == (
        "HOOK_ERROR",
        "hook_token_failed",
        "IMPORT",
    )
    assert (hook_server.calls, hook_server.refused) == ([], [])
    assert events(okta)["hook_token_requests"] == 1
    assert "inline_hook_calls" not in events(okta)
    assert okta.emulator.hook_tokens == {}
    kinds = [
        (e["eventType"], e["outcome"]["result"], e["outcome"]["reason"])
        for e in okta.emulator.system_log.events
    ]
    assert kinds[-2:] == [
        ("inline_hook.executed", "FAILURE", "hook_token_failed"),
        ("user.import.password", "FAILURE", "hook_token_failed"),
    ]


async def test_a_changed_client_secret_is_not_answered_from_the_cache(
    api: OktaApi, okta: RunningOktaEmulator, hook_server: HookServer
) -> None:
    token_url = f"{issuer_of(okta)}/v1/token"
    hook_id = await register(api, oauth_hook(hook_server.uri, token_url))
    assert (await sign_in(api, "a@example.com"))["result"] == "VERIFIED"
    changed = oauth_hook(hook_server.uri, token_url, clientSecret="not-the-secret")
    assert (await api.call("POST", f"/api/v1/inlineHooks/{hook_id}", json=changed)).status == 200
    result = await sign_in(api, "b@example.com")
    assert (result["result"], result["reason"]) == ("HOOK_ERROR", "hook_token_failed")
    assert events(okta)["hook_token_requests"] == 2
    assert len(hook_server.calls) == 1


async def test_after_a_key_rotation_the_hook_gets_a_token_with_the_new_kid(
    api: OktaApi, okta: RunningOktaEmulator, hook_server: HookServer
) -> None:
    await register(api, oauth_hook(hook_server.uri, f"{issuer_of(okta)}/v1/token"))
    assert (await sign_in(api, "a@example.com"))["result"] == "VERIFIED"
    new_kid = okta.emulator.rotate_authorization_server_key(SERVER)
    assert (await sign_in(api, "b@example.com"))["result"] == "VERIFIED"
    assert [call["kid"] for call in hook_server.calls][1] == new_kid
    assert hook_server.calls[0]["kid"] != new_kid
    assert events(okta)["hook_token_requests"] == 2


async def test_private_key_jwt_channels_are_not_emulated(
    api: OktaApi, okta: RunningOktaEmulator, hook_server: HookServer
) -> None:
    body = oauth_hook(hook_server.uri, f"{issuer_of(okta)}/v1/token", auth_type="private_key_jwt")
    await register(api, body)
    result = await sign_in(api, "a@example.com")
    assert (result["result"], result["reason"], result["provider"]) == (
        "HOOK_ERROR",
        "private_key_jwt_not_emulated",
        "IMPORT",
    )
    assert (hook_server.calls, hook_server.refused) == ([], [])
    assert "hook_token_requests" not in events(okta)
