"""A real `redis-server` per test or session on a free port, with every command it receives recorded."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time

import redis

# Everything any test's Redis received (MONITOR lines), for the secrets scan at session end.
MONITORED: list[str] = []
MONITOR_ENDS: list[str] = []


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """Starts, kills and restarts one redis-server; records its traffic through MONITOR."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._monitor = threading.Thread(target=self._record, daemon=True)
        self._monitor.start()
        time.sleep(0.05)  # let MONITOR attach before the test writes

    def _record(self) -> None:
        # Reconnect after idle timeouts; stop when the server is gone for good.
        while self._process is not None:
            try:
                with redis.Redis(port=self.port, socket_timeout=None).monitor() as monitor:
                    for command in monitor.listen():
                        # Commands a Lua script ran are marked: they cost no round trip.
                        lua = "lua " if command.get("client_type") == "lua" else ""
                        MONITORED.append(lua + str(command.get("command", "")))
            except redis.TimeoutError:
                continue
            except (redis.RedisError, OSError, ValueError) as err:
                MONITOR_ENDS.append(f"{self.port}: {type(err).__name__}")
                return

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait for it to exit."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None
        if self._monitor is not None:
            self._monitor.join(timeout=5)
            self._monitor = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def keys_and_values(self) -> list[str]:
        """Every key currently stored and its value, as text."""
        client = redis.Redis(port=self.port)
        out = []
        for key in client.scan_iter():
            out.append(key.decode("utf-8", "replace"))
            kind = client.type(key)
            if kind == b"string":
                out.append(str(client.get(key)))
            elif kind == b"hash":
                out.append(str(client.hgetall(key)))
            elif kind == b"zset":
                out.append(str(client.zrange(key, 0, -1, withscores=True)))
        return out
