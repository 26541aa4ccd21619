"""The hook body as an attacker sends it: compression bombs, odd codings, doubled auth, deep JSON."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import brotli
import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from emulators.demo import okta_payload
from gateway.app import METRICS
from gateway.body import BROTLI_BLOCK
from gateway.runtime import RUNTIME
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, GatewayFactory, credential

ALICE = "alice@contoso.com"
WRONG_SECRET = "Basic d3Jvbmc6c2VjcmV0LTAwMDA="
MIB = 1 << 20


class Inflated:
    """Bytes every zlib and brotli decompressor in this process produced (aiohttp's included)."""

    def __init__(self) -> None:
        self.bytes = 0


class _CountingZlib:
    """A zlib decompress object that adds what it inflates to a shared count."""

    def __init__(self, inner: Any, count: Inflated) -> None:
        self._inner = inner
        self._count = count

    def decompress(self, data: Any, max_length: int = 0) -> bytes:
        out: bytes = self._inner.decompress(data, max_length)
        self._count.bytes += len(out)
        return out

    def flush(self, *args: Any) -> bytes:
        out: bytes = self._inner.flush(*args)
        self._count.bytes += len(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountingBrotli:
    """A brotli decompressor that adds what it inflates to a shared count."""

    def __init__(self, inner: Any, count: Inflated) -> None:
        self._inner = inner
        self._count = count

    def process(self, data: Any, **kwargs: Any) -> bytes:
        out: bytes = self._inner.process(data, **kwargs)
        self._count.bytes += len(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inflated]:
    """Count inflation by patching the module attributes, so any caller's use is seen."""
    count = Inflated()
    real_zlib, real_brotli = zlib.decompressobj, brotli.Decompressor

    def zlib_factory(*args: Any, **kwargs: Any) -> _CountingZlib:
        return _CountingZlib(real_zlib(*args, **kwargs), count)

    def brotli_factory(*args: Any, **kwargs: Any) -> _CountingBrotli:
        return _CountingBrotli(real_brotli(*args, **kwargs), count)

    monkeypatch.setattr(zlib, "decompressobj", zlib_factory)
    monkeypatch.setattr(brotli, "Decompressor", brotli_factory)
    yield count


@functools.cache
def gzip_bomb(mib: int) -> bytes:
    """A gzip body of `mib` MiB of zeros, about 1 KB per MiB, built in well under a second.

    Each MiB is deflated at level 9 and ended with a full flush, which resets the compressor, so
    every MiB compresses to the same bytes: compress one, repeat it, add the gzip trailer.
    """
    chunk = bytes(MIB)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = deflater.compress(chunk) + deflater.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (mib * MIB) & 0xFFFFFFFF)
    return header + piece * mib + deflater.flush() + trailer


def _raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": functools.partial(gzip.compress, compresslevel=9),
    "x-gzip": functools.partial(gzip.compress, compresslevel=9),
    "deflate": functools.partial(zlib.compress, level=9),
    "deflate (raw)": _raw_deflate,
    "br": functools.partial(brotli.compress, quality=5),
}


def _coding(name: str) -> str:
    return name.partition(" ")[0]


def _alice_body() -> bytes:
    return json.dumps(okta_payload(ALICE, USERS[ALICE])).encode()


def _limit(client: TestClient[Any, Any]) -> int:
    limit: int = client.server.app[RUNTIME].current.config.server.max_body_bytes
    return limit


def _hook_count(client: TestClient[Any, Any], outcome: str) -> float:
    value = client.server.app[METRICS].registry.get_sample_value(
        "gateway_hook_requests_total", {"outcome": outcome}
    )
    return float(value or 0.0)


