"""Authentication: SSWS tokens, and OAuth service-app tokens from a private_key_jwt assertion."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from emulators.okta import (
    DEFAULT_API_TOKEN,
    OktaOrg,
    RunningOktaEmulator,
    SeedOAuthClient,
    start_okta_emulator,
)
from tests.emulators.okta.conftest import Answer, FakeClock, OktaApi, assert_okta_error

CLIENT_ID = "0oaserviceapp000001"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    """The public half of ``key`` as a JWK with ``kid``."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    return dict(jwk)


@pytest.fixture
def org() -> OktaOrg:
    """An org with one service app holding an RSA and an EC key."""
    return OktaOrg(
        oauth_clients=[
            SeedOAuthClient(
                client_id=CLIENT_ID,
                jwks=[public_jwk(RSA_KEY, "rsa1"), public_jwk(EC_KEY, "ec1")],
                scopes=["okta.users.read", "okta.users.manage", "okta.inlineHooks.read"],
            )
        ]
    )


def assertion(
    audience: str,
    clock: FakeClock,
    *,
    key: Any = RSA_KEY,
    kid: str = "rsa1",
    alg: str = "RS256",
    lifetime: float = 300,
    jti: str | None = None,
    **claims: Any,
) -> str:
    """A signed client assertion; keyword arguments break one thing at a time."""
    body = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": audience,
        "iat": int(clock.now),
        "exp": int(clock.now + lifetime),
        "jti": jti or str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


async def token(api: OktaApi, client_assertion: str, scope: str = "okta.users.read") -> Answer:
    """``POST /oauth2/v1/token`` with a client assertion."""
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion,
    }
    async with api.session.post(f"{api.base}/oauth2/v1/token", data=form) as resp:
        return Answer(resp.status, resp.headers, await resp.json())


async def test_ssws_with_and_without_space_is_accepted(api: OktaApi) -> None:
    for auth in (f"SSWS {DEFAULT_API_TOKEN}", f"SSWS{DEFAULT_API_TOKEN}"):
        assert (await api.call("GET", "/api/v1/users", auth=auth)).status == 200


@pytest.mark.parametrize("auth", ["", "SSWS not-a-token", "Bearer unknown", "Basic dTpw"])
async def test_missing_or_wrong_credentials_are_e0000011(api: OktaApi, auth: str) -> None:
    answer = await api.call("GET", "/api/v1/users", auth=auth)
    assert_okta_error(answer, 401, "E0000011")
    assert answer.body["errorSummary"] == "Invalid token provided"


async def test_private_key_jwt_gets_a_token_with_the_requested_scopes(
    api: OktaApi, clock: FakeClock
) -> None:
    audience = f"{api.base}/oauth2/v1/token"
    answer = await token(api, assertion(audience, clock), "okta.users.read okta.users.manage")
    assert answer.status == 200, answer.body
    assert answer.body["token_type"] == "Bearer"
    assert answer.body["expires_in"] == 3600
    assert answer.body["scope"] == "okta.users.read okta.users.manage"
    assert answer.headers["Cache-Control"] == "no-store"
    bearer = f"Bearer {answer.body['access_token']}"
    assert (await api.call("GET", "/api/v1/users", auth=bearer)).status == 200


async def test_ec_keys_are_accepted_too(api: OktaApi, clock: FakeClock) -> None:
    signed = assertion(f"{api.base}/oauth2/v1/token", clock, key=EC_KEY, kid="ec1", alg="ES256")
    assert (await token(api, signed)).status == 200


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"key": OTHER_KEY}, "signature is invalid"),
        ({"audience": "https://elsewhere.example.com/oauth2/v1/token"}, "audience"),
        ({"lifetime": -120}, "expired"),
        ({"lifetime": 7200}, "too far in the future"),
        ({"sub": "0oasomebodyelse"}, "subject"),
    ],
)
async def test_bad_assertions_are_invalid_client(
    api: OktaApi, clock: FakeClock, change: dict[str, Any], why: str
) -> None:
    audience = change.pop("audience", f"{api.base}/oauth2/v1/token")
    answer = await token(api, assertion(audience, clock, **change))
    assert answer.status == 401
    assert answer.body["error"] == "invalid_client"
    assert why in answer.body["error_description"]


async def test_an_assertion_cannot_be_replayed(api: OktaApi, clock: FakeClock) -> None:
    signed = assertion(f"{api.base}/oauth2/v1/token", clock, jti="only-once")
    assert (await token(api, signed)).status == 200
    replay = await token(api, signed)
    assert replay.status == 401
    assert "already been used" in replay.body["error_description"]


async def test_scopes_the_app_was_not_granted_are_refused(api: OktaApi, clock: FakeClock) -> None:
    signed = assertion(f"{api.base}/oauth2/v1/token", clock)
    answer = await token(api, signed, "okta.users.read okta.eventHooks.manage")
    assert answer.status == 400
    assert answer.body["error"] == "invalid_scope"


async def test_missing_scope_on_the_token_is_403_with_www_authenticate(
    api: OktaApi, clock: FakeClock
) -> None:
    issued = await token(api, assertion(f"{api.base}/oauth2/v1/token", clock), "okta.users.read")
    bearer = f"Bearer {issued.body['access_token']}"
    answer = await api.call(
        "POST",
        "/api/v1/users",
        json={"profile": {"login": "a@b.co", "email": "a@b.co", "firstName": "A", "lastName": "B"}},
        auth=bearer,
    )
    assert_okta_error(answer, 403, "E0000006")
    assert 'scope="okta.users.manage"' in answer.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]


async def test_manage_scope_includes_read(api: OktaApi, clock: FakeClock) -> None:
    issued = await token(api, assertion(f"{api.base}/oauth2/v1/token", clock), "okta.users.manage")
    bearer = f"Bearer {issued.body['access_token']}"
    assert (await api.call("GET", "/api/v1/users", auth=bearer)).status == 200


async def test_access_token_expires_after_an_hour(api: OktaApi, clock: FakeClock) -> None:
    issued = await token(api, assertion(f"{api.base}/oauth2/v1/token", clock))
    bearer = f"Bearer {issued.body['access_token']}"
    clock.advance(3601)
    assert_okta_error(await api.call("GET", "/api/v1/users", auth=bearer), 401, "E0000011")


async def test_other_grant_types_are_refused(api: OktaApi) -> None:
    async with api.session.post(
        f"{api.base}/oauth2/v1/token", data={"grant_type": "password", "username": "u"}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "unsupported_grant_type"


@pytest.fixture
async def okta_without_clients(clock: FakeClock) -> AsyncIterator[RunningOktaEmulator]:
    """An emulator whose org has no service apps."""
    running = await start_okta_emulator(OktaOrg(), clock=clock)
    try:
        yield running
    finally:
        await running.close()


async def test_unknown_client_is_invalid_client(
    okta_without_clients: RunningOktaEmulator, api: OktaApi, clock: FakeClock
) -> None:
    api.base = okta_without_clients.url
    answer = await token(api, assertion(f"{api.base}/oauth2/v1/token", clock))
    assert answer.status == 401
    assert answer.body["error"] == "invalid_client"
