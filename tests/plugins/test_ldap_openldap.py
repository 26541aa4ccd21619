"""`ldap` source against a real OpenLDAP slapd: search-then-bind, escaping, outages, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import create_app
from gateway.config import parse_config
from plugins.base import Result
from plugins.ldap import LdapConfig, LdapSource
from tests.conftest import HOOK_PATH, HOOK_SECRET, SecretScan, credential, post_hook
from tests.ldap_servers import (
    SLAPD_PROGRAMS,
    DirectoryUser,
    Slapd,
    TestCA,
    free_port,
    missing_packages,
)

USERS = [
    DirectoryUser("jdoe", "Jdoe#Ldap-7319", "jdoe@example.test"),
    DirectoryUser("admin", "Admin#Ldap-7319", "admin@example.test"),
    DirectoryUser("twin1", "Twin1#Ldap-7319", "twins@example.test"),
    DirectoryUser("twin2", "Twin2#Ldap-7319", "twins@example.test"),
    DirectoryUser("zoë", "Pässwörd-名前-7319 ✓", "zoe@example.test"),
]
PASSWORDS = {u.uid: u.password for u in USERS}
FILTER = "(|(uid={username})(mail={username}))"


def require_slapd() -> None:
    """Fail (never skip) with one line when slapd is not installed."""
    missing = missing_packages(SLAPD_PROGRAMS)
    if missing:
        pytest.fail(
            f"OpenLDAP slapd is not installed: run 'make services' or "
            f"'apt-get install -y {' '.join(missing)}'",
            pytrace=False,
        )


def new_slapd(root: Path, secret_scan: SecretScan) -> Slapd:
    """A started private slapd with the test users; its passwords join the log scan."""
    require_slapd()
    server = Slapd(root / "slapd", TestCA(root / "ca"), USERS)
    secret_scan.secrets |= set(PASSWORDS.values()) | {server.service_password}
    server.start()
    return server


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One slapd for the module's read-only tests."""
    from tests.conftest import SCAN

    server = new_slapd(tmp_path_factory.mktemp("slapd"), SCAN)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_slapd(tmp_path: Path, secret_scan: SecretScan) -> Iterator[Slapd]:
    """A slapd this test may stop or freeze."""
    server = new_slapd(tmp_path, secret_scan)
    try:
        yield server
    finally:
        server.stop()


def source_dict(server: Slapd, **extra: Any) -> dict[str, Any]:
    """A search-mode `ldap` source for a slapd."""
    source: dict[str, Any] = {
        "name": "corp",
        "type": "ldap",
        "url": server.ldaps_url,
        "ca_file": str(server.ca.ca_file),
        "bind": {
            "mode": "search",
            "service_dn": server.service_dn,
            "service_password": server.service_password,
            "base_dn": server.base_dn,
            "filter": FILTER,
        },
        "timeouts": {"connect_seconds": 1.0, "operation_seconds": 1.0},
        "pool_size": 4,
    }
    source.update(extra)
    return source


def gateway_config(server: Slapd, *, budget: float = 2.5, **extra: Any) -> str:
    """A gateway whose only route sends example.test and bare names to the slapd source."""
    return yaml.safe_dump(
        {
            "server": {"host": "127.0.0.1", "port": 8080},
            "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
            "budget_seconds": budget,
            "sources": [source_dict(server, **extra)],
            "routes": [{"match": {"regex": "."}, "sources": ["corp"]}],
            "logging": {"level": "debug"},
        },
        allow_unicode=True,
    )


def ldap_config(server: Slapd, **extra: Any) -> LdapConfig:
    """The validated source config, through the gateway's own config loader."""
    (config,) = parse_config(gateway_config(server, **extra), env={}).sources
    assert isinstance(config, LdapConfig)
    return config


@pytest.fixture
async def source(slapd: Slapd) -> AsyncIterator[LdapSource]:
    """A started search-mode source on the shared slapd."""
    src = LdapSource(ldap_config(slapd))
    await src.start()
    try:
        yield src
    finally:
        await src.close()


async def started(config: LdapConfig) -> LdapSource:
    """Start a source for a test that closes it itself."""
    src = LdapSource(config)
    await src.start()
    return src


# (username, password) -> (result, reason, unknown_user)
SEARCH_DECISIONS = {
    ("jdoe", PASSWORDS["jdoe"]): (Result.VERIFIED, "ok", False),
    ("jdoe@example.test", PASSWORDS["jdoe"]): (Result.VERIFIED, "ok", False),
    ("zoë", PASSWORDS["zoë"]): (Result.VERIFIED, "ok", False),
    ("jdoe", "Wrong#Ldap-0000"): (Result.DENIED, "invalid_credentials", False),
    ("nobody", "Wrong#Ldap-0000"): (Result.DENIED, "unknown_user", True),
    ("twins@example.test", PASSWORDS["twin1"]): (Result.DENIED, "ambiguous_username", False),
}


