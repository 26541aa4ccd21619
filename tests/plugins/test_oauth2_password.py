"""OAuth 2.0 password-grant source against a real server (django-oauth-toolkit) and a small fake.

The real server answers the decision table's OAuth cases; the fake on 127.0.0.1 covers what a
healthy server will not do on demand (429, 5xx, garbage, dialects for error_map, assertions).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.app import METRICS, create_app
from gateway.config import ConfigError, parse_config
from plugins.base import Result, Verdict
from plugins.oauth2_password import OAuth2PasswordConfig, OAuth2PasswordSource
from plugins.registry import source_class
from tests.conftest import HOOK_SECRET, SCAN, credential, post_hook
from tests.dot_server import CLIENT_ID, CLIENT_SECRET, DOT_USERS, DotServer

SOURCE = "legacy"
PASSWORDS = {u.username: u.password for u in DOT_USERS}
ALICE = "alice"
# What the fake server grants and accepts: all must stay out of logs and verdicts.
FAKE_PASSWORD = "Fake#Pass-2024-q7"
FAKE_TOKEN = "fake-access-token-8c1e5b7a0d"
FAKE_REFRESH = "fake-refresh-token-3f9a6e2b4c"
GENEROUS = {"connect": 5.0, "total": 20.0}  # correctness tests: a loaded machine is no failure

SCAN.secrets |= {CLIENT_SECRET, FAKE_PASSWORD, FAKE_TOKEN, FAKE_REFRESH, *PASSWORDS.values()}

SourceFactory = Callable[..., Awaitable[OAuth2PasswordSource]]


def gateway_yaml(token_url: str, *, budget: float = 2.5, **source_extra: Any) -> str:
    """A gateway config with one oauth2_password source taking every username.

    A `source_extra` value of None removes that key.
    """
    source: dict[str, Any] = {
        "name": SOURCE,
        "type": "oauth2_password",
        "token_url": token_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "timeouts": GENEROUS,
    }
    source.update(source_extra)
    config = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "okta": {"hook_path": "/okta/password-import", "auth": {"secrets": [HOOK_SECRET]}},
        "budget_seconds": budget,
        "sources": [{k: v for k, v in source.items() if v is not None}],
        "routes": [{"match": {"regex": "."}, "sources": [SOURCE]}],
        "logging": {"level": "debug", "usernames": "hash"},
    }
    return yaml.safe_dump(config, allow_unicode=True)


def source_config(token_url: str, **source_extra: Any) -> OAuth2PasswordConfig:
    """A validated oauth2_password config, through the gateway's config loader."""
    (config,) = parse_config(gateway_yaml(token_url, **source_extra), env={}).sources
    assert isinstance(config, OAuth2PasswordConfig)
    return config


def config_problems(token_url: str, **source_extra: Any) -> list[str]:
    """What check-config says about a source (empty when valid)."""
    try:
        parse_config(gateway_yaml(token_url, **source_extra), env={})
    except ConfigError as err:
        return err.lines()
    return []


@pytest.fixture(scope="session")
def dot() -> Iterator[DotServer]:
    """One django-oauth-toolkit server for the session, on a free port of 127.0.0.1."""
    server = DotServer()
    server.start()
    try:
        yield server
    finally:
        SCAN.add_output(server.log())
        server.cleanup()


@pytest.fixture
async def dot_copy(dot: DotServer) -> AsyncIterator[DotServer]:
    """A second server with the same users and client, for tests that stop it."""
    server = DotServer(copy_of=dot)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        SCAN.add_output(server.log())
        server.cleanup()


@pytest.fixture
async def make_source() -> AsyncIterator[SourceFactory]:
    """Build and start sources; all are closed after the test."""
    started: list[OAuth2PasswordSource] = []

    async def factory(token_url: str, **source_extra: Any) -> OAuth2PasswordSource:
        source = OAuth2PasswordSource(source_config(token_url, **source_extra))
        await source.start()
        started.append(source)
        return source

    yield factory
    for source in started:
        await source.close()


@pytest.fixture
async def source(dot: DotServer, make_source: SourceFactory) -> OAuth2PasswordSource:
    """A source pointed at the real server with the right client secret."""
    return await make_source(dot.token_url)


# --- the real server -------------------------------------------------------------------------

