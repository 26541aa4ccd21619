"""Username resolution through Microsoft Graph, and the app token it needs, cached and shared."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from emulators.entra import EmulatedDirectory, RunningEmulator, start_emulator
from tests.conftest import USERS, USERS_FILE, GatewayFactory, credential, post_hook

ALICE = "alice@contoso.com"
ROUTES = [
    {
        "match": {
            "domains": ["contoso.com", "contoso-mail.com", "legacy-contoso.com", "fabrikam.com"]
        },
        "sources": ["entra"],
    }
]
GRAPH = {"resolve_username": "graph"}


async def _gateway(
    make_gateway: GatewayFactory, cache_config: dict[str, Any], **options: Any
) -> Any:
    return await make_gateway(
        source_extra=GRAPH, extra={"routes": ROUTES, "cache": cache_config}, **options
    )


@pytest.mark.parametrize(
    "login",
    [
        "alice.smith@contoso-mail.com",
        "a.smith@legacy-contoso.com",
        ALICE,
        "Alice.Smith@Contoso-Mail.com",
    ],
)
async def test_login_by_mail_or_alias_is_verified_with_the_upn(
    make_gateway: GatewayFactory, entra: RunningEmulator, login: str
) -> None:
    client = await _gateway(make_gateway, {"backend": "memory"})
    status, body = await post_hook(client, login, USERS[ALICE])
    assert (status, credential(body)) == (200, "VERIFIED")
    assert entra.emulator.token_requests_by_user[ALICE] == 1


async def test_wrong_password_after_resolution_is_unverified(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await _gateway(make_gateway, {"backend": "memory"})
    _, body = await post_hook(client, "alice.smith@contoso-mail.com", "Wrong#Pass-1")
    assert credential(body) == "UNVERIFIED"


async def test_federated_user_resolved_by_mail(make_gateway: GatewayFactory) -> None:
    client = await _gateway(make_gateway, {"backend": "memory"})
    _, body = await post_hook(client, "fed.one@contoso-mail.com", USERS["fed1@fabrikam.com"])
    assert credential(body) == "VERIFIED"


async def test_unknown_login_is_unverified_without_a_password_check(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await _gateway(make_gateway, {"backend": "memory"})
    _, body = await post_hook(client, "nobody@contoso-mail.com", "Some#Pass-1")
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.token_requests_by_grant["password"] == 0


async def test_ambiguous_login_is_unverified(
    make_gateway: GatewayFactory, entra: RunningEmulator
) -> None:
    client = await _gateway(make_gateway, {"backend": "memory"})
    _, body = await post_hook(client, "twins@contoso-mail.com", USERS["twin1@contoso.com"])
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.token_requests_by_grant["password"] == 0


async def test_resolution_is_cached(
    make_gateway: GatewayFactory, entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    client = await _gateway(make_gateway, cache_config)
    await post_hook(client, "alice.smith@contoso-mail.com", USERS[ALICE])
    await post_hook(client, "alice.smith@contoso-mail.com", "Wrong#Pass-1")
    assert entra.emulator.requests_by_kind["graph"] == 1
    assert entra.emulator.token_requests_by_user[ALICE] == 2


@pytest.fixture
async def short_token_entra() -> Any:
    """An emulator whose app tokens live two seconds."""
    directory = yaml.safe_load(USERS_FILE.read_text(encoding="utf-8"))
    directory["app_token_lifetime_seconds"] = 2
    running = await start_emulator(EmulatedDirectory.model_validate(directory))
    try:
        yield running
    finally:
        await running.close()


async def test_graph_token_fetched_once_for_concurrent_resolutions_and_again_after_expiry(
    make_gateway: GatewayFactory, short_token_entra: RunningEmulator, cache_config: dict[str, Any]
) -> None:
    client = await _gateway(make_gateway, cache_config, authority=short_token_entra.url)
    emulator = short_token_entra.emulator
    logins = [f"someone{i}@contoso-mail.com" for i in range(15)] + ["alice.smith@contoso-mail.com"]
    replies = await asyncio.gather(*(post_hook(client, login, USERS[ALICE]) for login in logins))
    assert [credential(b) for _, b in replies].count("VERIFIED") == 1
    assert emulator.token_requests_by_grant["client_credentials"] == 1
    assert emulator.requests_by_kind["graph"] == len(logins)
    await post_hook(client, "a.smith@legacy-contoso.com", USERS[ALICE])
    assert emulator.token_requests_by_grant["client_credentials"] == 1
    await asyncio.sleep(2.1)
    _, body = await post_hook(client, "fed.one@contoso-mail.com", USERS["fed1@fabrikam.com"])
    assert credential(body) == "VERIFIED"
    assert emulator.token_requests_by_grant["client_credentials"] == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("straße@contoso.com", "strasse@contoso.com"),
        ("alice.smith@contoso-mail.com", "Alice.Smith@contoso-mail.com"),
        ("kate@contoso.com", "\u212aate@contoso.com"),
    ],
)
async def test_a_resolved_username_is_never_reused_for_a_look_alike(
    make_gateway: GatewayFactory,
    entra: RunningEmulator,
    cache_config: dict[str, Any],
    first: str,
    second: str,
) -> None:
    # Graph decides itself whether two spellings are one user; the cache never merges them.
    client = await _gateway(make_gateway, cache_config)
    await post_hook(client, first, "Any#Pass-1")
    await post_hook(client, second, "Any#Pass-1")
    assert entra.emulator.requests_by_kind["graph"] == 2
