"""okta_org source against the Okta emulator on 127.0.0.1 (and a stub for answers it cannot give)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from emulators.okta import OktaOrg, RunningOktaEmulator, SeedUser, start_okta_emulator
from emulators.okta.authn import directory_of
from gateway.app import create_app
from gateway.config import ConfigError, parse_config
from plugins.base import Result, Verdict
from plugins.okta_org import (
    MAX_RETRY_AFTER,
    OktaOrgConfig,
    OktaOrgPolicy,
    OktaOrgSource,
    decide_state,
    retry_after_seconds,
)
from plugins.registry import source_class
from tests.conftest import HOOK_PATH, HOOK_SECRET, SecretScan, credential, post_hook

DOMAIN = "merged.example"
ANN = f"ann@{DOMAIN}"
BEN = f"ben@{DOMAIN}"
MFA = f"mfa@{DOMAIN}"
ENROLL = f"enroll@{DOMAIN}"
EXPIRED = f"expired@{DOMAIN}"
LOCKED = f"locked@{DOMAIN}"
GHOST = f"ghost@{DOMAIN}"
WRONG = "Wrong#Pass-0000"
PASSWORDS = {
    ANN: "Ann#Merged-Pass-1187",
    BEN: "Ben#Merged-Pass-2291",
    MFA: "Mfa#Merged-Pass-3303",
    ENROLL: "Enroll#Merged-Pass-4417",
    EXPIRED: "Expired#Merged-Pass-5529",
    LOCKED: "Locked#Merged-Pass-6631",
}
# Far from the real time on purpose: a cool-down measured against the local clock instead of the
# answer's Date header would come out wrong.
EMULATOR_NOW = 1_800_000_000.0
OKTA_DATE = "Fri, 15 Jan 2027 08:00:00 GMT"  # EMULATOR_NOW as an HTTP Date


class FixedClock:
    """The emulator's clock: still, unless a test moves it."""

    def __init__(self) -> None:
        self.now = EMULATOR_NOW

    def __call__(self) -> float:
        """The current fake time (epoch seconds)."""
        return self.now


def seed_user(login: str) -> SeedUser:
    """An ACTIVE user with an Okta password credential."""
    profile = {"login": login, "email": login, "firstName": "Merged", "lastName": "User"}
    return SeedUser(profile=profile, status="ACTIVE", credential="password")


async def control(running: RunningOktaEmulator, method: str, path: str, body: Any) -> Any:
    """Call the emulator's control plane (never the source under test)."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, running.url + path, json=body) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json(content_type=None)


@pytest.fixture
async def okta_org(secret_scan: SecretScan) -> AsyncIterator[RunningOktaEmulator]:
    """The second org: six users with passwords, one with a factor, one enrolling, one expired."""
    secret_scan.secrets |= set(PASSWORDS.values())
    org = OktaOrg(users=[seed_user(login) for login in PASSWORDS])
    running = await start_okta_emulator(org, clock=FixedClock())
    try:
        for login, password in PASSWORDS.items():
            await control(running, "PUT", f"/_emulator/authn/users/{login}", {"password": password})
        await control(running, "PUT", f"/_emulator/authn/users/{MFA}", {"mfa": "enrolled"})
        await control(
            running, "PUT", f"/_emulator/authn/users/{ENROLL}", {"mfa": "enroll_required"}
        )
        await control(
            running, "PUT", f"/_emulator/authn/users/{EXPIRED}", {"password_expired": True}
        )
        yield running
    finally:
        # Tokens the org handed out must not show up in any log of the session either.
        secret_scan.secrets |= set(directory_of(running.emulator).issued_tokens)
        await running.close()


def source_config(org_url: str, **extra: Any) -> OktaOrgConfig:
    """A validated okta_org config (through the gateway's config parser)."""
    config = parse_config(gateway_yaml(org_url, source_extra=extra), env={})
    (source,) = config.sources
    assert isinstance(source, OktaOrgConfig)
    return source


def gateway_yaml(
    org_url: str, *, source_extra: dict[str, Any] | None = None, bare: bool = False
) -> str:
    """A gateway whose only source is the second org, routed by its domain."""
    source: dict[str, Any] = {"name": "merged", "type": "okta_org", "org_url": org_url}
    if not bare:
        source |= {"timeouts": {"connect": 1.0, "total": 0.5}, "pool_size": 16}
    source |= source_extra or {}
    config = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
        "budget_seconds": 2.5,
        "sources": [source],
        "routes": [{"match": {"domains": [DOMAIN]}, "sources": ["merged"]}],
        "logging": {"level": "debug", "usernames": "hash"},
    }
    return yaml.safe_dump(config)


