"""Child processes (emulators, gateway) that never outlive the benchmark, and /proc readings."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from bench.emulator import URL_PREFIX
from bench.hook_server import SERVER_URL_PREFIX

ROOT = Path(__file__).resolve().parent.parent  # children run from the checkout, like `make`
_PR_SET_PDEATHSIG = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")
# Process-group ids of every child still alive; `kill_all` empties it (also called at exit).
_LIVE: set[int] = set()


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM if the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _gone(pid: int) -> bool:
    """True when the process no longer runs (exited, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


def kill_all(grace: float = 3.0) -> None:
    """Last resort at exit: SIGTERM every child group still alive, SIGKILL it after `grace`."""
    for pgid in list(_LIVE):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(_gone(pgid) for pgid in _LIVE):
        time.sleep(0.05)
    for pgid in list(_LIVE):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        _LIVE.discard(pgid)


@dataclass
class Child:
    """One started child: its pid (also its process-group id) and where its stderr went."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        """Process id, which is also the process-group id (each child leads its own group)."""
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the child wrote to stderr (gateway/emulator logs never hold passwords)."""
        self.log_file.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after `grace`, and close its log."""
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                await self.process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # anything the child itself started
            _LIVE.discard(self.pid)  # only once it is known dead; else kill_all still sees it
        finally:
            self.log_file.close()


async def spawn(name: str, args: list[str], workdir: Path, *, stdout: int | None = None) -> Child:
    """Start `python <args>` in its own session (own process group), stderr to a log file."""
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("wb")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout if stdout is not None else asyncio.subprocess.DEVNULL,
        stderr=log_file,
        env=env,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    _LIVE.add(process.pid)
    return Child(name, process, log_path, log_file)


async def _await_ready_line(child: Child, prefix: str) -> str:
    """What follows `prefix` on the first stdout line of `child` that starts with it."""
    try:
        assert child.process.stdout is not None
        async with asyncio.timeout(120):
            while True:
                line = await child.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"{child.name} exited before serving:\n{child.log_tail()}")
                text = line.decode().strip()
                if text.startswith(prefix):
                    return text.removeprefix(prefix)
    except BaseException:
        await child.stop()
        raise


async def start_emulator_process(
    name: str, workdir: Path, *, domain: str, users: int, mfa_users: int, latency_ms: int
) -> tuple[Child, str]:
    """Start `bench.emulator` in its own process and return it with the URL it printed."""
    args = ["-m", "bench.emulator", "--domain", domain, "--users", str(users)]
    args += ["--mfa-users", str(mfa_users), "--latency-ms", str(latency_ms)]
    child = await spawn(name, args, workdir, stdout=asyncio.subprocess.PIPE)
    return child, await _await_ready_line(child, URL_PREFIX)


async def start_reference_process(
    module: str, workdir: Path, authority: str, port: int
) -> tuple[Child, str]:
    """Start a reference hook server (`bench.peer`, `bench.floor`) and return it with its URL."""
    name = module.rpartition(".")[2]
    args = ["-m", module, "--authority", authority, "--port", str(port)]
    child = await spawn(name, args, workdir, stdout=asyncio.subprocess.PIPE)
    return child, await _await_ready_line(child, SERVER_URL_PREFIX)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_gateway_process(workdir: Path, config_path: Path, base_url: str) -> Child:
    """Start `python -m gateway serve -c <config>` and wait until /readyz answers 200."""
    child = await spawn("gateway", ["-m", "gateway", "serve", "-c", str(config_path)], workdir)
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while True:
                if child.process.returncode is not None:
                    raise RuntimeError(f"gateway exited early:\n{child.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(base_url + "/readyz") as response:
                        if response.status == 200:
                            return child
                await asyncio.sleep(0.1)
    except BaseException:
        await child.stop()
        raise


def cpu_seconds(pid: int) -> float:
    """CPU seconds (utime + stime) of a process (all its threads), in seconds, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def own_cpu_seconds() -> float:
    """CPU seconds used by this (load generator) process so far."""
    times = os.times()
    return times.user + times.system


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of a process in MB, from /proc/<pid>/status."""
    values = {"VmHWM": 0.0, "VmRSS": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0]) / 1024
    return values["VmHWM"], values["VmRSS"]


def machine() -> dict[str, object]:
    """nproc, CPU model, Python version and load average (others' load makes figures noisy)."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "loadavg_at_start": os.getloadavg(),
    }
