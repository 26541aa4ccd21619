"""Pagination: Link rel="next" followed as given, in any header layout, one page at a time."""

from __future__ import annotations

import pytest
from yarl import URL

from emulators.okta import OktaOrg, RunningOktaEmulator
from gateway.okta_api import OktaApiClient, OktaApiError
from gateway.okta_api.links import bucket_key, next_link, parse_links, path_template
from tests.okta_api.conftest import ClientFactory, FaultProxy

USERS = 450


@pytest.fixture
def org() -> OktaOrg:
    """450 STAGED users (three pages of 200)."""
    return OktaOrg.with_staged_users(USERS)


async def test_every_user_across_three_pages(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    logins = [user["profile"]["login"] async for user in client.list_users()]
    assert len(logins) == len(set(logins)) == USERS
    assert okta.emulator.requests_by_endpoint["GET /api/v1/users"] == 3


async def test_search_pages_keep_the_expression(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    users = [u async for u in client.list_users(search='status eq "STAGED"', limit=100)]
    assert len(users) == USERS
    assert {user["status"] for user in users} == {"STAGED"}
    assert okta.emulator.requests_by_endpoint["GET /api/v1/users"] == 5


async def test_pages_are_fetched_only_as_they_are_consumed(
    client: OktaApiClient, okta: RunningOktaEmulator
) -> None:
    users = client.list_users(limit=200)
    first = await anext(users)
    assert first["profile"]["login"] == "user0@contoso.com"
    assert okta.emulator.requests_by_endpoint["GET /api/v1/users"] == 1
    await users.aclose()  # type: ignore[attr-defined]


def _combine_reversed(values: list[str]) -> list[str]:
    """One Link header with next before self."""
    return [", ".join(reversed(values))]


async def test_one_combined_link_header_with_next_first(
    make_client: ClientFactory, proxy: FaultProxy
) -> None:
    proxy.link_rewrite = _combine_reversed
    client = await make_client(url=proxy.url)
    logins = [user["profile"]["login"] async for user in client.list_users()]
    assert len(set(logins)) == USERS
    assert proxy.forwarded.count("GET /api/v1/users") == 3


async def test_a_next_link_to_another_host_is_never_followed(
    make_client: ClientFactory, proxy: FaultProxy
) -> None:
    proxy.link_rewrite = lambda values: [
        v.replace(proxy.url, "http://evil.example.com") for v in values
    ]
    client = await make_client(url=proxy.url)
    with pytest.raises(OktaApiError, match="outside the Okta org"):
        _ = [user async for user in client.list_users()]
    assert proxy.forwarded == ["GET /api/v1/users"]


def test_link_values_in_every_layout() -> None:
    base = URL("https://acme.okta.com/api/v1/users?limit=2")
    separate = [
        '<https://acme.okta.com/api/v1/users?limit=2>; rel="self"',
        '<https://acme.okta.com/api/v1/users?after=00u2&limit=2>; rel="next"',
    ]
    combined = [
        "<https://acme.okta.com/api/v1/users?after=00u2&limit=2>; rel=next, "
        '<https://acme.okta.com/api/v1/users?limit=2>; rel="self"'
    ]
    expected = URL("https://acme.okta.com/api/v1/users?after=00u2&limit=2")
    assert next_link(separate, base) == expected
    assert next_link(list(reversed(separate)), base) == expected
    assert next_link(combined, base) == expected
    assert next_link(separate[:1], base) is None
    relative = ['</api/v1/users?after=00u9,x&limit=2>; rel="next prev"']
    assert (
        str(next_link(relative, base)) == "https://acme.okta.com/api/v1/users?after=00u9,x&limit=2"
    )
    assert parse_links(['<https://a.example/x,y>; title="a, b"; rel="next"']) == [
        ("https://a.example/x,y", frozenset({"next"}))
    ]


def test_templates_and_buckets_never_hold_a_login() -> None:
    assert path_template("/api/v1/users/jane%40contoso.com") == "/api/v1/users/{id}"
    assert (
        path_template("/api/v1/users/00u1/lifecycle/activate")
        == "/api/v1/users/{id}/lifecycle/activate"
    )
    assert path_template("/api/v1/groups/00g1/users/00u1") == "/api/v1/groups/{id}/users/{id}"
    assert bucket_key("POST", "/api/v1/users") == bucket_key("GET", "/api/v1/users")
    assert bucket_key("GET", "/api/v1/users/00u1") == "GET /api/v1/users/{id}"
    assert bucket_key("DELETE", "/api/v1/users/00u1") == bucket_key("POST", "/api/v1/users/00u2")
    assert bucket_key("POST", "/api/v1/users/00u1/lifecycle/activate") == "/api/v1/users/{id}/*"
    assert bucket_key("GET", "/api/v1/inlineHooks") == "GET /api/v1/inlineHooks"