@pytest.fixture
async def source(okta_org: RunningOktaEmulator) -> AsyncIterator[OktaOrgSource]:
    """A started okta_org source pointed at the emulator."""
    src = OktaOrgSource(source_config(okta_org.url))
    await src.start()
    try:
        yield src
    finally:
        await src.close()


Setup = Callable[[RunningOktaEmulator], Awaitable[None]]


async def nothing(_: RunningOktaEmulator) -> None:
    """No preparation."""


async def lock_shown(running: RunningOktaEmulator) -> None:
    """Lock LOCKED out with one wrong password; the org shows lockouts."""
    settings = {"lockout_threshold": 1, "show_lockout_failures": True}
    await control(running, "PUT", "/_emulator/authn", settings)
    await wrong_attempt(running, LOCKED)


async def lock_hidden(running: RunningOktaEmulator) -> None:
    """Lock LOCKED out; the org hides lockouts (Okta's default)."""
    await control(running, "PUT", "/_emulator/authn", {"lockout_threshold": 1})
    await wrong_attempt(running, LOCKED)


async def wrong_attempt(running: RunningOktaEmulator, login: str) -> None:
    """One wrong password straight at the emulator."""
    async with aiohttp.ClientSession() as session:
        body = {"username": login, "password": WRONG}
        async with session.post(running.url + "/api/v1/authn", json=body) as resp:
            await resp.read()


def fault(mode: str, **extra: Any) -> Setup:
    """Inject a fault on the authn bucket."""

    async def setup(running: RunningOktaEmulator) -> None:
        await control(
            running, "PUT", "/_emulator/fault", {"mode": mode, "buckets": ["authn"], **extra}
        )

    return setup


async def slow(running: RunningOktaEmulator) -> None:
    """Every API answer takes 3 s (the source allows 0.5 s)."""
    await control(running, "PUT", "/_emulator/fault", {"latency_ms": 3000})


async def stopped(running: RunningOktaEmulator) -> None:
    """The org goes away mid-test."""
    await running.close()


# case -> (username, password, setup, expected (result, reason)) with the default policy
DECISION_TABLE: dict[str, tuple[str, str, Setup, tuple[Result, str]]] = {
    "success": (ANN, PASSWORDS[ANN], nothing, (Result.VERIFIED, "ok")),
    "wrong_password": (ANN, WRONG, nothing, (Result.DENIED, "e0000004")),
    "unknown_user": (GHOST, PASSWORDS[ANN], nothing, (Result.DENIED, "e0000004")),
    "mfa_required": (MFA, PASSWORDS[MFA], nothing, (Result.VERIFIED, "mfa_required")),
    "mfa_enroll": (ENROLL, PASSWORDS[ENROLL], nothing, (Result.VERIFIED, "mfa_enroll")),
    "mfa_wrong_password": (MFA, WRONG, nothing, (Result.DENIED, "e0000004")),
    "password_expired": (
        EXPIRED,
        PASSWORDS[EXPIRED],
        nothing,
        (Result.DENIED, "password_expired"),
    ),
    "locked_out": (LOCKED, PASSWORDS[LOCKED], lock_shown, (Result.DENIED, "locked_out")),
    "locked_out_hidden": (LOCKED, PASSWORDS[LOCKED], lock_hidden, (Result.DENIED, "e0000004")),
    "http_429": (ANN, PASSWORDS[ANN], fault("http_429"), (Result.UNAVAILABLE, "http_429")),
    "http_500": (ANN, PASSWORDS[ANN], fault("http_500"), (Result.UNAVAILABLE, "http_5xx")),
    "http_503": (ANN, PASSWORDS[ANN], fault("http_503"), (Result.UNAVAILABLE, "http_5xx")),
    "http_504": (ANN, PASSWORDS[ANN], fault("http_504"), (Result.UNAVAILABLE, "http_5xx")),
    "slow": (ANN, PASSWORDS[ANN], slow, (Result.UNAVAILABLE, "timeout")),
    "hang": (ANN, PASSWORDS[ANN], fault("hang"), (Result.UNAVAILABLE, "timeout")),
    "stopped": (ANN, PASSWORDS[ANN], stopped, (Result.UNAVAILABLE, "network")),
}


