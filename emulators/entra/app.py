"""The emulator as an aiohttp application: `EntraEmulator`, routes, and running it.

`EntraEmulator` joins the endpoint families over one `EmulatorState`; `create_app` routes them
(Graph's functions included) behind a middleware that answers an emulator bug with a bare 500
and never logs request data. `start_emulator` serves it in the running loop (port 0 picks a
free port), `serve` and `main` run it stand-alone until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Self

from aiohttp import web

from emulators.entra import graph
from emulators.entra.control import ControlEndpoints
from emulators.entra.directory import DirectoryError, EmulatedDirectory, load_directory
from emulators.entra.discovery import DiscoveryEndpoints
from emulators.entra.realm import RealmEndpoints
from emulators.entra.state import DEFAULT_ADFS_BASE, DEFAULT_ENTRA_BASE
from emulators.entra.token import TokenEndpoints
from emulators.entra.wstrust import AdfsEndpoints

# The package's name, as when the emulator was one module: its log lines keep their logger name.
logger = logging.getLogger("emulators.entra")


class EntraEmulator(
    DiscoveryEndpoints, RealmEndpoints, TokenEndpoints, AdfsEndpoints, ControlEndpoints
):
    """State, counters and request handlers of the emulated Entra ID and AD FS.

    The state and its counters are `EmulatorState`'s; each base class adds one endpoint
    family's handlers, and graph.py's handlers take the emulator as their first argument.
    """


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _contain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn an unexpected handler error into a bare 500 without logging request data."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - an emulator bug must not echo request bodies
        logger.error(
            "entra emulator: %s on %s %s", type(exc).__name__, request.method, request.path
        )
        return web.json_response(
            {"error": "server_error", "error_description": "emulator internal error"}, status=500
        )


EMULATOR_KEY: Final = web.AppKey("entra_emulator", EntraEmulator)


def create_app(emulator: EntraEmulator) -> web.Application:
    """Build the aiohttp application serving ``emulator``."""
    app = web.Application(middlewares=[_contain_errors])
    app[EMULATOR_KEY] = emulator
    router = app.router
    router.add_get("/common/discovery/instance", emulator.handle_instance_discovery)
    router.add_get("/common/userrealm/{username}", emulator.handle_user_realm)
    router.add_get(
        "/{tenant}/v2.0/.well-known/openid-configuration", emulator.handle_openid_configuration
    )
    router.add_post("/{tenant}/oauth2/v2.0/token", emulator.handle_token)
    router.add_post("/adfs/services/trust/2005/usernamemixed", emulator.handle_adfs)
    router.add_post("/adfs/services/trust/13/usernamemixed", emulator.handle_adfs)
    router.add_get("/v1.0/users", functools.partial(graph.handle_users, emulator))
    router.add_get("/v1.0/users/{user_id}", functools.partial(graph.handle_user, emulator))
    members = functools.partial(graph.handle_group_members, emulator)
    router.add_get("/v1.0/groups/{group_id}/members", members)
    router.add_get("/v1.0/groups/{group_id}/members/microsoft.graph.user", members)
    router.add_get("/_emulator/stats", emulator.handle_stats)
    router.add_post("/_emulator/reset", emulator.handle_reset)
    router.add_get("/_emulator/fault", emulator.handle_get_fault)
    router.add_put("/_emulator/fault", emulator.handle_put_fault)
    return app


@dataclass(slots=True)
class RunningEmulator:
    """A started emulator: its base URL, port and state; ``await close()`` when done."""

    url: str
    port: int
    emulator: EntraEmulator
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop listening and cancel pending requests."""
        await self.runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_emulator(
    directory: EmulatedDirectory,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: int = 0,
    *,
    entra_base: str = DEFAULT_ENTRA_BASE,
    adfs_base: str = DEFAULT_ADFS_BASE,
    wstrust_version: Literal["2005", "13"] = "2005",
    access_log: bool = False,
    shutdown_timeout: float = 1.0,
) -> RunningEmulator:
    """Serve a new emulator on ``host:port`` (port 0 picks a free one) in the running loop."""
    emulator = EntraEmulator(
        directory,
        entra_base=entra_base,
        adfs_base=adfs_base,
        latency_ms=latency_ms,
        wstrust_version=wstrust_version,
    )
    runner = web.AppRunner(
        create_app(emulator),
        # The access log prints request lines (realm paths carry usernames): opt-in only.
        access_log=logger if access_log else None,
        # A client that gives up (timeout) must not leave a "hang" handler sleeping.
        handler_cancellation=True,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        real_port = int(bound[1])
    except BaseException:
        await runner.cleanup()
        raise
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - mapping only
    if ":" in url_host:
        url_host = f"[{url_host}]"
    return RunningEmulator(
        url=f"http://{url_host}:{real_port}", port=real_port, emulator=emulator, runner=runner
    )


async def _serve_until_stopped(
    directory: EmulatedDirectory, host: str, port: int, latency_ms: int
) -> None:
    """Run until SIGINT/SIGTERM."""
    running = await start_emulator(directory, host, port, latency_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        print(
            f"Entra emulator listening on {running.url} tenant={directory.tenant_id} "
            f"client_id={directory.client_id} users={len(directory.users)}",
            flush=True,
        )
        await stop.wait()
    finally:
        await running.close()


def serve(users_path: str, host: str, port: int, latency_ms: int) -> None:
    """Load ``users_path`` and serve the emulator until interrupted (blocking)."""
    directory = load_directory(users_path)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(directory, host, port, latency_ms))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m emulators.entra --users FILE``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m emulators.entra", description="Run the Entra ID emulator."
    )
    demo_users = str(Path(__file__).parent.with_name("demo_users.yaml"))
    parser.add_argument("--users", default=demo_users, help="users YAML file")
    parser.add_argument("--host", default="127.0.0.1")
    # 8400, as the former `gateway emulate-entra` had it: a fixed port a config can name.
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        serve(args.users, args.host, args.port, args.latency_ms)
    except DirectoryError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0
