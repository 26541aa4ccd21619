"""Slow and surplus clients against a real `gateway serve`: raw sockets on 127.0.0.1.

Heads that never finish are cut after `server.header_timeout_seconds`, connections beyond
`server.max_connections` are refused at once, a dripped body is answered 400 within the
budget, on every listener (gateway/connections.py). These tests would fail if the guard stopped
being installed, whatever aiohttp's own keep-alive timer does (75 s here).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from emulators.demo import okta_payload
from gateway.metrics import CONNECTION_CLOSE_REASONS, LISTENERS, GatewayMetrics
from tests.certs import self_signed
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, StartGateway, credential
from tests.redis_server import free_port
from tests.serve_process import ServeProcess

ALICE = "alice@contoso.com"
PARTIAL_HEAD = b"POST /okta/password-import HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
# Generous bounds for "closed by the server" on a loaded two-core machine, never tight ones.
CLOSE_DEADLINE_SECONDS = 20.0

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _fds(gateway: ServeProcess) -> int:
    assert gateway.process is not None
    return len(os.listdir(f"/proc/{gateway.process.pid}/fd"))


async def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample /metrics on `port` shows, by name and sorted labels."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _closed(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], **labels: str) -> float:
    key = ("gateway_connections_closed_total", tuple(sorted(labels.items())))
    return samples[key]


def _open(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], listener: str) -> float:
    return samples[("gateway_connections_open", (("listener", listener),))]


async def _partial_heads(port: int, count: int) -> list[Connection]:
    """`count` connections that each sent half a request head and stopped."""
    connections = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count))
    )
    for _, writer in connections:
        writer.write(PARTIAL_HEAD)
    await asyncio.gather(*(writer.drain() for _, writer in connections))
    return list(connections)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes (EOF or reset) within the deadline; False if it answers."""
    try:
        data = await asyncio.wait_for(reader.read(1), CLOSE_DEADLINE_SECONDS)
    except ConnectionResetError:
        return True
    return data == b""


async def _answer(connection: Connection, request: bytes) -> tuple[int, bytes, bytes]:
    """Send one request on a raw connection; its status, head and body."""
    reader, writer = connection
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_DEADLINE_SECONDS)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), head.lower(), body


def _close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()


async def _hook(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + HOOK_PATH,
            json=okta_payload(ALICE, USERS[ALICE]),
            headers={"Authorization": HOOK_SECRET},
        ) as response,
    ):
        return response.status, credential(await response.json())


def test_connection_series_are_exported_at_zero_from_the_start() -> None:
    registry = GatewayMetrics().registry
    for listener in LISTENERS:
        assert registry.get_sample_value("gateway_connections_open", {"listener": listener}) == 0
        for reason in CONNECTION_CLOSE_REASONS:
            labels = {"listener": listener, "reason": reason}
            assert registry.get_sample_value("gateway_connections_closed_total", labels) == 0


async def test_six_hundred_unfinished_heads_are_closed_after_the_header_timeout(
    start_gateway: StartGateway,
) -> None:
    metrics_port = free_port()
    gateway = await start_gateway({"header_timeout_seconds": 1.0, "metrics_port": metrics_port})
    baseline = _fds(gateway)
    connections = await _partial_heads(_port(gateway.url), 600)
    try:
        closed = await asyncio.gather(*(_closed_by_server(reader) for reader, _ in connections))
        assert all(closed)
    finally:
        _close_all(connections)
    samples = await _metrics(metrics_port)
    assert _closed(samples, listener="hook", reason="header_timeout") == 600
    assert _open(samples, "hook") == 0
    assert _fds(gateway) <= baseline + 5  # the descriptors are given back, not just idle
    assert await _hook(gateway.url) == (200, "VERIFIED")  # and the gateway still serves


async def test_the_connection_over_the_cap_is_closed_at_once_and_the_others_keep_working(
    start_gateway: StartGateway,
) -> None:
    metrics_port = free_port()
    # A head timeout longer than the close deadline: only the refusal can close the 21st.
    server = {"max_connections": 20, "header_timeout_seconds": 60.0, "metrics_port": metrics_port}
    gateway = await start_gateway(server)
    port = _port(gateway.url)
    kept = list(
        await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(20)))
    )
    try:
        for connection in kept:  # all twenty admitted and answered, then kept alive
            assert (await _answer(connection, HEALTHZ))[0] == 200
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed_by_server(extra_reader)
        extra_writer.close()
        for connection in kept:  # the refusal disturbed none of the open connections
            assert (await _answer(connection, HEALTHZ))[0] == 200
        samples = await _metrics(metrics_port)
        assert _closed(samples, listener="hook", reason="over_capacity") == 1
        assert _open(samples, "hook") == 20
    finally:
        _close_all(kept)
    async with asyncio.timeout(CLOSE_DEADLINE_SECONDS):
        while True:  # once the twenty are gone, new connections are admitted again
            connection = await asyncio.open_connection("127.0.0.1", port)
            try:
                assert (await _answer(connection, HEALTHZ))[0] == 200
                break
            except (asyncio.IncompleteReadError, ConnectionResetError):
                await asyncio.sleep(0.05)  # the server had not seen every close yet
            finally:
                connection[1].close()


