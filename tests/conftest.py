"""Shared fixtures: the Entra emulator on a real socket, gateway apps, and the log scan for secrets."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from emulators.demo import okta_payload
from emulators.entra import RunningEmulator, load_directory, start_emulator
from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.logs import LIBRARY_LOGGERS, JsonFormatter
from tests.redis_server import MONITORED, RedisServer, free_port
from tests.serve_process import ServeProcess

FIXTURES = Path(__file__).parent / "fixtures"
USERS_FILE = FIXTURES / "entra_users.yaml"
DEMO_USERS_FILE = Path(__file__).parent.parent / "emulators" / "demo_users.yaml"
HOOK_SECRET = "Basic b2t0YTp0ZXN0LWhvb2stc2VjcmV0LTczMTk="
HOOK_PATH = "/okta/password-import"
CACHE_SECRET = "test-cache-hmac-secret-7319"
USERS: dict[str, str] = {
    u["username"]: u["password"]
    for u in yaml.safe_load(USERS_FILE.read_text(encoding="utf-8"))["users"]
}


class SecretScan(logging.Handler):
    """Keeps everything logged (and any output handed to it) to search for secrets afterwards."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.secrets: set[str] = set()
        self._json = JsonFormatter()
        self._plain = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record every way it could be rendered: JSON, raw message, args, traceback."""
        self.texts.append(self._json.format(record))
        self.texts.append(f"{record.msg!s} {record.args!r} {record.__dict__!r}")
        if record.exc_info:
            self.texts.append(self._plain.formatException(record.exc_info))

    def add_output(self, text: str) -> None:
        """Include output of a subprocess (CLI, demo) in the scan."""
        self.texts.append(text)

    def leaks(self) -> list[str]:
        """Secrets found in anything kept (reported by length, never by value)."""
        found = []
        for secret in sorted(self.secrets):
            if any(secret in text for text in self.texts):
                found.append(f"a {len(secret)}-character secret starting {secret[:2]!r}")
        return found


SCAN = SecretScan()


def _known_secrets() -> set[str]:
    secrets = {HOOK_SECRET, HOOK_SECRET.removeprefix("Basic "), CACHE_SECRET}
    for path in (*sorted(FIXTURES.glob("entra_users*.yaml")), DEMO_USERS_FILE):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        secrets.add(data["client_secret"])
        secrets.update(u["password"] for u in data["users"])
    return secrets


def pytest_configure(config: pytest.Config) -> None:
    """Capture every log record of the session at DEBUG, third-party loggers included."""
    SCAN.secrets |= _known_secrets()
    root = logging.getLogger()
    root.addHandler(SCAN)
    root.setLevel(logging.DEBUG)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a secret reached the logs, or a secret or clear username reached Redis."""
    leaks = SCAN.leaks()
    if leaks:
        print("\nSECRET SCAN FAILED: found in captured logs/output: " + "; ".join(leaks))
        session.exitstatus = 1
    redis_leaks = redis_traffic_leaks()
    if redis_leaks:
        print("\nREDIS SCAN FAILED: found in commands sent to Redis: " + "; ".join(redis_leaks))
        session.exitstatus = 1


