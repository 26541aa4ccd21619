"""OAuth 2.0 hook auth end to end: register-hooks sets up Okta's OAUTH channel, check tries a token.

The Okta emulator plays both Okta parts: the org (its inline hook API, and a user's first sign-in,
for which it gets an access token from `tokenUrl` and sends it as `Authorization: Bearer`) and the
custom authorization server that mints that token. The gateway runs in `mode: oauth2` with no
static secret, so a VERIFIED sign-in proves the whole chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from emulators.entra import RunningEmulator
from emulators.okta import OktaOrg, RunningOktaEmulator, start_okta_emulator
from gateway.app import create_app
from gateway.config import load_config
from gateway.migrate.hooks import config_problem, register
from tests.conftest import SCAN
from tests.migrate.test_hooks_and_check import LAST_CREATED, LAST_UNCHANGED, LAST_UPDATED, _cli
from tests.migrate.test_hooks_and_check import tenant as tenant  # the fixture, for pytest
from tests.migrate.test_import import _config

SERVER_ID = "aus1gatewayhooks0001"
AUDIENCE = "api://okta-password-gateway"
SCOPE = "okta.hooks.password"
CLIENT_ID = "0oa1gatewayhook0001"
CLIENT_SECRET = "hook-client-secret-9f3a7c21d8"
USERS = 3


@pytest.fixture
async def okta() -> AsyncIterator[RunningOktaEmulator]:
    """An org with ACTIVE users on the password hook and one custom authorization server."""
    base = OktaOrg.model_validate(
        {
            "authorization_servers": [
                {
                    "id": SERVER_ID,
                    "audience": AUDIENCE,
                    "scopes": [SCOPE, "other.scope"],
                    "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
                }
            ]
        }
    )
    org = OktaOrg.with_staged_users(USERS, base=base, status="ACTIVE", credential="hook")
    running = await start_okta_emulator(org)
    SCAN.secrets.add(CLIENT_SECRET)
    try:
        yield running
    finally:
        await running.close()


def _oauth2(okta: RunningOktaEmulator, **changes: Any) -> dict[str, Any]:
    """The `okta.auth.oauth2` block for the emulated server, with `changes`."""
    settings: dict[str, Any] = {
        "issuer": f"{okta.url}/oauth2/{SERVER_ID}",
        "audience": AUDIENCE,
        "required_scopes": [SCOPE],
        "allowed_client_ids": [CLIENT_ID],
        "hook_client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    }
    return {**settings, **changes}


def _write(
    tmp_path: Path,
    entra: RunningEmulator,
    okta: RunningOktaEmulator,
    hook_url: str,
    auth: dict[str, Any],
) -> Path:
    path = _config(tmp_path / "c.yaml", entra, okta, f"sqlite:///{tmp_path / 'l.db'}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["okta"]["hook_url"] = hook_url
    data["okta"]["auth"] = auth
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def _sign_in(okta: RunningOktaEmulator, login: str, password: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{okta.url}/_emulator/users/{login}/sign-in", json={"password": password}
        ) as response,
    ):
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def test_register_hooks_sets_up_oauth_and_okta_signs_in_through_the_gateway_with_a_token(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path, aiohttp_server: Any
) -> None:
    auth = {"mode": "oauth2", "oauth2": _oauth2(okta)}
    placeholder = _write(
        tmp_path, tenant, okta, "https://gw.example.com/okta/password-import", auth
    )
    server = await aiohttp_server(create_app(load_config(placeholder)))
    hook_url = f"http://127.0.0.1:{server.port}/okta/password-import"
    config = _write(tmp_path, tenant, okta, hook_url, auth)

    code, lines = await _cli("register-hooks", config)
    assert code == 0, lines
    assert lines[-1] == LAST_CREATED
    (hook,) = okta.emulator.inline_hooks.values()
    channel = hook["channel"]["config"]
    assert hook["channel"]["type"] == "OAUTH"
    assert (channel["authType"], channel["clientId"], channel["scope"]) == (
        "client_secret_post", CLIENT_ID, SCOPE,
    )  # fmt: skip
    assert channel["tokenUrl"] == f"{okta.url}/oauth2/{SERVER_ID}/v1/token"
    assert channel["clientSecret"] == CLIENT_SECRET

    code, lines = await _cli("register-hooks", config)
    assert lines[-1] == LAST_UNCHANGED, lines

    # The gateway holds no static secret: only Okta's bearer token can get this answer.
    first = await _sign_in(okta, "user0@contoso.com", "Pw-0!")
    assert (first["result"], first["provider"]) == ("VERIFIED", "OKTA"), first
    wrong = await _sign_in(okta, "user1@contoso.com", "not-the-password")
    assert wrong["result"] == "UNVERIFIED", wrong
    assert okta.emulator.events["hook_token_requests"] == 1  # Okta reuses its token

    code, lines = await _cli("check", config)
    assert "PASS inline-hook" in lines[1], lines
    assert lines[2] == (
        f"PASS hook-token: a token from {okta.url}/oauth2/{SERVER_ID}/v1/token passes the "
        "gateway's checks"
    )
    assert code == 0, lines


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"audience": "api://another-api"},
            "FAIL hook-token: the gateway would refuse Okta's token (wrong_audience): set "
            "okta.auth.oauth2.audience to the authorization server's audience",
        ),
        (
            {"issuer_suffix": "/"},
            "FAIL hook-token: cannot load the issuer's signing keys: the metadata names another "
            "issuer (RFC 8414 §3.3): check okta.auth.oauth2.issuer (and jwks_uri)",
        ),
        (
            {"hook_client": {"client_id": CLIENT_ID, "client_secret": "not-the-client-secret"}},
            "FAIL hook-token: {token_url}: HTTP 401 invalid_client, no access token: check "
            "hook_client's client_id and secret",
        ),
        (
            {
                "hook_client": {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "scope": f"{SCOPE} unknown.scope",
                }
            },
            "FAIL hook-token: {token_url}: HTTP 400 invalid_scope, no access token",
        ),
        (
            {
                "hook_client": {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "token_url": "http://127.0.0.1:9/v1/token",  # nobody listens on port 9
                }
            },
            "FAIL hook-token: http://127.0.0.1:9/v1/token: no answer (ClientConnectorError)",
        ),
        (
            {
                "hook_client": {
                    "auth_type": "private_key_jwt",
                    "client_id": CLIENT_ID,
                    "hook_key_id": "HKY1example",
                }
            },
            "PASS hook-token: the issuer publishes 1 signing key(s); private_key_jwt: only Okta "
            "holds the hook key, so no token was asked for",
        ),
    ],
)
async def test_check_tries_a_token_the_way_okta_gets_one(
    tenant: RunningEmulator,
    okta: RunningOktaEmulator,
    tmp_path: Path,
    changes: dict[str, Any],
    expected: str,
) -> None:
    settings = _oauth2(okta, **{k: v for k, v in changes.items() if k != "issuer_suffix"})
    settings["issuer"] += changes.get("issuer_suffix", "")
    auth = {"mode": "oauth2", "oauth2": settings}
    config = _write(tmp_path, tenant, okta, "https://gw.example.com/okta/password-import", auth)
    code, lines = await _cli("check", config)
    token_url = f"{okta.url}/oauth2/{SERVER_ID}/v1/token"
    (line,) = [line for line in lines if line.split(":")[0].endswith("hook-token")]
    assert line == expected.format(token_url=token_url)
    assert code == 1  # the hook is not registered either: inline-hook FAILs in every case


async def test_either_mode_moves_the_hook_to_oauth_and_back_with_hook_client(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    hook_url = "https://gw.example.com/okta/password-import"
    secret = "Basic c3dpdGNoLW92ZXItc2VjcmV0"
    SCAN.secrets.add(secret)
    header = _write(tmp_path, tenant, okta, hook_url, {"mode": "header", "secrets": [secret]})
    assert (await register(load_config(header)))["created"] == 1
    (hook,) = okta.emulator.inline_hooks.values()
    assert hook["channel"]["type"] == "HTTP"

    either = {"mode": "either", "secrets": [secret], "oauth2": _oauth2(okta)}
    counts = await register(load_config(_write(tmp_path, tenant, okta, hook_url, either)))
    assert counts["updated"] == 1
    assert hook["channel"]["type"] == "OAUTH"
    assert hook["channel"]["config"]["authScheme"] is None

    without_client = {**either, "oauth2": _oauth2(okta, hook_client=None)}
    code, lines = await _cli(
        "register-hooks", _write(tmp_path, tenant, okta, hook_url, without_client)
    )
    assert (code, lines[-1]) == (0, LAST_UPDATED), lines
    assert hook["channel"]["type"] == "HTTP"
    assert hook["channel"]["config"]["authScheme"]["value"] == secret


async def test_oauth2_mode_without_hook_client_says_what_register_hooks_needs(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    auth = {"mode": "oauth2", "oauth2": _oauth2(okta, hook_client=None)}
    config = _write(tmp_path, tenant, okta, "https://gw.example.com/okta/password-import", auth)
    problem = config_problem(load_config(config))
    assert problem is not None and "set okta.auth.oauth2.hook_client" in problem
    code, lines = await _cli("register-hooks", config)
    assert (code, lines) == (1, [])  # the problem goes to stderr; nothing was written
    assert not okta.emulator.inline_hooks
