"""Listing a tenant's users through Graph for an import: every page, flat memory, one token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from emulators.entra import EmulatedDirectory, EmulatedUser, RunningEmulator, start_emulator
from plugins.azure_ad import AzureAdConfig, AzureAdSource
from plugins.entra_directory import DirectoryListError, iter_users

GROUP = "5b4f2f6e-0000-4000-8000-00000000abcd"


@pytest.fixture
async def tenant() -> AsyncIterator[RunningEmulator]:
    base = EmulatedDirectory(
        users=[
            EmulatedUser(username="gone@contoso.com", password="x", account_enabled=False),
            EmulatedUser(username="lead@contoso.com", password="x", groups=[GROUP]),
        ]
    )
    running = await start_emulator(EmulatedDirectory.with_generated_users(2500, base=base))
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def source(tenant: RunningEmulator) -> AsyncIterator[AzureAdSource]:
    directory = tenant.emulator.directory
    config = AzureAdConfig(
        name="entra",
        type="azure_ad",
        tenant_id=directory.tenant_id,
        client_id=directory.client_id,
        client_secret=directory.client_secret,
        authority=tenant.url,
    )
    built = AzureAdSource(config)
    await built.start()
    try:
        yield built
    finally:
        await built.close()


async def test_every_enabled_user_is_listed_once_across_pages(
    source: AzureAdSource, tenant: RunningEmulator
) -> None:
    upns = [u["userPrincipalName"] async for u in iter_users(source, ["userPrincipalName"])]
    assert len(upns) == len(set(upns)) == 2501  # the disabled one is left out
    assert "gone@contoso.com" not in upns
    assert tenant.emulator.requests_by_kind["graph"] == 3  # 999 a page
    assert tenant.emulator.token_requests_by_grant["client_credentials"] == 1


async def test_disabled_users_and_group_members_on_request(source: AzureAdSource) -> None:
    everyone = [u async for u in iter_users(source, ["mail"], include_disabled=True, page_size=500)]
    assert len(everyone) == 2502
    members = [u["userPrincipalName"] async for u in iter_users(source, [], group=GROUP)]
    assert members == ["lead@contoso.com"]


async def test_an_unknown_group_is_a_clear_error(source: AzureAdSource) -> None:
    with pytest.raises(DirectoryListError, match="group_not_found"):
        [u async for u in iter_users(source, [], group="no-such-group")]
