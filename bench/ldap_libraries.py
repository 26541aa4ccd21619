"""Which LDAP library for the `ldap` source: simple binds per second and CPU per bind.

Starts a private slapd (tests/ldap_servers.py) with LDAPS and 200 users, then verifies passwords
the way a source would with each library, CONCURRENCY at a time:

- python-ldap: blocking C (libldap) in a bounded thread pool, one pooled connection per thread,
  rebinding as each user (the GIL is released while libldap waits).
- ldap3: pure Python, same pool shape (`Connection.rebind`).
- bonsai: asyncio-native, but it binds only when it connects: one TLS connection per password.

Needs the three libraries: `pip install python-ldap ldap3 bonsai` (python-ldap and bonsai
build against libldap: `apt-get install libldap-dev libsasl2-dev gcc python3-dev`).
Run: `python -m bench.ldap_libraries [--binds 3000] [--concurrency 16]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.ldap_servers import DirectoryUser, Slapd, TestCA

USERS = [DirectoryUser(f"user{i}", f"Bench#Pass-{i}") for i in range(200)]


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of the slapd process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pairs(count: int) -> list[tuple[int, str]]:
    """(user index, password): 3 right for every wrong one, as a sign-in mix might be."""
    return [(i % len(USERS), "wrong" if i % 4 == 3 else USERS[i % len(USERS)].password)
            for i in range(count)]  # fmt: skip


def threaded(
    make: Callable[[], object], bind: Callable[[object, str, str], bool],
    server: Slapd, count: int, concurrency: int,
) -> int:  # fmt: skip
    """Run binds on a pool of threads, each with its own connection; return how many succeeded."""
    local = threading.local()

    def one(item: tuple[int, str]) -> bool:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = make()
        return bind(conn, server.user_dn(USERS[item[0]].uid), item[1])

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, pairs(count)))


def run_python_ldap(server: Slapd, ca: TestCA, count: int, concurrency: int) -> int:
    """python-ldap in a thread pool."""
    import ldap

    def make() -> object:
        conn = ldap.initialize(server.ldaps_url)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(ca.ca_file))
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        return conn

    def bind(conn: object, dn: str, password: str) -> bool:
        try:
            conn.simple_bind_s(dn, password)  # type: ignore[attr-defined]
        except ldap.INVALID_CREDENTIALS:
            return False
        return True

    return threaded(make, bind, server, count, concurrency)


def run_ldap3(server: Slapd, ca: TestCA, count: int, concurrency: int) -> int:
    """ldap3 in a thread pool."""
    import ssl

    import ldap3

    tls = ldap3.Tls(ca_certs_file=str(ca.ca_file), validate=ssl.CERT_REQUIRED)
    # get_info=NONE: by default ldap3 re-reads the server's schema after every bind (~55 ms).
    target = ldap3.Server(
        "127.0.0.1", port=server.ldaps_port, use_ssl=True, tls=tls, get_info=ldap3.NONE
    )

    def make() -> object:
        conn = ldap3.Connection(target)
        conn.open()
        return conn

    def bind(conn: object, dn: str, password: str) -> bool:
        return bool(conn.rebind(user=dn, password=password))  # type: ignore[attr-defined]

    return threaded(make, bind, server, count, concurrency)


def run_bonsai(server: Slapd, ca: TestCA, count: int, concurrency: int) -> int:
    """Bonsai on asyncio: one connection (TLS handshake included) per bind."""
    import bonsai

    async def main() -> int:
        gate = asyncio.Semaphore(concurrency)

        async def one(item: tuple[int, str]) -> bool:
            client = bonsai.LDAPClient(server.ldaps_url)
            client.set_ca_cert(str(ca.ca_file))
            client.set_cert_policy("demand")
            client.set_credentials(
                "SIMPLE", user=server.user_dn(USERS[item[0]].uid), password=item[1]
            )
            async with gate:
                try:
                    conn = await client.connect(is_async=True, timeout=5)
                except bonsai.AuthenticationError:
                    return False
                conn.close()
                return True

        return sum(await asyncio.gather(*(one(p) for p in pairs(count))))

    return asyncio.run(main())


def main() -> None:
    """Measure each library against one slapd."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binds", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca = TestCA(Path(tmp) / "ca")
        server = Slapd(Path(tmp) / "slapd", ca, USERS)
        server.start()
        assert server.process is not None
        try:
            print(f"{args.binds} binds over LDAPS to slapd, {args.concurrency} at a time, "
                  f"{os.cpu_count()} cores")  # fmt: skip
            for name, run in (("python-ldap", run_python_ldap), ("ldap3", run_ldap3),
                              ("bonsai", run_bonsai)):  # fmt: skip
                run(server, ca, 200, args.concurrency)  # warm-up
                cpu, server_cpu, start = (
                    cpu_seconds(),
                    server_cpu_seconds(server.process.pid),
                    time.perf_counter(),
                )
                ok = run(server, ca, args.binds, args.concurrency)
                wall = time.perf_counter() - start
                used = cpu_seconds() - cpu
                used_server = server_cpu_seconds(server.process.pid) - server_cpu
                print(
                    f"{name:12} {args.binds / wall:7.0f} binds/s  "
                    f"client CPU {1000 * used / args.binds:5.2f} ms/bind  "
                    f"slapd CPU {1000 * used_server / args.binds:5.2f} ms/bind  "
                    f"({ok} accepted)"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
