"""SSWS tokens and OAuth service apps: headers, one token fetch for many calls, renewal, 401."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from emulators.okta import DEFAULT_API_TOKEN, RunningOktaEmulator
from gateway.okta_api import OAuthServiceApp, OktaApiError, SswsToken, load_private_key
from gateway.okta_api.auth import ASSERTION_LIFETIME, OAuthAuthorizer
from tests.okta_api.conftest import (
    CLIENT_ID,
    KEY_ID,
    RSA_KEY,
    ClientFactory,
    VirtualClock,
    oauth_app,
    profile_of,
)


async def test_ssws_token_is_accepted(make_client: ClientFactory) -> None:
    okta_client = await make_client()
    assert [user async for user in okta_client.list_users()] == []


async def test_wrong_ssws_token_is_a_401_error_that_never_shows_the_token(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "00wrong-token-never-printed-7319"
    okta_client = await make_client(SswsToken(secret))
    with pytest.raises(OktaApiError) as caught:
        await okta_client.get_user("someone@contoso.com")
    error = caught.value
    assert (error.status, error.code) == (401, "E0000011")
    assert error.one_line() == "GET /api/v1/users/{id} -> 401 E0000011: Invalid token provided"
    assert secret not in repr(okta_client)
    assert secret not in str(error) and secret not in repr(error)
    assert all(secret not in record.getMessage() for record in caplog.records)
    assert okta_client.stats.retries == 0  # a bad API token is final


def test_ssws_token_repr_hides_the_token() -> None:
    assert DEFAULT_API_TOKEN not in repr(SswsToken(DEFAULT_API_TOKEN))


async def test_oauth_token_is_fetched_once_for_twenty_concurrent_calls(
    make_client: ClientFactory, okta: RunningOktaEmulator, key_file: Path
) -> None:
    okta_client = await make_client(oauth_app(key_file))
    results = await asyncio.gather(
        *(okta_client.get_user(f"nobody{i}@contoso.com") for i in range(20))
    )
    assert results == [None] * 20
    assert okta.emulator.events["access_tokens_issued"] == 1
    assert okta_client.stats.token_requests == 1


async def test_oauth_token_is_renewed_shortly_before_it_expires(
    make_client: ClientFactory, okta: RunningOktaEmulator, key_file: Path, clock: VirtualClock
) -> None:
    okta_client = await make_client(oauth_app(key_file))
    await okta_client.get_user("nobody@contoso.com")
    clock.advance(3000)  # still valid for 10 minutes: reused
    await okta_client.get_user("nobody@contoso.com")
    assert okta.emulator.events["access_tokens_issued"] == 1
    clock.advance(400)  # 200 s before expiry: renewed before Okta would refuse it
    await okta_client.get_user("nobody@contoso.com")
    assert okta.emulator.events["access_tokens_issued"] == 2
    assert okta_client.stats.token_refetches == 0  # no 401 was needed


async def test_a_401_on_a_revoked_token_fetches_a_new_one_once(
    make_client: ClientFactory, okta: RunningOktaEmulator, key_file: Path
) -> None:
    okta_client = await make_client(oauth_app(key_file))
    await okta_client.get_user("nobody@contoso.com")
    okta.emulator.access_tokens.clear()  # Okta forgot the token (revoked, clocks disagree...)
    await asyncio.gather(*(okta_client.get_user(f"n{i}@contoso.com") for i in range(5)))
    assert okta.emulator.events["access_tokens_issued"] == 2
    assert okta_client.stats.token_refetches == 5  # each call retried once, one fetch for all


async def test_a_second_401_after_a_fresh_token_is_final(
    make_client: ClientFactory, okta: RunningOktaEmulator, key_file: Path
) -> None:
    okta_client = await make_client(oauth_app(key_file))
    await okta_client.get_user("nobody@contoso.com")

    # Every token Okta issues is refused at once: the client must not loop.
    okta.emulator.access_tokens.clear()
    original = okta.emulator.access_tokens

    class Forgetful(dict):  # type: ignore[type-arg]
        """A token store that keeps nothing."""

        def __setitem__(self, key: object, value: object) -> None:
            """Drop every token."""

    okta.emulator.access_tokens = Forgetful()
    try:
        with pytest.raises(OktaApiError) as caught:
            await okta_client.get_user("nobody@contoso.com")
    finally:
        okta.emulator.access_tokens = original
    assert caught.value.code == "E0000011"
    assert okta_client.stats.token_refetches == 1


async def test_client_assertion_claims_and_kid(key_file: Path, clock: VirtualClock) -> None:
    authorizer = OAuthAuthorizer(
        oauth_app(key_file),
        "http://127.0.0.1:1/oauth2/v1/token",
        wall_time=clock.time,
        monotonic=clock.monotonic,
    )
    first, second = authorizer.client_assertion(), authorizer.client_assertion()
    assert jwt.get_unverified_header(first) == {"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(
        first,
        RSA_KEY.public_key(),
        algorithms=["RS256"],
        audience="http://127.0.0.1:1/oauth2/v1/token",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == ASSERTION_LIFETIME <= 3600
    second_claims = jwt.decode(second, options={"verify_signature": False})
    assert claims["jti"] != second_claims["jti"]  # Okta refuses a replayed assertion
    assert authorizer.token_form()["scope"] == " ".join(oauth_app(key_file).scopes)


async def test_private_key_as_a_jwk_file_works_too(
    make_client: ClientFactory, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    jwk = json.loads(RSAAlgorithm.to_jwk(RSA_KEY))
    path = tmp_path / "okta-key.json"
    path.write_text(json.dumps(jwk))
    okta_client = await make_client(oauth_app(path))
    assert await okta_client.get_user("nobody@contoso.com") is None


def test_unusable_key_file_says_what_is_wrong_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    path.write_text(
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(ValueError, match="not an unencrypted RSA private key") as caught:
        load_private_key(path)
    assert "c2VjcmV0" not in str(caught.value)
    with pytest.raises(ValueError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")


async def test_token_without_manage_scope_gets_403_naming_the_scope(
    make_client: ClientFactory, key_file: Path
) -> None:
    okta_client = await make_client(oauth_app(key_file, ["okta.users.read"]))
    with pytest.raises(OktaApiError) as caught:
        await okta_client.create_user(profile_of("a@contoso.com"))
    error = caught.value
    assert (error.status, error.code, error.required_scope) == (
        403,
        "E0000006",
        "okta.users.manage",
    )
    assert "the token lacks scope okta.users.manage" in error.one_line()


async def test_refused_client_is_a_clear_token_endpoint_error(
    make_client: ClientFactory, key_file: Path
) -> None:
    app = OAuthServiceApp(client_id="0oaunknownclient", private_key_file=key_file, scopes=["x"])
    okta_client = await make_client(app)
    with pytest.raises(OktaApiError) as caught:
        await okta_client.get_user("nobody@contoso.com")
    assert caught.value.one_line() == (
        "POST /oauth2/v1/token -> 401 invalid_client: "
        "The client_assertion issuer is not a known client."
    )


async def test_access_tokens_never_reach_logs_reprs_or_errors(
    make_client: ClientFactory,
    okta: RunningOktaEmulator,
    key_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    okta_client = await make_client(oauth_app(key_file, ["okta.users.read"]))
    await okta_client.get_user("nobody@contoso.com")
    issued = list(okta.emulator.access_tokens)
    okta.emulator.set_fault("http_503", rate=0.5)
    with pytest.raises(OktaApiError) as caught:
        await okta_client.create_user(profile_of("a@contoso.com"))  # 403: scope missing
    texts = [record.getMessage() for record in caplog.records]
    texts += [repr(okta_client), repr(okta_client._oauth), str(caught.value)]
    assert issued and all(token not in text for token in issued for text in texts)