def redis_traffic_leaks() -> list[str]:
    """Secrets or clear usernames in any command any test's Redis received (MONITOR)."""
    traffic = "\n".join(MONITORED)
    # Local parts that are hex digits (`fed1`) occur by chance in HMAC keys and request tokens.
    local_parts = {u.split("@")[0] for u in USERS}
    needles = (
        SCAN.secrets
        | set(USERS)
        | {p for p in local_parts if len(p) > 3 and not re.fullmatch("[0-9a-f]+", p)}
    )
    return [
        f"a {len(n)}-character value starting {n[:2]!r}" for n in sorted(needles) if n in traffic
    ]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (tests use their own key prefixes)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def cache_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The `cache:` section for each backend; Redis ones get a prefix of their own."""
    if request.param == "memory":
        return {"backend": "memory"}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {
        "backend": "redis",
        "url": server.url,
        "key_prefix": f"t{uuid.uuid4().hex[:8]}",
        "hmac_secret": CACHE_SECRET,
    }


@pytest.fixture
def secret_scan() -> SecretScan:
    """The session-wide scan, for tests that add subprocess output or secrets of their own."""
    return SCAN


@pytest.fixture
async def entra() -> AsyncIterator[RunningEmulator]:
    """The Entra emulator with the test directory, on a free port of 127.0.0.1."""
    running = await start_emulator(load_directory(USERS_FILE))
    try:
        yield running
    finally:
        await running.close()


def gateway_yaml(
    authority: str,
    *,
    policy: dict[str, str] | None = None,
    budget: float = 2.5,
    extra: dict[str, Any] | None = None,
    source_extra: dict[str, Any] | None = None,
) -> str:
    """A gateway config pointing one `entra` source at an emulator."""
    directory = yaml.safe_load(USERS_FILE.read_text(encoding="utf-8"))
    source: dict[str, Any] = {
        "name": "entra",
        "type": "azure_ad",
        "tenant_id": directory["tenant_id"],
        "client_id": directory["client_id"],
        "client_secret": directory["client_secret"],
        "authority": authority,
        "timeouts": {"connect_seconds": 1.0, "read_seconds": 2.0},
        "startup_retry_max_seconds": 0.5,
    }
    if policy:
        source["policy"] = policy
    source.update(source_extra or {})
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
        "budget_seconds": budget,
        "sources": [source],
        "routes": [{"match": {"domains": ["contoso.com", "fabrikam.com"]}, "sources": ["entra"]}],
        "logging": {"level": "debug", "usernames": "hash"},
    }
    config.update(extra or {})
    return yaml.safe_dump(config, allow_unicode=True)


GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_gateway(aiohttp_client: Any, entra: RunningEmulator) -> GatewayFactory:
    """Start a gateway (real socket) whose `entra` source talks to the emulator."""

    async def factory(**options: Any) -> TestClient[Any, Any]:
        authority = options.pop("authority", entra.url)
        config: GatewayConfig = parse_config(gateway_yaml(authority, **options), env={})
        client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
        return client

    return factory


async def post_hook(
    client: TestClient[Any, Any],
    username: str,
    password: str,
    *,
    url_value: str = "/idp/idx/challenge/answer",
    ip: str = "66.124.153.138",
) -> tuple[int, Any]:
    """Send Okta's documentation payload for a username/password; return status and JSON."""
    payload = okta_payload(username, password)
    payload["data"]["context"]["request"]["url"]["value"] = url_value
    payload["data"]["context"]["request"]["ipAddress"] = ip
    response = await client.post(HOOK_PATH, json=payload, headers={"Authorization": HOOK_SECRET})
    return response.status, await response.json()


def credential(body: Any) -> str:
    """The VERIFIED/UNVERIFIED value of a hook reply, checking the exact shape on the way."""
    assert set(body) == {"commands"}
    (command,) = body["commands"]
    assert command["type"] == "com.okta.action.update"
    assert set(command["value"]) == {"credential"}
    value: str = command["value"]["credential"]
    return value


StartGateway = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def start_gateway(
    entra: RunningEmulator, tmp_path: Path, secret_scan: SecretScan
) -> AsyncIterator[StartGateway]:
    """Start `gateway serve` subprocesses against the emulator; kill leftovers, scan their logs."""
    started: list[ServeProcess] = []

    async def start(server: dict[str, Any] | None = None, **options: Any) -> ServeProcess:
        config = yaml.safe_load(gateway_yaml(entra.url, **options))
        port = free_port()
        config["server"].update({"host": "127.0.0.1", "port": port, **(server or {})})
        config["logging"]["level"] = "info"
        path = tmp_path / f"gateway{len(started)}.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        scheme = "https" if "tls" in config["server"] else "http"
        process = ServeProcess(path, f"{scheme}://127.0.0.1:{port}")
        started.append(process)
        await process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            await process.stop()
            secret_scan.add_output(process.output())
