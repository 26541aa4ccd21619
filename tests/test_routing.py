"""Routing: domain and regex matches, username rewrites, and the order sources are asked in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from emulators.entra import EmulatedDirectory, RunningEmulator, start_emulator
from gateway.app import create_app
from gateway.config import RouteConfig, parse_config
from gateway.routing import Router
from tests.conftest import SCAN, USERS, credential, gateway_yaml, post_hook


def _router(*routes: dict[str, Any]) -> Router:
    return Router([RouteConfig.model_validate(r) for r in routes])


def test_domain_match_is_case_insensitive() -> None:
    router = _router({"match": {"domains": ["Contoso.com"]}, "sources": ["a"]})
    match = router.route("JDoe@CONTOSO.COM")
    assert match is not None
    assert match.sources == ("a",)
    assert match.username == "JDoe@CONTOSO.COM"  # sources get what the person typed


def test_subdomain_is_not_the_domain() -> None:
    router = _router({"match": {"domains": ["contoso.com"]}, "sources": ["a"]})
    assert router.route("x@evil-contoso.com") is None
    assert router.route("x@sub.contoso.com") is None
    assert router.route("contoso.com") is None


def test_first_matching_route_wins() -> None:
    router = _router(
        {"name": "staff", "match": {"regex": "^staff-"}, "sources": ["a"]},
        {"name": "all", "match": {"domains": ["contoso.com"]}, "sources": ["b"]},
    )
    first = router.route("staff-1@contoso.com")
    second = router.route("jdoe@contoso.com")
    assert first is not None and first.route == "staff"
    assert second is not None and second.route == "all"


def test_short_name_is_rewritten_to_upn() -> None:
    router = _router(
        {
            "match": {"regex": "^[^@]+$"},
            "sources": ["a"],
            "rewrite": {"append_domain": "contoso.com"},
        }
    )
    match = router.route("jdoe")
    assert match is not None and match.username == "jdoe@contoso.com"


def test_pattern_rewrite() -> None:
    router = _router(
        {
            "match": {"domains": ["old.example"]},
            "sources": ["a"],
            "rewrite": {"pattern": "@old\\.example$", "replacement": "@contoso.com"},
        }
    )
    match = router.route("jdoe@old.example")
    assert match is not None and match.username == "jdoe@contoso.com"


def test_no_route_returns_none() -> None:
    router = _router({"match": {"domains": ["contoso.com"]}, "sources": ["a"]})
    assert router.route("jdoe@fabrikam.com") is None


SECOND_DIRECTORY = {
    "tenant_id": "99999999-8888-7777-6666-555555555555",
    "client_id": "bbbbbbbb-cccc-dddd-eeee-ffffffffffff",
    "client_secret": "second-client-secret-01",
    "managed_domains": ["contoso.com"],
    "users": [
        {"username": "legacy@contoso.com", "password": "Legacy#Pass-7319"},
        {"username": "alice@contoso.com", "password": "Other#Alice-7319"},
    ],
}


@pytest.fixture
async def second_entra() -> AsyncIterator[RunningEmulator]:
    """A second tenant holding users the first one lacks."""
    SCAN.secrets.add(SECOND_DIRECTORY["client_secret"])
    SCAN.secrets.update(u["password"] for u in SECOND_DIRECTORY["users"])
    running = await start_emulator(EmulatedDirectory.model_validate(SECOND_DIRECTORY))
    try:
        yield running
    finally:
        await running.close()


def _two_source_yaml(first: str, second: str) -> str:
    config = yaml.safe_load(gateway_yaml(first))
    config["sources"].append(
        {
            "name": "entra-b",
            "type": "azure_ad",
            "tenant_id": SECOND_DIRECTORY["tenant_id"],
            "client_id": SECOND_DIRECTORY["client_id"],
            "client_secret": SECOND_DIRECTORY["client_secret"],
            "authority": second,
            "timeouts": {"connect_seconds": 0.5, "read_seconds": 1.0},
        }
    )
    config["routes"] = [
        {
            "match": {"regex": "^[^@]+$"},
            "sources": ["entra"],
            "rewrite": {"append_domain": "contoso.com"},
        },
        {"match": {"domains": ["contoso.com"]}, "sources": ["entra", "entra-b"]},
    ]
    return yaml.safe_dump(config, allow_unicode=True)


async def test_user_missing_from_first_source_is_verified_by_second(
    aiohttp_client: Any, entra: RunningEmulator, second_entra: RunningEmulator
) -> None:
    config = parse_config(_two_source_yaml(entra.url, second_entra.url), env={})
    client = await aiohttp_client(create_app(config))
    status, body = await post_hook(client, "legacy@contoso.com", "Legacy#Pass-7319")
    assert (status, credential(body)) == (200, "VERIFIED")


async def test_wrong_password_is_not_tried_against_the_next_source(
    aiohttp_client: Any, entra: RunningEmulator, second_entra: RunningEmulator
) -> None:
    config = parse_config(_two_source_yaml(entra.url, second_entra.url), env={})
    client = await aiohttp_client(create_app(config))
    # alice exists in both tenants; the first answers 50126, so the second is never asked.
    status, body = await post_hook(client, "alice@contoso.com", "Other#Alice-7319")
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert second_entra.emulator.requests_by_kind["token"] == 0


async def test_unavailable_first_source_falls_through_to_second(
    aiohttp_client: Any, entra: RunningEmulator, second_entra: RunningEmulator
) -> None:
    config = parse_config(_two_source_yaml(entra.url, second_entra.url), env={})
    client = await aiohttp_client(create_app(config))
    entra.emulator.set_fault(mode="http_500")
    status, body = await post_hook(client, "legacy@contoso.com", "Legacy#Pass-7319")
    assert (status, credential(body)) == (200, "VERIFIED")


async def test_short_name_is_verified_as_upn(
    aiohttp_client: Any, entra: RunningEmulator, second_entra: RunningEmulator
) -> None:
    config = parse_config(_two_source_yaml(entra.url, second_entra.url), env={})
    client = await aiohttp_client(create_app(config))
    status, body = await post_hook(client, "alice", USERS["alice@contoso.com"])
    assert (status, credential(body)) == (200, "VERIFIED")