@pytest.mark.parametrize("case", list(DECISION_TABLE))
async def test_answer_maps_as_decision_table_says(
    source: OktaOrgSource, okta_org: RunningOktaEmulator, case: str
) -> None:
    username, password, setup, expected = DECISION_TABLE[case]
    await setup(okta_org)
    verdict = await source.verify(username, password)
    assert (verdict.result, verdict.reason) == expected
    assert verdict.source == "merged"


async def test_timeout_answers_within_the_configured_total(
    source: OktaOrgSource, okta_org: RunningOktaEmulator
) -> None:
    await slow(okta_org)
    loop = asyncio.get_running_loop()
    started = loop.time()
    verdict = await source.verify(ANN, PASSWORDS[ANN])
    assert verdict.reason == "timeout"
    assert loop.time() - started < 2.0  # total is 0.5 s; the emulator would take 3 s


async def test_stopped_org_gives_the_attempt_back(
    source: OktaOrgSource, okta_org: RunningOktaEmulator
) -> None:
    assert (await source.verify(ANN, PASSWORDS[ANN])).verified
    await okta_org.close()
    # The first call may go out on the pool's kept-alive connection before it is seen dead:
    # still "network", but the password may have been written, so the attempt is kept.
    first = await source.verify(ANN, PASSWORDS[ANN])
    assert (first.result, first.reason) == (Result.UNAVAILABLE, "network")
    # With no connection left to reuse, a refused connection proves nothing left.
    verdict = await source.verify(ANN, PASSWORDS[ANN])
    assert (verdict.result, verdict.reason, verdict.sent) == (Result.UNAVAILABLE, "network", False)


async def test_answered_verdicts_count_as_sent(source: OktaOrgSource) -> None:
    assert (await source.verify(ANN, WRONG)).sent


@pytest.mark.parametrize("seconds", [3, 7, 30])
async def test_429_cools_the_source_down_until_x_rate_limit_reset(
    source: OktaOrgSource, okta_org: RunningOktaEmulator, seconds: int
) -> None:
    await fault("http_429", retry_after=seconds)(okta_org)
    verdict = await source.verify(ANN, PASSWORDS[ANN])
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "http_429")
    assert verdict.throttle == "source"
    assert verdict.retry_after == seconds


async def test_exhausted_authn_bucket_is_a_429_with_a_bounded_cool_down(
    source: OktaOrgSource, okta_org: RunningOktaEmulator
) -> None:
    await control(okta_org, "PUT", "/_emulator/limits", {"limits": {"authn": 1}})
    assert (await source.verify(ANN, PASSWORDS[ANN])).verified
    verdict = await source.verify(BEN, PASSWORDS[BEN])
    assert (verdict.reason, verdict.throttle) == ("http_429", "source")
    assert verdict.retry_after is not None
    assert 1.0 <= verdict.retry_after <= MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("reset", "date", "expected"),
    [
        ("1800000012", OKTA_DATE, 12.0),  # Reset - Date
        (" 1800000012 ", OKTA_DATE, 12.0),
        ("1800009999", None, MAX_RETRY_AFTER),  # far ahead of now: bounded
        ("1799999000", None, 1.0),  # already past: the least cool-down
        ("soon", None, None),
        ("nan", None, None),
        (None, None, None),
    ],
)
def test_retry_after_is_derived_from_reset_and_bounded(
    reset: str | None, date: str | None, expected: float | None
) -> None:
    assert retry_after_seconds(reset, date, EMULATOR_NOW) == expected