# (username, password) -> (result, reason), against django-oauth-toolkit
REAL_SERVER_TABLE = {
    "right password": (ALICE, PASSWORDS[ALICE], Result.VERIFIED, "ok"),
    "email username": ("bob@example.org", PASSWORDS["bob@example.org"], Result.VERIFIED, "ok"),
    "non-ascii": ("zoë", PASSWORDS["zoë"], Result.VERIFIED, "ok"),
    "wrong password": (ALICE, "Wrong#Pass-0000", Result.DENIED, "oauth_invalid_grant"),
    "unknown user": ("nobody", "Some#Pass-0000", Result.DENIED, "oauth_invalid_grant"),
    "inactive user": (
        "inactive", PASSWORDS["inactive"], Result.DENIED, "oauth_invalid_grant",
    ),
    "other user's password": (ALICE, PASSWORDS["zoë"], Result.DENIED, "oauth_invalid_grant"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REAL_SERVER_TABLE))
async def test_real_server_answer_maps_as_decision_table_says(
    source: OAuth2PasswordSource, case: str
) -> None:
    username, password, result, reason = REAL_SERVER_TABLE[case]
    verdict = await source.verify(username, password)
    assert (verdict.result, verdict.reason, verdict.source) == (result, reason, SOURCE)
    # The password grant cannot tell an unknown user from a wrong password: never "try next".
    assert verdict.unknown_user is False
    assert verdict.throttle is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"client_secret": "not-the-client-secret"}, "oauth_invalid_client"),
        ({"client_id": "no-such-client"}, "oauth_invalid_client"),
        ({"scope": "admin"}, "oauth_invalid_scope"),
    ],
    ids=["wrong client secret", "unknown client", "unsupported scope"],
)
async def test_gateway_misconfiguration_is_unavailable_with_its_own_reason(
    dot: DotServer, make_source: SourceFactory, extra: dict[str, Any], reason: str
) -> None:
    source = await make_source(dot.token_url, **extra)
    verdict = await source.verify(ALICE, PASSWORDS[ALICE])
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, reason)
    assert reason in OAuth2PasswordSource.misconfiguration_reasons
    # Not the directory's outage: one client cannot open the breaker for everyone with it.
    assert reason not in OAuth2PasswordSource.outage_reasons


async def test_supported_scope_is_sent_and_verifies(
    dot: DotServer, make_source: SourceFactory
) -> None:
    source = await make_source(dot.token_url, scope="read  write")
    assert source.settings.scope == "read write"
    assert (await source.verify(ALICE, PASSWORDS[ALICE])).result is Result.VERIFIED


async def test_misconfiguration_is_logged_once_per_code_without_user_data(
    dot: DotServer, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = await make_source(dot.token_url, client_secret="not-the-client-secret")
    caplog.set_level(logging.DEBUG)
    for username in (ALICE, "bob@example.org", ALICE):
        await source.verify(username, PASSWORDS[username])
    errors = [r for r in caplog.records if r.name == "plugins.oauth2_password"]
    assert [(r.levelname, r.__dict__["reason"]) for r in errors] == [
        ("ERROR", "oauth_invalid_client")
    ]
    rendered = repr(errors[0].__dict__)
    for secret in (ALICE, "bob@example.org", PASSWORDS[ALICE], "not-the-client-secret"):
        assert secret not in rendered


async def test_client_secret_file_is_read(
    dot: DotServer, make_source: SourceFactory, tmp_path: Path
) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    source = await make_source(
        dot.token_url, client_secret=None, client_secret_file=str(secret_file)
    )
    assert (await source.verify(ALICE, PASSWORDS[ALICE])).result is Result.VERIFIED


async def test_empty_password_is_denied_before_any_request(
    dot: DotServer, make_source: SourceFactory
) -> None:
    # The URL of a server that is not running: any I/O would answer `network`.
    source = await make_source(dot.token_url.replace(str(dot.port), "9"))
    verdict = await source.verify(ALICE, "")
    assert (verdict.result, verdict.reason, verdict.sent) == (
        Result.DENIED,
        "empty_password",
        False,
    )


async def test_slow_server_is_unavailable_timeout(
    dot: DotServer, make_source: SourceFactory
) -> None:
    source = await make_source(dot.token_url, timeouts={"connect": 1.0, "total": 0.5})
    started = time.monotonic()
    verdict = await source.verify("slowpoke", PASSWORDS["slowpoke"])
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "timeout")
    assert verdict.sent  # the password may have reached the server
    assert time.monotonic() - started < 2.5  # the server sleeps 3 s; generous bound


