"""`ldap` source in a failing world (slapd): dead pooled connections, idle drops, frozen handshakes.

A relay of our own sits between the source and a real slapd and turns on it when told (holds new
connections silent, cuts open ones after slapd read the request); slapd's stats log counts binds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import create_app
from gateway.config import parse_config
from plugins.base import Result
from plugins.ldap import LdapConfig, LdapSource
from plugins.ldap_identity import account_identity
from tests.conftest import HOOK_PATH, HOOK_SECRET, SecretScan, credential, post_hook
from tests.ldap_servers import Slapd, TestCA
from tests.plugins.test_ldap_openldap import FILTER, PASSWORDS, USERS, require_slapd
from tests.tcp_saboteur import HangUp, Relay, StartTlsThenSilent

IDLE_SECONDS = 300.0


class Clock:
    """A monotonic clock the test advances."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted_slapd(tmp_path: Path, secret_scan: SecretScan) -> Iterator[Slapd]:
    """A private slapd that logs every bind (stats)."""
    require_slapd()
    server = Slapd(tmp_path / "slapd", TestCA(tmp_path / "ca"), USERS, debug="stats")
    secret_scan.secrets |= set(PASSWORDS.values()) | {server.service_password}
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def relay(counted_slapd: Slapd) -> Iterator[Relay]:
    """A relay to the slapd's LDAPS port."""
    relay = Relay(counted_slapd.ldaps_port)
    try:
        yield relay
    finally:
        relay.close()


def source_dict(server: Slapd, url: str, **extra: Any) -> dict[str, Any]:
    """A search-mode source for `server`, reached at `url`."""
    source: dict[str, Any] = {
        "name": "corp",
        "type": "ldap",
        "url": url,
        "ca_file": str(server.ca.ca_file),
        "bind": {
            "mode": "search",
            "service_dn": server.service_dn,
            "service_password": server.service_password,
            "base_dn": server.base_dn,
            "filter": FILTER,
        },
        "timeouts": {"connect_seconds": 0.5, "operation_seconds": 0.5},
        "pool_size": 1,
        "idle_seconds": IDLE_SECONDS,
    }
    source.update(extra)
    return source


def gateway_yaml(source: dict[str, Any], failures: int = 5) -> str:
    """A gateway routing every username to one source, with a per-username limit only."""
    return yaml.safe_dump(
        {
            "server": {"host": "127.0.0.1", "port": 8080},
            "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
            "sources": [source],
            "routes": [{"match": {"regex": "."}, "sources": [source["name"]]}],
            "rate_limits": {
                "per_username": {"failures": failures, "window_seconds": 900},
                "per_ip": None,
            },
        },
        allow_unicode=True,
    )


async def started(source: dict[str, Any], clock: Clock | None = None) -> LdapSource:
    """A started source, validated by the gateway's loader."""
    (config,) = parse_config(gateway_yaml(source), env={}).sources
    assert isinstance(config, LdapConfig)
    src = LdapSource(config, clock=clock or time.monotonic)
    await src.start()
    return src


async def test_a_wrong_password_on_a_dead_pooled_connection_reaches_the_directory_once(
    counted_slapd: Slapd, relay: Relay
) -> None:
    src = await started(source_dict(counted_slapd, f"ldaps://127.0.0.1:{relay.port}"))
    try:
        first = await src.verify("jdoe", "Wrong#Ldap-0001")
        assert (first.result, first.reason) == (Result.DENIED, "invalid_credentials")
        # The pooled connection dies under the next bind, after slapd has read it.
        relay.doom_open_connections()
        verdict = await src.verify("jdoe", "Wrong#Ldap-0002")
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.UNAVAILABLE, "network", True,
        )  # fmt: skip
        assert counted_slapd.binds("jdoe") == 2  # one per wrong password, never a resend
    finally:
        await src.close()


async def test_a_connection_idle_longer_than_idle_seconds_is_replaced(
    counted_slapd: Slapd, relay: Relay
) -> None:
    clock = Clock()
    src = await started(source_dict(counted_slapd, f"ldaps://127.0.0.1:{relay.port}"), clock)
    try:
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        opened = relay.accepted
        clock.now += IDLE_SECONDS - 1
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        assert relay.accepted == opened  # both pooled connections reused
        clock.now += IDLE_SECONDS + 1
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        # Search and bind connections both reopened: a pre-check and libldap's own, each.
        assert relay.accepted == opened + 4
    finally:
        await src.close()


