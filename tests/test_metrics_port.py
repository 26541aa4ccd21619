"""`server.metrics_port` (a listener of its own for /metrics) and the process readiness probe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from emulators.entra import RunningEmulator
from gateway.app import PROCESS_READY_PATH, create_app, handle_process_ready
from gateway.config import ConfigError, load_config, parse_config
from gateway.runtime import RUNTIME
from tests.conftest import gateway_yaml
from tests.redis_server import free_port


def _config(authority: str, **server: Any) -> Any:
    server = {"host": "127.0.0.1", "port": 8080, **server}
    return parse_config(gateway_yaml(authority, extra={"server": server}), env={})


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


@pytest.fixture
async def with_metrics_port(
    aiohttp_client: Any, entra: RunningEmulator
) -> AsyncIterator[tuple[TestClient[Any, Any], int]]:
    """A gateway whose /metrics is on a port of its own."""
    port = free_port()
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(_config(entra.url, metrics_port=port))
    )
    yield client, port


async def test_metrics_served_on_their_own_port(
    with_metrics_port: tuple[TestClient[Any, Any], int],
) -> None:
    _, port = with_metrics_port
    status, text = await _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert "gateway_build_info" in text
    assert 'gateway_source_ready{source="entra"}' in text


async def test_metrics_absent_from_hook_port(
    with_metrics_port: tuple[TestClient[Any, Any], int],
) -> None:
    client, _ = with_metrics_port
    assert (await client.get("/metrics")).status == 404
    assert (await client.get("/healthz")).status == 200  # the probes stay on the hook port


async def test_metrics_port_serves_nothing_else(
    with_metrics_port: tuple[TestClient[Any, Any], int],
) -> None:
    _, port = with_metrics_port
    for path in ("/okta/password-import", "/healthz", "/readyz", PROCESS_READY_PATH):
        status, _ = await _get(f"http://127.0.0.1:{port}{path}")
        assert status == 404, path


async def test_default_keeps_metrics_on_hook_port(
    aiohttp_client: Any, entra: RunningEmulator
) -> None:
    config = _config(entra.url)
    assert config.server.metrics_port is None
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    response = await client.get("/metrics")
    assert response.status == 200
    assert "gateway_build_info" in await response.text()


def test_metrics_port_must_differ_from_hook_and_admin_ports(entra: RunningEmulator) -> None:
    with pytest.raises(ConfigError) as err:
        _config(entra.url, metrics_port=8080)
    assert any(line.startswith("server.metrics_port:") for line in err.value.lines())
    admin = {"port": 9100, "auth": {"secrets": ["Bearer admin-secret-4242"]}}
    text = gateway_yaml(
        entra.url, extra={"server": {"port": 8080, "metrics_port": 9100}, "admin": admin}
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={})
    assert any("admin.port" in line for line in err.value.lines())


async def test_process_ready_when_every_source_is_down(aiohttp_client: Any) -> None:
    # Nothing listens on this port: the only source never becomes ready.
    dead = f"http://127.0.0.1:{free_port()}"
    client: TestClient[Any, Any] = await aiohttp_client(create_app(_config(dead)))
    assert (await client.get("/readyz")).status == 503
    response = await client.get(PROCESS_READY_PATH)
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "serving"
    assert body["config_hash"] == client.app[RUNTIME].current.config.digest


async def test_process_not_ready_before_start_up_finished(entra: RunningEmulator) -> None:
    app = create_app(_config(entra.url))
    request = make_mocked_request("GET", PROCESS_READY_PATH, app=app)
    response = await handle_process_ready(request)
    assert response.status == 503
    assert isinstance(response, web.Response) and response.text is not None
    assert '"starting"' in response.text


async def test_process_not_ready_once_shutdown_began(
    aiohttp_client: Any, entra: RunningEmulator
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(_config(entra.url)))
    assert (await client.get(PROCESS_READY_PATH)).status == 200
    await client.app.shutdown()  # what SIGTERM's runner.cleanup() does after closing the listener
    response = await client.get(PROCESS_READY_PATH)
    assert response.status == 503
    assert (await response.json())["status"] == "stopping"
    assert (await client.get("/healthz")).status == 200  # liveness is unaffected


async def test_metrics_port_is_restart_only(
    tmp_path: Path, aiohttp_client: Any, entra: RunningEmulator
) -> None:
    path = tmp_path / "config.yaml"
    port = free_port()
    data = yaml.safe_load(gateway_yaml(entra.url))
    data["server"]["metrics_port"] = port
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(load_config(path), config_path=str(path))
    )
    data["server"]["metrics_port"] = free_port()
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = await client.app[RUNTIME].reload()
    assert result.ok
    assert result.needs_restart == ("server.metrics_port",)
    assert client.app[RUNTIME].current.config.server.metrics_port == port
    assert (await _get(f"http://127.0.0.1:{port}/metrics"))[0] == 200