async def test_stopped_server_is_unavailable_and_password_not_sent(
    dot_copy: DotServer, make_source: SourceFactory
) -> None:
    source = await make_source(dot_copy.token_url)
    assert (await source.verify(ALICE, PASSWORDS[ALICE])).result is Result.VERIFIED
    dot_copy.stop()
    for password in (PASSWORDS[ALICE], "Wrong#Pass-0000"):
        verdict = await source.verify(ALICE, password)
        assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "network")
        assert verdict.sent is False  # connection refused: the attempt is given back


async def test_server_killed_mid_request_is_unavailable_not_a_verdict(
    dot_copy: DotServer, make_source: SourceFactory
) -> None:
    source = await make_source(dot_copy.token_url)
    pending = asyncio.create_task(source.verify("slowpoke", PASSWORDS["slowpoke"]))
    marker = dot_copy.data_dir / "slow-request-started"
    for _ in range(400):  # the server marks the file when it holds the request
        if marker.exists():
            break
        await asyncio.sleep(0.025)
    assert marker.exists()
    dot_copy.stop()
    verdict = await pending
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "network")
    assert verdict.sent is True  # it left: the attempt counts


async def test_concurrent_users_each_get_their_own_answer(
    source: OAuth2PasswordSource,
) -> None:
    calls = [
        (user, password if i % 3 else "Wrong#Pass-0000")
        for i, (user, password) in enumerate(
            [(u, PASSWORDS[u]) for u in (ALICE, "bob@example.org", "zoë")] * 10
        )
    ]
    verdicts = await asyncio.gather(*(source.verify(u, p) for u, p in calls))
    for (username, password), verdict in zip(calls, verdicts, strict=True):
        expected = Result.VERIFIED if password == PASSWORDS[username] else Result.DENIED
        assert verdict.result is expected, (username, verdict)


# --- through the gateway's app ---------------------------------------------------------------


async def gateway_client(
    aiohttp_client: Any, token_url: str, **options: Any
) -> TestClient[Any, Any]:
    """The gateway's aiohttp app on a real socket, its one source at `token_url`."""
    config = parse_config(gateway_yaml(token_url, **options), env={})
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    return client


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        (ALICE, PASSWORDS[ALICE], "VERIFIED"),
        ("zoë", PASSWORDS["zoë"], "VERIFIED"),
        (ALICE, "Wrong#Pass-0000", "UNVERIFIED"),
        ("nobody", "Some#Pass-0000", "UNVERIFIED"),
        ("inactive", PASSWORDS["inactive"], "UNVERIFIED"),
    ],
)
async def test_hook_answers_end_to_end_with_the_real_server(
    aiohttp_client: Any, dot: DotServer, username: str, password: str, expected: str
) -> None:
    client = await gateway_client(aiohttp_client, dot.token_url)
    status, body = await post_hook(client, username, password)
    assert (status, credential(body)) == (200, expected)


async def test_hook_counts_misconfiguration_code_in_metrics(
    aiohttp_client: Any, dot: DotServer
) -> None:
    client = await gateway_client(aiohttp_client, dot.token_url, client_secret="not-the-secret")
    registry = client.server.app[METRICS].registry
    labels = {"source": SOURCE, "code": "oauth_invalid_client"}
    assert registry.get_sample_value("gateway_upstream_errors_total", labels) == 0  # declared
    status, body = await post_hook(client, ALICE, PASSWORDS[ALICE])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert registry.get_sample_value("gateway_upstream_errors_total", labels) == 1


@pytest.mark.parametrize("trouble", ["slow", "stopped"])
async def test_server_trouble_answers_200_unverified_never_5xx(
    aiohttp_client: Any, dot_copy: DotServer, trouble: str
) -> None:
    client = await gateway_client(aiohttp_client, dot_copy.token_url, budget=1.0)
    username = ALICE
    if trouble == "slow":
        username = "slowpoke"
    else:
        dot_copy.stop()
    started = time.monotonic()
    status, body = await post_hook(client, username, PASSWORDS[username])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert time.monotonic() - started < 2.5  # budget 1.0 s; generous bound


# --- the fake server: what a healthy real one will not do on demand --------------------------