def test_retry_after_prefers_the_answers_date_over_the_local_clock() -> None:
    # Okta's clock (Date) says 12 s remain; a local clock an hour behind would say 60 (capped).
    assert retry_after_seconds("1800000012", OKTA_DATE, EMULATOR_NOW - 3600) == 12.0
    assert retry_after_seconds("1800000012", "not a date", EMULATOR_NOW) == 12.0


@pytest.mark.parametrize(
    ("policy", "username", "expected"),
    [
        ({"mfa_required": "unverified"}, MFA, (Result.DENIED, "mfa_required")),
        ({"mfa_required": "unverified"}, ENROLL, (Result.DENIED, "mfa_enroll")),
        ({"password_expired": "verified"}, EXPIRED, (Result.VERIFIED, "password_expired")),
        ({"password_expired": "verified"}, ANN, (Result.VERIFIED, "ok")),
    ],
)
async def test_policy_switches_decide_mfa_and_expired(
    okta_org: RunningOktaEmulator,
    policy: dict[str, str],
    username: str,
    expected: tuple[Result, str],
) -> None:
    src = OktaOrgSource(source_config(okta_org.url, policy=policy))
    await src.start()
    try:
        verdict = await src.verify(username, PASSWORDS[username])
    finally:
        await src.close()
    assert (verdict.result, verdict.reason) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("SUCCESS", (Result.VERIFIED, "ok")),
        ("PASSWORD_WARN", (Result.VERIFIED, "password_warn")),
        ("MFA_REQUIRED", (Result.VERIFIED, "mfa_required")),
        ("MFA_ENROLL", (Result.VERIFIED, "mfa_enroll")),
        ("MFA_CHALLENGE", (Result.VERIFIED, "mfa_challenge")),
        ("MFA_ENROLL_ACTIVATE", (Result.VERIFIED, "mfa_enroll_activate")),
        ("PASSWORD_EXPIRED", (Result.DENIED, "password_expired")),
        ("LOCKED_OUT", (Result.DENIED, "locked_out")),
        ("RECOVERY", (Result.DENIED, "recovery")),
        ("RECOVERY_CHALLENGE", (Result.DENIED, "recovery_challenge")),
        ("PASSWORD_RESET", (Result.DENIED, "password_reset")),
        ("UNAUTHENTICATED", (Result.DENIED, "unauthenticated")),
        ("SOMETHING_NEW", (Result.DENIED, "unknown_status")),
        ("success", (Result.DENIED, "unknown_status")),
    ],
)
def test_every_transaction_state_is_mapped_deliberately(
    state: str, expected: tuple[Result, str]
) -> None:
    assert decide_state(state, OktaOrgPolicy()) == expected


def test_reasons_are_declared_for_metrics() -> None:
    known = OktaOrgSource.known_reasons
    for state in ("PASSWORD_WARN", "MFA_CHALLENGE", "RECOVERY", "LOCKED_OUT", "SOMETHING_NEW"):
        reason = decide_state(state, OktaOrgPolicy())[1]
        assert reason in known
    assert {"e0000004", "http_400", "unexpected_status", "password_expired"} <= known
    assert OktaOrgSource.misconfiguration_reasons == {"unexpected_status"}
    assert "unexpected_status" not in OktaOrgSource.outage_reasons


async def test_empty_password_is_refused_before_any_io(
    source: OktaOrgSource, okta_org: RunningOktaEmulator
) -> None:
    before = okta_org.emulator.stats()["requests_total"]
    verdict = await source.verify(ANN, "")
    assert (verdict.result, verdict.reason, verdict.sent) == (
        Result.DENIED,
        "empty_password",
        False,
    )
    assert okta_org.emulator.stats()["requests_total"] == before


async def test_not_started_source_is_unavailable(okta_org: RunningOktaEmulator) -> None:
    src = OktaOrgSource(source_config(okta_org.url))
    assert not src.ready
    verdict = await src.verify(ANN, PASSWORDS[ANN])
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "not_ready")