@pytest.mark.parametrize(("username", "password"), list(SEARCH_DECISIONS))
async def test_search_then_bind_decision_table(
    source: LdapSource, username: str, password: str
) -> None:
    verdict = await source.verify(username, password)
    assert (verdict.result, verdict.reason, verdict.unknown_user) == SEARCH_DECISIONS[
        (username, password)
    ]
    assert verdict.source == "corp"


# Each would match (or widen to) real entries if formatted into the filter unescaped.
INJECTIONS = ["*", "jd*", "*)(uid=*", "admin)(|(uid=*", "jdoe)(uid=*", "*)(|(objectClass=*"]


@pytest.mark.parametrize("username", INJECTIONS)
async def test_filter_injection_finds_no_user(source: LdapSource, username: str) -> None:
    for password in (PASSWORDS["jdoe"], PASSWORDS["admin"]):
        verdict = await source.verify(username, password)
        assert (verdict.result, verdict.reason) == (Result.DENIED, "unknown_user")


async def test_escaped_special_characters_still_match_literally(slapd: Slapd) -> None:
    # A filter on cn with a literal parenthesis in the value: escaping must keep it matchable.
    config = ldap_config(
        slapd,
        bind={
            "mode": "search",
            "service_dn": slapd.service_dn,
            "service_password": slapd.service_password,
            "base_dn": slapd.base_dn,
            "filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        },
    )
    src = await started(config)
    try:
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        assert (await src.verify("jdoe*", PASSWORDS["jdoe"])).reason == "unknown_user"
    finally:
        await src.close()


async def test_direct_bind_escapes_the_dn(slapd: Slapd) -> None:
    config = ldap_config(
        slapd, bind={"mode": "direct", "template": f"uid={{username}},ou=people,{slapd.base_dn}"}
    )
    src = await started(config)
    try:
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        # Unescaped, this would name the service entry's parent chain instead of a person.
        sneaky = f"jdoe,ou=people,{slapd.base_dn}"
        verdict = await src.verify(sneaky, PASSWORDS["jdoe"])
        assert (verdict.result, verdict.reason) == (Result.DENIED, "invalid_credentials")
    finally:
        await src.close()


async def test_wrong_service_password_is_unavailable_not_denied(slapd: Slapd) -> None:
    bind = dict(source_dict(slapd)["bind"], service_password="Not-The-Service-Password")
    src = await started(ldap_config(slapd, bind=bind))
    try:
        verdict = await src.verify("jdoe", PASSWORDS["jdoe"])
        assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "service_bind_failed")
        assert "service_bind_failed" in src.misconfiguration_reasons
        assert verdict.sent is False
    finally:
        await src.close()


async def test_untrusted_certificate_is_unavailable(slapd: Slapd, tmp_path: Path) -> None:
    other_ca = TestCA(tmp_path / "other")
    src = await started(ldap_config(slapd, ca_file=str(other_ca.ca_file)))
    try:
        verdict = await src.verify("jdoe", PASSWORDS["jdoe"])
        assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "tls_error")
        assert verdict.sent is False
    finally:
        await src.close()


async def test_start_tls_verifies(slapd: Slapd) -> None:
    src = await started(ldap_config(slapd, url=slapd.ldap_url, start_tls=True))
    try:
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
    finally:
        await src.close()


async def test_empty_password_never_reaches_the_directory(slapd: Slapd) -> None:
    # Pointed at a port where nothing listens: any I/O would answer `network`, not a denial.
    src = await started(ldap_config(slapd, url=f"ldaps://127.0.0.1:{free_port()}"))
    try:
        verdict = await src.verify("jdoe", "")
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.DENIED,
            "empty_password",
            False,
        )
    finally:
        await src.close()


async def test_nul_in_username_is_refused_before_io(source: LdapSource) -> None:
    assert source.unsupported_input("jdoe\x00x", "pw") == "unsupported_characters"
    verdict = await source.verify("jdoe\x00anything", PASSWORDS["jdoe"])
    assert (verdict.result, verdict.reason) == (Result.DENIED, "unsupported_characters")


async def test_concurrent_binds_share_a_bounded_pool(source: LdapSource) -> None:
    pairs = [
        ("jdoe", PASSWORDS["jdoe"]),
        ("jdoe", "Wrong#Ldap-1111"),
        ("admin", PASSWORDS["admin"]),
    ]
    verdicts = await asyncio.gather(*(source.verify(*pairs[i % 3]) for i in range(60)))
    for i, verdict in enumerate(verdicts):
        expected = (Result.DENIED, "invalid_credentials") if i % 3 == 1 else (Result.VERIFIED, "ok")
        assert (verdict.result, verdict.reason) == expected


async def test_server_stopped_mid_test_answers_unavailable_then_recovers(
    own_slapd: Slapd,
) -> None:
    src = await started(ldap_config(own_slapd))
    try:
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        own_slapd.stop()
        for password in (PASSWORDS["jdoe"], "Wrong#Ldap-2222"):
            verdict = await src.verify("jdoe", password)
            assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "network")
            assert verdict.sent is False  # the connection never opened: the attempt is given back
        own_slapd.start()
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        wrong = await src.verify("jdoe", "Wrong#Ldap-3333")
        assert (wrong.result, wrong.reason) == (Result.DENIED, "invalid_credentials")
    finally:
        await src.close()


