"""Command line: `serve`, `reload`, `check-config`, `healthcheck`, `verify`, `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import http.client
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import aiohttp
from aiohttp import hdrs, web

from gateway.app import METRICS, create_app
from gateway.config import (
    ConfigError,
    GatewayConfig,
    ServerConfig,
    config_warnings,
    load_config,
    load_server_config,
)
from gateway.connections import serve_guarded
from gateway.logs import configure_logging
from gateway.migrate.cli import add_migrate_parser
from gateway.runtime import reload_on_sighup
from gateway.upstream_body import UpstreamBodyError, capped_session, read_capped
from plugins.base import Result
from plugins.registry import source_class

logger = logging.getLogger(__name__)

# The admin listener's reload answer is a small JSON report.
RELOAD_ANSWER_MAX_BYTES = 1024 * 1024


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

    health = commands.add_parser(
        "healthcheck",
        help="probe the gateway this config describes (GET /healthz); exit 0 healthy, 1 not",
    )
    health.add_argument("-c", "--config", required=True)
    health.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    health.set_defaults(run=_healthcheck)

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

    add_migrate_parser(commands)
    return parser


def load_or_report(path: str) -> GatewayConfig | None:
    """The config, or None after printing every problem by path (check-config, serve, migrate)."""
    try:
        return load_config(path)
    except ConfigError as err:
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        for line in err.lines():
            print(f"  {line}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    print(f"{args.config}: OK ({len(config.sources)} source(s), {len(config.routes)} route(s))")
    for path, message in config_warnings(config):
        print(f"  warning: {path}: {message}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
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
        return _run_until_stopped(app, config, ssl_context)


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
    config = load_or_report(args.config)
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
            capped_session(timeout=aiohttp.ClientTimeout(total=60)) as http,
            http.post(url, headers=headers) as response,
        ):
            if response.status == 401:
                print("the admin listener refused the admin secret", file=sys.stderr)
                return 1
            # Capped like every answer: the listener at that port need not be ours.
            answer = json.loads(await read_capped(response, RELOAD_ANSWER_MAX_BYTES))
            if not isinstance(answer, dict):
                raise ValueError("not a JSON object")
    except (aiohttp.ClientError, TimeoutError, ValueError, UpstreamBodyError) as err:
        print(f"cannot reach the admin listener at {url}: {type(err).__name__}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0 if answer.get("result") == "success" else 1


def _run_until_stopped(
    app: web.Application, config: GatewayConfig, ssl_context: ssl.SSLContext | None
) -> int:
    """Serve on the configured address until SIGTERM or SIGINT; exit status 0 after a drain."""
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        return runner.run(_serve_until_signalled(app, config, ssl_context))


async def _serve_until_signalled(
    app: web.Application, config: GatewayConfig, ssl_context: ssl.SSLContext | None
) -> int:
    """Start the app and its listener, wait for a stop signal, then drain (see `_Drain`)."""
    server = config.server
    drain = _Drain()
    drain.attach(app)
    loop = asyncio.get_running_loop()
    # Signals: SIGTERM (docker stop, Kubernetes) and SIGINT (Ctrl-C) drain and stop.
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, drain.begin, signum)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,  # the hook_decision line is the access log; paths say nothing
        keepalive_timeout=75.0,
        shutdown_timeout=server.shutdown_grace_seconds,
    )
    try:
        await runner.setup()
        if not drain.stopping:  # a signal during start-up stops before listening
            try:
                await serve_guarded(
                    runner,
                    server.host,
                    server.port,
                    listener="hook",
                    settings=server,
                    metrics=app[METRICS],
                    ssl_context=ssl_context,
                )
            except OSError as err:
                logger.error(
                    "cannot listen",
                    extra={"host": server.host, "port": server.port, "error": err.strerror},
                )
                return 1
            logger.info(
                "listening",
                extra={
                    "scheme": "https" if ssl_context is not None else "http",
                    "host": server.host,
                    "port": server.port,
                    "hook_path": config.okta.hook_path,
                },
            )
        await drain.requested.wait()
    finally:
        # Stops accepting, closes idle connections, waits up to shutdown_grace_seconds for
        # running handlers (then cancels them), and only then closes sources and shared state.
        await runner.cleanup()
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    drain.log_stopped()
    return 0


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Drain:
    """A stop signal: answer what is in flight, with `Connection: close`, and count it.

    aiohttp's shutdown closes the listener and idle connections and waits for running handlers,
    but the answers it lets through still look reusable: a kept-alive client (Okta, a load
    balancer) then sends its next request into a connection that is being closed and gets an
    EOF. Every response started after the signal says `Connection: close`, so the client opens
    a new connection instead: refused here, so it goes to another replica.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.signal_name = ""
        self.began = 0.0
        self.in_flight = 0
        self.drained = 0  # in flight at the signal, answered afterwards
        self.abandoned = 0  # still running when the grace period ended, cancelled

    @property
    def stopping(self) -> bool:
        """True once a stop signal has arrived."""
        return self.requested.is_set()

    def begin(self, signum: int) -> None:
        """Signal handler: start stopping (a second signal changes nothing)."""
        if not self.stopping:
            self.signal_name = signal.Signals(signum).name
            self.began = time.monotonic()
            self.requested.set()

    def attach(self, app: web.Application) -> None:
        """Count the app's requests and mark its responses during a drain."""

        @web.middleware
        async def count(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            self.in_flight += 1
            cancelled = False
            try:
                return await handler(request)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                self.in_flight -= 1
                if self.stopping:
                    if cancelled:
                        self.abandoned += 1
                    else:
                        self.drained += 1

        app.middlewares.append(count)
        app.on_response_prepare.append(self._close_connection)

    async def _close_connection(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.stopping:
            response.force_close()  # aiohttp closes the connection after this response
            response.headers[hdrs.CONNECTION] = "close"  # its headers are computed already

    def log_stopped(self) -> None:
        """The one line that says the process stopped, and what the drain did."""
        logger.info(
            "gateway stopped",
            extra={
                "signal": self.signal_name,
                "drained": self.drained,
                "abandoned": self.abandoned,
                "seconds": round(time.monotonic() - self.began, 3) if self.began else 0.0,
            },
        )


def probe_target(server: ServerConfig) -> tuple[str, str, int]:
    """Scheme, host and port at which this machine reaches a gateway listening per `server`.

    A wildcard listen address (`0.0.0.0`, `::`) is reached on the matching loopback address.
    """
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(  # noqa: S104
        server.host, server.host
    )
    return ("https" if server.tls is not None else "http"), host, server.port


def _healthcheck(args: argparse.Namespace) -> int:
    """GET /healthz on the gateway the config describes; for container health checks."""
    try:
        server = load_server_config(args.config)
    except ConfigError as err:
        print(f"unhealthy: {args.config}: {err.lines()[0]}", file=sys.stderr)
        return 1
    scheme, host, port = probe_target(server)
    url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    connection: http.client.HTTPConnection
    try:
        if server.tls is not None:
            # Trust exactly the certificate the gateway is configured to serve (often
            # self-signed), whatever name it carries: the probe dials an address, not that name.
            context = ssl.create_default_context(cafile=server.tls.cert_file)
            context.check_hostname = False
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf as its own anchor
            context.verify_flags &= ~ssl.VERIFY_X509_STRICT
            connection = http.client.HTTPSConnection(
                host, port, timeout=args.timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=args.timeout)
        try:
            connection.request("GET", "/healthz", headers={"Connection": "close"})
            status = connection.getresponse().status
        finally:
            connection.close()
    except (OSError, http.client.HTTPException) as err:  # ssl.SSLError and timeouts are OSErrors
        print(f"unhealthy: {url}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


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
    config = load_or_report(args.config)
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
    if password == "":
        # Refused before any I/O, as the hook does: some directories take an empty password as
        # an anonymous bind, which "succeeds" for anyone.
        print("denied (empty_password)")
        return 2
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
