"""A real Prometheus scrapes a running gateway and loads the alert rules."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, GatewayFactory, credential, post_hook
from tests.deploy.promql import ALERTS_YAML, alert_rules

PROMETHEUS = "/usr/bin/prometheus"
JOB = "okta-password-gateway"
DEADLINE_SECONDS = 30.0
ALICE = "alice@contoso.com"


def _prometheus_binary() -> str:
    found = shutil.which("prometheus") or (PROMETHEUS if Path(PROMETHEUS).exists() else None)
    if found is None:
        pytest.fail(
            "the Prometheus server is not installed: install Debian's package "
            "(`apt-get install -y prometheus`, which CI's .ci/run does) and run the tests again"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RunningPrometheus:
    """A Prometheus server on 127.0.0.1 and an HTTP session to ask it."""

    def __init__(self, url: str, session: aiohttp.ClientSession, log: Path) -> None:
        self.url = url
        self.session = session
        self.log = log

    async def get(self, path: str, **params: str) -> Any:
        """GET an API path; the `data` of a successful answer."""
        async with self.session.get(self.url + path, params=params) as response:
            body = await response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Instant query: labels (without job/instance) -> value."""
        data = await self.get("/api/v1/query", query=expr)
        return {
            tuple(
                sorted(
                    (k, v)
                    for k, v in r["metric"].items()
                    if k not in {"__name__", "job", "instance"}
                )
            ): (float(r["value"][1]))
            for r in data["result"]
        }

    async def wait_for(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        """Poll `check` until it is true, or fail after the deadline with Prometheus's log."""
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE_SECONDS
        while not await check():
            if loop.time() > end:
                targets = await self.get("/api/v1/targets")
                health = [
                    (t["scrapeUrl"], t["health"], t["lastError"]) for t in targets["activeTargets"]
                ]
                log = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
                pytest.fail(
                    f"Prometheus never showed {what} in {DEADLINE_SECONDS} s; "
                    f"targets: {health}; log:\n{log}"
                )
            await asyncio.sleep(0.5)


async def _start_prometheus(tmp_path: Path, target: str) -> AsyncIterator[RunningPrometheus]:
    binary = _prometheus_binary()
    port = _free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS_YAML)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = tmp_path / "prometheus.log"
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        async with aiohttp.ClientSession() as session:
            prometheus = RunningPrometheus(f"http://127.0.0.1:{port}", session, log)

            async def ready() -> bool:
                if process.returncode is not None:
                    text = log.read_text(encoding="utf-8", errors="replace")[-3000:]
                    pytest.fail(f"Prometheus exited with {process.returncode}:\n{text}")
                try:
                    async with session.get(prometheus.url + "/-/ready") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await prometheus.wait_for("/-/ready", ready)
            yield prometheus
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture
async def scraped(
    make_gateway: GatewayFactory, tmp_path: Path
) -> AsyncIterator[tuple[Any, RunningPrometheus]]:
    """A gateway (with the Entra emulator) and a Prometheus scraping it every second."""
    client = await make_gateway()
    target = f"{client.server.host}:{client.server.port}"
    async for prometheus in _start_prometheus(tmp_path, target):
        yield client, prometheus


async def test_prometheus_scrapes_hook_outcomes_and_verifications(
    scraped: tuple[Any, RunningPrometheus],
) -> None:
    client, prometheus = scraped
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(body)) == (200, "VERIFIED")
    status, body = await post_hook(client, ALICE, "wrong-" + USERS[ALICE])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    bad = await client.post(
        HOOK_PATH,
        data=b"[]",
        headers={"Authorization": HOOK_SECRET, "Content-Type": "application/json"},
    )
    assert bad.status == 400
    unauthorized = await client.post(HOOK_PATH, json={})
    assert unauthorized.status == 401

    expected_outcomes = {
        (("outcome", "verified"),): 1.0,
        (("outcome", "unverified"),): 1.0,
        (("outcome", "bad_request"),): 1.0,
        (("outcome", "unauthorized"),): 1.0,
        (("outcome", "too_large"),): 0.0,
    }
    outcomes: dict[Any, float] = {}

    async def outcomes_scraped() -> bool:
        nonlocal outcomes
        outcomes = await prometheus.query(f'gateway_hook_requests_total{{job="{JOB}"}}')
        return outcomes == expected_outcomes

    await prometheus.wait_for(
        f"hook outcomes {expected_outcomes} (last: {outcomes})", outcomes_scraped
    )

    verifications = await prometheus.query(
        f'gateway_verifications_total{{job="{JOB}",source="entra"}}'
    )
    assert verifications == {
        (("result", "denied"), ("source", "entra")): 1.0,
        (("result", "unavailable"), ("source", "entra")): 0.0,
        (("result", "verified"), ("source", "entra")): 1.0,
    }
    assert await prometheus.query(
        f'gateway_verification_duration_seconds_count{{job="{JOB}"}}'
    ) == {(("source", "entra"),): 2.0}
    assert await prometheus.query(
        f'gateway_upstream_errors_total{{job="{JOB}",code="aadsts_50126"}}'
    ) == {(("code", "aadsts_50126"), ("source", "entra")): 1.0}
    assert await prometheus.query(f'up{{job="{JOB}"}}') == {(): 1.0}
    assert await prometheus.query(f'gateway_source_ready{{job="{JOB}"}}') == {
        (("source", "entra"),): 1.0
    }
    build = await prometheus.query(f'gateway_build_info{{job="{JOB}"}}')
    assert list(build.values()) == [1.0]
    assert last_success_is_recent(
        await prometheus.query(
            f'time() - gateway_source_last_success_timestamp_seconds{{job="{JOB}"}}'
        )
    )


def last_success_is_recent(ages: dict[Any, float]) -> bool:
    """The entra source's last success is a real timestamp from this run, not 0 (never)."""
    return set(ages) == {(("source", "entra"),)} and 0 <= ages[(("source", "entra"),)] < 600


async def test_prometheus_loads_alert_rules_healthy(
    scraped: tuple[Any, RunningPrometheus],
) -> None:
    _, prometheus = scraped
    expected = {rule["alert"] for rule in alert_rules()}
    seen: dict[str, tuple[str, str]] = {}

    async def rules_evaluated() -> bool:
        nonlocal seen
        data = await prometheus.get("/api/v1/rules")
        seen = {
            rule["name"]: (rule["health"], rule.get("lastError", ""))
            for group in data["groups"]
            for rule in group["rules"]
        }
        return set(seen) == expected and all(h != "unknown" for h, _ in seen.values())

    await prometheus.wait_for(f"every alert rule evaluated (last: {seen})", rules_evaluated)
    assert {name: health for name, (health, _) in seen.items()} == dict.fromkeys(expected, "ok"), (
        seen
    )
