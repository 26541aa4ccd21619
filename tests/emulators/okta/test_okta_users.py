"""Users API: shapes, validation errors, lookups, updates, pagination with Link, search and filter."""

from __future__ import annotations

import re

from multidict import CIMultiDictProxy

from emulators.okta import (
    Credential,
    OktaOrg,
    RunningOktaEmulator,
    SeedUser,
    start_okta_emulator,
)
from tests.emulators.okta.conftest import (
    DUPLICATE_LOGIN,
    GROUP_ID,
    OktaApi,
    assert_okta_error,
    profile_of,
)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
USER_KEYS = {
    "id",
    "status",
    "created",
    "activated",
    "statusChanged",
    "lastLogin",
    "lastUpdated",
    "passwordChanged",
    "type",
    "profile",
    "credentials",
    "_links",
}
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="(?P<rel>\w+)"$')


def links(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """(rel, url) per Link header, in the order sent."""
    found = []
    for value in headers.getall("Link", []):
        match = LINK.match(value)
        assert match, value
        found.append((match["rel"], match["url"]))
    return found


async def test_create_with_hook_is_active_import_user_with_okta_shape(api: OktaApi) -> None:
    answer = await api.create("isaac.brock@example.com", mobilePhone="555-415-1337")
    assert answer.status == 200
    user = answer.body
    assert set(user) == USER_KEYS
    assert re.fullmatch(r"00u[A-Za-z0-9]{17}", user["id"])
    assert user["status"] == "ACTIVE"
    assert user["credentials"] == {"password": {}, "provider": {"type": "IMPORT", "name": "IMPORT"}}
    assert user["profile"]["mobilePhone"] == "555-415-1337"
    assert user["lastLogin"] is None
    assert all(ISO.match(user[k]) for k in ("created", "activated", "lastUpdated"))
    assert user["_links"]["self"]["href"] == f"{api.base}/api/v1/users/{user['id']}"


async def test_create_without_credentials_has_no_password_and_okta_provider(api: OktaApi) -> None:
    answer = await api.create("staged@example.com", hook=False, activate=False)
    assert answer.status == 200
    assert answer.body["status"] == "STAGED"
    assert answer.body["credentials"] == {"provider": {"type": "OKTA", "name": "OKTA"}}
    assert answer.body["passwordChanged"] is None
    assert "activate" in answer.body["_links"]


async def test_duplicate_login_is_e0000001_with_okta_cause(api: OktaApi) -> None:
    assert (await api.create("dup@example.com")).status == 200
    answer = await api.create("DUP@example.com")  # logins are unique case-insensitively
    body = assert_okta_error(answer, 400, "E0000001")
    assert body["errorSummary"] == "Api validation failed: login"
    assert body["errorCauses"] == [{"errorSummary": DUPLICATE_LOGIN}]


async def test_missing_and_malformed_profile_fields_are_all_listed(api: OktaApi) -> None:
    answer = await api.call(
        "POST", "/api/v1/users", json={"profile": {"login": "not-an-email", "email": "x@y.z"}}
    )
    body = assert_okta_error(answer, 400, "E0000001")
    causes = {cause["errorSummary"] for cause in body["errorCauses"]}
    assert "firstName: The field cannot be left blank" in causes
    assert "lastName: The field cannot be left blank" in causes
    assert "login: Username must be in the form of an email address" in causes


async def test_unknown_profile_attribute_is_refused(api: OktaApi) -> None:
    answer = await api.create("u@example.com", shoeSize="44")
    assert_okta_error(answer, 400, "E0000001")


async def test_body_that_is_not_json_is_e0000003(api: OktaApi) -> None:
    async with api.session.post(
        f"{api.base}/api/v1/users", data=b"{nope", headers={"Authorization": api.auth}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["errorCode"] == "E0000003"


async def test_group_ids_at_creation_record_memberships(api: OktaApi) -> None:
    body = {
        "profile": profile_of("g@example.com"),
        "credentials": {"password": {"hook": {"type": "default"}}},
        "groupIds": [GROUP_ID],
    }
    created = await api.call("POST", "/api/v1/users", json=body)
    assert created.status == 200
    group = await api.call("GET", f"/api/v1/groups/{GROUP_ID}")
    assert group.status == 200
    assert group.body["type"] == "OKTA_GROUP"
    assert group.body["profile"]["name"] == "Office 365 users"
    members = await api.call("GET", f"/api/v1/groups/{GROUP_ID}/users")
    assert [m["id"] for m in members.body] == [created.body["id"]]
    groups = await api.call("GET", f"/api/v1/users/{created.body['id']}/groups")
    assert [g["id"] for g in groups.body] == [GROUP_ID]


async def test_unknown_group_id_is_404_and_creates_nothing(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    body = {
        "profile": profile_of("g@example.com"),
        "groupIds": ["00gdoesnotexist000000"],
    }
    assert_okta_error(await api.call("POST", "/api/v1/users", json=body), 404, "E0000007")
    assert okta.emulator.users == {}


async def test_more_than_20_group_ids_is_e0000093(api: OktaApi) -> None:
    body = {
        "profile": profile_of("g@example.com"),
        "groupIds": [GROUP_ID] * 21,
    }
    assert_okta_error(await api.call("POST", "/api/v1/users", json=body), 400, "E0000093")


async def test_get_by_id_login_and_short_name(api: OktaApi) -> None:
    user_id = (await api.create("Jane.Doe@example.com")).body["id"]
    for key in (user_id, "jane.doe@example.com", "jane.doe"):
        answer = await api.call("GET", f"/api/v1/users/{key}")
        assert answer.status == 200, key
        assert answer.body["id"] == user_id


async def test_unknown_user_is_e0000007(api: OktaApi) -> None:
    body = assert_okta_error(await api.call("GET", "/api/v1/users/nobody@x.com"), 404, "E0000007")
    assert body["errorSummary"] == "Not found: Resource not found: nobody@x.com (User)"


async def test_partial_update_changes_only_given_attributes(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    user_id = (await api.create("p@example.com", title="Engineer")).body["id"]
    answer = await api.call(
        "POST", f"/api/v1/users/{user_id}", json={"profile": {"department": "R&D"}}
    )
    assert answer.status == 200
    assert answer.body["profile"]["title"] == "Engineer"
    assert answer.body["profile"]["department"] == "R&D"
    updates = await api.call("GET", "/_emulator/profile-updates")
    assert updates.body == [{"id": user_id, "method": "POST", "attributes": ["department"]}]


async def test_put_replaces_the_whole_profile(api: OktaApi) -> None:
    user_id = (await api.create("r@example.com", title="Engineer")).body["id"]
    profile = profile_of("r@example.com")
    answer = await api.call("PUT", f"/api/v1/users/{user_id}", json={"profile": profile})
    assert answer.status == 200
    assert answer.body["profile"] == profile


async def test_put_credentials_hook_on_staged_user_makes_it_import(api: OktaApi) -> None:
    staged = (await api.create("s@example.com", hook=False, activate=False)).body
    body = {
        "profile": staged["profile"],
        "credentials": {"password": {"hook": {"type": "default"}}},
    }
    answer = await api.call("PUT", f"/api/v1/users/{staged['id']}", json=body)
    assert answer.status == 200
    assert answer.body["status"] == "STAGED"
    assert answer.body["credentials"]["provider"]["type"] == "IMPORT"
    assert answer.body["credentials"]["password"] == {}


async def test_hook_type_other_than_default_is_refused(api: OktaApi) -> None:
    staged = (await api.create("s@example.com", hook=False, activate=False)).body
    body = {"credentials": {"password": {"hook": {"type": "custom"}}}}
    assert_okta_error(
        await api.call("POST", f"/api/v1/users/{staged['id']}", json=body), 400, "E0000001"
    )


async def test_list_paginates_with_separate_self_and_next_link_headers(api: OktaApi) -> None:
    for i in range(7):
        assert (await api.create(f"user{i}@example.com")).status == 200
    seen: list[str] = []
    url: str | None = f"{api.base}/api/v1/users?limit=3"
    pages = 0
    while url:
        answer = await api.call("GET", "", url=url)
        assert answer.status == 200
        pages += 1
        rels = links(answer.headers)
        assert rels[0] == ("self", url)  # self first, then next: separate headers, as Okta sends
        seen += [user["profile"]["login"] for user in answer.body]
        assert all(set(user["_links"]) == {"self"} for user in answer.body)
        url = dict(rels).get("next")
    assert pages == 3
    assert seen == [f"user{i}@example.com" for i in range(7)]


async def test_exactly_full_last_page_has_no_next_link(api: OktaApi) -> None:
    for i in range(4):
        await api.create(f"user{i}@example.com")
    answer = await api.call("GET", "/api/v1/users", params={"limit": "2"})
    second = await api.call("GET", "", url=dict(links(answer.headers))["next"])
    assert len(second.body) == 2
    assert [rel for rel, _ in links(second.headers)] == ["self"]


async def test_limit_is_capped_at_200(okta: RunningOktaEmulator, api: OktaApi) -> None:
    for i in range(205):
        okta.emulator.create_user(
            profile_of(f"u{i}@example.com"),
            Credential.HOOK,
            activate=True,
            group_ids=[],
        )
    answer = await api.call("GET", "/api/v1/users", params={"limit": "500"})
    assert len(answer.body) == 200
    assert "next" in dict(links(answer.headers))


async def test_plain_list_omits_deprovisioned_but_search_includes_them(api: OktaApi) -> None:
    gone = (await api.create("gone@example.com")).body["id"]
    await api.create("here@example.com")
    await api.call("POST", f"/api/v1/users/{gone}/lifecycle/deactivate")
    plain = await api.call("GET", "/api/v1/users")
    assert [u["profile"]["login"] for u in plain.body] == ["here@example.com"]
    found = await api.call("GET", "/api/v1/users", params={"search": 'status eq "DEPROVISIONED"'})
    assert [u["id"] for u in found.body] == [gone]


async def test_search_staged_pages_through_only_staged_users(api: OktaApi) -> None:
    for i in range(5):
        await api.create(f"staged{i}@example.com", hook=False, activate=False)
        await api.create(f"active{i}@example.com")
    first = await api.call(
        "GET", "/api/v1/users", params={"search": 'status eq "STAGED"', "limit": "2"}
    )
    logins = [u["profile"]["login"] for u in first.body]
    url = dict(links(first.headers)).get("next")
    while url:
        page = await api.call("GET", "", url=url)
        logins += [u["profile"]["login"] for u in page.body]
        url = dict(links(page.headers)).get("next")
    assert logins == [f"staged{i}@example.com" for i in range(5)]


async def test_search_values_are_case_insensitive_filter_values_are_not(api: OktaApi) -> None:
    await api.create("Isaac.Brock@example.com")
    search = await api.call(
        "GET", "/api/v1/users", params={"search": 'profile.login eq "isaac.brock@example.com"'}
    )
    assert len(search.body) == 1
    strict = await api.call(
        "GET", "/api/v1/users", params={"filter": 'profile.login eq "isaac.brock@example.com"'}
    )
    assert strict.body == []
    exact = await api.call(
        "GET", "/api/v1/users", params={"filter": 'profile.login eq "Isaac.Brock@example.com"'}
    )
    assert len(exact.body) == 1


async def test_search_with_and_or_parentheses_and_orderings(api: OktaApi) -> None:
    await api.create("a@example.com", department="Engineering")
    await api.create("b@example.com", department="Sales")
    await api.create("c@example.com", hook=False, activate=False, department="Engineering")
    answer = await api.call(
        "GET",
        "/api/v1/users",
        params={
            "search": 'profile.department eq "engineering" and '
            '(status lt "STAGED" or status gt "STAGED")'
        },
    )
    assert [u["profile"]["login"] for u in answer.body] == ["a@example.com"]


async def test_search_on_provider_type_is_refused_as_the_spec_does_not_list_it(
    api: OktaApi,
) -> None:
    answer = await api.call(
        "GET", "/api/v1/users", params={"search": 'credentials.provider.type eq "IMPORT"'}
    )
    assert_okta_error(answer, 400, "E0000031")


async def test_filter_refuses_unsupported_attribute_and_operator(api: OktaApi) -> None:
    for expression in ('profile.department eq "x"', 'status sw "ST"', 'not status eq "STAGED"'):
        answer = await api.call("GET", "/api/v1/users", params={"filter": expression})
        assert_okta_error(answer, 400, "E0000031")


async def test_q_matches_name_and_email_prefixes_not_login_and_does_not_page(
    api: OktaApi,
) -> None:
    await api.create("zed@example.com", firstName="Isaac", email="isaac@mail.example.com")
    await api.create("isaac.login@example.com", firstName="Other", email="other@example.com")
    answer = await api.call("GET", "/api/v1/users", params={"q": "isa", "limit": "1"})
    assert [u["profile"]["login"] for u in answer.body] == ["zed@example.com"]
    assert [rel for rel, _ in links(answer.headers)] == ["self"]


async def test_cursor_survives_deletion_of_the_user_it_names(api: OktaApi) -> None:
    ids = [(await api.create(f"user{i}@example.com")).body["id"] for i in range(4)]
    first = await api.call("GET", "/api/v1/users", params={"limit": "2"})
    for _ in range(2):  # deactivate, then delete the user the cursor names
        await api.call("DELETE", f"/api/v1/users/{ids[1]}")
    rest = await api.call("GET", "", url=dict(links(first.headers))["next"])
    assert [u["id"] for u in rest.body] == ids[2:]


async def test_seeded_staged_users_are_listed_like_office365_leaves_them() -> None:
    org = OktaOrg(users=[SeedUser(profile=profile_of("o@contoso.com"))])
    async with await start_okta_emulator(org) as running:
        user = next(iter(running.emulator.users.values()))
        shown = user.to_json(running.url)
        assert shown["status"] == "STAGED"
        assert shown["credentials"] == {"provider": {"type": "OKTA", "name": "OKTA"}}
