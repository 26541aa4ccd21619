"""The Entra emulator's Graph listing for imports: every user in linked pages, group members."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from emulators.entra import EmulatedDirectory, EmulatedUser, RunningEmulator, start_emulator

GROUP = "0b9c6a55-0000-4000-8000-000000000001"


@pytest.fixture
async def graph() -> AsyncIterator[tuple[RunningEmulator, str]]:
    base = EmulatedDirectory(
        users=[
            EmulatedUser(username="ann@contoso.com", password="x", groups=[GROUP], job_title="CFO"),
            EmulatedUser(username="ben@contoso.com", password="x", account_enabled=False),
        ]
    )
    directory = EmulatedDirectory.with_generated_users(248, base=base)
    running = await start_emulator(directory)
    form = {
        "grant_type": "client_credentials",
        "client_id": directory.client_id,
        "client_secret": directory.client_secret,
        "scope": "https://graph.microsoft.com/.default",
    }
    url = f"{running.url}/{directory.tenant_id}/oauth2/v2.0/token"
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as response:
        token = (await response.json())["access_token"]
    try:
        yield running, token
    finally:
        await running.close()


async def _all_pages(url: str, token: str) -> list[dict[str, Any]]:
    pages = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        next_url: str | None = url
        while next_url:
            async with http.get(next_url) as response:
                assert response.status == 200, await response.text()
                page = await response.json()
            pages.append(page)
            next_url = page.get("@odata.nextLink")
    return pages


async def test_every_user_is_listed_once_in_linked_pages(
    graph: tuple[RunningEmulator, str],
) -> None:
    running, token = graph
    pages = await _all_pages(
        f"{running.url}/v1.0/users?$top=100&$select=userPrincipalName,mail,jobTitle", token
    )
    assert [len(p["value"]) for p in pages] == [100, 100, 50]
    upns = [u["userPrincipalName"] for p in pages for u in p["value"]]
    assert len(upns) == len(set(upns)) == 250
    assert set(pages[0]["value"][0]) == {"userPrincipalName", "mail", "jobTitle"}
    assert pages[0]["value"][0]["jobTitle"] == "CFO"


async def test_disabled_users_can_be_filtered_out(graph: tuple[RunningEmulator, str]) -> None:
    running, token = graph
    url = f"{running.url}/v1.0/users?$filter=accountEnabled eq true&$top=999"
    pages = await _all_pages(url, token)
    upns = {u["userPrincipalName"] for p in pages for u in p["value"]}
    assert len(upns) == 249 and "ben@contoso.com" not in upns


async def test_group_members_are_listed_and_an_unknown_group_is_404(
    graph: tuple[RunningEmulator, str],
) -> None:
    running, token = graph
    pages = await _all_pages(
        f"{running.url}/v1.0/groups/{GROUP}/members/microsoft.graph.user", token
    )
    (member,) = pages[0]["value"]
    assert member["@odata.type"] == "#microsoft.graph.user"
    assert member["userPrincipalName"] == "ann@contoso.com"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(f"{running.url}/v1.0/groups/nope/members") as response,
    ):
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "Request_ResourceNotFound"


async def test_listing_needs_an_app_token(graph: tuple[RunningEmulator, str]) -> None:
    running, _ = graph
    async with aiohttp.ClientSession() as http, http.get(f"{running.url}/v1.0/users") as response:
        assert response.status == 401