class FakeTokenServer:
    """A token endpoint whose answer depends on the username (see `answer`)."""

    def __init__(self) -> None:
        self.url = ""
        self.requests = 0
        self.public_key: Any = None
        self.assertions: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (header, claims)
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        """The aiohttp app serving POST /token."""
        app = web.Application()
        app.router.add_post("/token", self.token)
        return app

    def client_ok(self, request: web.Request, form: Any) -> bool:
        """Client authentication: Basic with the test secret, or a valid RFC 7523 assertion."""
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") == f"Basic {expected}":
            return True
        assertion = form.get("client_assertion")
        if assertion is None or self.public_key is None:
            return False
        if form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return False
        try:
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256", "ES256"],
                audience=self.url,
                issuer=CLIENT_ID,
                options={"require": ["exp", "iat", "jti", "sub"]},
            )
        except jwt.PyJWTError:
            return False
        self.assertions.append((jwt.get_unverified_header(assertion), claims))
        return bool(claims["sub"] == CLIENT_ID and form.get("client_id") == CLIENT_ID)

    async def token(self, request: web.Request) -> web.StreamResponse:
        """Answer a password grant as the username says."""
        self.requests += 1
        form = await request.post()
        if form.get("grant_type") != "password":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if not self.client_ok(request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        return await self.answer(request, str(form.get("username")), str(form.get("password")))

    async def answer(
        self, request: web.Request, username: str, password: str
    ) -> web.StreamResponse:
        """Scripted answers; any other username is a normal user with FAKE_PASSWORD."""
        later = email.utils.format_datetime(
            datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=40), usegmt=True
        )
        scripted: dict[str, Callable[[], web.StreamResponse]] = {
            "throttled": lambda: web.Response(
                status=429, text="Too Many Requests", headers={"Retry-After": "17"}
            ),
            "throttled-json": lambda: web.json_response(
                {"error": "slow_down"}, status=429, headers={"Retry-After": later}
            ),
            "boom": lambda: web.Response(status=500, text="Internal Server Error"),
            "maintenance": lambda: web.Response(
                status=503, text="down", headers={"Retry-After": "30"}
            ),
            "server-error": lambda: web.json_response({"error": "server_error"}, status=400),
            "garbage": lambda: web.Response(status=200, text="<html>welcome</html>"),
            "no-token": lambda: web.json_response({"token_type": "Bearer"}),
            "empty-token": lambda: web.json_response({"access_token": ""}),
            "json-list": lambda: web.json_response([{"access_token": FAKE_TOKEN}]),
            "huge": lambda: web.json_response({"access_token": FAKE_TOKEN, "pad": "x" * 600_000}),
            "redirect": lambda: web.Response(status=302, headers={"Location": "/elsewhere"}),
            "token-202": lambda: web.json_response({"access_token": FAKE_TOKEN}, status=202),
            "error-with-token": lambda: web.json_response(
                {"error": "invalid_grant", "access_token": FAKE_TOKEN}, status=400
            ),
            "waf": lambda: web.Response(status=403, text="<html>forbidden</html>"),
            "locked": lambda: web.json_response(
                {"error": "invalid_request", "error_description": "account locked"}, status=400
            ),
            "suspended": lambda: web.json_response({"error": "account_suspended"}, status=400),
            "blocked": lambda: web.json_response({"error": "access_denied"}, status=403),
            "mfa": lambda: web.json_response(
                {"error": "mfa_required", "mfa_token": "mfa-token-1"}, status=403
            ),
        }
        if username == "hang":
            await self.release.wait()
        if username == "huge-chunked":  # no Content-Length: the cap must hold while reading
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b'{"access_token": "' + FAKE_TOKEN.encode() + b'", "pad": "')
            for _ in range(10):
                await response.write(b"x" * 60_000)
            await response.write(b'"}')
            await response.write_eof()
            return response
        if username in scripted:
            return scripted[username]()
        if password != FAKE_PASSWORD:
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response(
            {"access_token": FAKE_TOKEN, "refresh_token": FAKE_REFRESH, "token_type": "Bearer"}
        )


@pytest.fixture
async def fake(aiohttp_server: Any) -> AsyncIterator[FakeTokenServer]:
    """The fake token endpoint on 127.0.0.1."""
    fake = FakeTokenServer()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/token"))
    yield fake
    fake.release.set()


