"""What the two reference hook servers share: the Okta reply, the verdict rule, serving on a port.

The references (`bench.peer`, `bench.floor`) answer the same hook requests as the gateway, with
the same verdicts for the benchmark's users, so the load generator can check all three alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.okta import reply_body

SERVER_URL_PREFIX = "BENCH_SERVER_URL "
HOOK_PATH = "/okta/password-import"
# What the gateway answers VERIFIED by default besides a token: MFA required and Conditional
# Access, both evaluated by Entra only after the password was right.
PASSWORD_RIGHT_CODES = frozenset({50076, 50079, 50072, 50074, 50158, 53003})
SCOPE = "User.Read openid profile"  # what msal sends for ["User.Read"] without offline_access


def verified(answer: Mapping[str, Any]) -> bool:
    """The gateway's default decision for a token endpoint answer (JSON object)."""
    if "access_token" in answer:
        return True
    codes = answer.get("error_codes")
    return isinstance(codes, list) and not PASSWORD_RIGHT_CODES.isdisjoint(codes)


def reply(is_verified: bool) -> bytes:
    """The exact 200 body the gateway sends (`gateway.okta`), so the answers are byte-equal."""
    return reply_body(is_verified)


async def serve(app: web.Application, port: int, *, access_log: bool = True) -> None:
    """Serve `app` on 127.0.0.1:`port`, print the ready line, run until SIGTERM or SIGINT.

    `access_log=False` turns aiohttp's access logger off (as `gateway serve` does); left on,
    it costs little here because nothing configures logging, as in a typical sample.
    """
    runner = web.AppRunner(app, **({} if access_log else {"access_log": None}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(f"{SERVER_URL_PREFIX}http://127.0.0.1:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(
    main: Callable[[], Any], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> int:
    """Run `main()` (a coroutine) on a loop from `loop_factory` (None: asyncio's default)."""
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(main())
    return 0
