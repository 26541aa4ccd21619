"""Fixtures: the Okta emulator on a real socket with an injected clock, and a thin HTTP client."""

from __future__ import annotations

import json as json_module
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from emulators.okta import (
    DEFAULT_API_TOKEN,
    OktaOrg,
    RunningOktaEmulator,
    SeedGroup,
    start_okta_emulator,
)

GROUP_ID = "00gemulatorgroup0001"
DUPLICATE_LOGIN = "login: An object with this field already exists in the current organization"
ERROR_KEYS = {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}


def profile_of(login: str, **extra: Any) -> dict[str, Any]:
    """A profile Okta's default schema accepts."""
    return {"login": login, "email": login, "firstName": "Test", "lastName": "User", **extra}


class FakeClock:
    """Wall-clock time the test moves by hand (rate-limit windows, token expiry)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """The current fake time (epoch seconds)."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@dataclass
class Answer:
    """One HTTP answer: status, headers (repeated ones kept) and the decoded body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: Any


class OktaApi:
    """A plain aiohttp client for the emulator, authenticated with the default SSWS token."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session
        self.auth = f"SSWS {DEFAULT_API_TOKEN}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        auth: str | None = None,
        url: str | None = None,
    ) -> Answer:
        """One request; ``auth=""`` sends no Authorization header, ``url`` overrides the path."""
        headers = {"Accept": "application/json"}
        authorization = self.auth if auth is None else auth
        if authorization:
            headers["Authorization"] = authorization
        async with self.session.request(
            method, url or self.base + path, json=json, params=params, headers=headers
        ) as resp:
            text = await resp.text()
            body: Any = text or None
            if text and resp.content_type == "application/json":
                body = json_module.loads(text)
            return Answer(resp.status, resp.headers, body)

    async def create(
        self, login: str, *, hook: bool = True, activate: bool = True, **extra: Any
    ) -> Answer:
        """Create a user the way the migration does (hook, activate), unless told otherwise."""
        body: dict[str, Any] = {"profile": profile_of(login, **extra)}
        if hook:
            body["credentials"] = {"password": {"hook": {"type": "default"}}}
        return await self.call(
            "POST", "/api/v1/users", json=body, params={"activate": str(activate).lower()}
        )

    async def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``."""
        answer = await self.call("GET", "/_emulator/stats")
        assert answer.status == 200
        result: dict[str, Any] = answer.body
        return result


def assert_okta_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    """The answer is Okta's error object with this status and errorCode."""
    assert answer.status == status, answer.body
    assert set(answer.body) == ERROR_KEYS, answer.body
    assert answer.body["errorCode"] == code
    assert answer.body["errorLink"] in (code, "E0000000")
    assert answer.body["errorId"].startswith("oae")
    assert all(set(cause) == {"errorSummary"} for cause in answer.body["errorCauses"])
    body: dict[str, Any] = answer.body
    return body


@pytest.fixture
def clock() -> FakeClock:
    """The emulator's clock, advanced by hand."""
    return FakeClock()


@pytest.fixture
def org() -> OktaOrg:
    """An empty org with one group (override per module)."""
    return OktaOrg(groups=[SeedGroup(name="Office 365 users", id=GROUP_ID)])


@pytest.fixture
async def okta(org: OktaOrg, clock: FakeClock) -> AsyncIterator[RunningOktaEmulator]:
    """The emulator on a real loopback socket."""
    running = await start_okta_emulator(org, clock=clock)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def api(okta: RunningOktaEmulator) -> AsyncIterator[OktaApi]:
    """A client for ``okta``."""
    async with aiohttp.ClientSession() as session:
        yield OktaApi(okta.url, session)
