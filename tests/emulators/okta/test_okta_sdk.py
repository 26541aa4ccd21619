"""Okta's official Python SDK (`okta` on PyPI) drives the emulator: a client Okta wrote accepts it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from okta.client import Client
from okta.errors.okta_api_error import OktaAPIError
from okta.models import (
    CreateUserRequest,
    PasswordCredential,
    PasswordCredentialHook,
    UserCredentialsWritable,
    UserProfile,
)
from okta.pagination import paginate_all

from emulators.okta import DEFAULT_API_TOKEN, RunningOktaEmulator
from gateway.logs import LIBRARY_LOGGERS
from tests.emulators.okta.conftest import DUPLICATE_LOGIN

LOGINS = [f"user{i}@contoso.com" for i in range(5)]


@pytest.fixture(autouse=True)
def _keep_log_levels() -> Iterator[None]:
    """The SDK sets library log levels (urllib3 to WARNING) while the session scan needs DEBUG."""
    names = ["", *LIBRARY_LOGGERS, "okta"]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers[:] = handlers


def hooked_user(login: str) -> CreateUserRequest:
    """The body the migration sends: profile plus credentials.password.hook = {type: default}."""
    return CreateUserRequest(
        profile=UserProfile(login=login, email=login, firstName="Test", lastName=login[:5]),
        credentials=UserCredentialsWritable(
            password=PasswordCredential(hook=PasswordCredentialHook(type="default"))
        ),
    )


async def test_official_sdk_creates_pages_and_activates_through_one_429(
    okta: RunningOktaEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The SDK refuses http:// org URLs unless this variable is set (okta-sdk-notes.md); it also
    # reads okta.yaml from the home and working directories and OKTA_CLIENT_* variables.
    monkeypatch.setenv("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("OKTA_CLIENT_")]:
        monkeypatch.delenv(name)
    client = Client({"orgUrl": okta.url, "token": DEFAULT_API_TOKEN})

    for login in LOGINS:
        user, _, err = await client.create_user(hooked_user(login), activate=False)
        assert err is None, err
        assert user.status.value == "STAGED"
        assert user.credentials.provider.type.value == "IMPORT"
    _, _, duplicate = await client.create_user(hooked_user(LOGINS[0]), activate=False)
    assert isinstance(duplicate, OktaAPIError)
    assert duplicate.error_code == "E0000001"
    assert duplicate.error_causes == [{"errorSummary": DUPLICATE_LOGIN}]

    staged = [
        user async for user in paginate_all(client.list_users, limit=2, search='status eq "STAGED"')
    ]
    assert [user.profile.login for user in staged] == LOGINS  # three pages, followed by Link

    # Every fifth lifecycle call is refused once: the SDK must wait Reset - Date + 1 and retry.
    okta.emulator.set_fault("http_429", rate=0.2, retry_after=0, buckets=["user_lifecycle"])
    for user in staged:
        token, _, err = await client.activate_user(user.id, send_email=False)
        assert err is None, err
        assert token.activation_token
    okta.emulator.set_fault("none")

    for login in LOGINS:
        user, _, err = await client.get_user(login)
        assert err is None, err
        assert user.status.value == "ACTIVE"
        assert user.credentials.provider.type.value == "IMPORT"
    stats = okta.emulator.stats()
    assert stats["faults_injected"] == {"http_429": 1}
    assert stats["requests_by_endpoint"]["POST /api/v1/users/{id}/lifecycle/activate"] == 6
    assert stats["requests_by_endpoint"]["GET /api/v1/users"] == 3
    assert stats["activation_emails_total"] == 0
