"""`ldap` source against a real Active Directory DC (Samba): sub-codes, lockout, fall-through.

One DC per test session (Samba always listens on 389/636), provisioned into a temp folder with
only its LDAP service, LDAPS verified against a test CA. Each test that sends wrong passwords
uses accounts of its own: the domain locks an account after LOCKOUT_THRESHOLD of them.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ldap
import pytest
import yaml

from emulators.entra import RunningEmulator
from gateway.app import create_app
from gateway.config import parse_config
from plugins.base import Result
from plugins.ldap import LdapConfig, LdapSource
from tests.conftest import SCAN, credential, gateway_yaml, post_hook
from tests.conftest import USERS as ENTRA_USERS
from tests.ldap_servers import (
    SAMBA_PROGRAMS,
    SambaDC,
    SambaUser,
    TestCA,
    missing_packages,
    ports_in_use,
)
from tests.tcp_saboteur import Relay

LOCKOUT_THRESHOLD = 5
GATEWAY_USER_LIMIT = 3  # below the domain's threshold, as check-config asks


def _user(name: str, state: str = "ok", mail: str = "") -> SambaUser:
    return SambaUser(name, f"Corp#{name.capitalize()}-7319x", mail, state)


ACCOUNTS = {
    u.name: u
    for u in [
        _user("jdoe"),
        _user("wrongpw"),
        _user("disabled", "disabled"),
        _user("expired", "expired_account"),
        _user("mustchg", "must_change"),
        _user("mustchg2", "must_change"),
        _user("lockme"),
        _user("hammer"),
        _user("svcgateway"),
        _user("adonly", mail="adonly@contoso.com"),
        _user("deadpool"),
        _user("multi", mail="multi.name@contoso.com"),
        # Also in the Entra test directory, with another password there.
        _user("iris", mail="iris@contoso.com"),
    ]
}

_DC: SambaDC | None = None


def shared_dc() -> SambaDC:
    """The session's DC, provisioned and started on first use (stopped at exit)."""
    global _DC
    if _DC is not None:
        return _DC
    missing = missing_packages(SAMBA_PROGRAMS)
    if missing:
        pytest.fail(
            f"Samba is not installed: run 'make services' or 'apt-get install -y "
            f"{' '.join(missing)} samba-ad-provision samba-dsdb-modules ldap-utils'",
            pytrace=False,
        )
    busy = ports_in_use(389, 636)
    if busy:
        pytest.fail(f"ports {busy} are taken; the Samba test DC needs 389 and 636", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="gateway-samba-"))
    dc = SambaDC(root / "dc", TestCA(root / "ca"), list(ACCOUNTS.values()), LOCKOUT_THRESHOLD)
    SCAN.secrets |= {u.password for u in ACCOUNTS.values()} | {dc.admin_password}
    dc.provision()
    dc.start()
    atexit.register(shutil.rmtree, root, True)
    atexit.register(dc.stop)
    _DC = dc
    return dc


@pytest.fixture(scope="session")
def dc() -> SambaDC:
    """The shared Samba AD DC."""
    return shared_dc()


def direct_source(dc: SambaDC, **extra: Any) -> dict[str, Any]:
    """An AD source binding with the UPN typed."""
    source: dict[str, Any] = {
        "name": "ad",
        "type": "ldap",
        "url": dc.ldaps_url,
        "ca_file": str(dc.ca.ca_file),
        "bind": {"mode": "direct", "template": "{username}"},
        "active_directory": True,
        "timeouts": {"connect_seconds": 2.0, "operation_seconds": 2.0},
        "pool_size": 4,
        "lockout_threshold": LOCKOUT_THRESHOLD,
    }
    source.update(extra)
    return source


def search_source(dc: SambaDC) -> dict[str, Any]:
    """An AD source that finds users by UPN or mail with a service account."""
    return direct_source(
        dc,
        bind={
            "mode": "search",
            "service_dn": f"CN=svcgateway,CN=Users,{dc.base_dn}",
            "service_password": ACCOUNTS["svcgateway"].password,
            "base_dn": dc.base_dn,
        },
    )


def config_text(dc: SambaDC, source: dict[str, Any], **top: Any) -> str:
    """A gateway with one AD source routed for corp.test."""
    config = yaml.safe_load(gateway_yaml("http://127.0.0.1:1"))
    config["sources"] = [source]
    config["routes"] = [{"match": {"domains": [dc.upn_suffix]}, "sources": [source["name"]]}]
    config.update(top)
    return yaml.safe_dump(config)


async def started(dc: SambaDC, source: dict[str, Any]) -> LdapSource:
    """A started source from a source dict (validated by the gateway's loader)."""
    (config,) = parse_config(config_text(dc, source), env={}).sources
    assert isinstance(config, LdapConfig)
    src = LdapSource(config)
    await src.start()
    return src


@pytest.fixture
async def ad(dc: SambaDC) -> AsyncIterator[LdapSource]:
    """A started direct-bind AD source."""
    src = await started(dc, direct_source(dc))
    try:
        yield src
    finally:
        await src.close()


