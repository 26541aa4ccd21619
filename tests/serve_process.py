"""`gateway serve` as a real subprocess: started from a config, stopped by a signal, logs kept."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).parent.parent


class ServeProcess:
    """One `python -m gateway serve -c CONFIG`, its JSON log lines read back after it stops."""

    def __init__(self, config_path: Path, url: str, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.url = url  # e.g. http://127.0.0.1:PORT, where the test reaches it
        self.env = env or {}
        self.log_path = config_path.with_suffix(".log")
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the process and wait until /readyz answers 200 (30 s on a loaded machine)."""
        with self.log_path.open("wb") as log:  # a file, not a pipe: nothing can block on it
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "-c", str(self.config_path),
                cwd=REPO, env={**os.environ, **self.env},
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                if self.process.returncode is not None:
                    raise AssertionError(f"gateway exited at start-up:\n{self.output()}")
                try:
                    async with http.get(self.url + "/readyz", ssl=False) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("gateway process did not become ready")

    def send(self, signum: int) -> None:
        """Send a signal to the process."""
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, limit_seconds: float = 30) -> int:
        """Its exit status."""
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), limit_seconds)

    async def stop(self) -> None:
        """SIGKILL if still running (test clean-up)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    def output(self) -> str:
        """Everything it wrote to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log lines, parsed (other lines are skipped)."""
        found = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    def lines(self, msg: str) -> list[dict[str, Any]]:
        """The JSON log lines whose message is `msg`."""
        return [r for r in self.records() if r.get("msg") == msg]