async def test_a_dripped_hook_body_is_answered_400_within_the_budget_and_the_next_call_is_served(
    start_gateway: StartGateway,
) -> None:
    metrics_port = free_port()
    gateway = await start_gateway({"metrics_port": metrics_port}, budget=1.0)
    body = json.dumps(okta_payload(ALICE, USERS[ALICE])).encode()
    head = (
        f"POST {HOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {HOOK_SECRET}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(gateway.url))

    async def drip() -> None:
        for byte in body:  # one byte every 0.25 s: 4 bytes a second, minutes for the body
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.25)

    dripping = asyncio.create_task(drip())
    try:
        writer.write(head)
        # 1 s budget + a generous margin; a 5xx would make Okta resend the password.
        status, answer_head, answer = await _answer((reader, writer), b"")
    finally:
        dripping.cancel()
        writer.close()
    assert status == 400
    assert b"connection: close" in answer_head
    assert json.loads(answer) == {"error": {"errorSummary": "body not received within 1.0 s"}}
    assert await _closed_by_server(reader)
    assert await _hook(gateway.url) == (200, "VERIFIED")
    samples = await _metrics(metrics_port)
    assert _closed(samples, listener="hook", reason="body_timeout") == 1
    key = ("gateway_hook_requests_total", (("outcome", "bad_request"),))
    assert samples[key] == 1


async def test_an_idle_keep_alive_connection_outlives_the_header_timeout_but_not_a_stalled_head(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway({"header_timeout_seconds": 1.0})
    connection = await asyncio.open_connection("127.0.0.1", _port(gateway.url))
    try:
        assert (await _answer(connection, HEALTHZ))[0] == 200
        # Idle between requests: keepalive_timeout (75 s) governs, not the 1 s head timeout.
        # A real sleep: the server is another process, its clock cannot be injected.
        await asyncio.sleep(1.5)
        assert (await _answer(connection, HEALTHZ))[0] == 200
        connection[1].write(PARTIAL_HEAD)  # the next head starts and stalls: cut after 1 s
        assert await _closed_by_server(connection[0])
    finally:
        connection[1].close()


async def test_a_client_that_never_finishes_the_tls_handshake_is_closed_after_the_header_timeout(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    cert, key = self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    tls = {"cert_file": str(tmp_path / "cert.pem"), "key_file": str(tmp_path / "key.pem")}
    gateway = await start_gateway({"tls": tls, "header_timeout_seconds": 1.0})
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(gateway.url))
    try:
        assert await _closed_by_server(reader)  # no ClientHello at all: asyncio's default is 60 s
    finally:
        writer.close()
    context = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    context.check_hostname = False
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(gateway.url), ssl=context)
    try:
        writer.write(PARTIAL_HEAD)  # handshake done, head stalled: the same 1 s deadline
        assert await _closed_by_server(reader)
    finally:
        writer.close()


async def test_the_metrics_and_admin_listeners_cut_unfinished_heads_too(
    start_gateway: StartGateway,
) -> None:
    metrics_port, admin_port = free_port(), free_port()
    admin = {"port": admin_port, "auth": {"secrets": ["Basic YWRtaW46YWRtaW4tc2VjcmV0"]}}
    server = {"header_timeout_seconds": 1.0, "metrics_port": metrics_port}
    gateway = await start_gateway(server, extra={"admin": admin})
    connections = await _partial_heads(metrics_port, 3) + await _partial_heads(admin_port, 3)
    try:
        closed = await asyncio.gather(*(_closed_by_server(reader) for reader, _ in connections))
        assert all(closed)
    finally:
        _close_all(connections)
    samples = await _metrics(metrics_port)
    assert _closed(samples, listener="metrics", reason="header_timeout") == 3
    assert _closed(samples, listener="admin", reason="header_timeout") == 3
    assert _closed(samples, listener="hook", reason="header_timeout") == 0
    assert await _hook(gateway.url) == (200, "VERIFIED")
