"""OAuth 2.0 bearer tokens on the password hook, against a local issuer (metadata + JWKS on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from emulators.demo import okta_payload
from emulators.entra import RunningEmulator
from gateway.app import METRICS, create_app
from gateway.config import ConfigError, load_config, parse_config
from gateway.hook_oauth import AUTH_ERRORS, KeySet
from gateway.logs import JsonFormatter
from gateway.runtime import RUNTIME
from tests.conftest import HOOK_PATH, SCAN, USERS, GatewayFactory, credential, gateway_yaml

ALICE = "alice@contoso.com"
AUDIENCE = "api://okta-password-gateway"
SCOPE = "okta.hooks.password"
CLIENT_ID = "0oa1hookclient"
AUTH_SERVER_PATH = "/oauth2/aus1test"
STATIC_BEARER = "Bearer static-shared-secret-0001"  # a static secret that looks like a bearer
SCAN.secrets.add(STATIC_BEARER)
# Generated once: 2048-bit keys take tens of milliseconds each.
KEY_A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_B = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the rotation's next key
KEY_EVIL = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # never published


class Issuer:
    """A custom authorization server's public side: metadata and a JWKS that tests can change."""

    def __init__(self) -> None:
        self.published: dict[str, rsa.RSAPrivateKey] = {"kid-a": KEY_A}
        self.jwks_hits = 0
        self.down = False
        self.hang = False
        self.oversize = False
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    @property
    def issuer(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}{AUTH_SERVER_PATH}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(
            AUTH_SERVER_PATH + "/.well-known/oauth-authorization-server", self._metadata
        )
        app.router.add_get(AUTH_SERVER_PATH + "/v1/keys", self._keys)
        return app

    async def _metadata(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        return web.json_response({"issuer": self.issuer, "jwks_uri": self.issuer + "/v1/keys"})

    async def _keys(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        if self.hang:
            await self.release.wait()
        if self.down:
            return web.Response(status=503)
        keys = []
        for kid, key in self.published.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        if self.oversize:
            keys.append({"kty": "oct", "kid": "padding", "k": "x" * 300_000})
        return web.json_response({"keys": keys})

    def token(
        self,
        *,
        key: rsa.RSAPrivateKey = KEY_A,
        kid: str = "kid-a",
        **claims: Any,
    ) -> str:
        """An access token as Okta's custom authorization server mints it (added to the scan)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "ver": 1,
            "jti": f"AT.{uuid.uuid4().hex}",
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 3600,
            "cid": CLIENT_ID,
            "sub": CLIENT_ID,
            "scp": [SCOPE],
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        token = jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})
        SCAN.secrets.add(token)
        return token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(issuer: Issuer, alg: str, secret: bytes | None) -> str:
    """A token with `alg` none or an HMAC algorithm, built by hand (PyJWT refuses to)."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": alg, "kid": "kid-a", "typ": "JWT"}).encode())
    claims = {
        "iss": issuer.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 3600,
        "cid": CLIENT_ID, "scp": [SCOPE],
    }  # fmt: skip
    payload = _b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b"" if secret is None else hmac.new(secret, signing_input, hashlib.sha256).digest()
    token = f"{header}.{payload}.{_b64(signature)}"
    SCAN.secrets.add(token)
    return token


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    """The local authorization server, on a free port of 127.0.0.1."""
    running = Issuer()
    running.server = TestServer(running.app(), host="127.0.0.1")
    await running.server.start_server()
    try:
        yield running
    finally:
        running.release.set()
        await running.server.close()