# username -> (result, reason, throttle) with the default error_map and policy
FAKE_TABLE: dict[str, tuple[Result, str, str | None]] = {
    "someone": (Result.VERIFIED, "ok", None),
    "throttled": (Result.UNAVAILABLE, "http_429", "source"),
    "throttled-json": (Result.UNAVAILABLE, "http_429", "source"),
    "boom": (Result.UNAVAILABLE, "http_5xx", None),
    "maintenance": (Result.UNAVAILABLE, "http_5xx", "source"),
    "server-error": (Result.UNAVAILABLE, "oauth_server_error", None),
    "garbage": (Result.UNAVAILABLE, "bad_response", None),
    "no-token": (Result.UNAVAILABLE, "bad_response", None),
    "empty-token": (Result.UNAVAILABLE, "bad_response", None),
    "json-list": (Result.UNAVAILABLE, "bad_response", None),
    "huge": (Result.UNAVAILABLE, "bad_response", None),
    "huge-chunked": (Result.UNAVAILABLE, "bad_response", None),
    "token-202": (Result.UNAVAILABLE, "bad_response", None),
    "error-with-token": (Result.DENIED, "oauth_invalid_grant", None),
    "redirect": (Result.UNAVAILABLE, "bad_response", None),
    "waf": (Result.UNAVAILABLE, "http_4xx", None),
    "locked": (Result.UNAVAILABLE, "oauth_invalid_request", None),
    "suspended": (Result.DENIED, "oauth_unknown_error", None),
    "blocked": (Result.DENIED, "oauth_access_denied", None),
    "mfa": (Result.DENIED, "oauth_mfa_required", None),
}


@pytest.mark.parametrize("username", sorted(FAKE_TABLE))
async def test_fake_server_answer_maps_as_decision_table_says(
    fake: FakeTokenServer, make_source: SourceFactory, username: str
) -> None:
    source = await make_source(fake.url)
    verdict = await source.verify(username, FAKE_PASSWORD)
    result, reason, throttle = FAKE_TABLE[username]
    assert (verdict.result, verdict.reason, verdict.throttle) == (result, reason, throttle)
    assert verdict.reason in source.known_reasons | {"ok"}


@pytest.mark.parametrize(("username", "seconds"), [("throttled", 17), ("throttled-json", 40)])
async def test_429_cool_down_follows_retry_after(
    fake: FakeTokenServer, make_source: SourceFactory, username: str, seconds: float
) -> None:
    source = await make_source(fake.url)
    verdict = await source.verify(username, FAKE_PASSWORD)
    assert verdict.retry_after is not None
    assert seconds - 5 < verdict.retry_after <= seconds  # an HTTP-date is read against the clock


async def test_hung_server_times_out(fake: FakeTokenServer, make_source: SourceFactory) -> None:
    source = await make_source(fake.url, timeouts={"connect": 1.0, "total": 0.3})
    verdict = await source.verify("hang", FAKE_PASSWORD)
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "timeout")


async def test_pool_is_bounded_and_a_wait_for_it_never_sends_the_password(
    fake: FakeTokenServer, make_source: SourceFactory
) -> None:
    source = await make_source(fake.url, pool_size=1, timeouts={"connect": 0.3, "total": 10.0})
    holding = asyncio.create_task(source.verify("hang", FAKE_PASSWORD))
    for _ in range(400):
        if fake.requests == 1:
            break
        await asyncio.sleep(0.025)
    verdict = await source.verify("someone", FAKE_PASSWORD)
    assert (verdict.result, verdict.reason, verdict.sent) == (Result.UNAVAILABLE, "timeout", False)
    assert fake.requests == 1  # the second request never reached the server
    fake.release.set()
    assert (await holding).result is Result.VERIFIED  # released, it answers as usual