def password(name: str) -> str:
    return ACCOUNTS[name].password


# (account, password kind) -> (result, reason): what Samba answers, mapped by the source.
AD_DECISIONS = {
    ("jdoe", "right"): (Result.VERIFIED, "ok"),
    ("wrongpw", "wrong"): (Result.DENIED, "ad_52e"),
    ("nosuchuser", "wrong"): (Result.DENIED, "ad_52e"),  # Samba never answers 525
    ("disabled", "right"): (Result.DENIED, "ad_533"),
    ("expired", "right"): (Result.DENIED, "ad_701"),
    ("mustchg", "right"): (Result.VERIFIED, "ad_773"),  # policy default: the password was right
    ("mustchg", "wrong"): (Result.DENIED, "ad_52e"),
}


@pytest.mark.parametrize(("account", "kind"), list(AD_DECISIONS))
async def test_samba_subcode_maps_as_decision_table_says(
    ad: LdapSource, dc: SambaDC, account: str, kind: str
) -> None:
    secret = password(account) if kind == "right" else "Wrong#Pass-0000x"
    verdict = await ad.verify(dc.upn(account), secret)
    assert (verdict.result, verdict.reason) == AD_DECISIONS[(account, kind)]
    assert verdict.unknown_user is False  # a direct bind on Samba cannot tell


async def test_must_change_follows_policy(dc: SambaDC) -> None:
    src = await started(dc, direct_source(dc, policy={"password_must_change": "unverified"}))
    try:
        verdict = await src.verify(dc.upn("mustchg2"), password("mustchg2"))
        assert (verdict.result, verdict.reason) == (Result.DENIED, "ad_773")
    finally:
        await src.close()


async def test_locked_account_is_denied_even_with_the_right_password(
    ad: LdapSource, dc: SambaDC
) -> None:
    for i in range(LOCKOUT_THRESHOLD):
        verdict = await ad.verify(dc.upn("lockme"), f"Wrong#Pass-{i}x")
        assert verdict.reason == "ad_52e"
    verdict = await ad.verify(dc.upn("lockme"), password("lockme"))
    assert (verdict.result, verdict.reason) == (Result.DENIED, "ad_775")


async def test_without_active_directory_subcodes_are_not_read(dc: SambaDC) -> None:
    src = await started(dc, direct_source(dc, active_directory=False))
    try:
        verdict = await src.verify(dc.upn("mustchg"), password("mustchg"))
        # Fails closed: without AD parsing a must-change is just "invalid credentials".
        assert (verdict.result, verdict.reason) == (Result.DENIED, "invalid_credentials")
    finally:
        await src.close()


async def test_plain_ldap_bind_is_refused_by_ad_as_unavailable(dc: SambaDC) -> None:
    # Plain ldap:// is allowed on loopback only; AD answers result 8 (strongerAuthRequired).
    src = await started(dc, direct_source(dc, url="ldap://127.0.0.1:389"))
    try:
        verdict = await src.verify(dc.upn("jdoe"), password("jdoe"))
        assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "ldap_strong_auth_required")
    finally:
        await src.close()


async def test_search_mode_tells_unknown_users_apart(dc: SambaDC) -> None:
    src = await started(dc, search_source(dc))
    try:
        verdict = await src.verify("nobody@contoso.com", "Any#Pass-0000x")
        assert (verdict.result, verdict.reason, verdict.unknown_user) == (
            Result.DENIED, "unknown_user", True,
        )  # fmt: skip
        assert (await src.verify("adonly@contoso.com", password("adonly"))).verified
        assert (await src.verify(dc.upn("jdoe"), password("jdoe"))).verified
    finally:
        await src.close()


def bad_password_count(dc: SambaDC, account: str) -> int:
    """The account's badPwdCount as the DC keeps it, read as the domain administrator."""
    conn = ldap.initialize(dc.ldaps_url)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(dc.ca.ca_file))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    try:
        conn.simple_bind_s(f"Administrator@{dc.upn_suffix}", dc.admin_password)
        ((_, attrs),) = [
            r
            for r in conn.search_s(
                dc.base_dn, ldap.SCOPE_SUBTREE, f"(sAMAccountName={account})", ["badPwdCount"]
            )
            if r[0] is not None
        ]
        return int(attrs.get("badPwdCount", [b"0"])[0])
    finally:
        conn.unbind_s()