class Decisions(logging.Handler):
    """`hook_decision` lines as JSON objects."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self._json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self._json.format(record))
        if line.get("event") == "hook_decision":
            self.lines.append(line)


@pytest.fixture
def decisions() -> Iterator[Decisions]:
    """Decision lines logged during the test."""
    handler = Decisions()
    logger = logging.getLogger("gateway.decision")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def oauth2_settings(issuer: Issuer, **overrides: Any) -> dict[str, Any]:
    return {
        "issuer": issuer.issuer,
        "audience": AUDIENCE,
        "required_scopes": [SCOPE],
        "allowed_client_ids": [CLIENT_ID],
        "leeway_seconds": 120,
        **overrides,
    }


def okta_auth(issuer: Issuer, mode: str = "oauth2", **overrides: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {"mode": mode}
    if mode != "header":
        auth["oauth2"] = oauth2_settings(issuer, **overrides)
    if mode != "oauth2":
        auth["secrets"] = [STATIC_BEARER]
    return {"okta": {"hook_path": HOOK_PATH, "auth": auth}}


async def keys_loaded(client: TestClient[Any, Any]) -> KeySet:
    keys = client.server.app[RUNTIME].current.auth.keys
    assert keys is not None
    for _ in range(200):
        if keys.loaded:
            return keys
        await asyncio.sleep(0.025)
    raise AssertionError("the key set was never loaded")


async def oauth_gateway(
    make_gateway: GatewayFactory, issuer: Issuer, mode: str = "oauth2", **overrides: Any
) -> TestClient[Any, Any]:
    client = await make_gateway(extra=okta_auth(issuer, mode, **overrides))
    await keys_loaded(client)
    return client


async def post(client: TestClient[Any, Any], authorization: str | None) -> tuple[int, Any]:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.post(HOOK_PATH, json=okta_payload(ALICE, USERS[ALICE]), headers=headers)
    return response.status, await response.json()


def failures(client: TestClient[Any, Any], reason: str) -> float:
    value = client.server.app[METRICS].registry.get_sample_value(
        "gateway_hook_auth_failures_total", {"reason": reason}
    )
    assert value is not None, f"series for {reason} not exported"
    return value


async def assert_refused(
    client: TestClient[Any, Any], decisions: Decisions, authorization: str | None, reason: str
) -> None:
    """401 with no detail, one decision line naming `reason`, the metric counted once."""
    before = {r: failures(client, r) for r in AUTH_ERRORS}
    decisions.lines.clear()
    status, body = await post(client, authorization)
    assert status == 401
    assert body == {"error": {"errorSummary": "missing or wrong hook credentials"}}
    (line,) = decisions.lines
    assert (line["result"], line["reason"], line["auth_error"]) == (
        "unauthorized",
        "unauthorized",
        reason,
    )
    after = {r: failures(client, r) for r in AUTH_ERRORS}
    assert {r: after[r] - before[r] for r in AUTH_ERRORS if after[r] != before[r]} == {reason: 1}


async def test_valid_token_is_verified(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    status, body = await post(client, "Bearer " + issuer.token())
    assert (status, credential(body)) == (200, "VERIFIED")
    (line,) = decisions.lines
    assert (line["result"], line["auth_error"]) == ("verified", None)


async def test_every_failure_reason_is_exported_from_start(
    make_gateway: GatewayFactory, issuer: Issuer
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    assert {r: failures(client, r) for r in AUTH_ERRORS} == dict.fromkeys(AUTH_ERRORS, 0.0)


async def test_token_expired_within_leeway_is_accepted(
    make_gateway: GatewayFactory, issuer: Issuer
) -> None:
    # Okta reuses its token; a clock a minute apart must not refuse it (leeway 120 s).
    client = await oauth_gateway(make_gateway, issuer)
    now = int(time.time())
    token = issuer.token(iat=now - 3600, exp=now - 60)
    status, body = await post(client, "Bearer " + token)
    assert (status, credential(body)) == (200, "VERIFIED")


CLAIM_CASES = {
    "expired": ({"iat": -7200, "exp": -600}, "expired"),
    "nbf_in_future": ({"nbf": 600}, "not_yet_valid"),
    "iat_in_future": ({"iat": 600}, "not_yet_valid"),
    "wrong_issuer": ({"iss": "http://127.0.0.1:9/oauth2/other"}, "wrong_issuer"),
    "no_issuer": ({"iss": None}, "wrong_issuer"),
    "wrong_audience": ({"aud": "api://default"}, "wrong_audience"),
    "no_audience": ({"aud": None}, "wrong_audience"),
    "no_expiry": ({"exp": None}, "malformed"),
    "wrong_scope": ({"scp": ["okta.users.read"]}, "missing_scope"),
    "no_scope": ({"scp": None}, "missing_scope"),
    "scope_not_a_list": ({"scp": 7}, "missing_scope"),
    "wrong_client": ({"cid": "0oa1otherclient"}, "client_not_allowed"),
    "no_client": ({"cid": None}, "client_not_allowed"),
}


@pytest.mark.parametrize("case", CLAIM_CASES)
async def test_token_with_bad_claim_is_refused(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions, case: str
) -> None:
    claims, reason = CLAIM_CASES[case]
    now = int(time.time())
    for name in ("iat", "exp", "nbf"):
        if isinstance(claims.get(name), int):
            claims = {**claims, name: now + claims[name]}
    client = await oauth_gateway(make_gateway, issuer)
    await assert_refused(client, decisions, "Bearer " + issuer.token(**claims), reason)


async def test_alg_none_is_refused(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    await assert_refused(
        client, decisions, "Bearer " + _unsigned(issuer, "none", None), "bad_algorithm"
    )


async def test_hs256_signed_with_the_public_key_is_refused(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    # The classic confusion: the attacker knows the public key and uses its PEM as an HMAC key.
    client = await oauth_gateway(make_gateway, issuer)
    pem = KEY_A.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = _unsigned(issuer, "HS256", pem)
    await assert_refused(client, decisions, "Bearer " + token, "bad_algorithm")


async def test_token_signed_by_another_key_under_a_known_kid_is_refused(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    token = issuer.token(key=KEY_EVIL, kid="kid-a")
    await assert_refused(client, decisions, "Bearer " + token, "bad_signature")


async def test_tampered_claims_break_the_signature(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    header, _, signature = issuer.token().split(".")
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 3600,
              "cid": CLIENT_ID, "scp": [SCOPE, "admin"]}  # fmt: skip
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    SCAN.secrets.add(forged)
    await assert_refused(client, decisions, "Bearer " + forged, "bad_signature")


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing"),
        ("Bearer not-a-jwt", "malformed"),
        ("Bearer ", "malformed"),
        ("Basic b2t0YTpzZWNyZXQ=", "malformed"),
        ("Bearer a.b.c", "malformed"),
    ],
    ids=["missing", "not_a_jwt", "empty_bearer", "basic", "garbage_segments"],
)
async def test_missing_or_malformed_credential_is_refused(
    make_gateway: GatewayFactory,
    issuer: Issuer,
    decisions: Decisions,
    authorization: str | None,
    reason: str,
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    await assert_refused(client, decisions, authorization, reason)


async def test_two_authorization_headers_are_refused(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    token = "Bearer " + issuer.token()
    headers = [("Authorization", token), ("Authorization", token)]
    response = await client.post(HOOK_PATH, json=okta_payload(ALICE, "x"), headers=headers)
    assert response.status == 401
    (line,) = decisions.lines
    assert line["auth_error"] == "malformed"


async def test_unknown_kid_refreshes_once_then_is_refused(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    assert issuer.jwks_hits == 1  # the start-up fetch
    token = "Bearer " + issuer.token(kid="kid-nobody-has")
    await assert_refused(client, decisions, token, "unknown_kid")
    assert issuer.jwks_hits == 2
    await assert_refused(client, decisions, token, "unknown_kid")
    assert issuer.jwks_hits == 2  # not again within the minute


async def test_random_kids_cannot_make_the_gateway_hammer_the_issuer(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    keys = await keys_loaded(client)
    now = [1000.0]
    keys.clock = lambda: now[0]
    started = issuer.jwks_hits

    async def attack() -> int:
        status, _ = await post(client, "Bearer " + issuer.token(kid=secrets.token_hex(8)))
        return status

    assert await asyncio.gather(*(attack() for _ in range(100))) == [401] * 100
    assert issuer.jwks_hits - started == 1  # one refresh, shared by all of them
    assert failures(client, "unknown_kid") == 100
    assert {line["auth_error"] for line in decisions.lines} == {"unknown_kid"}
    now[0] += 30
    await asyncio.gather(*(attack() for _ in range(100)))
    assert issuer.jwks_hits - started == 1
    now[0] += 31  # a minute after the first refresh: one more is allowed
    await asyncio.gather(*(attack() for _ in range(100)))
    assert issuer.jwks_hits - started == 2
    # The real token still works all along.
    status, body = await post(client, "Bearer " + issuer.token())
    assert (status, credential(body)) == (200, "VERIFIED")


async def test_issuer_down_keeps_the_last_good_keys(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    issuer.down = True
    await assert_refused(client, decisions, "Bearer " + issuer.token(kid="kid-new"), "unknown_kid")
    assert issuer.jwks_hits == 2  # the refresh was tried and failed
    status, body = await post(client, "Bearer " + issuer.token())
    assert (status, credential(body)) == (200, "VERIFIED")


async def test_rotated_key_is_accepted_after_a_refresh(
    make_gateway: GatewayFactory, issuer: Issuer
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    issuer.published = {"kid-b": KEY_B}  # the issuer rotated: the old key is gone
    status, body = await post(client, "Bearer " + issuer.token(key=KEY_B, kid="kid-b"))
    assert (status, credential(body)) == (200, "VERIFIED")
    status, _ = await post(client, "Bearer " + issuer.token())
    assert status == 401  # a key the issuer withdrew is withdrawn here too


async def test_a_hanging_key_refresh_does_not_hold_the_hook_past_its_budget(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await make_gateway(budget=1.0, extra=okta_auth(issuer))
    await keys_loaded(client)
    issuer.hang = True
    started = time.monotonic()
    await assert_refused(client, decisions, "Bearer " + issuer.token(kid="kid-x"), "unknown_kid")
    assert time.monotonic() - started < 1.0 + 0.5  # half the budget, with generous slack


async def test_cold_start_answers_401_at_once_and_retries_in_the_background(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    issuer.hang = True  # the start-up fetch hangs, as an unreachable issuer would
    client = await make_gateway(extra=okta_auth(issuer))
    started = time.monotonic()
    await assert_refused(client, decisions, "Bearer " + issuer.token(), "keys_unavailable")
    assert time.monotonic() - started < 0.5  # generous: no fetch was waited for
    issuer.down = True
    issuer.release.set()  # that fetch fails; the background retries
    await asyncio.sleep(0.1)
    issuer.down = False
    await keys_loaded(client)  # the retry (after 1 s) got them
    status, body = await post(client, "Bearer " + issuer.token())
    assert (status, credential(body)) == (200, "VERIFIED")


async def test_oversized_key_set_is_not_used(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    issuer.oversize = True
    client = await make_gateway(extra=okta_auth(issuer))
    for _ in range(100):  # the start-up fetch, refused for its size
        await asyncio.sleep(0.02)
        if issuer.jwks_hits:
            break
    await asyncio.sleep(0.1)
    keys = client.server.app[RUNTIME].current.auth.keys
    assert keys is not None and not keys.loaded
    await assert_refused(client, decisions, "Bearer " + issuer.token(), "keys_unavailable")


async def test_either_mode_accepts_a_static_bearer_secret_and_a_token(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer, mode="either")
    for authorization in (STATIC_BEARER, "Bearer " + issuer.token()):
        status, body = await post(client, authorization)
        assert (status, credential(body)) == (200, "VERIFIED")
    await assert_refused(client, decisions, "Bearer wrong-static-secret", "bad_secret")
    await assert_refused(client, decisions, "Basic d3Jvbmc6c2VjcmV0", "bad_secret")
    await assert_refused(client, decisions, None, "missing")
    await assert_refused(
        client, decisions, "Bearer " + issuer.token(cid="0oa1x"), "client_not_allowed"
    )


async def test_header_mode_is_unchanged_and_ignores_tokens(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await make_gateway(extra=okta_auth(issuer, mode="header"))
    assert client.server.app[RUNTIME].current.auth.keys is None
    status, body = await post(client, STATIC_BEARER)
    assert (status, credential(body)) == (200, "VERIFIED")
    await assert_refused(client, decisions, "Bearer " + issuer.token(), "bad_secret")
    await assert_refused(client, decisions, None, "missing")
    assert issuer.jwks_hits == 0  # header mode never calls the issuer


async def test_token_never_reaches_a_log(
    make_gateway: GatewayFactory, issuer: Issuer, decisions: Decisions
) -> None:
    client = await oauth_gateway(make_gateway, issuer)
    tokens = [issuer.token(), issuer.token(aud="x"), issuer.token(kid="kid-zzz")]
    for token in tokens:
        await post(client, "Bearer " + token)
    assert len(decisions.lines) == 3
    for token in tokens:
        assert not any(token in text for text in SCAN.texts)
        assert not any(token.split(".")[2] in text for text in SCAN.texts)  # nor its signature


async def test_okta_auth_change_swaps_on_reload_and_the_key_cache_survives(
    aiohttp_client: Any, entra: RunningEmulator, issuer: Issuer, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    data = yaml.safe_load(gateway_yaml(entra.url, extra=okta_auth(issuer)))
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    client = await aiohttp_client(create_app(load_config(path), config_path=str(path)))
    runtime = client.server.app[RUNTIME]
    keys = await keys_loaded(client)
    old_token = "Bearer " + issuer.token()
    new_token = "Bearer " + issuer.token(aud="api://renamed")
    assert (await post(client, old_token))[0] == 200
    assert (await post(client, new_token))[0] == 401
    data["okta"] = okta_auth(issuer, mode="either", audience="api://renamed")["okta"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = await runtime.reload()
    assert result.ok and not result.needs_restart
    assert runtime.current.auth.keys is keys  # same issuer: same keys, no new fetch
    assert issuer.jwks_hits == 1
    assert (await post(client, old_token))[0] == 401
    assert (await post(client, new_token))[0] == 200
    assert (await post(client, STATIC_BEARER))[0] == 200
    data["okta"] = okta_auth(issuer, mode="header")["okta"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert (await runtime.reload()).ok
    assert (await post(client, new_token))[0] == 401
    assert (await post(client, STATIC_BEARER))[0] == 200


def _problems(auth: dict[str, Any]) -> dict[str, str]:
    text = gateway_yaml("http://127.0.0.1:9", extra={"okta": {"auth": auth}})
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    return dict(line.split(": ", 1) for line in caught.value.lines())


_GOOD_OAUTH2 = {
    "issuer": "https://acme.okta.com/oauth2/aus1example",
    "audience": AUDIENCE,
    "required_scopes": [SCOPE],
    "allowed_client_ids": [CLIENT_ID],
}


def _client(**changes: str) -> dict[str, str]:
    """A good `hook_client`, with `changes`."""
    return {"client_id": CLIENT_ID, "client_secret": "hook-client-secret-0001", **changes}


def test_hook_client_defaults_to_the_issuers_token_url_and_the_required_scopes() -> None:
    oauth2 = {**_GOOD_OAUTH2, "required_scopes": [SCOPE, "x"], "hook_client": _client()}
    text = gateway_yaml(
        "http://127.0.0.1:9", extra={"okta": {"auth": {"mode": "oauth2", "oauth2": oauth2}}}
    )
    settings = parse_config(text, env={}).okta.auth.oauth2
    assert settings is not None and settings.hook_client is not None
    assert settings.token_url == "https://acme.okta.com/oauth2/aus1example/v1/token"
    assert settings.token_scope == f"{SCOPE} x"
    assert settings.hook_client.auth_type == "client_secret_post"
    assert "hook-client-secret-0001" not in repr(settings)


def test_oauth2_mode_needs_no_secret_and_defaults_as_documented() -> None:
    text = gateway_yaml(
        "http://127.0.0.1:9", extra={"okta": {"auth": {"mode": "oauth2", "oauth2": _GOOD_OAUTH2}}}
    )
    auth = parse_config(text, env={}).okta.auth
    assert auth.secrets == [] and auth.header == "Authorization"
    assert auth.oauth2 is not None
    assert (auth.oauth2.leeway_seconds, auth.oauth2.jwks_uri) == (120, None)


@pytest.mark.parametrize(
    ("auth", "path"),
    [
        ({"mode": "oauth2"}, "okta.auth.oauth2"),
        ({"mode": "either", "oauth2": _GOOD_OAUTH2}, "okta.auth.secrets"),
        ({"mode": "header"}, "okta.auth.secrets"),
        ({"mode": "bearer", "secrets": ["abcdefgh1"]}, "okta.auth.mode"),
        (
            {"mode": "oauth2", "oauth2": {**_GOOD_OAUTH2, "issuer": "http://acme.okta.com/x"}},
            "okta.auth.oauth2.issuer",
        ),
        (
            {"mode": "oauth2", "oauth2": {**_GOOD_OAUTH2, "jwks_uri": "http://10.0.0.1/keys"}},
            "okta.auth.oauth2.jwks_uri",
        ),
        (
            {"mode": "oauth2", "oauth2": {**_GOOD_OAUTH2, "required_scopes": []}},
            "okta.auth.oauth2.required_scopes",
        ),
        (
            {"mode": "oauth2", "oauth2": {**_GOOD_OAUTH2, "allowed_client_ids": []}},
            "okta.auth.oauth2.allowed_client_ids",
        ),
        (
            {"mode": "oauth2", "oauth2": {**_GOOD_OAUTH2, "algs": ["HS256"]}},
            "okta.auth.oauth2.algs",
        ),
        (
            {"mode": "oauth2", "oauth2": {**_GOOD_OAUTH2, "hook_client": {"client_id": CLIENT_ID}}},
            "okta.auth.oauth2.hook_client",  # client_secret_post without a secret
        ),
        (
            {
                "mode": "oauth2",
                "oauth2": {
                    **_GOOD_OAUTH2,
                    "hook_client": {"auth_type": "private_key_jwt", "client_id": CLIENT_ID},
                },
            },
            "okta.auth.oauth2.hook_client",  # private_key_jwt without a hook key
        ),
        (
            {
                "mode": "oauth2",
                "oauth2": {
                    **_GOOD_OAUTH2,
                    "hook_client": _client(auth_type="private_key_jwt", hook_key_id="HKY1"),
                },
            },
            "okta.auth.oauth2.hook_client",  # private_key_jwt with a secret: which one is meant?
        ),
        (
            {
                "mode": "oauth2",
                "oauth2": {**_GOOD_OAUTH2, "hook_client": _client(client_id="0oaX")},
            },
            "okta.auth.oauth2",  # a client whose tokens would all be client_not_allowed
        ),
        (
            {"mode": "oauth2", "oauth2": {**_GOOD_OAUTH2, "hook_client": _client(scope="openid")}},
            "okta.auth.oauth2",  # its tokens would all be missing_scope
        ),
        (
            {
                "mode": "oauth2",
                "oauth2": {**_GOOD_OAUTH2, "hook_client": _client(token_url="http://10.0.0.1/t")},
            },
            "okta.auth.oauth2.hook_client.token_url",
        ),
    ],
)
def test_bad_okta_auth_is_reported_by_path(auth: dict[str, Any], path: str) -> None:
    assert path in _problems(auth)
