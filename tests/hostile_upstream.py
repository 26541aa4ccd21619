"""A hostile upstream on 127.0.0.1: bombs, endless bodies, drips, redirects, foreign links.

It answers each request by the first rule whose path matches (`rules`, exact path or a suffix
after `*`); without a matching rule it forwards the request to `forward_to` (an emulator), as a
TLS-intercepting proxy in front of Entra or Okta would, and with `rewrite` it may change the
forwarded JSON answer. Every request it receives is recorded (method, path, headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]
Rewrite = Callable[[dict[str, Any]], dict[str, Any]]

GIB = 1024**3
_ZEROS = bytes(1024 * 1024)


@functools.cache
def gzip_bomb(inflated_bytes: int) -> bytes:
    """Gzip of `inflated_bytes` zeros (a multiple of 1 MiB), about 1 KB per MiB.

    Each MiB is deflated once and ended with a full flush, which byte-aligns the stream and
    resets the window, so every later MiB deflates to the same bytes: the segment is repeated
    instead of compressing gigabytes (seconds of CPU) or ever holding them.
    """
    count, rest = divmod(inflated_bytes, len(_ZEROS))
    assert rest == 0, "a whole number of MiB"
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = packer.compress(_ZEROS) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(_ZEROS, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, mtime 0
    trailer = struct.pack("<II", crc, inflated_bytes & 0xFFFFFFFF)
    return header + segment * count + packer.flush() + trailer


def bomb(inflated_bytes: int = 2 * GIB, status: int = 200) -> Behaviour:
    """A JSON answer sent as gzip that inflates to `inflated_bytes` of zeros."""
    body = gzip_bomb(inflated_bytes)

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body,
            status=status,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    return answer


def gzip_json(document: Any) -> Behaviour:
    """A small, honest JSON answer sent gzip-compressed."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=zlib.compress(json.dumps(document).encode(), wbits=16 + zlib.MAX_WBITS),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    return answer


@dataclass
class Streamed:
    """What an endless or dripped answer managed to send before the client hung up."""

    sent: int = 0
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)


def huge(total_bytes: int = 4 * GIB, chunked: bool = True) -> tuple[Behaviour, Streamed]:
    """A plain answer of `total_bytes` streamed 64 KiB at a time until the client hangs up."""
    seen = Streamed()
    chunk = b"x" * 65536

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if not chunked:
            response.content_length = total_bytes
        await response.prepare(request)
        try:
            while seen.sent < total_bytes:
                await response.write(chunk)
                seen.sent += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            seen.hung_up.set()
            raise
        return response

    return answer, seen


def drip(interval: float = 0.25, total_seconds: float = 60.0) -> tuple[Behaviour, Streamed]:
    """A JSON answer that sends one byte every `interval` seconds (each read timeout is met)."""
    seen = Streamed()

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        until = loop.time() + total_seconds
        try:
            while loop.time() < until:
                await response.write(b" ")
                seen.sent += 1
                await asyncio.sleep(interval)
        except (ConnectionError, asyncio.CancelledError):
            seen.hung_up.set()
            raise
        return response

    return answer, seen


def redirect(location: str, status: int = 302) -> Behaviour:
    """A redirect to `location` (a client must not follow it with its credentials)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return answer


def json_answer(document: Any, status: int = 200) -> Behaviour:
    """A plain JSON answer."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(document, status=status)

    return answer


@dataclass
class HostileUpstream:
    """A running hostile server; `url` is its base (`http://127.0.0.1:<port>`)."""

    forward_to: str | None = None
    rules: dict[str, Behaviour] = field(default_factory=dict)
    rewrite: dict[str, Rewrite] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> HostileUpstream:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        """Stop listening and drop open answers."""
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _match(self, table: dict[str, Any], path: str) -> Any:
        for pattern, value in table.items():
            if path == pattern or (pattern.startswith("*") and path.endswith(pattern[1:])):
                return value
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        behaviour = self._match(self.rules, request.path)
        if behaviour is not None:
            return await behaviour(request)  # type: ignore[no-any-return]
        if self.forward_to is None:
            return web.Response(status=404)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=True)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "accept-encoding")
        }
        async with self._session.request(
            request.method,
            self.forward_to + request.path_qs,
            data=await request.read(),
            headers=headers,
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            status, content_type = answer.status, answer.content_type
            kept = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() in ("retry-after", "link", "www-authenticate")
            }
        rewrite = self._match(self.rewrite, request.path)
        if rewrite is not None and status == 200:
            body = json.dumps(rewrite(json.loads(body))).encode()
        return web.Response(body=body, status=status, content_type=content_type, headers=kept)


@contextlib.asynccontextmanager
async def hostile(forward_to: str | None = None) -> Any:
    """A started HostileUpstream for an `async with` block, closed afterwards."""
    server = await HostileUpstream(forward_to=forward_to).start()
    try:
        yield server
    finally:
        await server.close()
