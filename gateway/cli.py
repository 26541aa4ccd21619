"""Command line: `serve`, `reload`, `check-config`, `verify`, `emulate-entra` (python -m gateway)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.logs import configure_logging
from gateway.runtime import reload_on_sighup
from plugins.base import Result
from plugins.registry import source_class

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Okta password-import gateway (Entra ID and other sources)."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the hook server")
    serve.add_argument("-c", "--config", required=True, help="config.yaml")
    serve.set_defaults(run=_serve)

    reload = commands.add_parser(
        "reload",
        help="make a running gateway re-read its config (admin listener, else SIGHUP to pid_file)",
    )
    reload.add_argument("-c", "--config", required=True, help="the running gateway's config.yaml")
    reload.set_defaults(run=_reload)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(run=_check_config)

    verify = commands.add_parser(
        "verify", help="check one user's password against one source (prompts for the password)"
    )
    verify.add_argument("-c", "--config", required=True)
    verify.add_argument("--source", required=True, help="source name from the config")
    verify.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (for scripts)"
    )
    verify.add_argument("username")
    verify.set_defaults(run=_verify)

    emulate = commands.add_parser("emulate-entra", help="run the bundled Entra ID emulator")
    emulate.add_argument("--users", required=True, help="users YAML file")
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--port", type=int, default=8400)
    emulate.add_argument("--latency-ms", type=int, default=0)
    emulate.set_defaults(run=_emulate_entra)

    emulate_okta = commands.add_parser("emulate-okta", help="run the bundled Okta API emulator")
    emulate_okta.add_argument("--users", help="org file (YAML): users, groups, API tokens")
    emulate_okta.add_argument("--host", default="127.0.0.1")
    emulate_okta.add_argument("--port", type=int, default=8500)
    emulate_okta.set_defaults(run=_emulate_okta)
    return parser


def _emulate_okta(args: argparse.Namespace) -> int:
    """Serve the Okta API emulator until interrupted; exit 2 on a bad org file."""
    from gateway.emulators.okta import OrgFileError, serve

    try:
        serve(args.users, args.host, args.port)
    except OrgFileError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


def _load_or_report(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as err:
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        for line in err.lines():
            print(f"  {line}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 1
    print(f"{args.config}: OK ({len(config.sources)} source(s), {len(config.routes)} route(s))")
    return 0


def _serve(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 1
    configure_logging(config.logging.level, config.logging.format, config.logging.library_debug)
    logger.info(
        "config loaded",
        extra={
            "config": args.config,
            "sources": {s.name: s.type for s in config.sources},
            "routes": len(config.routes),
            "cache": config.cache.backend,
            "budget_seconds": config.budget_seconds,
            "hook_path": config.okta.hook_path,
        },
    )
    ssl_context = None
    if config.server.tls is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.server.tls.cert_file, config.server.tls.key_file)
    app = create_app(config, config_path=args.config)
    app.on_startup.append(_tune_garbage_collector)
    app.on_startup.append(reload_on_sighup)
    with _pid_file(config.server.pid_file):
        web.run_app(
            app,
            loop=_new_event_loop(),
            host=config.server.host,
            port=config.server.port,
            ssl_context=ssl_context,
            shutdown_timeout=config.server.shutdown_grace_seconds,
            access_log=None,  # the hook_decision line is the access log; paths say nothing
            print=None,
        )
    return 0


@contextlib.contextmanager
def _pid_file(path: str | None) -> Iterator[None]:
    """Write this process's pid for `gateway reload` while serving; remove it at exit."""
    if path is None:
        yield
        return
    Path(path).write_text(f"{os.getpid()}\n", encoding="ascii")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            Path(path).unlink()


def _reload(args: argparse.Namespace) -> int:
    """Ask the running gateway to reload: POST /admin/reload, else SIGHUP to the pid file's pid.

    The file is validated here first, so a typo is reported before anything is sent.
    """
    config = _load_or_report(args.config)
    if config is None:
        return 1
    if config.admin is not None:
        return asyncio.run(_post_reload(config))
    if config.server.pid_file is None:
        print(
            "cannot reach the gateway: configure admin: {port, auth} or server.pid_file",
            file=sys.stderr,
        )
        return 1
    try:
        pid = int(Path(config.server.pid_file).read_text(encoding="ascii").strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as err:
        print(f"cannot signal the gateway via {config.server.pid_file}: {err}", file=sys.stderr)
        return 1
    print(f"sent SIGHUP to pid {pid}; the gateway logs the result (config reloaded / failed)")
    return 0


async def _post_reload(config: GatewayConfig) -> int:
    admin = config.admin
    assert admin is not None
    host = "127.0.0.1" if admin.host in ("0.0.0.0", "::", "") else admin.host  # noqa: S104
    url = f"http://{host}:{admin.port}/admin/reload"
    headers = {admin.auth.header: admin.auth.secrets[0].get_secret_value()}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
            http.post(url, headers=headers) as response,
        ):
            if response.status == 401:
                print("the admin listener refused the admin secret", file=sys.stderr)
                return 1
            answer = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        print(f"cannot reach the admin listener at {url}: {type(err).__name__}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0 if answer.get("result") == "success" else 1


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """Make the serving loop: uvloop where available (about a third less CPU per hook call)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _tune_garbage_collector(app: web.Application) -> None:
    """Keep collector pauses out of the 3 s budget's tail.

    Start-up objects (msal apps, config, imported modules) never die: freezing them keeps full
    collections from walking them again, and a larger first generation makes collections rarer
    for the short-lived objects each request creates.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _verify(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 1
    configure_logging("warning", "text")
    matches = [s for s in config.sources if s.name == args.source]
    if not matches:
        print(f"no source named {args.source!r}", file=sys.stderr)
        return 1
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.username}: ")
    source = source_class(matches[0].type)(matches[0])

    async def run() -> int:
        await source.start()
        try:
            async with asyncio.timeout(config.budget_seconds * 4):
                verdict = await source.verify(args.username, password)
        except TimeoutError:
            print("unavailable (timeout)")
            return 3
        finally:
            await source.close()
        print(f"{verdict.result.value} ({verdict.reason})")
        return {Result.VERIFIED: 0, Result.DENIED: 2}.get(verdict.result, 3)

    return asyncio.run(run())


def _emulate_entra(args: argparse.Namespace) -> int:
    from gateway.emulators.entra import serve

    serve(args.users, args.host, args.port, args.latency_ms)
    return 0