@pytest.mark.parametrize(
    ("error_map", "username", "expected"),
    [
        ({"invalid_request": "denied"}, "locked", (Result.DENIED, "oauth_invalid_request")),
        ({"account_suspended": "unavailable"}, "suspended",
         (Result.UNAVAILABLE, "oauth_account_suspended")),
        ({"invalid_request": "misconfigured"}, "locked",
         (Result.UNAVAILABLE, "oauth_misconfigured")),
        ({403: "misconfigured"}, "waf", (Result.UNAVAILABLE, "oauth_misconfigured")),
        ({"403": "denied"}, "waf", (Result.DENIED, "http_403")),
        ({500: "denied"}, "boom", (Result.DENIED, "http_5xx")),
        # A code is more specific than a status: the code's mapping wins.
        ({403: "unavailable"}, "blocked", (Result.DENIED, "oauth_access_denied")),
        ({400: "unavailable"}, "someone-wrong", (Result.DENIED, "oauth_invalid_grant")),
    ],
)  # fmt: skip
async def test_error_map_overrides_the_default_mapping(
    fake: FakeTokenServer,
    make_source: SourceFactory,
    error_map: dict[Any, str],
    username: str,
    expected: tuple[Result, str],
) -> None:
    source = await make_source(fake.url, error_map=error_map)
    password = "Wrong#Pass-0000" if username.endswith("-wrong") else FAKE_PASSWORD
    verdict = await source.verify(username, password)
    assert (verdict.result, verdict.reason) == expected