async def test_gateway_never_reaches_the_domain_lockout(dc: SambaDC, aiohttp_client: Any) -> None:
    limits = {"per_username": {"failures": GATEWAY_USER_LIMIT, "window_seconds": 900},
              "per_ip": None}  # fmt: skip
    config = parse_config(config_text(dc, direct_source(dc), rate_limits=limits), env={})
    client = await aiohttp_client(create_app(config))
    upn = dc.upn("hammer")
    # Distinct wrong passwords (a repeated one would be a cache hit), sequential then at once.
    for i in range(4):
        status, body = await post_hook(client, upn, f"Wrong#Hammer-{i}x")
        assert (status, credential(body)) == (200, "UNVERIFIED")
    answers = await asyncio.gather(
        *(post_hook(client, upn, f"Wrong#Hammer-{i}x") for i in range(4, 4 + 3 * LOCKOUT_THRESHOLD))
    )
    assert {(status, credential(body)) for status, body in answers} == {(200, "UNVERIFIED")}
    assert bad_password_count(dc, "hammer") == GATEWAY_USER_LIMIT < LOCKOUT_THRESHOLD
    # The account is not locked: its right password still works at the directory.
    src = await started(dc, direct_source(dc))
    try:
        verdict = await src.verify(upn, password("hammer"))
        assert (verdict.result, verdict.reason) == (Result.VERIFIED, "ok")
    finally:
        await src.close()


def route_config(dc: SambaDC, entra: RunningEmulator) -> str:
    """Route contoso.com to [ad (search mode), entra]."""
    config = yaml.safe_load(gateway_yaml(entra.url))
    config["sources"] = [search_source(dc), *config["sources"]]
    config["routes"] = [{"match": {"domains": ["contoso.com"]}, "sources": ["ad", "entra"]}]
    return yaml.safe_dump(config, allow_unicode=True)


def entra_token_requests(entra: RunningEmulator, username: str) -> int:
    count: int = entra.emulator.stats()["token_requests_by_user"].get(username, 0)
    return count


async def test_route_falls_through_to_entra_for_users_ad_does_not_have(
    dc: SambaDC, entra: RunningEmulator, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(parse_config(route_config(dc, entra), env={})))
    status, body = await post_hook(client, "alice@contoso.com", ENTRA_USERS["alice@contoso.com"])
    assert (status, credential(body)) == (200, "VERIFIED")
    assert entra_token_requests(entra, "alice@contoso.com") == 1
    status, body = await post_hook(client, "adonly@contoso.com", password("adonly"))
    assert (status, credential(body)) == (200, "VERIFIED")
    assert entra_token_requests(entra, "adonly@contoso.com") == 0


async def test_wrong_password_in_ad_is_never_tried_against_entra(
    dc: SambaDC, entra: RunningEmulator, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(parse_config(route_config(dc, entra), env={})))
    # Right in Entra, wrong in AD: AD has the user, so its "no" is final.
    status, body = await post_hook(client, "iris@contoso.com", ENTRA_USERS["iris@contoso.com"])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert entra_token_requests(entra, "iris@contoso.com") == 0


async def test_a_wrong_password_on_a_dead_pooled_connection_counts_once_at_ad(dc: SambaDC) -> None:
    relay = Relay(dc.ldaps_port)
    src = await started(dc, direct_source(dc, url=f"ldaps://127.0.0.1:{relay.port}"))
    try:
        first = await src.verify(dc.upn("deadpool"), "Wrong#Dead-0001x")
        assert (first.result, first.reason) == (Result.DENIED, "ad_52e")
        # The pooled connection dies under the next bind, after the DC has read it.
        relay.doom_open_connections()
        verdict = await src.verify(dc.upn("deadpool"), "Wrong#Dead-0002x")
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.UNAVAILABLE, "network", True,
        )  # fmt: skip
        assert bad_password_count(dc, "deadpool") == 2  # one per wrong password, never a resend
    finally:
        await src.close()
        relay.close()


async def test_upn_mail_and_domain_name_of_one_account_share_one_budget(
    dc: SambaDC, aiohttp_client: Any
) -> None:
    source = search_source(dc)
    source["bind"]["filter"] = (
        "(|(userPrincipalName={username})(mail={username})(sAMAccountName={username}))"
    )
    routes = [
        {"match": {"domains": [dc.upn_suffix, "contoso.com"]}, "sources": ["ad"]},
        # CORP\multi -> multi (the sAMAccountName)
        {"match": {"regex": r"^corp\\"}, "rewrite": {"pattern": r"(?i)^corp\\", "replacement": ""},
         "sources": ["ad"]},
    ]  # fmt: skip
    # Below the domain's threshold, so a bind that got through would still count at the DC.
    budget = LOCKOUT_THRESHOLD - 1
    limits = {"per_username": {"failures": budget, "window_seconds": 900}, "per_ip": None}
    config = yaml.safe_load(config_text(dc, source, rate_limits=limits))
    config["routes"] = routes
    client = await aiohttp_client(create_app(parse_config(yaml.safe_dump(config), env={})))
    names = [dc.upn("multi"), "multi.name@contoso.com", "CORP\\multi", dc.upn("multi")]
    for i, name in enumerate(names):
        status, body = await post_hook(client, name, f"Wrong#Multi-{i}x")
        assert (status, credential(body)) == (200, "UNVERIFIED")
    assert bad_password_count(dc, "multi") == budget
    # Each name form has budget left of its own; the account does not.
    status, body = await post_hook(client, "multi.name@contoso.com", "Wrong#Multi-5x")
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert bad_password_count(dc, "multi") == budget  # refused before any bind
