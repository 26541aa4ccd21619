"""What the Entra source assumes about msal's internals, checked against the installed msal.

pyproject.toml pins msal to the range these were verified with. Before raising that pin, run
this file against the new msal: each failure says which part of plugins/azure_ad.py (the
store-nothing caches) or plugins/sync_bridge.py (the greenlet bridge) to re-verify;
reference/entra-ropc-msal.md §4.3-4.4 says why each exists.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msal
import pytest

from emulators.entra import RunningEmulator
from gateway.config import parse_config
from plugins import azure_ad
from plugins.azure_ad import AzureAdConfig, AzureAdSource
from plugins.base import Result
from tests.conftest import USERS, gateway_yaml

ALICE = "alice@contoso.com"
FEDERATED = "fed1@fabrikam.com"
VERSION = f"msal {msal.__version__}"


class _HttpCacheSpy(azure_ad._NoStoreHttpCache):
    """The real store-nothing HTTP cache, counting the writes msal sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        _HTTP_CACHES.append(self)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, value)


class _TokenCacheSpy(azure_ad._NoStoreTokenCache):
    """The real store-nothing token cache, counting the tokens msal hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.adds = 0
        _TOKEN_CACHES.append(self)

    def add(self, event: Any, **kwargs: Any) -> None:
        self.adds += 1
        super().add(event, **kwargs)


_HTTP_CACHES: list[_HttpCacheSpy] = []
_TOKEN_CACHES: list[_TokenCacheSpy] = []


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Build the source's msal apps with the spying caches."""
    _HTTP_CACHES.clear()
    _TOKEN_CACHES.clear()
    monkeypatch.setattr(azure_ad, "_NoStoreHttpCache", _HttpCacheSpy)
    monkeypatch.setattr(azure_ad, "_NoStoreTokenCache", _TokenCacheSpy)
    yield
    _HTTP_CACHES.clear()
    _TOKEN_CACHES.clear()


def _settings(authority: str) -> AzureAdConfig:
    config = parse_config(gateway_yaml(authority, source_extra={"max_connections": 64}), env={})
    (settings,) = config.sources
    assert isinstance(settings, AzureAdConfig)
    return settings


@pytest.fixture
async def source(entra: RunningEmulator, spies: None) -> AsyncIterator[AzureAdSource]:
    """A started Entra source on the emulator, its msal app built with the spying caches."""
    src = AzureAdSource(_settings(entra.url))
    await src.start()
    assert src.ready
    try:
        yield src
    finally:
        await src.close()


def _directory_requests(entra: RunningEmulator) -> int:
    """Requests the emulator served, its own control endpoints aside."""
    return sum(n for kind, n in entra.emulator.requests_by_kind.items() if kind != "control")


async def test_http_cache_writes_go_through_setitem_so_msal_keeps_nothing(
    source: AzureAdSource,
) -> None:
    # 1,100 distinct failing calls: each 400 is an entry msal wants to keep for 60 s, past the
    # 1,024 entries after which msal's own cache breaks the app for good (reference §4.3).
    semaphore = asyncio.Semaphore(32)

    async def unknown(i: int) -> tuple[Result, str]:
        async with semaphore:
            verdict = await source.verify(f"ghost{i}@contoso.com", f"Wrong#Pass-{i}")
        return verdict.result, verdict.reason

    answers = await asyncio.gather(*(unknown(i) for i in range(1_100)))
    assert set(answers) == {(Result.DENIED, "aadsts_50034")}, (
        f"{VERSION} answered distinct failing calls differently: re-verify _NoStoreHttpCache"
    )
    (cache,) = _HTTP_CACHES
    assert cache.writes >= 1_100, (
        f"{VERSION} no longer writes its HTTP cache through http_cache.__setitem__ "
        f"({cache.writes} writes for 1,100 cacheable answers): find where it caches now and "
        "make _NoStoreHttpCache (plugins/azure_ad.py) keep nothing there, or one user's "
        "throttled or failed answer is replayed to others"
    )
    assert len(cache) == 0, (
        f"{VERSION} stored {len(cache)} entries in the store-nothing http_cache: it writes "
        "around __setitem__ now; re-verify _NoStoreHttpCache (plugins/azure_ad.py)"
    )
    verdict = await source.verify(ALICE, USERS[ALICE])
    assert (verdict.result, verdict.reason) == (Result.VERIFIED, "ok"), (
        f"{VERSION} stopped answering after 1,100 failing calls: re-verify _NoStoreHttpCache"
    )


