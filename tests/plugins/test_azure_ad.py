"""Entra ID source against the emulator over real sockets, msal unmodified."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulators.entra import (
    EmulatedDirectory,
    RunningEmulator,
    load_directory,
    start_emulator,
)
from gateway.config import parse_config
from plugins.azure_ad import AzureAdConfig, AzureAdSource
from plugins.base import Result
from tests.certs import self_signed
from tests.conftest import USERS, USERS_FILE, GatewayFactory, credential, gateway_yaml, post_hook

DIRECTORY = yaml.safe_load(USERS_FILE.read_text(encoding="utf-8"))


def source_config(authority: str, **extra: Any) -> AzureAdConfig:
    """A validated azure_ad config for the test directory."""
    config = parse_config(gateway_yaml(authority, source_extra=extra), env={})
    (source,) = config.sources
    assert isinstance(source, AzureAdConfig)
    return source


@pytest.fixture
async def source(entra: RunningEmulator) -> AsyncIterator[AzureAdSource]:
    """A started Entra source pointed at the emulator."""
    src = AzureAdSource(source_config(entra.url))
    await src.start()
    try:
        yield src
    finally:
        await src.close()


# user -> (result, reason) with the default policy
DECISION_TABLE = {
    "alice@contoso.com": (Result.VERIFIED, "ok"),
    "bob@contoso.com": (Result.VERIFIED, "aadsts_50076"),
    "mia@contoso.com": (Result.VERIFIED, "aadsts_50079"),
    "cab@contoso.com": (Result.VERIFIED, "aadsts_53003"),
    "carol@contoso.com": (Result.DENIED, "aadsts_50055"),
    "dave@contoso.com": (Result.DENIED, "aadsts_50057"),
    "locked@contoso.com": (Result.DENIED, "aadsts_50053"),
    "unknowncode@contoso.com": (Result.DENIED, "aadsts_99999"),
    "consent@contoso.com": (Result.UNAVAILABLE, "aadsts_65001"),
    "looping@contoso.com": (Result.UNAVAILABLE, "aadsts_50196"),
    "pta@contoso.com": (Result.UNAVAILABLE, "aadsts_80001"),
}


@pytest.mark.parametrize("username", sorted(DECISION_TABLE))
async def test_aadsts_class_maps_as_decision_table_says(
    source: AzureAdSource, username: str
) -> None:
    verdict = await source.verify(username, USERS[username])
    assert (verdict.result, verdict.reason) == DECISION_TABLE[username]
    assert verdict.source == "entra"


async def test_wrong_password_is_denied_aadsts_50126(source: AzureAdSource) -> None:
    verdict = await source.verify("alice@contoso.com", "Wrong#Pass-0000")
    assert (verdict.result, verdict.reason) == (Result.DENIED, "aadsts_50126")


async def test_unknown_user_is_denied_aadsts_50034(source: AzureAdSource) -> None:
    verdict = await source.verify("nobody@contoso.com", "Some#Pass-0000")
    assert (verdict.result, verdict.reason) == (Result.DENIED, "aadsts_50034")


async def test_mfa_user_with_wrong_password_is_denied(source: AzureAdSource) -> None:
    verdict = await source.verify("bob@contoso.com", "Wrong#Pass-0000")
    assert verdict.result is Result.DENIED


@pytest.mark.parametrize(
    ("policy", "username", "expected"),
    [
        ({"mfa_required": "unverified"}, "bob@contoso.com", "UNVERIFIED"),
        ({"mfa_required": "unverified"}, "mia@contoso.com", "UNVERIFIED"),
        ({"conditional_access_blocked": "unverified"}, "cab@contoso.com", "UNVERIFIED"),
        ({"password_expired": "verified"}, "carol@contoso.com", "VERIFIED"),
        ({"password_expired": "verified"}, "alice@contoso.com", "VERIFIED"),
    ],
)
async def test_policy_switch_flips_the_answer(
    make_gateway: GatewayFactory, policy: dict[str, str], username: str, expected: str
) -> None:
    client = await make_gateway(policy=policy)
    status, body = await post_hook(client, username, USERS[username])
    assert (status, credential(body)) == (200, expected)


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        ("busy@contoso.com", "http_429"),
        ("boom@contoso.com", "http_5xx"),
        ("proxy@contoso.com", "bad_response"),
    ],
)
async def test_upstream_fault_is_unavailable_with_reason(
    source: AzureAdSource, username: str, reason: str
) -> None:
    verdict = await source.verify(username, USERS[username])
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, reason)


@pytest.mark.parametrize(
    "username", ["hang@contoso.com", "busy@contoso.com", "boom@contoso.com", "proxy@contoso.com"]
)
async def test_source_trouble_answers_200_unverified_within_budget(
    make_gateway: GatewayFactory, username: str
) -> None:
    client = await make_gateway(budget=1.0)
    started = time.monotonic()
    status, body = await post_hook(client, username, USERS[username])
    elapsed = time.monotonic() - started
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert elapsed < 2.0  # budget 1.0 s; generous bound, timings live in bench/


@pytest.mark.parametrize("mode", ["hang", "http_500", "http_429", "non_json"])
async def test_whole_directory_outage_answers_unverified_within_budget(
    make_gateway: GatewayFactory, entra: RunningEmulator, mode: str
) -> None:
    client = await make_gateway(budget=1.0)
    entra.emulator.set_fault(mode=mode, retry_after=30)
    started = time.monotonic()
    status, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert time.monotonic() - started < 2.0
    entra.emulator.set_fault(mode="none")
    before = entra.emulator.requests_by_kind["token"]
    status, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    if mode == "http_429":
        # A 429 (here on the user realm) cools the whole source down: nothing is sent meanwhile.
        assert credential(body) == "UNVERIFIED"
        assert entra.emulator.requests_by_kind["token"] == before
    else:
        assert credential(body) == "VERIFIED"


@pytest.mark.parametrize("fault_user", ["busy@contoso.com", "boom@contoso.com"])
async def test_user_b_never_gets_user_a_throttled_answer_under_concurrency(
    source: AzureAdSource, fault_user: str
) -> None:
    # msal's own cache would replay A's 429/5xx to everyone for Retry-After seconds.
    good = ["alice@contoso.com", "zoë@contoso.com", "bob@contoso.com"]
    calls = [(fault_user, USERS[fault_user])] * 20 + [(u, USERS[u]) for u in good] * 20
    random.Random(7).shuffle(calls)
    verdicts = await asyncio.gather(*(source.verify(u, p) for u, p in calls))
    for (username, _), verdict in zip(calls, verdicts, strict=True):
        if username == fault_user:
            assert verdict.result is Result.UNAVAILABLE
        else:
            assert verdict.result is Result.VERIFIED, (username, verdict)
    after = await source.verify("alice@contoso.com", USERS["alice@contoso.com"])
    assert after.result is Result.VERIFIED


async def test_wrong_password_is_never_answered_from_a_replayed_success(
    source: AzureAdSource,
) -> None:
    alice = "alice@contoso.com"
    for _ in range(3):
        assert (await source.verify(alice, USERS[alice])).result is Result.VERIFIED
        assert (await source.verify(alice, "Wrong#Pass-0000")).result is Result.DENIED


async def test_federated_user_is_verified_through_adfs(
    source: AzureAdSource, entra: RunningEmulator
) -> None:
    before = entra.emulator.requests_by_kind["adfs"]
    verdict = await source.verify("fed1@fabrikam.com", USERS["fed1@fabrikam.com"])
    assert (verdict.result, verdict.reason) == (Result.VERIFIED, "ok")
    assert entra.emulator.requests_by_kind["adfs"] == before + 1


async def test_federated_wrong_password_is_denied(source: AzureAdSource) -> None:
    verdict = await source.verify("fed1@fabrikam.com", "Wrong#Pass-0000")
    assert (verdict.result, verdict.reason) == (Result.DENIED, "adfs_failed_authentication")


async def test_federated_mfa_after_adfs_follows_policy(source: AzureAdSource) -> None:
    verdict = await source.verify("fedmfa@fabrikam.com", USERS["fedmfa@fabrikam.com"])
    assert (verdict.result, verdict.reason) == (Result.VERIFIED, "aadsts_50076")


async def test_one_federated_failure_does_not_block_other_federated_users(
    source: AzureAdSource,
) -> None:
    # AD FS answers a wrong password with HTTP 500, which msal would replay to every user.
    wrong = source.verify("fed1@fabrikam.com", "Wrong#Pass-0000")
    right = [source.verify("fed2@fabrikam.com", USERS["fed2@fabrikam.com"]) for _ in range(5)]
    first, *others = await asyncio.gather(wrong, *right)
    assert first.result is Result.DENIED
    assert all(v.result is Result.VERIFIED for v in others)


@pytest.mark.parametrize("username", ["zoë@contoso.com", "名前@contoso.com"])
async def test_non_ascii_username_and_password_verify(
    make_gateway: GatewayFactory, username: str
) -> None:
    client = await make_gateway()
    status, body = await post_hook(client, username, USERS[username])
    assert (status, credential(body)) == (200, "VERIFIED")
    status, body = await post_hook(client, username, USERS[username] + "x")
    assert (status, credential(body)) == (200, "UNVERIFIED")


async def test_username_with_url_metacharacters_is_answered(source: AzureAdSource) -> None:
    verdict = await source.verify("a#b?c/d@contoso.com", "Some#Pass-0000")
    assert (verdict.result, verdict.reason) == (Result.DENIED, "aadsts_50034")


async def test_username_case_does_not_matter(source: AzureAdSource) -> None:
    verdict = await source.verify("Alice@CONTOSO.com", USERS["alice@contoso.com"])
    assert verdict.result is Result.VERIFIED


async def test_user_realm_is_fetched_once_per_domain(
    source: AzureAdSource, entra: RunningEmulator
) -> None:
    entra.emulator.reset_counters()
    for user in ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com", "Dave@Contoso.com"]:
        await source.verify(user, USERS[user.lower()])
    assert entra.emulator.requests_by_kind["realm"] == 1
    assert entra.emulator.requests_by_kind["token"] == 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_source_down_at_start_becomes_ready_by_itself(aiohttp_client: Any) -> None:
    port = _free_port()
    config = parse_config(gateway_yaml(f"http://127.0.0.1:{port}"), env={})
    from gateway.app import create_app

    client = await aiohttp_client(create_app(config))
    ready = await client.get("/readyz")
    assert ready.status == 503
    detail = (await ready.json())["sources"]["entra"]
    assert detail == {"ready": False, "circuit": "closed", "last_error": "network"}
    status, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
    assert (status, credential(body)) == (200, "UNVERIFIED")

    running = await start_emulator(load_directory(USERS_FILE), port=port)
    try:
        for _ in range(100):
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/readyz")).status == 200
        status, body = await post_hook(client, "alice@contoso.com", USERS["alice@contoso.com"])
        assert (status, credential(body)) == (200, "VERIFIED")
    finally:
        await running.close()


async def test_wrong_client_secret_is_unavailable_misconfiguration(entra: RunningEmulator) -> None:
    src = AzureAdSource(source_config(entra.url, client_secret="not-the-secret-000"))
    await src.start()
    try:
        verdict = await src.verify("alice@contoso.com", USERS["alice@contoso.com"])
    finally:
        await src.close()
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "aadsts_7000215")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert_pem, key_pem = self_signed()
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    return cert_path, key_path


async def test_certificate_credential_verifies(entra: RunningEmulator, tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    config = source_config(
        entra.url,
        client_secret=None,
        certificate={"certificate_file": str(cert_path), "private_key_file": str(key_path)},
    )
    src = AzureAdSource(config)
    await src.start()
    try:
        verdict = await src.verify("alice@contoso.com", USERS["alice@contoso.com"])
    finally:
        await src.close()
    assert verdict.result is Result.VERIFIED


async def test_one_source_stays_correct_through_20000_verifications() -> None:
    # msal's internal cache broke for good after ~1,000 entries (reference §4.3 correction).
    total, wrong_every = 20_000, 5  # 20% wrong passwords
    directory = EmulatedDirectory.with_generated_users(
        2_000, domain="contoso.com", base=load_directory(USERS_FILE)
    )
    running = await start_emulator(directory)
    users = [(u.username, u.password) for u in directory.users if u.username.startswith("user")]
    assert len(users) == 2_000
    # Correctness, not latency: generous timeouts, so a loaded CI machine does not turn a slow
    # answer into a "mistake".
    timeouts = {"connect_seconds": 10.0, "read_seconds": 20.0}
    src = AzureAdSource(source_config(running.url, max_connections=32, timeouts=timeouts))
    await src.start()
    mistakes: list[tuple[int, str]] = []
    semaphore = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        username, password = users[i % len(users)]
        wrong = i % wrong_every == 0
        async with semaphore:
            verdict = await src.verify(username, password + "-wrong" if wrong else password)
        expected = Result.DENIED if wrong else Result.VERIFIED
        if verdict.result is not expected:
            mistakes.append((i, verdict.reason))

    try:
        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        await src.close()
        await running.close()
    assert mistakes == []
    assert running.emulator.requests_by_kind["token"] == total