async def test_concurrent_mixed_sign_ins_each_get_their_own_verdict(
    source: OktaOrgSource, okta_org: RunningOktaEmulator
) -> None:
    await control(okta_org, "PUT", "/_emulator/authn", {"lockout_threshold": None})
    calls = [
        (ANN, PASSWORDS[ANN], (Result.VERIFIED, "ok")),
        (ANN, WRONG, (Result.DENIED, "e0000004")),
        (BEN, PASSWORDS[BEN], (Result.VERIFIED, "ok")),
        (BEN, PASSWORDS[ANN], (Result.DENIED, "e0000004")),
        (GHOST, PASSWORDS[ANN], (Result.DENIED, "e0000004")),
        (MFA, PASSWORDS[MFA], (Result.VERIFIED, "mfa_required")),
        (EXPIRED, PASSWORDS[EXPIRED], (Result.DENIED, "password_expired")),
    ] * 15
    verdicts = await asyncio.gather(*(source.verify(u, p) for u, p, _ in calls))
    assert [(v.result, v.reason) for v in verdicts] == [expected for _, _, expected in calls]


async def test_password_and_tokens_never_logged(
    source: OktaOrgSource, okta_org: RunningOktaEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verdicts: list[Verdict] = []
    for username in PASSWORDS:
        verdicts.append(await source.verify(username, PASSWORDS[username]))
        verdicts.append(await source.verify(username, WRONG))
    await fault("http_500")(okta_org)
    verdicts.append(await source.verify(ANN, PASSWORDS[ANN]))
    tokens = set(directory_of(okta_org.emulator).issued_tokens)
    assert len(tokens) >= 3  # SUCCESS, MFA_REQUIRED, MFA_ENROLL, PASSWORD_EXPIRED
    secrets = tokens | set(PASSWORDS.values()) | {WRONG}
    texts = [f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records]
    texts += [repr(v) for v in verdicts]
    texts.append(repr(vars(source)))
    assert not [s for s in secrets if any(s in text for text in texts)]


async def test_session_token_is_not_kept(
    source: OktaOrgSource, okta_org: RunningOktaEmulator
) -> None:
    verdict = await source.verify(ANN, PASSWORDS[ANN])
    assert verdict.verified
    tokens = set(directory_of(okta_org.emulator).issued_tokens)
    assert tokens
    held = repr(vars(source)) + repr(verdict)
    assert not [t for t in tokens if t in held]


# -- answers the emulator cannot give: a stub org on a real socket ---------------------------


class StubOrg:
    """Answers every authn call with the configured status, body and headers; records requests."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b'{"status": "SUCCESS"}'
        self.headers: dict[str, str] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        """Record, then answer as configured."""
        body = await request.read()
        self.requests.append((request.method, request.path, dict(request.headers), body))
        return web.Response(status=self.status, body=self.body, headers=self.headers)


@pytest.fixture
async def stub() -> AsyncIterator[tuple[StubOrg, str]]:
    """A stub org on 127.0.0.1 and its URL."""
    org = StubOrg()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", org.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield org, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def stub_source(stub: tuple[StubOrg, str]) -> AsyncIterator[OktaOrgSource]:
    """A started source pointed at the stub."""
    src = OktaOrgSource(source_config(stub[1]))
    await src.start()
    try:
        yield src
    finally:
        await src.close()


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (200, b"<html>portal</html>", {}, (Result.UNAVAILABLE, "bad_response")),
        (200, b"", {}, (Result.UNAVAILABLE, "bad_response")),
        (200, b"\xff\xfe", {}, (Result.UNAVAILABLE, "bad_response")),
        (200, _json(["SUCCESS"]), {}, (Result.UNAVAILABLE, "bad_response")),
        (200, _json({"status": 1}), {}, (Result.UNAVAILABLE, "bad_response")),
        (
            200,
            _json({"status": "PASSWORD_WARN", "sessionToken": "x"}),
            {},
            (Result.VERIFIED, "password_warn"),
        ),
        (200, _json({"status": "RECOVERY"}), {}, (Result.DENIED, "recovery")),
        (200, _json({"status": "MFA_CHALLENGE"}), {}, (Result.VERIFIED, "mfa_challenge")),
        (200, _json({"status": "BRAND_NEW"}), {}, (Result.DENIED, "unknown_status")),
        (
            200,
            _json({"status": "SUCCESS", "pad": "x" * 600_000}),
            {},
            (Result.UNAVAILABLE, "bad_response"),
        ),
        (204, b"", {}, (Result.UNAVAILABLE, "bad_response")),
        (
            302,
            b"",
            {"Location": "https://elsewhere.example/"},
            (Result.UNAVAILABLE, "unexpected_status"),
        ),
        (400, _json({"errorCode": "E0000001"}), {}, (Result.UNAVAILABLE, "http_400")),
        (401, _json({"errorCode": "E0000011"}), {}, (Result.UNAVAILABLE, "unexpected_status")),
        (401, b"Unauthorized", {}, (Result.UNAVAILABLE, "unexpected_status")),
        (403, _json({"errorCode": "E0000006"}), {}, (Result.UNAVAILABLE, "unexpected_status")),
        (404, _json({"errorCode": "E0000007"}), {}, (Result.UNAVAILABLE, "unexpected_status")),
        (429, b"", {}, (Result.UNAVAILABLE, "http_429")),
        (502, b"<html>bad gateway</html>", {}, (Result.UNAVAILABLE, "http_5xx")),
    ],
)
async def test_answers_outside_the_emulator_map_safely(
    stub: tuple[StubOrg, str],
    stub_source: OktaOrgSource,
    status: int,
    body: bytes,
    headers: dict[str, str],
    expected: tuple[Result, str],
) -> None:
    org, _ = stub
    org.status, org.body, org.headers = status, body, headers
    verdict = await stub_source.verify(ANN, PASSWORDS[ANN])
    assert (verdict.result, verdict.reason) == expected


async def test_429_without_reset_leaves_the_cool_down_to_the_gateway(
    stub: tuple[StubOrg, str], stub_source: OktaOrgSource
) -> None:
    org, _ = stub
    org.status, org.body = 429, _json({"errorCode": "E0000047"})
    verdict = await stub_source.verify(ANN, PASSWORDS[ANN])
    assert (verdict.throttle, verdict.retry_after) == ("source", None)


async def test_request_is_a_public_application_authn_call(
    stub: tuple[StubOrg, str], stub_source: OktaOrgSource
) -> None:
    org, _ = stub
    await stub_source.verify("Ann@Merged.Example", "pä$$ wörd")
    ((method, path, headers, body),) = org.requests
    assert (method, path) == ("POST", "/api/v1/authn")
    # The exact typed username and password, nothing else (no token, no options).
    assert json.loads(body) == {"username": "Ann@Merged.Example", "password": "pä$$ wörd"}
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("okta-password-gateway/")
    assert "Authorization" not in headers
    assert "X-Forwarded-For" not in headers


async def test_cookies_from_one_answer_never_ride_on_the_next_call(
    stub: tuple[StubOrg, str],
) -> None:
    org, url = stub
    org.headers = {"Set-Cookie": "JSESSIONID=ann-session; Path=/"}
    # A host name, not an address: cookie jars ignore cookies set by IP addresses.
    src = OktaOrgSource(source_config(url.replace("127.0.0.1", "localhost")))
    await src.start()
    try:
        assert (await src.verify(ANN, PASSWORDS[ANN])).verified
        assert (await src.verify(BEN, PASSWORDS[BEN])).verified
    finally:
        await src.close()
    assert len(org.requests) == 2
    assert all("Cookie" not in headers for _, _, headers, _ in org.requests)


async def test_redirect_is_not_followed(
    stub: tuple[StubOrg, str], stub_source: OktaOrgSource
) -> None:
    org, url = stub
    org.status, org.headers = 307, {"Location": url + "/elsewhere"}
    verdict = await stub_source.verify(ANN, PASSWORDS[ANN])
    assert verdict.reason == "unexpected_status"
    assert [path for _, path, _, _ in org.requests] == ["/api/v1/authn"]


# -- configuration ----------------------------------------------------------------------------


def test_registered_as_a_builtin_type() -> None:
    assert source_class("okta_org") is OktaOrgSource


def test_defaults() -> None:
    config = source_config("http://127.0.0.1:9", timeouts={"connect": 1.5, "total": 2.5})
    assert config.org_url == "http://127.0.0.1:9"
    assert (config.timeouts.connect, config.timeouts.total) == (1.5, 2.5)
    assert config.policy == OktaOrgPolicy(mfa_required="verified", password_expired="unverified")
    bare = parse_config(gateway_yaml("https://acme.okta.com/", bare=True), env={}).sources[0]
    assert isinstance(bare, OktaOrgConfig)
    assert bare.org_url == "https://acme.okta.com"
    assert bare.pool_size == 256


@pytest.mark.parametrize(
    "org_url",
    [
        "http://acme.okta.com",  # plain http off loopback
        "https://acme.okta.com/api/v1",  # a path
        "https://user:pw@acme.okta.com",  # credentials in the URL
        "https://acme.okta.com?x=1",
        "ftp://acme.okta.com",
        "acme.okta.com",
    ],
)
def test_org_url_must_be_https_or_loopback_http(org_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(gateway_yaml(org_url), env={})
    assert "sources[0].org_url" in dict(caught.value.problems)


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"api_token": "00abc"}, "sources[0].api_token"),
        ({"policy": {"mfa_required": "maybe"}}, "sources[0].policy.mfa_required"),
        ({"policy": {"conditional_access_blocked": "verified"}}, "sources[0].policy"),
        ({"timeouts": {"connect_seconds": 1}}, "sources[0].timeouts"),
        ({"pool_size": 0}, "sources[0].pool_size"),
    ],
)
def test_unknown_or_bad_keys_are_refused_by_path(extra: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(gateway_yaml("https://acme.okta.com", source_extra=extra), env={})
    assert any(p.startswith(path) for p, _ in caught.value.problems), caught.value.problems


# -- end to end through the gateway ---------------------------------------------------------


async def test_second_org_user_is_verified_end_to_end(
    aiohttp_client: Any, okta_org: RunningOktaEmulator
) -> None:
    config = parse_config(
        gateway_yaml(okta_org.url, source_extra={"timeouts": {"total": 2.0}}), env={}
    )
    client = await aiohttp_client(create_app(config))
    status, body = await post_hook(client, ANN, PASSWORDS[ANN])
    assert (status, credential(body)) == (200, "VERIFIED")
    status, body = await post_hook(client, BEN, WRONG)
    assert (status, credential(body)) == (200, "UNVERIFIED")
    status, body = await post_hook(client, MFA, PASSWORDS[MFA])
    assert (status, credential(body)) == (200, "VERIFIED")
    status, body = await post_hook(client, EXPIRED, PASSWORDS[EXPIRED])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert okta_org.emulator.stats()["events"]["authn_success"] == 1


@pytest.mark.parametrize("trouble", ["http_500", "http_429", "hang", "stopped"])
async def test_org_trouble_is_never_a_5xx_through_the_gateway(
    aiohttp_client: Any, okta_org: RunningOktaEmulator, trouble: str
) -> None:
    config = parse_config(
        gateway_yaml(okta_org.url, source_extra={"timeouts": {"total": 1.0}}), env={}
    )
    client = await aiohttp_client(create_app(config))
    await (stopped if trouble == "stopped" else fault(trouble))(okta_org)
    for username in (ANN, BEN):
        status, body = await post_hook(client, username, PASSWORDS[username])
        assert (status, credential(body)) == (200, "UNVERIFIED")


async def test_429_cools_the_source_down_in_the_gateway(
    aiohttp_client: Any, okta_org: RunningOktaEmulator
) -> None:
    config = parse_config(
        gateway_yaml(okta_org.url, source_extra={"timeouts": {"total": 2.0}}), env={}
    )
    client = await aiohttp_client(create_app(config))
    await fault("http_429", retry_after=30)(okta_org)
    status, body = await post_hook(client, ANN, PASSWORDS[ANN])
    assert credential(body) == "UNVERIFIED"
    await control(okta_org, "PUT", "/_emulator/fault", {"mode": "none"})
    before = okta_org.emulator.stats()["requests_total"]
    status, body = await post_hook(client, BEN, PASSWORDS[BEN])
    # The org asked for 30 s: the gateway does not ask again meanwhile, whoever signs in.
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert okta_org.emulator.stats()["requests_total"] == before