async def _connect(
    client: TestClient[Any, Any],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = client.server.port
    assert port is not None
    return await asyncio.open_connection("127.0.0.1", port)


def _request_head(headers: list[tuple[str, str]]) -> bytes:
    lines = [f"POST {HOOK_PATH} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _post_raw(
    client: TestClient[Any, Any], headers: list[tuple[str, str]], body: bytes
) -> int:
    """Send a hook request over a bare socket and return the status the gateway answered.

    The body is written while the status line is read: a gateway that answers without reading the
    body closes the connection, and the reset that follows may stop the write, not the answer.
    """
    reader, writer = await _connect(client)
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers = [*headers, ("Content-Length", str(len(body)))]
    writer.write(_request_head(headers))

    async def send_body() -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(body)
            await writer.drain()

    sender = asyncio.create_task(send_body())
    try:
        status_line = await reader.readline()
    finally:
        await sender
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return int(status_line.split()[1])


async def test_unauthenticated_gzip_bombs_get_401_without_inflating(
    make_gateway: GatewayFactory, inflated: Inflated
) -> None:
    """Four 1 MB bodies that inflate to 1 GiB each, at once: 401 and not one byte inflated."""
    client = await make_gateway()
    bomb = gzip_bomb(1024)
    assert len(bomb) < 1.1 * MIB
    auth = [[], [("Authorization", WRONG_SECRET)]]
    async with asyncio.timeout(60):
        statuses = await asyncio.gather(
            *(
                _post_raw(client, [("Content-Encoding", "gzip"), *auth[i % 2]], bomb)
                for i in range(4)
            )
        )
        assert statuses == [401] * 4
        response = await client.post(
            HOOK_PATH, data=_alice_body(), headers={"Authorization": HOOK_SECRET}
        )
        assert response.status == 200
        assert credential(await response.json()) == "VERIFIED"
    assert inflated.bytes == 0


async def test_rejected_body_is_not_drained(make_gateway: GatewayFactory) -> None:
    """After a 401 the connection closes; the gateway does not stay to read the attacker's body."""
    client = await make_gateway()
    reader, writer = await _connect(client)
    writer.write(_request_head([("Content-Length", str(MIB))]) + bytes(1024))
    try:
        # aiohttp's default lingering close would keep reading the body for 10 s.
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            with contextlib.suppress(ConnectionError):
                await reader.read()  # returns at end of stream: the gateway closed
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status_line.split()[1] == b"401"


@pytest.mark.parametrize("limit", [65536, MIB])
@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "deflate (raw)", "br"])
async def test_authenticated_bomb_stops_inflating_at_the_cap(
    make_gateway: GatewayFactory, inflated: Inflated, encoding: str, limit: int
) -> None:
    """16 MiB of zeros in a body well under the raw cap: 413, having inflated just past the cap."""
    server = {"host": "127.0.0.1", "port": 8080, "max_body_bytes": limit}
    client = await make_gateway(extra={"server": server})
    bomb = gzip_bomb(16) if _coding(encoding) == "gzip" else ENCODERS[encoding](bytes(16 * MIB))
    assert len(bomb) < limit
    response = await client.post(
        HOOK_PATH,
        data=bomb,
        headers={"Authorization": HOOK_SECRET, "Content-Encoding": _coding(encoding)},
    )
    assert response.status == 413
    # zlib stops at exactly one byte past the cap; brotli only honours a limit to its first
    # output block (just under 32 KiB), so the gateway inflates in steps of at most that.
    slack = BROTLI_BLOCK if encoding == "br" else 1
    assert limit < inflated.bytes <= limit + slack


@pytest.mark.parametrize("encoding", [*ENCODERS, "identity"])
async def test_small_compressed_body_is_verified(
    make_gateway: GatewayFactory, encoding: str
) -> None:
    client = await make_gateway()
    encode = ENCODERS.get(encoding, bytes)
    response = await client.post(
        HOOK_PATH,
        data=encode(_alice_body()),
        headers={"Authorization": HOOK_SECRET, "Content-Encoding": _coding(encoding).upper()},
    )
    assert response.status == 200
    assert credential(await response.json()) == "VERIFIED"


@pytest.mark.parametrize("encoding", ["zstd", "compress", "gzip, br", "x-bomb"])
async def test_unknown_or_stacked_content_encoding_is_415(
    make_gateway: GatewayFactory, inflated: Inflated, encoding: str
) -> None:
    client = await make_gateway()
    before = _hook_count(client, "bad_request")
    body = brotli.compress(gzip.compress(_alice_body())) if "," in encoding else _alice_body()
    response = await client.post(
        HOOK_PATH, data=body, headers={"Authorization": HOOK_SECRET, "Content-Encoding": encoding}
    )
    assert response.status == 415
    assert response.headers["Accept-Encoding"] == "gzip, deflate, br"
    error = await response.json()
    assert encoding not in json.dumps(error)  # never echo input
    assert _hook_count(client, "bad_request") == before + 1
    assert inflated.bytes == 0


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


