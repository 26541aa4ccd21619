"""A real OAuth 2.0 server for tests: django-oauth-toolkit in a subprocess on 127.0.0.1.

The Django project is `tests/fixtures/dot_server/`; each server gets its own temp directory
(SQLite database, port file, log) and binds port 0, so there is no free-port race.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).parent / "fixtures" / "dot_server"
CLIENT_ID = "gateway-test-client"
CLIENT_SECRET = "dot-client-secret-5d1f8a2c7e"
STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class DotUser:
    """One Django user of the test server."""

    username: str
    password: str = field(repr=False)
    active: bool = True


DOT_USERS = (
    DotUser("alice", "Alice#Pass-2024"),
    DotUser("bob@example.org", "Bob#Pass-2024"),
    DotUser("zoë", "Zoë#Pässwört-ü"),
    DotUser("inactive", "Inactive#Pass-2024", active=False),
    DotUser("slowpoke", "Slow#Pass-2024"),  # the server sleeps 3 s for usernames `slow*`
)


class DotServer:
    """Starts and stops one django-oauth-toolkit server process."""

    def __init__(
        self, users: tuple[DotUser, ...] = DOT_USERS, *, copy_of: DotServer | None = None
    ) -> None:
        self.users = copy_of.users if copy_of is not None else users
        self.data_dir = Path(tempfile.mkdtemp(prefix="dot-server-"))
        if copy_of is not None:
            # Another server's migrated, seeded database (SQLite's online backup, safe while
            # that server writes): this one starts in about a second.
            source = sqlite3.connect(copy_of.data_dir / "db.sqlite3")
            target = sqlite3.connect(self.data_dir / "db.sqlite3")
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
        self.log_file = self.data_dir / "server.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return f"http://127.0.0.1:{self.port}/o/token/"

    def start(self) -> None:
        """Start the server and wait until it accepts connections (or say why it did not)."""
        spec = {
            "data_dir": str(self.data_dir),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "users": [
                {"username": u.username, "password": u.password, "active": u.active}
                for u in self.users
            ],
        }
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(PROJECT / "serve.py")],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=PROJECT,
            )
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(spec).encode())
        self._process.stdin.close()
        port_file = self.data_dir / "port"
        deadline = time.monotonic() + STARTUP_SECONDS
        while not port_file.exists():
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with {code}" if code is not None else "did not start in time"
                raise RuntimeError(
                    f"the django-oauth-toolkit test server {why} (needs the dev extras: "
                    f"pip install -e '.[dev]'); its log:\n{self.log()[-4000:]}"
                )
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def log(self) -> str:
        """What the server printed (request lines and errors; never request bodies)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the process (its port then refuses connections)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def cleanup(self) -> None:
        """Stop and remove the temp directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