async def test_error_map_misconfiguration_is_logged_once_with_the_upstream_code(
    fake: FakeTokenServer, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = await make_source(fake.url, error_map={403: "misconfigured"})
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        await source.verify("waf", FAKE_PASSWORD)
    errors = [r for r in caplog.records if r.name == "plugins.oauth2_password"]
    assert [(r.__dict__["reason"], r.__dict__["upstream_code"]) for r in errors] == [
        ("oauth_misconfigured", "http_403")
    ]


@pytest.mark.parametrize(
    ("setting", "result"), [("verified", Result.VERIFIED), ("unverified", Result.DENIED)]
)
async def test_mfa_required_follows_policy(
    fake: FakeTokenServer, make_source: SourceFactory, setting: str, result: Result
) -> None:
    source = await make_source(fake.url, policy={"mfa_required": setting})
    verdict = await source.verify("mfa", FAKE_PASSWORD)
    assert (verdict.result, verdict.reason) == (result, "oauth_mfa_required")


async def test_token_and_password_never_reach_logs_or_verdicts(
    fake: FakeTokenServer, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = await make_source(fake.url, timeouts={"connect": 1.0, "total": 0.3})
    verdicts: list[Verdict] = []
    for username in ["someone", "someone-wrong", *sorted(FAKE_TABLE), "hang"]:
        verdicts.append(await source.verify(username, FAKE_PASSWORD))
    assert verdicts[0].result is Result.VERIFIED
    seen = [repr(v) for v in verdicts] + [
        f"{r.getMessage()} {r.__dict__!r} {r.exc_text or ''}" for r in caplog.records
    ]
    for secret in (FAKE_TOKEN, FAKE_REFRESH, FAKE_PASSWORD, CLIENT_SECRET):
        assert not any(secret in text for text in seen)


async def test_unknown_error_code_is_logged_once_for_the_error_map(
    fake: FakeTokenServer, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    source = await make_source(fake.url)
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        await source.verify("suspended", FAKE_PASSWORD)
    warnings = [r for r in caplog.records if r.name == "plugins.oauth2_password"]
    assert [(r.levelname, r.__dict__["upstream_code"]) for r in warnings] == [
        ("WARNING", "account_suspended")
    ]


async def test_429_through_the_gateway_cools_the_source_down(
    aiohttp_client: Any, fake: FakeTokenServer
) -> None:
    client = await gateway_client(aiohttp_client, fake.url)
    status, body = await post_hook(client, "throttled", FAKE_PASSWORD)
    assert (status, credential(body)) == (200, "UNVERIFIED")
    sent = fake.requests
    status, body = await post_hook(client, "someone", FAKE_PASSWORD, ip="66.124.153.139")
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert fake.requests == sent  # nobody is sent while the server asked us to wait


@pytest.mark.parametrize("username", ["boom", "garbage", "hang", "huge", "redirect"])
async def test_fake_server_trouble_answers_200_unverified_within_budget(
    aiohttp_client: Any, fake: FakeTokenServer, username: str
) -> None:
    client = await gateway_client(aiohttp_client, fake.url, budget=1.0)
    started = time.monotonic()
    status, body = await post_hook(client, username, FAKE_PASSWORD)
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert time.monotonic() - started < 2.5  # generous bound


# --- private_key_jwt (RFC 7523) --------------------------------------------------------------


def _write_key(tmp_path: Path, kind: str) -> tuple[Path, Any]:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    path = tmp_path / f"{kind}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key.public_key()


@pytest.mark.parametrize(("kind", "algorithm"), [("rsa", "RS256"), ("ec", "ES256")])
async def test_private_key_jwt_assertion_verifies(
    fake: FakeTokenServer, make_source: SourceFactory, tmp_path: Path, kind: str, algorithm: str
) -> None:
    key_file, fake.public_key = _write_key(tmp_path, kind)
    source = await make_source(
        fake.url,
        client_secret=None,
        private_key_jwt={"key_file": str(key_file), "key_id": "k1", "algorithm": algorithm},
    )
    for _ in range(2):
        assert (await source.verify("someone", FAKE_PASSWORD)).result is Result.VERIFIED
    (header1, claims1), (_header2, claims2) = fake.assertions
    assert header1["kid"] == "k1" and header1["alg"] == algorithm
    assert claims1["aud"] == fake.url and claims1["iss"] == claims1["sub"] == CLIENT_ID
    assert claims1["jti"] != claims2["jti"]  # single-use assertions
    assert 0 < claims1["exp"] - claims1["iat"] <= 300


async def test_private_key_jwt_with_an_unregistered_key_is_misconfigured(
    fake: FakeTokenServer, make_source: SourceFactory, tmp_path: Path
) -> None:
    key_file, _ = _write_key(tmp_path, "rsa")
    (tmp_path / "other").mkdir()
    _, fake.public_key = _write_key(tmp_path / "other", "rsa")  # the server knows another key
    source = await make_source(
        fake.url, client_secret=None, private_key_jwt={"key_file": str(key_file)}
    )
    verdict = await source.verify("someone", FAKE_PASSWORD)
    assert (verdict.result, verdict.reason) == (Result.UNAVAILABLE, "oauth_invalid_client")


# --- configuration ---------------------------------------------------------------------------


def test_type_is_registered() -> None:
    assert source_class("oauth2_password") is OAuth2PasswordSource


@pytest.mark.parametrize(
    "url",
    [
        "https://login.example.com/oauth2/token",
        "https://login.example.com/token?p=b2c_1_ropc",
        "http://127.0.0.1:8400/o/token/",
        "http://localhost:8400/token",
        "http://[::1]:8400/token",
    ],
)
def test_https_or_loopback_http_token_url_is_accepted(url: str) -> None:
    assert config_problems(url) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://login.example.com/token",
        "http://10.0.0.5:8400/token",
        "ftp://login.example.com/token",
        "https://user:pw@login.example.com/token",
        "login.example.com/token",
    ],
)
def test_other_token_urls_are_refused(url: str) -> None:
    (problem,) = config_problems(url)
    assert problem.startswith("sources[0].token_url:")


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"client_secret": None}, "sources[0]: give exactly one of client_secret or private_key_jwt"),
        ({"error_map": {"invalid_client": "denied"}}, "sources[0].error_map"),
        ({"error_map": {"mfa_required": "denied"}}, "sources[0].error_map"),
        ({"error_map": {200: "denied"}}, "sources[0].error_map"),
        ({"error_map": {"Locked Out": "denied"}}, "sources[0].error_map"),
        ({"error_map": {"locked": "verified"}}, "sources[0].error_map"),
        ({"timeouts": {"connect": 0}}, "sources[0].timeouts.connect"),
        ({"pool_size": 0}, "sources[0].pool_size"),
        ({"scope": "read\nwrite"}, "sources[0].scope"),
        ({"tenant_id": "x"}, "sources[0].tenant_id: unknown key"),
    ],
)  # fmt: skip
def test_bad_settings_are_reported_at_their_path(extra: dict[str, Any], where: str) -> None:
    problems = config_problems("https://login.example.com/token", **extra)
    assert problems and all(p.startswith(where) for p in problems), problems


def test_private_key_problems_are_reported_at_check_config(tmp_path: Path) -> None:
    rsa_file, _ = _write_key(tmp_path, "rsa")
    url = "https://login.example.com/token"
    (missing,) = config_problems(
        url, client_secret=None, private_key_jwt={"key_file": str(tmp_path / "absent.pem")}
    )
    assert missing.startswith("sources[0].private_key_jwt: cannot read key file")
    (mismatch,) = config_problems(
        url, client_secret=None, private_key_jwt={"key_file": str(rsa_file), "algorithm": "ES256"}
    )
    assert "cannot sign ES256" in mismatch
    (both,) = config_problems(url, private_key_jwt={"key_file": str(rsa_file)})
    assert "exactly one" in both