async def test_server_stopped_answers_200_unverified_through_the_app(
    own_slapd: Slapd, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(parse_config(gateway_config(own_slapd), env={})))
    status, body = await post_hook(client, "jdoe", PASSWORDS["jdoe"])
    assert (status, credential(body)) == (200, "VERIFIED")
    own_slapd.stop()
    status, body = await post_hook(client, "admin", PASSWORDS["admin"])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    own_slapd.start()
    status, body = await post_hook(client, "admin", PASSWORDS["admin"])
    assert (status, credential(body)) == (200, "VERIFIED")


async def _wait_ready(src: LdapSource, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not src.ready and time.monotonic() < deadline:  # noqa: ASYNC110 - a property, no event
        await asyncio.sleep(0.05)
    return src.ready


async def test_ready_once_the_directory_answered_and_the_probe_connection_is_reused(
    slapd: Slapd,
) -> None:
    src = LdapSource(ldap_config(slapd))
    assert (src.ready, src.last_error) == (False, "not_started")
    await src.start()
    try:
        assert await _wait_ready(src)
        assert src.last_error is None
        assert len(src._searchers._idle) == 1  # the probe's bound connection, kept for a sign-in
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        assert len(src._searchers._idle) == 1  # and the sign-in's search used it
    finally:
        await src.close()


async def test_not_ready_while_the_directory_is_down_then_ready_when_it_answers(
    own_slapd: Slapd, aiohttp_client: Any
) -> None:
    own_slapd.stop()
    client = await aiohttp_client(create_app(parse_config(gateway_config(own_slapd), env={})))
    for _ in range(100):
        response = await client.get("/readyz")
        body = await response.json()
        if body["sources"]["corp"].get("last_error") != "not_started":
            break
        await asyncio.sleep(0.05)
    assert response.status == 503
    assert body["sources"]["corp"] == {"ready": False, "circuit": "closed", "last_error": "network"}
    own_slapd.start()
    deadline = time.monotonic() + 10
    while (response := await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, await response.text()
        await asyncio.sleep(0.1)
    assert (await response.json())["sources"]["corp"] == {"ready": True, "circuit": "closed"}


async def test_a_wrong_service_password_keeps_the_source_unready_and_says_why(
    slapd: Slapd,
) -> None:
    bind = dict(source_dict(slapd)["bind"], service_password="Not-The-Service-Password")
    src = await started(ldap_config(slapd, bind=bind))
    try:
        deadline = time.monotonic() + 5
        while src.last_error == "not_started" and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert (src.ready, src.last_error) == (False, "service_bind_failed")
    finally:
        await src.close()


async def test_frozen_server_times_out_as_unavailable(own_slapd: Slapd) -> None:
    src = await started(ldap_config(own_slapd, timeouts={"connect_seconds": 0.5,
                                                         "operation_seconds": 0.5}))  # fmt: skip
    try:
        assert (await src.verify("jdoe", PASSWORDS["jdoe"])).verified
        own_slapd.pause()
        started_at = time.monotonic()
        verdict = await src.verify("jdoe", PASSWORDS["jdoe"])
        assert verdict.result is Result.UNAVAILABLE
        assert verdict.reason == "timeout"
        assert time.monotonic() - started_at < 5  # generous: two 0.5 s libldap timeouts
    finally:
        own_slapd.resume()
        await src.close()


async def test_frozen_server_answers_unverified_within_the_budget(
    own_slapd: Slapd, aiohttp_client: Any
) -> None:
    # The source's own timeouts are longer than the hook budget: the gateway's deadline wins.
    config = parse_config(
        gateway_config(own_slapd, budget=1.0,
                       timeouts={"connect_seconds": 10.0, "operation_seconds": 10.0}),
        env={},
    )  # fmt: skip
    client = await aiohttp_client(create_app(config))
    own_slapd.pause()
    try:
        started_at = time.monotonic()
        status, body = await post_hook(client, "jdoe", PASSWORDS["jdoe"])
        assert (status, credential(body)) == (200, "UNVERIFIED")
        assert time.monotonic() - started_at < 2.5
    finally:
        own_slapd.resume()


async def test_frozen_server_on_a_new_connection_times_out(own_slapd: Slapd) -> None:
    src = await started(ldap_config(own_slapd, timeouts={"connect_seconds": 0.5,
                                                         "operation_seconds": 0.5}))  # fmt: skip
    own_slapd.pause()
    try:
        started_at = time.monotonic()
        verdict = await src.verify("jdoe", PASSWORDS["jdoe"])
        assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "timeout")
        assert verdict.sent is False
        assert time.monotonic() - started_at < 5
    finally:
        own_slapd.resume()
        await src.close()
