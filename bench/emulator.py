"""Child process: an Entra emulator with generated users, fixed latency, URL printed on stdout.

`python -m bench.emulator --domain contoso.com --users 30000 --mfa-users 2000 --latency-ms 150`
prints one line `BENCH_EMULATOR_URL http://127.0.0.1:<port>` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from bench.users import MFA_PASSWORD_TEMPLATE, PASSWORD_TEMPLATE, mfa_user
from emulators.entra import EmulatedDirectory, EmulatedUser, start_emulator

URL_PREFIX = "BENCH_EMULATOR_URL "


def build_directory(domain: str, users: int, mfa_users: int) -> EmulatedDirectory:
    """`users` generated users plus `mfa_users` users whose sign-in needs MFA, all in `domain`."""
    mfa = [
        EmulatedUser(
            username=mfa_user(i, domain),
            password=MFA_PASSWORD_TEMPLATE.format(i=i),
            behaviour="mfa_required",
        )
        for i in range(mfa_users)
    ]
    base = EmulatedDirectory(managed_domains=[domain], users=mfa)
    return EmulatedDirectory.with_generated_users(
        users, domain=domain, password_template=PASSWORD_TEMPLATE, base=base
    )


async def serve(domain: str, users: int, mfa_users: int, latency_ms: int) -> None:
    """Serve the directory on a free loopback port until SIGTERM or SIGINT."""
    directory = build_directory(domain, users, mfa_users)
    running = await start_emulator(directory, "127.0.0.1", 0, latency_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(URL_PREFIX + running.url, flush=True)
        await stop.wait()
    finally:
        await running.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=__doc__)
    parser.add_argument("--domain", default="contoso.com")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--mfa-users", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=150)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.domain, args.users, args.mfa_users, args.latency_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