async def test_a_frozen_tls_handshake_answers_unavailable_and_frees_the_worker(
    counted_slapd: Slapd, relay: Relay
) -> None:
    clock = Clock()
    src = await started(source_dict(counted_slapd, f"ldaps://127.0.0.1:{relay.port}"), clock)
    try:
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        clock.now += IDLE_SECONDS + 1  # the pooled connections go; new ones are needed
        # The Python pre-check's handshake passes; libldap's own, right after, never ends.
        relay.freeze(relay_first=1)
        started_at = time.monotonic()
        verdict = await asyncio.wait_for(src.verify("jdoe", PASSWORDS["jdoe"]), 10)
        frozen_seconds = time.monotonic() - started_at
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.UNAVAILABLE, "timeout", False,
        )  # fmt: skip
        assert frozen_seconds < 5  # generous: connect_seconds is 0.5
        relay.heal()
        # pool_size 1: this runs only if the one worker thread was given back.
        verdict = await asyncio.wait_for(src.verify("jdoe", PASSWORDS["jdoe"]), 5)
        assert verdict.verified
    finally:
        await src.close()


async def test_a_frozen_start_tls_handshake_answers_unavailable_within_the_timeout(
    counted_slapd: Slapd,
) -> None:
    silent = StartTlsThenSilent()
    url = f"ldap://127.0.0.1:{silent.port}"
    source = source_dict(counted_slapd, url, start_tls=True, bind={"mode": "direct"})
    src = await started(source)
    try:
        started_at = time.monotonic()
        verdict = await asyncio.wait_for(src.verify("jdoe", PASSWORDS["jdoe"]), 10)
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.UNAVAILABLE, "timeout", False,
        )  # fmt: skip
        assert time.monotonic() - started_at < 5  # generous: connect_seconds is 0.5
        assert silent.accepted >= 2  # libldap's connection got past StartTLS, then froze
    finally:
        await src.close()
        silent.close()


async def test_a_server_that_hangs_up_mid_handshake_is_a_network_problem_not_a_tls_one(
    counted_slapd: Slapd,
) -> None:
    # tls_error is a misconfiguration reason (an ERROR line and an alert): a server that closes
    # the connection during the handshake is down or restarting, not misconfigured.
    hang_up = HangUp()
    src = await started(source_dict(counted_slapd, f"ldaps://127.0.0.1:{hang_up.port}"))
    try:
        verdict = await asyncio.wait_for(src.verify("jdoe", PASSWORDS["jdoe"]), 10)
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.UNAVAILABLE, "network", False,
        )  # fmt: skip
    finally:
        await src.close()
        hang_up.close()


async def test_uid_and_mail_of_one_entry_share_one_budget(
    counted_slapd: Slapd, aiohttp_client: Any
) -> None:
    config = parse_config(gateway_yaml(source_dict(counted_slapd, counted_slapd.ldaps_url)), {})
    client = await aiohttp_client(create_app(config))
    names = ["jdoe", "jdoe@example.test", "JDOE", "jdoe@example.test", "jdoe"]
    for i, name in enumerate(names):
        status, body = await post_hook(client, name, f"Wrong#Ldap-{i:04}")
        assert (status, credential(body)) == (200, "UNVERIFIED")
    assert counted_slapd.binds("jdoe") == 5
    # Each name form has budget left of its own; the account does not.
    status, body = await post_hook(client, "jdoe@example.test", "Wrong#Ldap-0005")
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert counted_slapd.binds("jdoe") == 5  # refused after the search, before any bind
    # Another account is untouched.
    status, body = await post_hook(client, "admin", PASSWORDS["admin"])
    assert (status, credential(body)) == (200, "VERIFIED")


async def test_concurrent_wrong_passwords_through_two_names_of_one_entry_bind_five_times(
    counted_slapd: Slapd, aiohttp_client: Any
) -> None:
    # Each name has a budget of 5 of its own (10 in all); the account's budget is 5, whatever
    # the interleaving of 20 sign-ins at once.
    source = source_dict(counted_slapd, counted_slapd.ldaps_url, pool_size=8)
    client = await aiohttp_client(create_app(parse_config(gateway_yaml(source), {})))
    names = ["jdoe", "jdoe@example.test"] * 10
    answers = await asyncio.gather(
        *(post_hook(client, name, f"Wrong#Ldap-{i:04}") for i, name in enumerate(names))
    )
    assert {(status, credential(body)) for status, body in answers} == {(200, "UNVERIFIED")}
    assert counted_slapd.binds("jdoe") == 5


def test_object_guid_is_read_in_its_canonical_little_endian_form() -> None:
    raw = bytes.fromhex("33221100554477668899aabbccddeeff")
    assert account_identity("CN=x,DC=corp", {"objectGUID": [raw]}) == (
        "00112233-4455-6677-8899-aabbccddeeff"
    )


def test_entry_uuid_then_the_dn_identify_an_entry_without_a_guid() -> None:
    entry_uuid = b"6A0C0F7C-1111-4222-8333-944445555666"
    assert account_identity("uid=a,dc=x", {"entryUUID": [entry_uuid]}) == (
        "6a0c0f7c-1111-4222-8333-944445555666"
    )
    assert account_identity("uid=A,dc=X", {}) == "uid=a,dc=x"
