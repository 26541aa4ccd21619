"""Stop signals on a real `gateway serve` process: drain in-flight calls, refuse new ones."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from emulators.demo import okta_payload
from emulators.entra import RunningEmulator
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, StartGateway, credential

ALICE = "alice@contoso.com"
KATE = "kate@contoso.com"


async def _hook(http: aiohttp.ClientSession, url: str, username: str) -> tuple[int, str, str]:
    """One hook call: status, credential, and the Connection header of the answer."""
    async with http.post(
        url + HOOK_PATH,
        json=okta_payload(username, USERS[username]),
        headers={"Authorization": HOOK_SECRET},
    ) as response:
        body = await response.json()
        return response.status, credential(body), response.headers.get("Connection", "")


async def _refused(url: str) -> bool:
    """True when a new TCP connection to the gateway is refused."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def _idle_keep_alive_connection(
    url: str,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection that made one request, read the whole answer and stays open."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" not in head.lower()
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return reader, writer


async def _token_request_arrived(entra: RunningEmulator) -> None:
    for _ in range(200):
        if entra.emulator.in_flight >= 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the hook call never reached the directory")


def _one_session() -> aiohttp.ClientSession:
    """A client that keeps one connection alive and reuses it, as Okta's does."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))


# A hook call that takes 1.5 s upstream, well inside a 2.9 s budget, so the test sees the drain.
SLOW = {"budget": 2.9, "source_extra": {"timeouts": {"connect_seconds": 1.0, "read_seconds": 2.8}}}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stop_signal_drains_the_in_flight_call_and_refuses_new_connections(
    start_gateway: StartGateway, entra: RunningEmulator, signum: int
) -> None:
    gateway = await start_gateway(**SLOW)
    idle_reader, idle_writer = await _idle_keep_alive_connection(gateway.url)
    async with _one_session() as idle, _one_session() as busy:
        # `idle` keeps a connection open from a finished call (this also caches the realm).
        assert await _hook(idle, gateway.url, ALICE) == (200, "VERIFIED", "")
        entra.emulator.set_fault(mode="none", latency_ms=1500)
        in_flight = asyncio.create_task(_hook(busy, gateway.url, KATE))
        await _token_request_arrived(entra)

        gateway.send(signum)
        # Idle kept-alive connections are closed at once, before their client sends again.
        assert await asyncio.wait_for(idle_reader.read(1), 5) == b"", "idle connection kept"
        idle_writer.close()
        assert await _refused(gateway.url), "the listener still accepts connections"
        assert not in_flight.done(), "the listener closed only after the drained call ended"
        # So a kept-alive client reconnects (refused here) instead of writing into a dying
        # connection and reading an EOF.
        await asyncio.sleep(0.1)  # its client has read the close of its idle connection too
        with pytest.raises(aiohttp.ClientConnectorError):
            await _hook(idle, gateway.url, ALICE)
        # The drained call is answered, and told not to reuse its connection.
        assert await in_flight == (200, "VERIFIED", "close")
        with pytest.raises(aiohttp.ClientConnectorError):
            await _hook(busy, gateway.url, ALICE)

    assert await gateway.wait() == 0, gateway.output()
    (stopped,) = gateway.lines("gateway stopped")
    assert stopped["signal"] == signal.Signals(signum).name
    assert (stopped["drained"], stopped["abandoned"]) == (1, 0)
    assert stopped["seconds"] >= 0


async def test_listening_line_names_scheme_host_and_port(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    gateway.send(signal.SIGTERM)
    assert await gateway.wait() == 0
    (listening,) = gateway.lines("listening")
    port = int(gateway.url.rsplit(":", 1)[1])
    assert (listening["scheme"], listening["host"], listening["port"]) == (
        "http",
        "127.0.0.1",
        port,
    )
    assert listening["hook_path"] == HOOK_PATH
    (stopped,) = gateway.lines("gateway stopped")
    assert (stopped["drained"], stopped["abandoned"]) == (0, 0)


async def test_calls_outlasting_the_grace_period_are_cut_and_the_process_still_exits_0(
    start_gateway: StartGateway, entra: RunningEmulator
) -> None:
    gateway = await start_gateway({"shutdown_grace_seconds": 0.3})
    entra.emulator.set_fault(mode="none", latency_ms=10_000)  # the hook would answer at 2.5 s
    async with _one_session() as busy:
        in_flight = asyncio.create_task(_hook(busy, gateway.url, KATE))
        await _token_request_arrived(entra)
        gateway.send(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientError):
            await in_flight
    assert await gateway.wait() == 0, gateway.output()
    (stopped,) = gateway.lines("gateway stopped")
    assert (stopped["drained"], stopped["abandoned"]) == (0, 1)
    assert stopped["seconds"] < 2.0  # did not wait for the 2.5 s answer (grace 0.3 s)