# Most cases wrap a valid request, so only the decoder's own checks can refuse them.
CORRUPT = {
    "gzip garbage": ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + b"\xff" * 64),
    "gzip trailer cut": ("gzip", gzip.compress(_alice_body())[:-8]),
    "gzip wrong crc": ("gzip", _flip(gzip.compress(_alice_body()), -8)),
    "gzip trailing junk": ("gzip", gzip.compress(_alice_body()) + b"junk"),
    "deflate garbage": ("deflate", b"\x78\x9c" + b"\xff" * 64),
    "deflate checksum cut": ("deflate", zlib.compress(_alice_body())[:-4]),
    "br garbage": ("br", b"\xff" * 64),
    "br cut": ("br", brotli.compress(_alice_body())[:-1]),
    "br trailing junk": ("br", brotli.compress(_alice_body()) + b"junk"),
}


@pytest.mark.parametrize("case", CORRUPT)
async def test_corrupt_compressed_body_is_400(make_gateway: GatewayFactory, case: str) -> None:
    client = await make_gateway()
    encoding, body = CORRUPT[case]
    response = await client.post(
        HOOK_PATH, data=body, headers={"Authorization": HOOK_SECRET, "Content-Encoding": encoding}
    )
    assert response.status == 400
    error = await response.json()
    assert "Content-Encoding" in error["error"]["errorSummary"]  # refused by the decoder


async def test_declared_length_over_cap_is_413_without_reading(
    make_gateway: GatewayFactory,
) -> None:
    """A 1 GB Content-Length and no body: a gateway that tried to read would wait for ever."""
    client = await make_gateway()
    headers = [("Authorization", HOOK_SECRET), ("Content-Length", str(10**9))]
    async with asyncio.timeout(10):
        assert await _post_raw(client, headers, b"") == 413


@pytest.mark.parametrize(
    ("authorized", "declared", "encoding", "body", "status"),
    [
        (False, 10**9, "zstd", b"", 401),
        (True, 10**9, "zstd", b"", 413),
        (True, None, "zstd", b"{}", 415),
        (True, None, "gzip", b"\x1f\x8b garbage", 400),
        (True, None, "gzip", gzip.compress(b"[[[not json"), 400),
    ],
)
async def test_checks_run_in_contract_order(
    make_gateway: GatewayFactory,
    authorized: bool,
    declared: int | None,
    encoding: str,
    body: bytes,
    status: int,
) -> None:
    """Auth (401), then size (413), then coding (415, 400), then JSON (400)."""
    client = await make_gateway()
    headers = [("Content-Encoding", encoding)]
    if authorized:
        headers.append(("Authorization", HOOK_SECRET))
    if declared is not None:
        headers.append(("Content-Length", str(declared)))
    async with asyncio.timeout(10):
        assert await _post_raw(client, headers, body) == status


@pytest.mark.parametrize(
    "values",
    [(HOOK_SECRET, WRONG_SECRET), (WRONG_SECRET, HOOK_SECRET), (HOOK_SECRET, HOOK_SECRET)],
    ids=["right-then-wrong", "wrong-then-right", "right-twice"],
)
async def test_repeated_auth_header_is_401(
    make_gateway: GatewayFactory, values: tuple[str, str]
) -> None:
    """Two copies are ambiguous (a proxy may have checked the other one): refuse both orders."""
    client = await make_gateway()
    headers = CIMultiDict([("Authorization", value) for value in values])
    response = await client.post(HOOK_PATH, data=_alice_body(), headers=headers)
    assert response.status == 401
    assert "error" in await response.json()


DEPTH = 20_000
NESTED = {
    "arrays": b"[" * DEPTH + b"]" * DEPTH,
    "objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
}


@pytest.mark.parametrize("shape", NESTED)
async def test_deeply_nested_json_is_400_not_an_error(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    """20,000 levels exhaust the JSON parser's recursion: a bad request, not a handler failure."""
    server = {"host": "127.0.0.1", "port": 8080, "max_body_bytes": 256 * 1024}
    client = await make_gateway(extra={"server": server})
    body = NESTED[shape]
    assert len(body) <= _limit(client)
    with caplog.at_level(logging.DEBUG):
        response = await client.post(HOOK_PATH, data=body, headers={"Authorization": HOOK_SECRET})
    assert response.status == 400
    assert "error" in await response.json()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
