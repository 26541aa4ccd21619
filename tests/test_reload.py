"""Hot reload in one process: sources and routes added, removed and changed; bad files refused."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient

from emulators.entra import RunningEmulator, load_directory, start_emulator
from gateway.app import METRICS, create_app
from gateway.config import load_config
from gateway.runtime import RUNTIME
from tests.conftest import FIXTURES, USERS, credential, gateway_yaml, post_hook
from tests.redis_server import free_port

NORTHWIND_FILE = FIXTURES / "entra_users_northwind.yaml"
ADMIN_SECRET = "Bearer admin-secret-for-tests-5150"
NINA = "nina@northwind.com"


@pytest.fixture
async def northwind() -> AsyncIterator[RunningEmulator]:
    """A second Entra tenant, on its own port."""
    running = await start_emulator(load_directory(NORTHWIND_FILE))
    try:
        yield running
    finally:
        await running.close()


def northwind_source(url: str, **extra: Any) -> dict[str, Any]:
    directory = yaml.safe_load(NORTHWIND_FILE.read_text(encoding="utf-8"))
    return {
        "name": "northwind",
        "type": "azure_ad",
        "tenant_id": directory["tenant_id"],
        "client_id": directory["client_id"],
        "client_secret": directory["client_secret"],
        "authority": url,
        "timeouts": {"connect_seconds": 1.0, "read_seconds": 2.0},
        **extra,
    }


class ConfigFile:
    """A config file on disk that a test edits between reloads."""

    def __init__(self, path: Path, entra_url: str, **options: Any) -> None:
        self.path = path
        self.data: dict[str, Any] = yaml.safe_load(gateway_yaml(entra_url, **options))
        self.data["admin"] = {
            "host": "127.0.0.1",
            "port": free_port(),
            "auth": {"secrets": [ADMIN_SECRET]},
        }
        self.write()

    def write(self, text: str | None = None) -> None:
        self.path.write_text(
            text if text is not None else yaml.safe_dump(self.data, allow_unicode=True),
            encoding="utf-8",
        )

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.data['admin']['port']}/admin/reload"

    def add_northwind(self, url: str, **extra: Any) -> None:
        self.data["sources"].append(northwind_source(url, **extra))
        self.data["routes"].append(
            {"match": {"domains": ["northwind.com"]}, "sources": ["northwind"]}
        )


async def reload(config: ConfigFile, secret: str = ADMIN_SECRET) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(config.admin_url, headers={"Authorization": secret}) as response,
    ):
        return response.status, await response.json()


@pytest.fixture
async def gateway(
    aiohttp_client: Any, entra: RunningEmulator, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], ConfigFile]]:
    config = ConfigFile(tmp_path / "config.yaml", entra.url)
    client = await aiohttp_client(
        create_app(load_config(config.path), config_path=str(config.path))
    )
    yield client, config


def _sample(client: TestClient[Any, Any], name: str, **labels: str) -> float | None:
    value: float | None = client.server.app[METRICS].registry.get_sample_value(name, labels)
    return value


async def test_a_new_source_and_route_take_traffic_after_a_reload(
    gateway: tuple[TestClient[Any, Any], ConfigFile], northwind: RunningEmulator
) -> None:
    client, config = gateway
    first_hash = config.digest
    assert _sample(client, "gateway_config_info", hash=first_hash) == 1
    _, body = await post_hook(client, NINA, "Nina#Pass-2468")
    assert credential(body) == "UNVERIFIED"  # no route yet
    config.add_northwind(northwind.url)
    config.write()
    status, answer = await reload(config)
    assert (status, answer["result"], answer["added"]) == (200, "success", ["northwind"])
    assert answer["digest"] == config.digest
    _, body = await post_hook(client, NINA, "Nina#Pass-2468")
    assert credential(body) == "VERIFIED"
    _, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    assert credential(body) == "VERIFIED"
    assert _sample(client, "gateway_config_reload_total", result="success") == 1
    assert _sample(client, "gateway_config_last_reload_successful") == 1
    assert _sample(client, "gateway_config_info", hash=config.digest) == 1
    assert _sample(client, "gateway_config_info", hash=first_hash) is None
    assert (await client.get("/metrics")).status == 200  # readiness is published when read
    assert _sample(client, "gateway_source_ready", source="northwind") == 1


async def test_a_broken_config_changes_nothing(
    gateway: tuple[TestClient[Any, Any], ConfigFile],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, config = gateway
    running_hash = config.digest
    broken = dict(config.data)
    broken["budget_seconds"] = 7
    broken["routes"] = [{"match": {"domains": ["contoso.com"]}, "sources": ["nowhere"]}]
    broken["surprise"] = True
    config.data = broken
    config.write()
    status, answer = await reload(config)
    assert (status, answer["result"]) == (422, "failure")
    problems = "\n".join(answer["problems"])
    for path in ("budget_seconds", "routes[0].sources[0]", "surprise"):
        assert path in problems
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and "reload" in r.getMessage()
    ]
    assert len(errors) == 1
    assert errors[0].__dict__["problems"] == answer["problems"]
    _, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    assert credential(body) == "VERIFIED"  # the old config still serves
    assert _sample(client, "gateway_config_reload_total", result="failure") == 1
    assert _sample(client, "gateway_config_last_reload_successful") == 0
    assert _sample(client, "gateway_config_info", hash=running_hash) == 1
    config.write("not: [valid yaml")
    status, answer = await reload(config)
    assert status == 422 and "not valid YAML" in answer["problems"][0]


async def test_settings_that_need_a_restart_are_reported_and_kept(
    gateway: tuple[TestClient[Any, Any], ConfigFile],
) -> None:
    client, config = gateway
    config.data["server"]["port"] = 18081
    config.data["cache"] = {"backend": "redis", "hmac_secret": "x" * 20, "verified_ttl_seconds": 5}
    config.data["budget_seconds"] = 2.0
    config.write()
    status, answer = await reload(config)
    assert status == 200
    assert set(answer["needs_restart"]) == {"server.port", "cache.backend", "cache.hmac_secret"}
    running = client.server.app[RUNTIME].current.config
    assert running.server.port == 8080 and running.cache.backend == "memory"
    assert running.cache.verified_ttl_seconds == 5 and running.budget_seconds == 2.0
    _, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    assert credential(body) == "VERIFIED"


async def test_unchanged_sources_keep_their_client_and_breaker_and_changed_ones_are_replaced(
    gateway: tuple[TestClient[Any, Any], ConfigFile],
    northwind: RunningEmulator,
    entra: RunningEmulator,
) -> None:
    client, config = gateway
    runtime = client.server.app[RUNTIME]
    entra_source = runtime.current.sources["entra"]
    entra_guard = runtime.current.service.guards["entra"]
    _, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
    assert credential(body) == "VERIFIED"  # MFA required: verified by the default policy
    config.add_northwind(northwind.url)
    config.write()
    assert (await reload(config))[0] == 200
    assert runtime.current.sources["entra"] is entra_source
    assert runtime.current.service.guards["entra"] is entra_guard
    # A policy switch replaces the source and applies at once, even to a cached answer.
    config.data["sources"][0]["policy"] = {"mfa_required": "unverified"}
    config.write()
    status, answer = await reload(config)
    assert (status, answer["replaced"]) == (200, ["entra"])
    assert runtime.current.sources["entra"] is not entra_source
    before = entra.emulator.requests_by_kind["token"]
    _, body = await post_hook(client, "bob@contoso.com", USERS["bob@contoso.com"])
    assert credential(body) == "UNVERIFIED"
    assert entra.emulator.requests_by_kind["token"] == before + 1


async def test_a_request_in_flight_finishes_on_the_config_it_started_with(
    gateway: tuple[TestClient[Any, Any], ConfigFile],
    entra: RunningEmulator,
    northwind: RunningEmulator,
) -> None:
    client, config = gateway
    entra.emulator.set_fault(mode="none", latency_ms=600)
    in_flight = asyncio.create_task(
        post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    )
    await asyncio.sleep(0.2)
    # The new config has no route for contoso.com and no `entra` source at all.
    config.data["sources"] = [northwind_source(northwind.url)]
    config.data["routes"] = [{"match": {"domains": ["northwind.com"]}, "sources": ["northwind"]}]
    config.write()
    status, answer = await reload(config)
    assert (status, answer["removed"]) == (200, ["entra"])
    _, body = await in_flight
    assert credential(body) == "VERIFIED"  # its source was not closed under it
    _, body = await post_hook(client, "zoë@contoso.com", USERS["zoë@contoso.com"])
    assert credential(body) == "UNVERIFIED"  # no route any more
    assert (await client.get("/metrics")).status == 200
    assert _sample(client, "gateway_source_ready", source="entra") is None


async def test_hook_secrets_rotate_on_reload_and_the_admin_secret_is_required(
    gateway: tuple[TestClient[Any, Any], ConfigFile],
) -> None:
    client, config = gateway
    assert (await reload(config, secret="Bearer wrong-admin-secret-000"))[0] == 401
    hook_path = config.data["okta"]["hook_path"]
    new_secret = "Basic bmV3LWhvb2stc2VjcmV0LTIwMjY="
    config.data["okta"]["auth"]["secrets"] = [new_secret]
    config.write()
    assert (await reload(config))[0] == 200
    _, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    assert body["error"]["errorSummary"]  # the old secret: 401
    response = await client.post(
        hook_path,
        json=(await _payload("alice@contoso.com")),
        headers={"Authorization": new_secret},
    )
    assert response.status == 200


async def _payload(username: str) -> dict[str, Any]:
    from emulators.demo import okta_payload

    return okta_payload(username, USERS[username])


async def test_a_source_that_fails_to_start_leaves_the_running_config_alone(
    gateway: tuple[TestClient[Any, Any], ConfigFile],
    northwind: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plugins.azure_ad import AzureAdSource

    client, config = gateway

    async def broken_start(self: AzureAdSource) -> None:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(AzureAdSource, "start", broken_start)
    config.add_northwind(northwind.url)
    config.write()
    status, answer = await reload(config)
    assert (status, answer["result"]) == (422, "failure")
    assert answer["problems"] == ["a source could not start: RuntimeError"]
    assert set(client.server.app[RUNTIME].current.sources) == {"entra"}
    _, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    assert credential(body) == "VERIFIED"
    assert _sample(client, "gateway_config_last_reload_successful") == 0
