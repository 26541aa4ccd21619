"""``POST /api/v1/authn`` on the Okta emulator: transaction states, E0000004, lockout, limits, faults."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.okta import OktaOrg, RunningOktaEmulator, SeedUser, Status
from emulators.okta.authn import directory_of
from tests.conftest import SecretScan
from tests.emulators.okta.conftest import Answer, FakeClock, OktaApi, assert_okta_error, profile_of

ANN = "ann@merged.example"
BEN = "ben@merged.example"
HOOKED = "hooked@merged.example"
STAGED = "staged@merged.example"
ANN_ID = "00uemulatorauthnann1"
PASSWORD = "Ann#Right-Pass-4821"
BEN_PASSWORD = "Ben#Right-Pass-7730"


@pytest.fixture
def org() -> OktaOrg:
    """Two ACTIVE users with Okta passwords, a hooked one and a STAGED one."""
    return OktaOrg(
        users=[
            # A fixed id: a full reset brings Ann back under the same id, as a new record.
            SeedUser(profile=profile_of(ANN), id=ANN_ID, status="ACTIVE", credential="password"),
            SeedUser(profile=profile_of(BEN), status="ACTIVE", credential="password"),
            SeedUser(profile=profile_of(HOOKED), status="ACTIVE", credential="hook"),
            SeedUser(profile=profile_of(STAGED), status="STAGED", credential="password"),
        ]
    )


@pytest.fixture(autouse=True)
async def passwords(api: OktaApi, secret_scan: SecretScan) -> None:
    """Give Ann and Ben (and the STAGED user) their passwords; the session scan watches them."""
    secret_scan.secrets |= {PASSWORD, BEN_PASSWORD}
    for login, password in ((ANN, PASSWORD), (BEN, BEN_PASSWORD), (STAGED, PASSWORD)):
        answer = await set_user(api, login, password=password)
        assert answer.status == 200, answer.body


async def set_user(api: OktaApi, login: str, **facts: Any) -> Answer:
    """``PUT /_emulator/authn/users/{login}``."""
    return await api.call("PUT", f"/_emulator/authn/users/{login}", json=facts)


async def settings(api: OktaApi, **values: Any) -> Answer:
    """``PUT /_emulator/authn``."""
    answer = await api.call("PUT", "/_emulator/authn", json=values)
    assert answer.status == 200, answer.body
    return answer


async def authn(api: OktaApi, username: str, password: str) -> Answer:
    """Primary authentication as a public application: no Authorization header."""
    return await api.call(
        "POST", "/api/v1/authn", json={"username": username, "password": password}, auth=""
    )


async def test_right_password_succeeds_with_a_session_token(api: OktaApi) -> None:
    answer = await authn(api, ANN, PASSWORD)
    assert answer.status == 200, answer.body
    assert answer.body["status"] == "SUCCESS"
    assert answer.body["sessionToken"]
    assert "stateToken" not in answer.body
    assert answer.body["_embedded"]["user"]["profile"]["login"] == ANN


async def test_success_sets_last_login(api: OktaApi) -> None:
    await authn(api, ANN, PASSWORD)
    user = await api.call("GET", f"/api/v1/users/{ANN}")
    assert user.body["lastLogin"] is not None


async def test_answers_carry_rate_limit_headers(api: OktaApi) -> None:
    answer = await authn(api, ANN, "Wrong#Pass-0000")
    for name in ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"):
        assert answer.headers[name].isdigit()
    assert answer.headers["X-Rate-Limit-Limit"] == "600"


async def test_wrong_password_is_401_e0000004(api: OktaApi) -> None:
    body = assert_okta_error(await authn(api, ANN, "Wrong#Pass-0000"), 401, "E0000004")
    assert body["errorSummary"] == "Authentication failed"


async def test_unknown_user_answers_exactly_like_a_wrong_password(api: OktaApi) -> None:
    unknown = assert_okta_error(await authn(api, "ghost@merged.example", PASSWORD), 401, "E0000004")
    wrong = assert_okta_error(await authn(api, ANN, "Wrong#Pass-0000"), 401, "E0000004")
    assert unknown["errorSummary"] == wrong["errorSummary"]


async def test_password_is_case_sensitive_login_is_not(api: OktaApi) -> None:
    assert_okta_error(await authn(api, ANN, PASSWORD.lower()), 401, "E0000004")
    assert (await authn(api, ANN.upper(), PASSWORD)).body["status"] == "SUCCESS"


async def test_short_name_signs_in(api: OktaApi) -> None:
    assert (await authn(api, "ann", PASSWORD)).body["status"] == "SUCCESS"


async def test_one_users_password_does_not_sign_in_another(api: OktaApi) -> None:
    assert_okta_error(await authn(api, BEN, PASSWORD), 401, "E0000004")
    assert (await authn(api, BEN, BEN_PASSWORD)).body["status"] == "SUCCESS"


async def test_user_without_an_okta_password_cannot_authenticate(api: OktaApi) -> None:
    assert_okta_error(await authn(api, HOOKED, PASSWORD), 401, "E0000004")


async def test_password_replaced_by_an_import_hook_no_longer_signs_in(api: OktaApi) -> None:
    hook = {"credentials": {"password": {"hook": {"type": "default"}}}}
    assert (await api.call("POST", f"/api/v1/users/{ANN}", json=hook)).status == 200
    assert_okta_error(await authn(api, ANN, PASSWORD), 401, "E0000004")


async def test_staged_user_cannot_authenticate(api: OktaApi) -> None:
    assert_okta_error(await authn(api, STAGED, PASSWORD), 401, "E0000004")


async def test_user_id_is_not_a_username(api: OktaApi, okta: RunningOktaEmulator) -> None:
    user = okta.emulator.find_user(ANN)
    assert user is not None
    assert_okta_error(await authn(api, user.id, PASSWORD), 401, "E0000004")


async def test_enrolled_factor_means_mfa_required(api: OktaApi) -> None:
    await set_user(api, ANN, mfa="enrolled")
    answer = await authn(api, ANN, PASSWORD)
    assert answer.status == 200
    assert answer.body["status"] == "MFA_REQUIRED"
    assert answer.body["stateToken"]
    assert "sessionToken" not in answer.body
    assert answer.body["_embedded"]["factors"][0]["factorType"] == "token:software:totp"


async def test_enrolled_factor_still_needs_the_right_password(api: OktaApi) -> None:
    await set_user(api, ANN, mfa="enrolled")
    assert_okta_error(await authn(api, ANN, "Wrong#Pass-0000"), 401, "E0000004")


async def test_required_enrollment_means_mfa_enroll(api: OktaApi) -> None:
    await set_user(api, ANN, mfa="enroll_required")
    answer = await authn(api, ANN, PASSWORD)
    assert answer.body["status"] == "MFA_ENROLL"
    assert answer.body["_embedded"]["factors"][0]["status"] == "NOT_SETUP"


async def test_expired_password_flag_means_password_expired(api: OktaApi) -> None:
    await set_user(api, ANN, password_expired=True)
    answer = await authn(api, ANN, PASSWORD)
    assert answer.body["status"] == "PASSWORD_EXPIRED"
    assert answer.body["_links"]["next"]["name"] == "changePassword"


async def test_password_expired_status_means_password_expired(
    api: OktaApi, okta: RunningOktaEmulator
) -> None:
    user = okta.emulator.find_user(ANN)
    assert user is not None
    user.status = Status.PASSWORD_EXPIRED
    assert (await authn(api, ANN, PASSWORD)).body["status"] == "PASSWORD_EXPIRED"


async def test_mfa_is_challenged_before_password_expired(api: OktaApi) -> None:
    await set_user(api, ANN, mfa="enrolled", password_expired=True)
    assert (await authn(api, ANN, PASSWORD)).body["status"] == "MFA_REQUIRED"


async def test_lockout_threshold_locks_the_user_hidden_by_default(api: OktaApi) -> None:
    await settings(api, lockout_threshold=3)
    for _ in range(3):
        assert_okta_error(await authn(api, ANN, "Wrong#Pass-0000"), 401, "E0000004")
    # Locked now: even the right password fails, and (Okta's default) it looks like any failure.
    assert_okta_error(await authn(api, ANN, PASSWORD), 401, "E0000004")
    user = await api.call("GET", f"/api/v1/users/{ANN}")
    assert user.body["status"] == "LOCKED_OUT"


async def test_shown_lockout_answers_locked_out(api: OktaApi) -> None:
    await settings(api, lockout_threshold=2, show_lockout_failures=True)
    assert_okta_error(await authn(api, ANN, "Wrong#Pass-0000"), 401, "E0000004")
    locking = await authn(api, ANN, "Wrong#Pass-0000")
    assert (locking.status, locking.body["status"]) == (200, "LOCKED_OUT")
    after = await authn(api, ANN, PASSWORD)
    assert (after.status, after.body["status"]) == (200, "LOCKED_OUT")
    assert "sessionToken" not in after.body
    assert after.body["_links"]["next"]["name"] == "unlock"


async def test_lockout_counts_only_consecutive_failures(api: OktaApi) -> None:
    await settings(api, lockout_threshold=3)
    for _ in range(3):
        await authn(api, ANN, "Wrong#Pass-0000")
        await authn(api, ANN, "Wrong#Pass-0001")
        assert (await authn(api, ANN, PASSWORD)).body["status"] == "SUCCESS"


async def test_lockout_is_per_user(api: OktaApi) -> None:
    await settings(api, lockout_threshold=2)
    for _ in range(2):
        await authn(api, ANN, "Wrong#Pass-0000")
    assert (await authn(api, BEN, BEN_PASSWORD)).body["status"] == "SUCCESS"


async def test_lockout_can_be_turned_off(api: OktaApi) -> None:
    await settings(api, lockout_threshold=None)
    for _ in range(15):
        await authn(api, ANN, "Wrong#Pass-0000")
    assert (await authn(api, ANN, PASSWORD)).body["status"] == "SUCCESS"


async def test_default_lockout_threshold_is_ten(api: OktaApi) -> None:
    for _ in range(9):
        await authn(api, ANN, "Wrong#Pass-0000")
    assert (await authn(api, ANN, PASSWORD)).body["status"] == "SUCCESS"
    for _ in range(10):
        await authn(api, ANN, "Wrong#Pass-0000")
    assert_okta_error(await authn(api, ANN, PASSWORD), 401, "E0000004")


async def test_authn_bucket_answers_429_with_reset_then_recovers(
    api: OktaApi, clock: FakeClock
) -> None:
    answer = await api.call("PUT", "/_emulator/limits", json={"limits": {"authn": 2}})
    assert answer.status == 200
    for _ in range(2):
        assert (await authn(api, ANN, PASSWORD)).status == 200
    limited = await authn(api, ANN, PASSWORD)
    assert_okta_error(limited, 429, "E0000047")
    assert limited.headers["X-Rate-Limit-Limit"] == "2"
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert int(limited.headers["X-Rate-Limit-Reset"]) == int(clock.now) + 60
    # Other buckets are not spent by sign-ins.
    assert (await api.call("GET", f"/api/v1/users/{ANN}")).status == 200
    clock.advance(60)
    assert (await authn(api, ANN, PASSWORD)).body["status"] == "SUCCESS"


async def test_rate_limited_attempts_do_not_count_towards_lockout(api: OktaApi) -> None:
    await settings(api, lockout_threshold=2)
    await api.call("PUT", "/_emulator/limits", json={"limits": {"authn": 1}})
    await authn(api, ANN, "Wrong#Pass-0000")
    for _ in range(5):
        assert (await authn(api, ANN, "Wrong#Pass-0000")).status == 429
    await api.call("PUT", "/_emulator/limits", json={"limits": {"authn": None}})
    assert (await authn(api, ANN, PASSWORD)).body["status"] == "SUCCESS"


@pytest.mark.parametrize(("mode", "status"), [("http_500", 500), ("http_503", 503)])
async def test_injected_fault_on_the_authn_bucket(api: OktaApi, mode: str, status: int) -> None:
    answer = await api.call("PUT", "/_emulator/fault", json={"mode": mode, "buckets": ["authn"]})
    assert answer.status == 200
    assert (await authn(api, ANN, PASSWORD)).status == status
    assert (await api.call("GET", f"/api/v1/users/{ANN}")).status == 200


async def test_injected_429_carries_the_fault_reset(api: OktaApi, clock: FakeClock) -> None:
    await api.call(
        "PUT", "/_emulator/fault", json={"mode": "http_429", "retry_after": 7, "buckets": ["authn"]}
    )
    answer = await authn(api, ANN, PASSWORD)
    assert_okta_error(answer, 429, "E0000047")
    assert int(answer.headers["X-Rate-Limit-Reset"]) == int(clock.now) + 7


async def test_body_that_is_not_json_is_400_e0000003(api: OktaApi) -> None:
    async with api.session.post(
        api.base + "/api/v1/authn", data=b"{not json", headers={"Accept": "application/json"}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["errorCode"] == "E0000003"


@pytest.mark.parametrize(
    "body", [{"username": ANN}, {"password": PASSWORD}, {"username": ANN, "password": 5}]
)
async def test_missing_username_or_password_is_400_e0000001(
    api: OktaApi, body: dict[str, Any]
) -> None:
    answer = await api.call("POST", "/api/v1/authn", json=body, auth="")
    assert_okta_error(answer, 400, "E0000001")


async def test_stats_count_authn_outcomes(api: OktaApi) -> None:
    await authn(api, ANN, PASSWORD)
    await authn(api, ANN, "Wrong#Pass-0000")
    events = (await api.stats())["events"]
    assert events["authn_success"] == 1
    assert events["authn_failed"] == 1


async def test_control_refuses_unknown_user_and_keys(api: OktaApi) -> None:
    assert (await set_user(api, "nobody@merged.example", password="x")).status == 404
    refused = await set_user(api, ANN, pasword="typo")
    assert refused.status == 400
    assert (await api.call("PUT", "/_emulator/authn", json={"threshold": 3})).status == 400


async def test_control_answer_never_echoes_the_password(api: OktaApi) -> None:
    answer = await set_user(api, ANN, password=PASSWORD)
    assert PASSWORD not in str(answer.body)
    assert answer.body["has_password"] is True


async def test_setting_a_password_gives_a_hooked_user_an_okta_password(api: OktaApi) -> None:
    answer = await set_user(api, HOOKED, password=PASSWORD)
    assert answer.body["provider"] == "OKTA"
    assert (await authn(api, HOOKED, PASSWORD)).body["status"] == "SUCCESS"


async def test_full_reset_forgets_authn_passwords(api: OktaApi) -> None:
    assert (await api.call("POST", "/_emulator/reset", json={"users": True})).status == 200
    assert_okta_error(await authn(api, ANN, PASSWORD), 401, "E0000004")


async def test_emulator_keeps_no_clear_password(okta: RunningOktaEmulator) -> None:
    directory = directory_of(okta.emulator)
    user = okta.emulator.find_user(ANN)
    assert user is not None
    facts = directory.facts(user)
    assert facts.digest is not None
    assert PASSWORD.encode() not in facts.digest
    assert PASSWORD not in repr(facts)
