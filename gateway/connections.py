"""Slow and surplus clients: a cap on open connections and a deadline for each request head.

aiohttp has neither (its issue #675 was closed as won't fix), and the hook port faces the
internet: without them anyone can hold thousands of descriptors by sending half a request line.
Every listener of the gateway is served through `serve_guarded`, which puts a small protocol in
front of aiohttp's `RequestHandler` and delegates everything to it:

- a connection beyond `server.max_connections` open ones is aborted as soon as it is accepted,
  before aiohttp sees it, so the ones in flight are not disturbed;
- a new connection must finish its request head (request line and headers) within
  `server.header_timeout_seconds` of being accepted (a TLS handshake counts against the same
  deadline, and asyncio's handshake timeout is set to it as well);
- on a kept-alive connection the deadline starts again with the first byte of the next request:
  a connection idling between requests is aiohttp's `keepalive_timeout`'s business, one stuck
  in the middle of a head is ours;
- once the head is parsed and the app runs, the handler bounds the body itself (gateway/body.py
  `read_body` takes a deadline) and marks the close with `close_connection`.

A head is "done" when aiohttp hands the request to the app: the guard wraps the `web.Server`'s
`request_handler`, which every request of the listener passes through.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter

from gateway.config import ServerConfig
from gateway.metrics import CONNECTION_CLOSE_REASONS, GatewayMetrics

logger = logging.getLogger(__name__)

NORMAL: Final = "normal"
HEADER_TIMEOUT: Final = "header_timeout"
BODY_TIMEOUT: Final = "body_timeout"
OVER_CAPACITY: Final = "over_capacity"

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def close_connection(request: web.BaseRequest, response: web.StreamResponse, reason: str) -> None:
    """Close the connection after `response` and count it under `reason` (e.g. body_timeout)."""
    transport = request.transport
    # The transport's protocol is the guard's (for TLS too); an unguarded server has none.
    connection = transport.get_protocol() if transport is not None else None
    if isinstance(connection, _GuardedConnection):
        connection.closing_for(reason)
    response.force_close()


class ConnectionGuard:
    """One listener's connections: counted, capped, and cut when a request head is too slow.

    Called with no argument it is the listener's protocol factory.
    """

    def __init__(
        self, server: web.Server, listener: str, settings: ServerConfig, metrics: GatewayMetrics
    ) -> None:
        self.listener = listener
        self.header_timeout = settings.header_timeout_seconds
        self.max_connections = settings.max_connections
        self._server = server
        self._open = metrics.connections_open.labels(listener=listener)
        self._closed: dict[str, Counter] = {
            reason: metrics.connections_closed.labels(listener=listener, reason=reason)
            for reason in CONNECTION_CLOSE_REASONS
        }
        self._connections: dict[RequestHandler, _GuardedConnection] = {}
        server.request_handler = self._watch(server.request_handler)

    @property
    def open(self) -> int:
        """Connections admitted and not closed yet."""
        return len(self._connections)

    def __call__(self) -> asyncio.Protocol:
        """A protocol for one accepted connection (asyncio calls this at accept)."""
        return _GuardedConnection(self)

    def _watch(self, handler: _Handler) -> _Handler:
        """The server's request handler, telling each connection when its request runs."""

        async def watched(request: web.BaseRequest) -> web.StreamResponse:
            connection = self._connections.get(request.protocol)
            if connection is None:  # pragma: no cover - every connection is admitted first
                return await handler(request)
            connection.head_done()
            try:
                return await handler(request)
            finally:
                connection.request_done()

        return watched

    def admit(self, connection: _GuardedConnection) -> RequestHandler | None:
        """The aiohttp handler for a new connection, or None when the listener is full."""
        if self.open >= self.max_connections:
            self._closed[OVER_CAPACITY].inc()
            return None
        handler = self._server()
        self._connections[handler] = connection
        self._open.inc()
        return handler

    def release(self, handler: RequestHandler, reason: str) -> None:
        """A connection closed, for `reason`."""
        if self._connections.pop(handler, None) is not None:
            self._open.dec()
            self._closed[reason].inc()


class _GuardedConnection(asyncio.Protocol):
    """One connection: aiohttp's handler behind a request-head timer of its own."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._loop = asyncio.get_running_loop()
        self._accepted = self._loop.time()  # before any TLS handshake: it counts too
        self._handler: RequestHandler | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._between_requests = False
        self._reason = NORMAL

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection (or abort it at once) and start the head timer."""
        self._transport = transport
        self._handler = self._guard.admit(self)
        if self._handler is None:
            transport.abort()  # type: ignore[attr-defined]  # a socket transport: frees the fd now
            return
        self._arm(self._accepted)
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Bytes of a request; the first ones after an answer start the next head's timer."""
        if self._handler is None:
            return
        if self._between_requests:
            self._between_requests = False
            self._arm(self._loop.time())
        self._handler.data_received(data)

    def eof_received(self) -> None:
        """The client closed its side (aiohttp then closes the connection: None)."""
        if self._handler is not None:
            self._handler.eof_received()

    def pause_writing(self) -> None:
        """The transport's buffer is full (flow control belongs to aiohttp)."""
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        """The transport's buffer drained."""
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Count the close and hand it to aiohttp."""
        self._disarm()
        if self._handler is None:
            return
        self._guard.release(self._handler, self._reason)
        self._handler.connection_lost(exc)

    def head_done(self) -> None:
        """The whole request head is parsed: from now on the app bounds what it reads."""
        self._disarm()
        self._between_requests = False

    def request_done(self) -> None:
        """The app answered; the connection may idle until its next request."""
        self._between_requests = True

    def closing_for(self, reason: str) -> None:
        """The app closes the connection after its answer, for `reason`."""
        self._reason = reason

    def _arm(self, since: float) -> None:
        self._disarm()
        self._timer = self._loop.call_at(since + self._guard.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_too_slow(self) -> None:
        self._timer = None
        self._reason = HEADER_TIMEOUT
        if self._transport is not None:
            self._transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site (as `web.TCPSite`) whose connections go through a `ConnectionGuard`."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        """The listener's URL, for aiohttp's messages."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen; asyncio's TLS handshake timeout (60 s by default) is the head's deadline."""
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self._guard.header_timeout if self._ssl_context else None,
        )


async def serve_guarded(
    runner: web.BaseRunner,
    host: str,
    port: int,
    *,
    listener: str,
    settings: ServerConfig,
    metrics: GatewayMetrics,
    ssl_context: ssl.SSLContext | None = None,
) -> GuardedSite:
    """Start listening for `runner` (set up already) with the connection guard in front."""
    assert runner.server is not None, "call runner.setup() first"
    guard = ConnectionGuard(runner.server, listener, settings, metrics)
    site = GuardedSite(runner, host, port, guard, ssl_context=ssl_context)
    await site.start()
    return site
