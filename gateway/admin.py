"""The admin listener: a second port, off unless `admin:` is configured, never the hook port.

It serves what operators and their tools call (`POST /admin/reload`, the migration progress
page of gateway/progress_page.py), behind its own secret, compared as the hook's is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.auth import header_matches
from gateway.connections import serve_guarded
from gateway.runtime import RUNTIME, Runtime
from gateway.serve_ledger import serve_ledger_of

if TYPE_CHECKING:
    from gateway.progress_page import LedgerHandle

logger = logging.getLogger(__name__)

_ADMIN_RUNTIME = web.AppKey("admin_runtime", Runtime)


def create_admin_app(runtime: Runtime, serve_ledger: LedgerHandle | None = None) -> web.Application:
    """The admin application; every route needs the admin secret.

    `serve_ledger` is the gateway's ledger handle (None when it does not use the ledger).
    """
    app = web.Application(middlewares=[_require_admin_secret], client_max_size=4096)
    app[_ADMIN_RUNTIME] = runtime
    app.router.add_post("/admin/reload", handle_reload)
    # Jinja2 and the report load with the admin listener only, never for a plain hook gateway.
    from gateway.progress_page import add_progress_routes

    add_progress_routes(app, serve_ledger, lambda: runtime.current.config)
    return app


@web.middleware
async def _require_admin_secret(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """401 with no detail unless the admin header matches (settings of the running config)."""
    admin = request.app[_ADMIN_RUNTIME].current.config.admin
    if admin is None or not header_matches(request, admin.auth):
        return web.json_response({"error": {"errorSummary": "unauthorized"}}, status=401)
    return await handler(request)


async def handle_reload(request: web.Request) -> web.Response:
    """Reload the config file; 200 with what changed, or 422 with every problem by path."""
    result = await request.app[_ADMIN_RUNTIME].reload()
    return web.json_response(result.as_json(), status=200 if result.ok else 422)


async def admin_listener(app: web.Application) -> AsyncIterator[None]:
    """Run the admin app on `admin.host:admin.port` for as long as the gateway runs."""
    runtime = app[RUNTIME]
    admin = runtime.current.config.admin
    assert admin is not None
    runner = web.AppRunner(create_admin_app(runtime, serve_ledger_of(app)), access_log=None)
    await runner.setup()
    # The admin listener's connections are capped and timed like the hook port's.
    server = runtime.current.config.server
    try:
        await serve_guarded(
            runner,
            admin.host,
            admin.port,
            listener="admin",
            settings=server,
            metrics=runtime.metrics,
        )
    except BaseException:
        await runner.cleanup()
        raise
    logger.info("admin listener started", extra={"host": admin.host, "port": admin.port})
    try:
        yield
    finally:
        await runner.cleanup()
