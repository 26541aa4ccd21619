"""Shadow verification: agreement counted off the hot path, bounded, within one budget, limited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway.app import METRICS, create_app
from gateway.config import ConfigError, parse_config
from gateway.shadow import ShadowJob
from plugins.base import Result, Source, Verdict
from tests.conftest import credential, gateway_yaml, post_hook

ROUTE = "contoso"


class _Scripted(Source):
    """Answers from a function of (username, password); counts calls; can be held or slowed."""

    def __init__(self, name: str, answer: Callable[[str, str], Result]) -> None:
        from plugins.base import SourceConfig

        super().__init__(SourceConfig(name=name, type="scripted"))
        self.answer = answer
        self.calls: list[str] = []
        self.in_flight = 0
        self.gate: asyncio.Event | None = None  # when set: calls wait for it
        self.delay = 0.0

    async def verify(self, username: str, password: str) -> Verdict:
        self.calls.append(username)
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            result = self.answer(username, password)
        finally:
            self.in_flight -= 1
        if result is Result.UNAVAILABLE:
            return self.verdict(result, "http_5xx")
        return self.verdict(result, "ok" if result is Result.VERIFIED else "wrong_password")


def _right_if(passwords: dict[str, str]) -> Callable[[str, str], Result]:
    def answer(username: str, password: str) -> Result:
        return Result.VERIFIED if passwords.get(username) == password else Result.DENIED

    return answer


def _config(*, sample: float = 1.0, queue_size: int = 1000, budget: float = 2.5) -> str:
    config = yaml.safe_load(gateway_yaml("http://127.0.0.1:9", budget=budget))
    new = dict(config["sources"][0], name="newdir")
    config["sources"].append(new)
    config["routes"] = [
        {
            "name": ROUTE,
            "match": {"domains": ["contoso.com"]},
            "sources": ["entra"],
            "shadow": {"source": "newdir", "sample": sample, "queue_size": queue_size},
        }
    ]
    return yaml.safe_dump(config)


async def _gateway(
    aiohttp_client: Any, old: Source, new: Source, **options: Any
) -> TestClient[Any, Any]:
    app = create_app(
        parse_config(_config(**options), env={}), sources={"entra": old, "newdir": new}
    )
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


def _count(client: TestClient[Any, Any], name: str, **labels: str) -> float:
    registry = client.server.app[METRICS].registry
    return registry.get_sample_value(name, labels) or 0.0


def _agreements(client: TestClient[Any, Any]) -> dict[str, float]:
    return {
        agreement: _count(
            client, "gateway_shadow_verifications_total", route=ROUTE, agreement=agreement
        )
        for agreement in ("same", "different", "unavailable")
    }


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polling metrics, which have no event
            await asyncio.sleep(0.01)


async def test_agreement_is_counted_per_answer(aiohttp_client: Any) -> None:
    old = _Scripted("entra", _right_if({"a@contoso.com": "pw-a", "b@contoso.com": "pw-b"}))
    new_answers = {"a@contoso.com": Result.VERIFIED, "b@contoso.com": Result.DENIED}

    def new_answer(username: str, password: str) -> Result:
        if username == "c@contoso.com":
            return Result.UNAVAILABLE
        if password.startswith("pw-"):
            return new_answers.get(username, Result.DENIED)
        return Result.DENIED

    new = _Scripted("newdir", new_answer)
    client = await _gateway(aiohttp_client, old, new)
    old.answer = _right_if(
        {"a@contoso.com": "pw-a", "b@contoso.com": "pw-b", "c@contoso.com": "pw-c"}
    )
    for username, password in [
        ("a@contoso.com", "pw-a"),  # both verify: same
        ("b@contoso.com", "pw-b"),  # new directory denies a right password: different
        ("c@contoso.com", "pw-c"),  # new directory down: unavailable
        ("a@contoso.com", "typo"),  # both deny: same
    ]:
        status, _ = await post_hook(client, username, password)
        assert status == 200
    await _until(lambda: sum(_agreements(client).values()) == 4)
    assert _agreements(client) == {"same": 2, "different": 1, "unavailable": 1}
    # The shadow source saw exactly the routed pairs, once each.
    assert sorted(new.calls) == sorted(
        ["a@contoso.com", "b@contoso.com", "c@contoso.com", "a@contoso.com"]
    )


async def test_okta_gets_its_answer_while_the_shadow_call_is_still_running(
    aiohttp_client: Any,
) -> None:
    old = _Scripted("entra", _right_if({"a@contoso.com": "pw-a"}))
    new = _Scripted("newdir", _right_if({"a@contoso.com": "pw-a"}))
    new.gate = asyncio.Event()
    client = await _gateway(aiohttp_client, old, new)
    status, body = await post_hook(client, "a@contoso.com", "pw-a")
    assert (status, credential(body)) == (200, "VERIFIED")
    await _until(lambda: new.in_flight == 1)  # answered while the shadow call waits
    new.gate.set()
    await _until(lambda: _agreements(client)["same"] == 1)


async def test_a_full_queue_drops_and_counts(aiohttp_client: Any) -> None:
    old = _Scripted("entra", _right_if({f"u{n}@contoso.com": "pw" for n in range(5)}))
    new = _Scripted("newdir", _right_if({}))
    new.gate = asyncio.Event()
    client = await _gateway(aiohttp_client, old, new, queue_size=2)
    for n in range(5):
        status, body = await post_hook(client, f"u{n}@contoso.com", "pw")
        assert (status, credential(body)) == (200, "VERIFIED")
    dropped = _count(client, "gateway_shadow_dropped_total", route=ROUTE, reason="queue_full")
    assert dropped == 3
    new.gate.set()
    await _until(lambda: _agreements(client)["different"] == 2)
    assert len(new.calls) == 2


async def test_no_job_outlives_one_budget(aiohttp_client: Any) -> None:
    # The shadow source hangs: calls are cut at the job's deadline (one budget after the answer
    # to Okta), and jobs still queued by then are dropped without a call.
    users = {f"u{n}@contoso.com": "pw" for n in range(6)}
    old = _Scripted("entra", _right_if(users))
    new = _Scripted("newdir", _right_if(users))
    new.gate = asyncio.Event()
    budget = 0.5
    client = await _gateway(aiohttp_client, old, new, budget=budget)
    for username in users:
        status, _ = await post_hook(client, username, "pw")
        assert status == 200

    def settled() -> float:
        expired = _count(client, "gateway_shadow_dropped_total", route=ROUTE, reason="expired")
        return _agreements(client)["unavailable"] + expired

    await _until(lambda: settled() == 6, seconds=budget + 0.5)
    assert new.in_flight == 0  # nothing is left waiting with a password
    assert 4 <= len(new.calls) <= 6  # four workers; the last jobs may or may not get a call


async def test_the_shadow_source_keeps_its_own_per_user_limit(aiohttp_client: Any) -> None:
    # The real source verifies every password of this user; the shadow source denies them all.
    old = _Scripted("entra", lambda username, password: Result.VERIFIED)
    new = _Scripted("newdir", lambda username, password: Result.DENIED)
    client = await _gateway(aiohttp_client, old, new)
    for n in range(10):
        status, body = await post_hook(client, "x@contoso.com", f"guess-{n}")
        assert (status, credential(body)) == (200, "VERIFIED")
        await _until(lambda n=n: sum(_agreements(client).values()) == n + 1)  # type: ignore[misc]
    assert len(new.calls) == 5  # rate_limits.per_username.failures, for the shadow source too
    assert _agreements(client) == {"same": 0, "different": 5, "unavailable": 5}
    assert len(old.calls) == 10  # and the real source's budget was not spent by the shadow


async def test_unsampled_calls_are_not_shadowed(aiohttp_client: Any) -> None:
    old = _Scripted("entra", _right_if({"a@contoso.com": "pw-a"}))
    new = _Scripted("newdir", _right_if({"a@contoso.com": "pw-a"}))
    client = await _gateway(aiohttp_client, old, new, sample=1e-9)
    for _ in range(20):
        await post_hook(client, "a@contoso.com", "pw-a")
    await asyncio.sleep(0.05)
    assert new.calls == [] and sum(_agreements(client).values()) == 0


@pytest.mark.parametrize(
    ("shadow", "problem"),
    [
        ({"source": "nowhere"}, "routes[0].shadow.source: no source is named 'nowhere'"),
        (
            {"source": "entra"},
            "routes[0].shadow.source: must not be one of the route's own sources",
        ),
        ({"source": "newdir", "sample": 0}, "routes[0].shadow.sample"),
        ({"source": "newdir", "sample": "0.5"}, "routes[0].shadow.sample"),
    ],
)
def test_bad_shadow_settings_are_named(shadow: dict[str, Any], problem: str) -> None:
    config = yaml.safe_load(_config())
    config["routes"][0]["shadow"] = shadow
    with pytest.raises(ConfigError) as raised:
        parse_config(yaml.safe_dump(config), env={})
    assert any(line.startswith(problem) for line in raised.value.lines()), raised.value.lines()


def test_a_job_never_shows_its_password() -> None:
    job = ShadowJob("r", "s", "u@contoso.com", "hunter2-secret", True, 0.0, None)  # type: ignore[arg-type]
    assert "hunter2" not in repr(job) and "hunter2" not in str(job)
