"""The Okta emulator's aiohttp application, and how to run it (in a test's loop or as a process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from aiohttp import web

from emulators.okta import (
    auth_servers,
    authn,
    control,
    event_control,
    event_hooks,
    groups,
    inline_hooks,
    lifecycle,
    logs,
    oauth,
    signin,
    users,
)
from emulators.okta.directory import DEFAULT_API_TOKEN, OktaOrg, OrgFileError, load_org
from emulators.okta.gate import api_gate, contain_errors
from emulators.okta.state import EMULATOR_KEY, OktaEmulator

__all__ = ["RunningOktaEmulator", "create_app", "main", "serve", "start_okta_emulator"]

logger = logging.getLogger(__name__)


async def _event_delivery(app: web.Application) -> AsyncIterator[None]:
    """Stop event hook deliveries and close their client session when the app stops."""
    yield
    await app[EMULATOR_KEY].delivery.close()


def create_app(emulator: OktaEmulator) -> web.Application:
    """Build the aiohttp application serving ``emulator``."""
    app = web.Application(middlewares=[contain_errors, api_gate])
    app[EMULATOR_KEY] = emulator
    app.cleanup_ctx.append(_event_delivery)
    add = app.router.add_route
    add("POST", "/oauth2/v1/token", oauth.handle_token)
    custom_server = "/oauth2/{server_id}"  # custom authorization servers: outside api_gate
    add(
        "GET",
        f"{custom_server}/.well-known/oauth-authorization-server",
        auth_servers.handle_metadata,
    )
    add("GET", f"{custom_server}/v1/keys", auth_servers.handle_keys)
    add("POST", f"{custom_server}/v1/token", auth_servers.handle_token)
    add("POST", "/api/v1/authn", authn.handle_authn)
    add("GET", "/api/v1/users", users.list_users)
    add("POST", "/api/v1/users", users.create_user)
    add("GET", "/api/v1/users/{id}", users.get_user)
    add("POST", "/api/v1/users/{id}", users.update_user)
    add("PUT", "/api/v1/users/{id}", users.replace_user)
    add("DELETE", "/api/v1/users/{id}", users.delete_user)
    add("POST", "/api/v1/users/{id}/lifecycle/activate", lifecycle.activate_user)
    add("POST", "/api/v1/users/{id}/lifecycle/deactivate", lifecycle.deactivate_user)
    add("POST", "/api/v1/users/{id}/lifecycle/reset_password", lifecycle.reset_password)
    add("POST", "/api/v1/users/{id}/lifecycle/expire_password", lifecycle.expire_password)
    add(
        "POST",
        "/api/v1/users/{id}/lifecycle/expire_password_with_temp_password",
        lifecycle.expire_password_with_temp_password,
    )
    add("GET", "/api/v1/logs", logs.list_logs)
    add("GET", "/api/v1/users/{id}/groups", groups.list_user_groups)
    add("GET", "/api/v1/groups", groups.list_groups)
    add("POST", "/api/v1/groups", groups.create_group)
    add("GET", "/api/v1/groups/{group_id}", groups.get_group)
    add("GET", "/api/v1/groups/{group_id}/users", groups.list_group_users)
    add("PUT", "/api/v1/groups/{group_id}/users/{user_id}", groups.add_group_member)
    add("GET", "/api/v1/inlineHooks", inline_hooks.list_inline_hooks)
    add("POST", "/api/v1/inlineHooks", inline_hooks.create_inline_hook)
    add("GET", "/api/v1/inlineHooks/{hook_id}", inline_hooks.get_inline_hook)
    add("POST", "/api/v1/inlineHooks/{hook_id}", inline_hooks.update_inline_hook)
    add("PUT", "/api/v1/inlineHooks/{hook_id}", inline_hooks.replace_inline_hook)
    add("DELETE", "/api/v1/inlineHooks/{hook_id}", inline_hooks.delete_inline_hook)
    hook_lifecycle = "/api/v1/inlineHooks/{hook_id}/lifecycle"
    add("POST", f"{hook_lifecycle}/activate", inline_hooks.activate_inline_hook)
    add("POST", f"{hook_lifecycle}/deactivate", inline_hooks.deactivate_inline_hook)
    add("GET", "/api/v1/eventHooks", event_hooks.list_event_hooks)
    add("POST", "/api/v1/eventHooks", event_hooks.create_event_hook)
    add("GET", "/api/v1/eventHooks/{hook_id}", event_hooks.get_event_hook)
    add("PUT", "/api/v1/eventHooks/{hook_id}", event_hooks.replace_event_hook)
    add("DELETE", "/api/v1/eventHooks/{hook_id}", event_hooks.delete_event_hook)
    event_lifecycle = "/api/v1/eventHooks/{hook_id}/lifecycle"
    add("POST", f"{event_lifecycle}/activate", event_hooks.activate_event_hook)
    add("POST", f"{event_lifecycle}/deactivate", event_hooks.deactivate_event_hook)
    add("POST", f"{event_lifecycle}/verify", event_hooks.verify_event_hook)
    add("GET", "/_emulator/stats", control.handle_stats)
    add("POST", "/_emulator/reset", control.handle_reset)
    add("GET", "/_emulator/fault", control.handle_get_fault)
    add("PUT", "/_emulator/fault", control.handle_put_fault)
    add("GET", "/_emulator/limits", control.handle_get_limits)
    add("PUT", "/_emulator/limits", control.handle_put_limits)
    add("GET", "/_emulator/profile-updates", control.handle_profile_updates)
    add("POST", "/_emulator/users/{login}/sign-in", signin.handle_sign_in)
    add("PUT", "/_emulator/authn", authn.handle_put_settings)
    add("PUT", "/_emulator/authn/users/{login}", authn.handle_put_user)
    add("POST", "/_emulator/events/flush", event_control.handle_flush)
    add("POST", "/_emulator/events/pause", event_control.handle_pause)
    add("POST", "/_emulator/events/resume", event_control.handle_resume)
    add("GET", "/_emulator/events/settings", event_control.handle_get_settings)
    add("PUT", "/_emulator/events/settings", event_control.handle_put_settings)
    add("GET", "/_emulator/events/drop", event_control.handle_get_drop)
    add("PUT", "/_emulator/events/drop", event_control.handle_put_drop)
    add("GET", "/_emulator/events/deliveries", event_control.handle_deliveries)
    add("POST", "/_emulator/apps/{app_id}/users/{user_id}", event_control.handle_assign_app)
    return app


@dataclass(slots=True)
class RunningOktaEmulator:
    """A started emulator: its base URL (the org URL), port and state; ``await close()`` when done."""

    url: str
    port: int
    emulator: OktaEmulator
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop listening and cancel pending requests."""
        await self.runner.cleanup()

    async def __aenter__(self) -> Self:
        """Use as ``async with await start_okta_emulator(...) as running``."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close on leaving the block."""
        await self.close()


