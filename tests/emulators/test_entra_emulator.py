"""Drive the Entra emulator with unmodified msal (and raw HTTP where msal hides the detail)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from msal.exceptions import MsalServiceError

from emulators.entra import (
    DEFAULT_ENTRA_BASE,
    DirectoryError,
    EmulatedDirectory,
    EmulatedUser,
    RunningEmulator,
    load_directory,
    start_emulator,
)
from tests.certs import self_signed

DEMO_USERS = Path(__file__).resolve().parents[2] / "emulators" / "demo_users.yaml"
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "emulator-client-secret"
SCOPES = ["User.Read"]
DESCRIPTION = re.compile(
    r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\n"
    r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$",
    re.DOTALL,
)


class RewritingSession(requests.Session):
    """Send every URL msal asks for, whatever its scheme and host, to the emulator."""

    def __init__(self, target: str, timeout: float = 5.0) -> None:
        super().__init__()
        self.target = target
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        parts = urlsplit(url if isinstance(url, str) else url.decode())
        rewritten = self.target + parts.path + (f"?{parts.query}" if parts.query else "")
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, rewritten, *args, **kwargs)


class StoreNothingCache(dict[Any, Any]):
    """msal http_cache that keeps nothing, so no response is replayed between tests."""

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


AppFactory = Callable[..., Awaitable[msal.ConfidentialClientApplication]]


@pytest.fixture
def directory() -> EmulatedDirectory:
    return load_directory(DEMO_USERS)


@pytest.fixture
async def emulator(directory: EmulatedDirectory) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(directory)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def make_app(emulator: RunningEmulator) -> AsyncIterator[AppFactory]:
    """Build msal apps in a thread (the constructor does blocking discovery on our loop)."""
    sessions: list[requests.Session] = []

    async def factory(
        *,
        client_id: str = CLIENT_ID,
        credential: Any = SECRET,
        tenant: str = TENANT,
        read_timeout: float = 5.0,
        target: RunningEmulator | None = None,
        **kwargs: Any,
    ) -> msal.ConfidentialClientApplication:
        session = RewritingSession((target or emulator).url, timeout=read_timeout)
        sessions.append(session)
        kwargs.setdefault("instance_discovery", False)
        return await asyncio.to_thread(
            msal.ConfidentialClientApplication,
            client_id,
            client_credential=credential,
            authority=f"{DEFAULT_ENTRA_BASE}/{tenant}",
            http_client=session,
            http_cache=StoreNothingCache(),
            **kwargs,
        )

    try:
        yield factory
    finally:
        for session in sessions:
            session.close()


async def ropc(app: msal.ConfidentialClientApplication, user: str, pw: str) -> dict[str, Any]:
    result: dict[str, Any] = await asyncio.to_thread(
        app.acquire_token_by_username_password, user, pw, scopes=SCOPES
    )
    return result


async def post_token(emulator: RunningEmulator, form: dict[str, str], tenant: str = TENANT) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{emulator.url}/{tenant}/oauth2/v2.0/token", data=form) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


def assert_aad_error(result: dict[str, Any], code: int, error: str) -> None:
    assert result.get("error_codes") == [code], result
    assert result["error"] == error
    match = DESCRIPTION.match(result["error_description"])
    assert match and match.group(1) == str(code), result["error_description"]
    assert result["trace_id"] in result["error_description"]
    assert result["correlation_id"] in result["error_description"]
    assert result["error_uri"] == f"https://login.microsoftonline.com/error?code={code}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", result["timestamp"])


# --- managed users ---------------------------------------------------------------------------
async def test_correct_password_issues_tokens(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "alice@contoso.com", "Alice#Pass1")
    assert "access_token" in result, result
    assert result["token_source"] == "identity_provider"
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == "alice@contoso.com"
    assert claims["name"] == "Alice Example"
    assert claims["tid"] == TENANT
    assert claims["oid"]
    assert result["expires_in"] == 3599


async def test_wrong_password_is_aadsts_50126(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "alice@contoso.com", "alice#pass1")
    assert_aad_error(result, 50126, "invalid_grant")
    assert "suberror" not in result


async def test_unknown_user_is_aadsts_50034(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "nobody@contoso.com", "whatever")
    assert_aad_error(result, 50034, "invalid_grant")


async def test_username_is_case_insensitive(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "ALICE@Contoso.COM", "Alice#Pass1")
    assert "access_token" in result, result


async def test_mfa_required_after_correct_password(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "bob@contoso.com", "Bob#Pass1")
    assert_aad_error(result, 50076, "interaction_required")
    assert result["suberror"] == "basic_action"


async def test_mfa_required_user_with_wrong_password_is_50126(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "bob@contoso.com", "wrong")
    assert_aad_error(result, 50126, "invalid_grant")


async def test_mfa_enrollment_is_50079(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "erin@contoso.com", "Erin#Pass1")
    assert_aad_error(result, 50079, "interaction_required")


async def test_expired_password_is_50055_with_suberror(make_app: AppFactory) -> None:
    app = await make_app()
    assert_aad_error(await ropc(app, "carol@contoso.com", "wrong"), 50126, "invalid_grant")
    result = await ropc(app, "carol@contoso.com", "Carol#Pass1")
    assert_aad_error(result, 50055, "invalid_grant")
    assert result["suberror"] == "user_password_expired"


async def test_locked_user_is_50053_regardless_of_password(make_app: AppFactory) -> None:
    app = await make_app()
    for password in ("Locked#Pass1", "wrong"):
        assert_aad_error(await ropc(app, "locked@contoso.com", password), 50053, "invalid_grant")


async def test_disabled_user_is_50057_regardless_of_password(make_app: AppFactory) -> None:
    app = await make_app()
    for password in ("Dave#Pass1", "wrong"):
        assert_aad_error(await ropc(app, "dave@contoso.com", password), 50057, "invalid_grant")


async def test_ca_blocked_is_53003_after_correct_password(make_app: AppFactory) -> None:
    app = await make_app()
    result = await ropc(app, "blocked@contoso.com", "Blocked#Pass1")
    assert_aad_error(result, 53003, "interaction_required")
    assert_aad_error(await ropc(app, "blocked@contoso.com", "x"), 50126, "invalid_grant")


async def test_aadsts_behaviour_returns_that_code(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "consent@contoso.com", "Consent#Pass1")
    assert_aad_error(result, 65001, "invalid_grant")
    assert CLIENT_ID in result["error_description"]


async def test_non_ascii_credentials(make_app: AppFactory) -> None:
    app = await make_app()
    result = await ropc(app, "zoë@contoso.com", "Pässwörd-名前-1")
    assert result["id_token_claims"]["preferred_username"] == "zoë@contoso.com", result
    # Unicode normalisation must not make a different byte sequence match.
    decomposed = "Pa\u0308sswo\u0308rd-名前-1"
    assert_aad_error(await ropc(app, "zoë@contoso.com", decomposed), 50126, "invalid_grant")


async def test_user_changed_at_run_time(emulator: RunningEmulator, make_app: AppFactory) -> None:
    app = await make_app()
    emulator.emulator.set_behaviour("alice@contoso.com", "locked")
    assert_aad_error(await ropc(app, "alice@contoso.com", "Alice#Pass1"), 50053, "invalid_grant")


# --- federated users (WS-Trust through the emulated AD FS) -----------------------------------
async def test_federated_user_verified_through_adfs(
    emulator: RunningEmulator, make_app: AppFactory
) -> None:
    result = await ropc(await make_app(), "fed1@fabrikam.com", "Fed1#Pass")
    assert result["id_token_claims"]["preferred_username"] == "fed1@fabrikam.com", result
    state = emulator.emulator
    assert state.requests_by_kind["adfs"] == 1
    assert state.token_requests_by_grant == {"urn:ietf:params:oauth:grant-type:saml1_1-bearer": 1}
    assert state.token_requests_by_user["fed1@fabrikam.com"] == 1


async def test_federated_wrong_password_raises_ws_trust_fault(make_app: AppFactory) -> None:
    app = await make_app()
    with pytest.raises(RuntimeError, match=r"FailedAuthentication.*|ID3242"):
        await ropc(app, "fed1@fabrikam.com", "Fed2#Pass")
    with pytest.raises(RuntimeError, match="ID3242"):
        await ropc(app, "ghost@fabrikam.com", "x")


async def test_federated_mfa_required_after_saml_grant(make_app: AppFactory) -> None:
    result = await ropc(await make_app(), "fedmfa@fabrikam.com", "FedMfa#Pass")
    assert_aad_error(result, 50076, "interaction_required")


async def test_federated_user_sending_password_grant_gets_50126(
    emulator: RunningEmulator,
) -> None:
    form = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "password",
        "username": "fed1@fabrikam.com",
        "password": "Fed1#Pass",
        "scope": "openid",
    }
    status, _, text = await post_token(emulator, form)
    assert status == 400
    assert json.loads(text)["error_codes"] == [50126]


async def test_saml2_bearer_through_ws_trust_13(
    directory: EmulatedDirectory, make_app: AppFactory
) -> None:
    async with await start_emulator(directory, wstrust_version="13") as other:
        result = await ropc(await make_app(target=other), "fed2@fabrikam.com", "Fed2#Pass")
        assert result["id_token_claims"]["preferred_username"] == "fed2@fabrikam.com", result
        assert other.emulator.token_requests_by_grant == {
            "urn:ietf:params:oauth:grant-type:saml2-bearer": 1
        }


async def test_forged_saml_assertion_is_rejected(emulator: RunningEmulator) -> None:
    forged = (
        "<saml:Assertion xmlns:saml='urn:oasis:names:tc:SAML:1.0:assertion' AssertionID='_1'>"
        "<saml:Conditions NotOnOrAfter='2999-01-01T00:00:00.000Z'/><saml:AttributeStatement>"
        "<saml:Attribute AttributeName='UPN'><saml:AttributeValue>fed1@fabrikam.com"
        "</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>"
    )
    form = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "urn:ietf:params:oauth:grant-type:saml1_1-bearer",
        "assertion": base64.urlsafe_b64encode(forged.encode()).decode().rstrip("="),
    }
    status, _, text = await post_token(emulator, form)
    assert status == 400
    assert json.loads(text)["error_codes"] == [50008]
    assert emulator.emulator.token_requests_by_user == {}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<a><b></a>",
        b"<x/>",
        b"\xff\xfe\x00garbage",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>',
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body/></s:Envelope>",
    ],
)
async def test_junk_soap_gets_fault_not_crash(emulator: RunningEmulator, body: bytes) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{emulator.url}/adfs/services/trust/2005/usernamemixed",
            data=body,
            headers={"Content-Type": "application/soap+xml; charset=utf-8"},
        ) as resp,
    ):
        text = await resp.text()
    assert resp.status == 500
    assert "s:Fault" in text and "a:InvalidRequest" in text
    assert msal.wstrust_response.parse_error(text)["code"] == "a:InvalidRequest"


# --- faults ----------------------------------------------------------------------------------
async def test_http_429_fault_carries_retry_after(
    emulator: RunningEmulator, make_app: AppFactory
) -> None:
    result = await ropc(await make_app(), "throttled@contoso.com", "Throttled#Pass1")
    assert result["error"] == "temporarily_unavailable", result
    form = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "password",
        "username": "throttled@contoso.com",
        "password": "anything",
    }
    status, headers, text = await post_token(emulator, form)
    assert status == 429
    assert headers["Retry-After"] == "2"
    assert json.loads(text)["error"] == "temporarily_unavailable"


async def test_http_500_fault_raises_msal_service_error(make_app: AppFactory) -> None:
    with pytest.raises(MsalServiceError):
        await ropc(await make_app(), "boom@contoso.com", "Boom#Pass1")


async def test_non_json_fault_raises_json_error(
    emulator: RunningEmulator, make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="msal")  # msal logs the HTML body at ERROR
    with pytest.raises(json.JSONDecodeError):
        await ropc(await make_app(), "proxy@contoso.com", "Proxy#Pass1")
    assert emulator.emulator.token_results["http_403"] == 1


async def test_hang_fault_times_out_the_client(
    emulator: RunningEmulator, make_app: AppFactory
) -> None:
    app = await make_app(read_timeout=0.3)
    emulator.emulator.set_fault("hang")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        await ropc(app, "alice@contoso.com", "Alice#Pass1")
    assert time.monotonic() - started < 2


async def test_global_fault_endpoint_hits_every_user_until_cleared(
    emulator: RunningEmulator, make_app: AppFactory
) -> None:
    app = await make_app()
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{emulator.url}/_emulator/fault", json={"mode": "http_500", "retry_after": 1}
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["mode"] == "http_500"
        # The realm request fails first; msal raise_for_status()es it.
        with pytest.raises(MsalServiceError, match="HTTP Error: 500"):
            await ropc(app, "alice@contoso.com", "Alice#Pass1")
        async with http.put(f"{emulator.url}/_emulator/fault", json={"mode": "none"}) as resp:
            assert resp.status == 200
    assert "access_token" in await ropc(app, "alice@contoso.com", "Alice#Pass1")


async def test_global_http_429_fault_on_token_endpoint(emulator: RunningEmulator) -> None:
    emulator.emulator.set_fault("http_429", retry_after=7)
    status, headers, _ = await post_token(emulator, {"grant_type": "password"})
    assert (status, headers["Retry-After"]) == (429, "7")


async def test_fault_endpoint_rejects_bad_input(emulator: RunningEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        for body in (b"{", b'{"mode": "explode"}', b'{"mode": "none", "extra": 1}'):
            async with http.put(f"{emulator.url}/_emulator/fault", data=body) as resp:
                assert resp.status == 400
    assert emulator.emulator.fault.mode == "none"


async def test_global_latency_delays_token_requests(emulator: RunningEmulator) -> None:
    emulator.emulator.set_fault("none", latency_ms=200)
    started = time.monotonic()
    status, _, _ = await post_token(emulator, {"grant_type": "password"})
    assert status == 400
    assert time.monotonic() - started >= 0.2


async def test_concurrent_requests_are_served_in_parallel(emulator: RunningEmulator) -> None:
    emulator.emulator.set_fault("none", latency_ms=300)
    form = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "password",
        "username": "alice@contoso.com",
        "password": "Alice#Pass1",
    }
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:

        async def one() -> int:
            url = f"{emulator.url}/{TENANT}/oauth2/v2.0/token"
            async with http.post(url, data=form) as resp:
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(40)))
    assert statuses == [200] * 40
    assert time.monotonic() - started < 2
    assert emulator.emulator.peak_in_flight >= 20


# --- client authentication, tenants, discovery -----------------------------------------------
async def test_wrong_client_secret_is_7000215(make_app: AppFactory) -> None:
    result = await ropc(await make_app(credential="not-the-secret"), "alice@contoso.com", "x")
    assert_aad_error(result, 7000215, "invalid_client")


async def test_missing_client_credential_is_7000218(emulator: RunningEmulator) -> None:
    form = {"client_id": CLIENT_ID, "grant_type": "password", "username": "a@contoso.com"}
    status, _, text = await post_token(emulator, form)
    assert status == 401
    assert_aad_error(json.loads(text), 7000218, "invalid_client")


async def test_unknown_client_id_is_700016(make_app: AppFactory) -> None:
    app = await make_app(client_id="99999999-9999-9999-9999-999999999999")
    result = await ropc(app, "alice@contoso.com", "Alice#Pass1")
    assert_aad_error(result, 700016, "unauthorized_client")


def _certificate() -> dict[str, str]:
    cert_pem, key_pem = self_signed()
    thumbprint = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA1()).hex()
    return {"private_key": key_pem.decode(), "thumbprint": thumbprint}


async def test_certificate_client_assertion_accepted(make_app: AppFactory) -> None:
    app = await make_app(credential=_certificate())
    result = await ropc(app, "alice@contoso.com", "Alice#Pass1")
    assert "access_token" in result, result


async def test_client_assertion_for_another_client_is_700021(emulator: RunningEmulator) -> None:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    other = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
    jwt = f"{part({'alg': 'RS256'})}.{part({'iss': other, 'sub': other})}.sig"
    form = {
        "client_id": CLIENT_ID,
        "client_assertion": jwt,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
    }
    status, _, text = await post_token(emulator, form)
    assert status == 401
    assert json.loads(text)["error_codes"] == [700021]


async def test_client_credentials_issues_app_token(make_app: AppFactory) -> None:
    app = await make_app()
    result = await asyncio.to_thread(
        app.acquire_token_for_client, scopes=["https://graph.microsoft.com/.default"]
    )
    assert "access_token" in result, result
    assert result["expires_in"] == 3599


async def test_unknown_tenant_is_90002(emulator: RunningEmulator, make_app: AppFactory) -> None:
    url = (
        f"{emulator.url}/22222222-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"
    )
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 400
        assert_aad_error(await resp.json(), 90002, "invalid_request")
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        await make_app(tenant="22222222-0000-0000-0000-000000000000")


async def test_managed_domain_accepted_as_tenant(make_app: AppFactory) -> None:
    result = await ropc(await make_app(tenant="contoso.com"), "alice@contoso.com", "Alice#Pass1")
    assert "access_token" in result, result


async def test_common_authority_password_grant_is_9001023(make_app: AppFactory) -> None:
    result = await ropc(await make_app(tenant="common"), "alice@contoso.com", "Alice#Pass1")
    assert_aad_error(result, 9001023, "invalid_request")


async def test_instance_discovery_is_served(
    emulator: RunningEmulator, make_app: AppFactory
) -> None:
    app = await make_app(instance_discovery=True)
    assert "access_token" in await ropc(app, "alice@contoso.com", "Alice#Pass1")
    assert emulator.emulator.requests_by_kind["instance"] == 1


async def test_user_realm_by_domain(emulator: RunningEmulator) -> None:
    async def realm(user: str) -> dict[str, Any]:
        url = f"{emulator.url}/common/userrealm/{user}?api-version=1.0"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            data: dict[str, Any] = await resp.json()
            return data

    assert (await realm("x@contoso.com"))["account_type"] == "Managed"
    federated = await realm("x@fabrikam.com")
    assert federated["account_type"] == "Federated"
    assert federated["federation_protocol"] == "WSTrust"
    assert federated["federation_active_auth_url"] == (
        "https://adfs.emulator.invalid/adfs/services/trust/2005/usernamemixed"
    )
    assert "federation_metadata_url" not in federated
    assert (await realm("x@elsewhere.org"))["account_type"] == "Unknown"


# --- counters and control plane --------------------------------------------------------------
async def test_counters_count_token_requests_per_user(
    emulator: RunningEmulator, make_app: AppFactory
) -> None:
    app = await make_app()
    state = emulator.emulator
    state.reset_counters()
    await ropc(app, "alice@contoso.com", "Alice#Pass1")
    await ropc(app, "Alice@contoso.com", "wrong")
    await ropc(app, "bob@contoso.com", "Bob#Pass1")
    assert state.token_requests_by_user == {"alice@contoso.com": 2, "bob@contoso.com": 1}
    assert state.token_requests_by_grant == {"password": 3}
    assert state.requests_by_kind["token"] == 3
    assert state.requests_by_kind["realm"] == 3
    assert state.token_results == {"ok": 1, "aadsts_50126": 1, "aadsts_50076": 1}


async def test_stats_and_reset_endpoints(emulator: RunningEmulator, make_app: AppFactory) -> None:
    await ropc(await make_app(), "alice@contoso.com", "Alice#Pass1")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emulator.url}/_emulator/stats") as resp:
            stats = await resp.json()
        assert stats["requests_by_kind"]["discovery"] == 1
        assert stats["token_requests_by_user"] == {"alice@contoso.com": 1}
        async with http.post(f"{emulator.url}/_emulator/reset") as resp:
            assert resp.status == 200
    assert emulator.emulator.token_requests_by_user == {}
    assert emulator.emulator.requests_by_kind == {"control": 1}


async def test_emulator_never_logs_passwords(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    app = await make_app()
    await ropc(app, "alice@contoso.com", "Sekret-Wrong-1")
    with pytest.raises(RuntimeError):
        await ropc(app, "fed1@fabrikam.com", "Sekret-Wrong-2")
    assert "Sekret-Wrong" not in caplog.text


# --- directory -------------------------------------------------------------------------------
def test_demo_directory_loads() -> None:
    directory = load_directory(DEMO_USERS)
    user = directory.find("ZOË@contoso.com")
    assert user is not None and user.password_matches("Pässwörd-名前-1")
    assert directory.realm("fabrikam.com") == "Federated"


def test_generated_users() -> None:
    directory = EmulatedDirectory.with_generated_users(1000, domain="example.org")
    assert len(directory.users) == 1000
    user = directory.find("user7@example.org")
    assert user is not None and user.password_matches("Pw-7!")
    assert directory.realm("example.org") == "Managed"


def test_directory_built_in_code() -> None:
    directory = EmulatedDirectory(
        federated_domains=["fabrikam.com"],
        users=[EmulatedUser(username="a@fabrikam.com", password="p", behaviour="aadsts_50158")],
    )
    user = directory.find("A@FABRIKAM.COM")
    assert user is not None and user.code_after_password == 50158
    assert "password" not in repr(user).replace("password_matches", "")


def test_invalid_users_file_reports_without_passwords(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(
        "tenant_id: not-a-guid\nusers:\n"
        "  - {username: x@contoso.com, password: 'Hidden#Pw1', behaviour: teleport}\n"
        "  - {username: y@nowhere.org, password: 'Hidden#Pw2', colour: red}\n",
        encoding="utf-8",
    )
    with pytest.raises(DirectoryError) as info:
        load_directory(path)
    message = str(info.value)
    assert "tenant_id" in message and "behaviour" in message and "colour" in message
    assert "Hidden#Pw" not in message


def test_broken_yaml_reports_position_not_content(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - {username: x@contoso.com, password: 'Hidden#Pw3\n", "utf-8")
    with pytest.raises(DirectoryError, match="line") as info:
        load_directory(path)
    assert "Hidden#Pw3" not in str(info.value)


def test_duplicate_and_foreign_users_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        EmulatedDirectory(
            users=[
                EmulatedUser(username="a@contoso.com", password="1"),
                EmulatedUser(username="A@contoso.com", password="2"),
            ]
        )
    with pytest.raises(ValueError, match="neither"):
        EmulatedDirectory(users=[EmulatedUser(username="a@other.org", password="1")])
