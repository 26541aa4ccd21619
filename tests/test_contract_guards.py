"""Protections that quiet failures would otherwise hide: each test goes red without its guard."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import gateway.app
from emulators.demo import okta_payload
from gateway.app import METRICS, create_app
from gateway.config import parse_config
from gateway.logs import JsonFormatter
from gateway.okta import PasswordImportRequest, parse_password_import
from gateway.runtime import RUNTIME
from plugins.base import Source, SourceConfig, Verdict
from tests.conftest import (
    HOOK_PATH,
    HOOK_SECRET,
    SCAN,
    USERS,
    GatewayFactory,
    credential,
    gateway_yaml,
    post_hook,
)

ALICE = "alice@contoso.com"
BUDGET = 0.5
# Generous: the answer is due at the budget; this only catches "never" or "after a retry".
ANSWER_BOUND_SECONDS = BUDGET + 1.5
SECOND_HOOK_SECRET = "Basic c2Vjb25kOnJvdGF0ZWQtc2VjcmV0LTczMTk="


class _Decisions(logging.Handler):
    """`hook_decision` lines as JSON objects."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self._json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self._json.format(record))
        if line.get("event") == "hook_decision":
            self.lines.append(line)


@pytest.fixture
def decisions() -> Iterator[_Decisions]:
    """Decision lines logged during the test."""
    handler = _Decisions()
    logger = logging.getLogger("gateway.decision")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


class _Raises(Source):
    async def verify(self, username: str, password: str) -> Verdict:
        raise RuntimeError("plugin bug")


class _Hangs(Source):
    async def verify(self, username: str, password: str) -> Verdict:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class _ReturnsGarbage(Source):
    garbage: Any = None

    async def verify(self, username: str, password: str) -> Verdict:
        garbage: Verdict = self.garbage
        return garbage


async def _gateway_with(aiohttp_client: Any, source: Source) -> TestClient[Any, Any]:
    """A gateway whose `entra` route is served by `source` (budget 0.5 s)."""
    config = parse_config(gateway_yaml("http://127.0.0.1:9", budget=BUDGET), env={})
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(config, sources={"entra": source})
    )
    return client


def _unavailable(client: TestClient[Any, Any]) -> float:
    value = client.server.app[METRICS].registry.get_sample_value(
        "gateway_verifications_total", {"source": "entra", "result": "unavailable"}
    )
    return value or 0.0


async def _timed_hook(client: TestClient[Any, Any]) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    return status, body, time.monotonic() - started


async def _assert_plugin_failure_answered(
    client: TestClient[Any, Any], decisions: _Decisions, reason: str
) -> None:
    before = _unavailable(client)
    status, body, seconds = await _timed_hook(client)
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert seconds < ANSWER_BOUND_SECONDS
    # Only the service's catch counts the source; the never-5xx middleware cannot.
    assert _unavailable(client) == before + 1
    (line,) = decisions.lines
    assert (line["result"], line["reason"], line["source"]) == ("unverified", reason, "entra")


# -- the never-5xx middleware ------------------------------------------------------------------
async def test_handler_failure_outside_plugins_answers_unverified_not_5xx(
    make_gateway: GatewayFactory, decisions: _Decisions, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_gateway()

    async def broken_decide(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug after the plugin call")

    monkeypatch.setattr(client.server.app[RUNTIME].current.service, "decide", broken_decide)
    response = await client.post(
        HOOK_PATH, json=okta_payload(ALICE, USERS[ALICE]), headers={"Authorization": HOOK_SECRET}
    )
    assert response.status == 200
    assert credential(await response.json()) == "UNVERIFIED"
    (line,) = decisions.lines
    assert (line["result"], line["reason"]) == ("unverified", "other")


# -- the catch around plugin calls -------------------------------------------------------------
async def test_plugin_that_raises_answers_unverified_as_unavailable(
    aiohttp_client: Any, decisions: _Decisions
) -> None:
    client = await _gateway_with(aiohttp_client, _Raises(SourceConfig(name="entra", type="t")))
    await _assert_plugin_failure_answered(client, decisions, "other")


async def test_plugin_that_hangs_answers_unverified_within_the_budget(
    aiohttp_client: Any, decisions: _Decisions
) -> None:
    client = await _gateway_with(aiohttp_client, _Hangs(SourceConfig(name="entra", type="t")))
    await _assert_plugin_failure_answered(client, decisions, "timeout")


# Needs the `isinstance(verdict, Verdict)` check after the plugin call in
# gateway/service.py `_call`: without it, a non-Verdict crashes the bookkeeping after the call
# (metrics, cache), the middleware answers, and the source is never counted.
@pytest.mark.parametrize("garbage", [None, "verified"])
async def test_plugin_that_returns_garbage_answers_unverified_as_unavailable(
    aiohttp_client: Any, decisions: _Decisions, garbage: Any
) -> None:
    source = _ReturnsGarbage(SourceConfig(name="entra", type="t"))
    source.garbage = garbage
    client = await _gateway_with(aiohttp_client, source)
    await _assert_plugin_failure_answered(client, decisions, "other")


# -- the redacting repr of the parsed hook request ---------------------------------------------
def _parsed_request() -> PasswordImportRequest:
    return parse_password_import(json.dumps(okta_payload(ALICE, USERS[ALICE])).encode())


def _fail_while_holding(hook: PasswordImportRequest) -> None:
    raise RuntimeError("source failed")


def test_password_not_in_repr_or_str_of_hook_request() -> None:
    hook = _parsed_request()
    for text in (repr(hook), str(hook), format(hook), f"{hook!r}", f"{[hook]}"):
        assert USERS[ALICE] not in text


def test_password_not_in_traceback_with_captured_locals() -> None:
    hook = _parsed_request()
    try:
        _fail_while_holding(hook)
    except RuntimeError as err:
        exc = traceback.TracebackException.from_exception(err, capture_locals=True)
        text = "".join(exc.format())
    assert "hook = PasswordImportRequest(" in text  # the local is shown, redacted
    assert USERS[ALICE] not in text


# -- constant-time comparison against every hook secret -----------------------------------------
@pytest.mark.parametrize(
    ("presented", "status"),
    [(HOOK_SECRET, 400), (SECOND_HOOK_SECRET, 400), ("Basic bm9wZQ==", 401)],
    ids=["first_secret", "second_secret", "wrong_secret"],
)
async def test_hook_secret_compared_in_constant_time_against_every_secret(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch, presented: str, status: int
) -> None:
    SCAN.secrets.add(SECOND_HOOK_SECRET)
    secrets = [HOOK_SECRET, SECOND_HOOK_SECRET]
    client = await make_gateway(
        extra={"okta": {"hook_path": HOOK_PATH, "auth": {"secrets": secrets}}}
    )
    compared: list[set[bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append({x.encode() if isinstance(x, str) else bytes(x) for x in (a, b)})
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    if hasattr(gateway.app, "compare_digest"):  # imported by name rather than through `hmac`
        monkeypatch.setattr(gateway.app, "compare_digest", counting)
    # A body that is not a hook request: nothing after the auth check compares anything.
    response = await client.post(HOOK_PATH, data=b"{}", headers={"Authorization": presented})
    assert response.status == status
    for secret in secrets:
        assert any(secret.encode() in pair for pair in compared), "a secret was not compared"
    assert all(presented.encode() in pair for pair in compared)