async def start_okta_emulator(
    org: OktaOrg | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Callable[[], float] = time.time,
    seed: int | None = None,
    access_log: bool = False,
    shutdown_timeout: float = 1.0,
) -> RunningOktaEmulator:
    """Serve a new emulator on ``host:port`` (port 0 picks a free one) in the running loop.

    ``seed`` makes event uuids and delivery ids reproducible (default: random).
    """
    emulator = OktaEmulator(org if org is not None else OktaOrg(), clock=clock, seed=seed)
    runner = web.AppRunner(
        create_app(emulator),
        # Request lines carry logins (GET /api/v1/users/{login}): the access log is opt-in.
        access_log=logger if access_log else None,
        # A client that gives up must not leave a "hang" handler sleeping.
        handler_cancellation=True,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        real_port = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - mapping only
    if ":" in url_host:
        url_host = f"[{url_host}]"
    url = f"http://{url_host}:{real_port}"
    emulator.org_url = url  # the ``source`` of event hook deliveries
    return RunningOktaEmulator(url=url, port=real_port, emulator=emulator, runner=runner)


async def _serve_until_stopped(org: OktaOrg, host: str, port: int, seed: int | None = None) -> None:
    """Run until SIGINT/SIGTERM."""
    running = await start_okta_emulator(org, host, port, seed=seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    # The built-in demo token is public (it is in the source); a token from a file is not shown.
    tokens = DEFAULT_API_TOKEN if org.api_tokens == [DEFAULT_API_TOKEN] else len(org.api_tokens)
    try:
        print(
            f"Okta emulator listening on {running.url} users={len(running.emulator.users)} "
            f"groups={len(running.emulator.groups)} api_tokens={tokens} "
            f"oauth_clients={len(org.oauth_clients)}",
            flush=True,
        )
        await stop.wait()
    finally:
        await running.close()


def serve(
    users_path: str | Path | None,
    host: str = "127.0.0.1",
    port: int = 8500,
    *,
    seed: int | None = None,
) -> None:
    """Load the org file (or start empty) and serve the emulator until interrupted (blocking)."""
    org = load_org(users_path) if users_path else OktaOrg()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(org, host, port, seed))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m emulators.okta [--users FILE]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m emulators.okta", description="Run the Okta Management API emulator."
    )
    parser.add_argument("--users", default=None, help="org file (YAML): users, groups, API tokens")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--seed", type=int, default=None, help="reproducible event uuids")
    args = parser.parse_args(argv)
    try:
        serve(args.users, args.host, args.port, seed=args.seed)
    except OrgFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through `python -m emulators.okta`
    sys.exit(main())