async def test_tokens_reach_the_token_cache_through_add_so_msal_keeps_nothing(
    source: AzureAdSource,
) -> None:
    for username in (ALICE, FEDERATED):
        verdict = await source.verify(username, USERS[username])
        assert verdict.result is Result.VERIFIED
    (cache,) = _TOKEN_CACHES
    assert cache.adds >= 2, (
        f"{VERSION} no longer hands ROPC tokens to TokenCache.add ({cache.adds} calls for 2 "
        "sign-ins): find how it stores tokens now and make _NoStoreTokenCache "
        "(plugins/azure_ad.py) keep nothing, or every user's tokens pile up in memory"
    )
    kinds = msal.TokenCache.CredentialType
    for kind in (kinds.ACCESS_TOKEN, kinds.REFRESH_TOKEN, kinds.ID_TOKEN, kinds.ACCOUNT):
        assert list(cache.search(kind)) == [], (
            f"{VERSION} stored {kind} entries past TokenCache.add: re-verify _NoStoreTokenCache"
        )


@pytest.mark.parametrize("username", [ALICE, FEDERATED], ids=["ropc", "ws_trust"])
async def test_every_msal_request_goes_through_the_given_http_client(
    source: AzureAdSource, entra: RunningEmulator, username: str
) -> None:
    client = source.http_client
    assert client is not None
    before_client, before_directory = client.upstream_requests, _directory_requests(entra)
    adfs_before = entra.emulator.requests_by_kind["adfs"]
    verdict = await source.verify(username, USERS[username])
    assert verdict.result is Result.VERIFIED
    sent = client.upstream_requests - before_client
    served = _directory_requests(entra) - before_directory
    assert sent == served > 0, (
        f"{VERSION} sent {served - sent} of {served} requests around the http_client it was "
        "given: they bypass the greenlet bridge (plugins/sync_bridge.py: they would block the "
        "event loop) and the timeouts, proxy and realm cache of plugins/entra_http.py"
    )
    if username == FEDERATED:
        assert entra.emulator.requests_by_kind["adfs"] > adfs_before  # WS-Trust was taken


async def test_msal_calls_wait_for_io_side_by_side_on_one_thread(entra: RunningEmulator) -> None:
    # In a thread of its own, with its own loop: were msal to hold a lock across its I/O, the
    # second bridged call would block that thread for good, and this must fail, not hang.
    entra.emulator.set_fault(mode="none", latency_ms=300)
    settings = _settings(entra.url)
    outcome: list[object] = []

    async def twenty_at_once() -> list[str]:
        src = AzureAdSource(settings)
        await src.start()
        try:
            verdicts = await asyncio.gather(
                *(src.verify(f"ghost{i}@contoso.com", "Wrong#Pass-1") for i in range(20))
            )
        finally:
            await src.close()
        return [v.reason for v in verdicts]

    def run() -> None:
        try:
            outcome.append(asyncio.run(twenty_at_once()))
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            outcome.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    await asyncio.to_thread(worker.join, 30)  # the emulator keeps running on this loop
    assert not worker.is_alive(), (
        f"{VERSION} blocked the event loop's thread with 20 concurrent calls (a lock held across "
        "its I/O?): re-verify plugins/sync_bridge.py's rule that bridged code holds no lock "
        "across an I/O call"
    )
    assert outcome == [["aadsts_50034"] * 20]
    assert entra.emulator.peak_in_flight >= 10, (
        f"{VERSION} ran {entra.emulator.peak_in_flight} of 20 concurrent calls at once: it "
        "serialises them; re-verify plugins/sync_bridge.py (bridged calls must overlap)"
    )
