"""Hostile TCP servers on 127.0.0.1 for the ldap tests: a relay that can turn on its clients.

`Relay` forwards to a real directory and, when told, holds new connections without a word
(a TLS handshake that never ends) or cuts its open connections right after the directory read
what the client sent (a bind the server counted, whose answer never arrives). `HangUp` closes
every connection at once. `StartTlsThenSilent`
accepts StartTLS and then never answers the ClientHello. Threads, not the test's event loop: the
LDAP client blocks in worker threads while the loop waits for it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class _Listener:
    """Accepts on a free port of 127.0.0.1 in a thread; subclasses handle each connection."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._sockets.append(client)
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client: socket.socket) -> None:
        """Serve one accepted connection (the base class never answers)."""

    def keep(self, sock: socket.socket) -> None:
        """Close `sock` with the listener."""
        with self._lock:
            self._sockets.append(sock)

    def close(self) -> None:
        """Stop accepting and close every socket, which frees any client still waiting."""
        self._closed.set()
        self._server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class Relay(_Listener):
    """A TCP relay to `upstream` that can hold new connections or cut open ones."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._relay_budget: int | None = None  # None: relay every new connection
        self._doomed: set[socket.socket] = set()
        self._open: set[socket.socket] = set()
        super().__init__()

    def freeze(self, relay_first: int = 0) -> None:
        """Relay the next `relay_first` new connections, then hold every later one silent."""
        self._relay_budget = relay_first

    def heal(self) -> None:
        """Relay every new connection again."""
        self._relay_budget = None

    def doom_open_connections(self) -> None:
        """Each open connection: the directory gets the client's next bytes, the client no answer."""
        with self._lock:
            self._doomed |= self._open

    def handle(self, client: socket.socket) -> None:
        """Relay, or hold silent while frozen."""
        with self._lock:
            if self._relay_budget is not None:
                if self._relay_budget <= 0:
                    return  # held: accepted, never answered, closed only by `close`
                self._relay_budget -= 1
            self._open.add(client)
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
        except OSError:
            client.close()
            return
        self.keep(upstream)
        self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream and client in self._doomed:
                        return  # the directory answered; the client never hears it
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(client)
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class HangUp(_Listener):
    """Accepts a connection and closes it at once: a TLS handshake ends in EOF."""

    def handle(self, client: socket.socket) -> None:
        """Close without a word."""
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        client.close()


class StartTlsThenSilent(_Listener):
    """Answers an LDAP StartTLS request with success, then never answers the TLS handshake."""

    def handle(self, client: socket.socket) -> None:
        """Read the extended request, answer success with its message id, then stay silent."""
        with contextlib.suppress(OSError):
            request = client.recv(4096)
            message_id = _message_id(request)
            if message_id is None:
                return
            # ExtendedResponse [APPLICATION 24]: resultCode success, empty matchedDN and message.
            body = bytes([0x0A, 1, 0, 0x04, 0, 0x04, 0])
            message = bytes([0x02, 1, message_id, 0x78, len(body)]) + body
            client.sendall(bytes([0x30, len(message)]) + message)


def _message_id(request: bytes) -> int | None:
    """The one-byte message id of a BER LDAPMessage (libldap's first ids are small)."""
    if len(request) < 2 or request[0] != 0x30:
        return None
    offset = 2 + (request[1] & 0x7F if request[1] & 0x80 else 0)
    if request[offset : offset + 2] != b"\x02\x01":
        return None
    return request[offset + 2]
