"""`gateway migrate import` from a `hashed_export` file into the Okta emulator.

Hashes Okta can check arrive as `credentials.password.hash` exactly in the shape of Okta's API
reference (each expected body is built here from the file, independently of the gateway's code);
the others get the password hook. Both kinds then sign in through the emulator: native ones
against the imported hash, hooked ones through the gateway's hook.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient

from emulators.okta import DEFAULT_API_TOKEN, RunningOktaEmulator, start_okta_emulator
from emulators.okta.models import Credential
from gateway.app import create_app
from gateway.config import load_config
from gateway.ledger import UserState, open_ledger
from gateway.okta_api import OktaApiClient, OktaApiError, SswsToken
from tests.conftest import HOOK_PATH, HOOK_SECRET, SecretScan
from tests.fixtures.make_hash_export import PASSWORDS

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hash_export.csv"
FIREBASE = {
    "signer_key": "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==",
    "salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}
# The emulator compares logins case-folded, so `strasse` and `straße` would be one Okta login.
LEFT_OUT = {"strasse@contoso.com"}
HOOKED = {
    "django-weak@contoso.com",  # PBKDF2 with fewer than 4096 iterations
    "django-sha1@contoso.com",  # HMAC-SHA1: not an Okta digestAlgorithm
    "pbkdf2-sha1@contoso.com",
    "sha512crypt@contoso.com",
    "sha256crypt@contoso.com",
    "argon2@contoso.com",
    "scrypt@contoso.com",
    "firebase@contoso.com",
}
with FIXTURE.open(encoding="utf-8", newline="") as _handle:
    ROWS = [row for row in csv.DictReader(_handle) if row["username"] not in LEFT_OUT]
NATIVE = {row["username"] for row in ROWS} - HOOKED


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def expected_hash(row: dict[str, str]) -> dict[str, Any]:
    """Okta's `PasswordCredentialHash` for a row, built straight from the file's fields."""
    text = row["hash"]
    if text.startswith("$2b$"):  # $2b$NN$ + 22 characters of salt + 31 of hash
        return {
            "algorithm": "BCRYPT",
            "workFactor": int(text[4:6]),
            "salt": text[7:29],
            "value": text[29:],
        }
    for prefix, algorithm, size in (
        ("{SSHA}", "SHA-1", 20),
        ("{SSHA256}", "SHA-256", 32),
        ("{SSHA512}", "SHA-512", 64),
    ):
        if text.startswith(prefix):  # base64(digest + salt); the salt went after the password
            raw = base64.b64decode(text[len(prefix) :])
            return {
                "algorithm": algorithm,
                "salt": _b64(raw[size:]),
                "saltOrder": "POSTFIX",
                "value": _b64(raw[:size]),
            }
    if text.startswith("pbkdf2_sha256$"):
        _, iterations, salt, value = text.split("$")
        return {
            "algorithm": "PBKDF2",
            "digestAlgorithm": "SHA256_HMAC",
            "iterationCount": int(iterations),
            "keySize": 32,
            "salt": _b64(salt.encode()),
            "value": value,
        }
    if row["algorithm"] == "pbkdf2":
        return {
            "algorithm": "PBKDF2",
            "digestAlgorithm": {"sha256": "SHA256_HMAC", "sha512": "SHA512_HMAC"}[row["digest"]],
            "iterationCount": int(row["iterations"]),
            "keySize": int(row["key_size"]),
            "salt": row["salt"],
            "value": row["hash"],
        }
    algorithm = {"md5": "MD5", "SHA-1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}[
        row["algorithm"]
    ]
    value = _b64(bytes.fromhex(text)) if len(text) in (32, 64, 128) else text
    if not row["salt"]:
        return {"algorithm": algorithm, "value": value}
    return {
        "algorithm": algorithm,
        "salt": row["salt"],
        "saltOrder": row["salt_order"],
        "value": value,
    }


@pytest.fixture(autouse=True)
def _scan_for_fixture_secrets(secret_scan: SecretScan) -> None:
    secret_scan.secrets |= set(PASSWORDS.values())
    secret_scan.secrets |= {row["hash"] for row in ROWS}


@pytest.fixture
async def okta() -> AsyncIterator[RunningOktaEmulator]:
    running = await start_okta_emulator()
    running.emulator.set_limits({bucket: None for bucket in running.emulator.limiter.limits})
    try:
        yield running
    finally:
        await running.close()


def _export(tmp_path: Path) -> Path:
    """The fixture's users, and one whose domain no route takes."""
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
        other = dict(ROWS[0], username="someone@elsewhere.org", email="someone@elsewhere.org")
        writer.writerow(other)
    return path


def _config(tmp_path: Path, okta: RunningOktaEmulator, **migration: Any) -> Path:
    data: dict[str, Any] = {
        "okta": {
            "hook_path": HOOK_PATH,
            "auth": {"secrets": [HOOK_SECRET]},
            "org_url": okta.url,
            "api": {"token": DEFAULT_API_TOKEN},
        },
        "sources": [
            {
                "name": "export",
                "type": "hashed_export",
                "file": str(_export(tmp_path)),
                "firebase_scrypt": FIREBASE,
            }
        ],
        "routes": [{"match": {"domains": ["contoso.com"]}, "sources": ["export"]}],
        "migration": {
            "ledger": f"sqlite:///{tmp_path / 'ledger.db'}",
            "sources": {"export": migration},
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


async def _migrate(config: Path, *extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "migrate", "import", "-c", str(config),
        "--source", "export", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _sign_in(okta: RunningOktaEmulator, login: str, password: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{okta.url}/_emulator/users/{quote(login, safe='@')}/sign-in",
            json={"password": password},
        ) as response,
    ):
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def _register_hook(okta: RunningOktaEmulator, uri: str) -> None:
    body = {
        "name": "Password import gateway",
        "type": "com.okta.user.credential.password.import",
        "version": "1.0.0",
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": uri,
                "method": "POST",
                "authScheme": {"type": "HEADER", "key": "Authorization", "value": HOOK_SECRET},
            },
        },
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{okta.url}/api/v1/inlineHooks",
            json=body,
            headers={"Authorization": f"SSWS {DEFAULT_API_TOKEN}"},
        ) as response,
    ):
        assert response.status == 200


async def test_native_hashes_arrive_as_okta_documents_them_and_the_rest_get_the_hook(
    okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    profile = {
        "login": "username",
        "email": "email",
        "firstName": "firstName",
        "lastName": "lastName",
        "title": "title",
    }
    config = _config(tmp_path, okta, profile=profile)
    code, out, err = await _migrate(config, "--report", str(tmp_path / "report.csv"))
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"import: listed={len(ROWS) + 1} created={len(HOOKED)} native={len(NATIVE)} "
        "existing=0 skipped=1 failed=0"
    )
    emulator = okta.emulator
    for row in ROWS:
        user = emulator.find_user(row["username"])
        assert user is not None, row["username"]
        assert user.status.value == "ACTIVE"
        assert user.profile["title"] == row["title"]  # the file's other columns
        if row["username"] in NATIVE:
            assert user.credential is Credential.HASH, row["username"]
            assert user.password_hash == expected_hash(row), row["username"]
        else:
            assert user.credential is Credential.HOOK, row["username"]
            assert user.password_hash is None
    assert emulator.stats()["activation_emails_total"] == 0
    ledger = await open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        native = await ledger.get_user("export", "bcrypt@contoso.com")
        hooked = await ledger.get_user("export", "argon2@contoso.com")
    finally:
        await ledger.close()
    assert native is not None and native.native and native.state is UserState.MIGRATED
    assert native.migrated_at is not None and native.hooked_at is None
    assert hooked is not None and not hooked.native and hooked.state is UserState.ACTIVATED
    with (tmp_path / "report.csv").open(encoding="utf-8") as report:
        assert [r[0] for r in csv.reader(report)][1:] == ["someone@elsewhere.org"]
    # A second run creates nothing twice.
    code, out, _ = await _migrate(config)
    assert out.strip().splitlines()[-1] == (
        f"import: listed={len(ROWS) + 1} created=0 native=0 existing={len(ROWS)} skipped=1 failed=0"
    )


async def test_sign_in_works_for_native_and_hooked_users(
    okta: RunningOktaEmulator, tmp_path: Path, aiohttp_client: Any
) -> None:
    config = _config(tmp_path, okta)
    code, _, err = await _migrate(config)
    assert code == 0, err
    gateway: TestClient[Any, Any] = await aiohttp_client(create_app(load_config(config)))
    await _register_hook(okta, str(gateway.make_url(HOOK_PATH)))
    for row in ROWS:
        login, password = row["username"], PASSWORDS[row["username"]]
        wrong = await _sign_in(okta, login, password + "-wrong")
        assert (wrong["result"], wrong["provider"]) == ("UNVERIFIED", "IMPORT"), login
        right = await _sign_in(okta, login, password)
        assert (right["result"], right["provider"]) == ("VERIFIED", "OKTA"), login
        assert right["reason"] == ("hash_match" if login in NATIVE else "hook_answer"), login
    # Only hooked users cost a hook call: two sign-ins each.
    assert okta.emulator.events["inline_hook_calls"] == 2 * len(HOOKED)


async def test_dry_run_counts_native_users_and_writes_nothing(
    okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    code, out, _ = await _migrate(_config(tmp_path, okta), "--dry-run")
    assert code == 0
    assert out.strip().splitlines()[-1] == (
        f"import: listed={len(ROWS) + 1} created={len(HOOKED)} native={len(NATIVE)} "
        "existing=0 skipped=1 failed=0 dry_run=1"
    )
    assert okta.emulator.stats()["users"] == 0


async def test_a_profile_column_the_file_lacks_stops_the_import(
    okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    profile = {"login": "username", "email": "email", "firstName": "givenName", "lastName": "sn"}
    code, _, err = await _migrate(_config(tmp_path, okta, profile=profile))
    assert code == 2
    assert "the file has no column 'givenName', 'sn'" in err
    assert okta.emulator.stats()["users"] == 0


def test_a_non_importable_source_type_is_still_refused() -> None:
    from gateway.migrate.settings import MigrationConfig, migration_problems

    problems = migration_problems(
        MigrationConfig.model_validate({"sources": {"x": {}}}), {"x": "ldap"}, None
    )
    assert problems == [
        ("migration.sources.x", "source type 'ldap' cannot list its users for an import")
    ]


BCRYPT = {
    "algorithm": "BCRYPT",
    "workFactor": 10,
    "salt": "rwh3vH166HCH/NT9XV5FYu",
    "value": "qaMqvAPULkbiQzkTCWo5XDcvzpk8Tna",
}  # Okta's own example (create-user-with-imported-hashed-password-request)
SHA256 = {
    "algorithm": "SHA-256",
    "salt": _b64(b"salt"),
    "saltOrder": "PREFIX",
    "value": _b64(bytes(32)),
}
PBKDF2 = {
    "algorithm": "PBKDF2",
    "digestAlgorithm": "SHA512_HMAC",
    "iterationCount": 4096,
    "keySize": 64,
    "salt": _b64(b"salt"),
    "value": _b64(bytes(64)),
}


@pytest.mark.parametrize(
    ("shape", "field"),
    [
        ({**BCRYPT, "salt": BCRYPT["salt"][:-1]}, "salt"),
        ({**BCRYPT, "value": BCRYPT["value"] + "A"}, "value"),
        ({**BCRYPT, "workFactor": 21}, "workFactor"),
        ({k: v for k, v in BCRYPT.items() if k != "workFactor"}, "workFactor"),
        ({**BCRYPT, "salt": "rwh3vH166HCH/NT9XV5FY="}, "salt"),
        ({**SHA256, "value": "not base64!"}, "value"),
        ({**SHA256, "value": _b64(bytes(20))}, "value"),
        ({**SHA256, "saltOrder": "MIDDLE"}, "saltOrder"),
        ({k: v for k, v in SHA256.items() if k != "saltOrder"}, "saltOrder"),
        ({**PBKDF2, "iterationCount": 4095}, "iterationCount"),
        ({**PBKDF2, "digestAlgorithm": "SHA1_HMAC"}, "digestAlgorithm"),
        ({**PBKDF2, "keySize": 32}, "value"),
        ({k: v for k, v in PBKDF2.items() if k != "salt"}, "salt"),
        ({**PBKDF2, "algorithm": "ARGON2"}, "algorithm"),
    ],
)
async def test_the_emulator_refuses_a_hash_of_the_wrong_shape(
    okta: RunningOktaEmulator, shape: dict[str, Any], field: str
) -> None:
    profile = {
        "login": "a@contoso.com",
        "email": "a@contoso.com",
        "firstName": "A",
        "lastName": "B",
    }
    async with OktaApiClient(okta.url, SswsToken(DEFAULT_API_TOKEN)) as client:
        with pytest.raises(OktaApiError) as caught:
            await client.create_user(profile, hook=False, password_hash=shape)
    assert (caught.value.status, caught.value.code) == (400, "E0000001")
    assert field in str(caught.value)
    assert okta.emulator.stats()["users"] == 0


@pytest.mark.parametrize("shape", [BCRYPT, SHA256, PBKDF2], ids=["bcrypt", "sha256", "pbkdf2"])
async def test_the_emulator_takes_each_documented_shape(
    okta: RunningOktaEmulator, shape: dict[str, Any]
) -> None:
    profile = {
        "login": "a@contoso.com",
        "email": "a@contoso.com",
        "firstName": "A",
        "lastName": "B",
    }
    async with OktaApiClient(okta.url, SswsToken(DEFAULT_API_TOKEN)) as client:
        user = await client.create_user(profile, hook=False, password_hash=shape)
    assert user["status"] == "ACTIVE"
    assert user["credentials"] == {"password": {}, "provider": {"type": "IMPORT", "name": "IMPORT"}}


async def test_the_client_refuses_a_hook_and_a_hash_together(okta: RunningOktaEmulator) -> None:
    profile = {
        "login": "a@contoso.com",
        "email": "a@contoso.com",
        "firstName": "A",
        "lastName": "B",
    }
    async with OktaApiClient(okta.url, SswsToken(DEFAULT_API_TOKEN)) as client:
        with pytest.raises(ValueError, match="not both"):
            await client.create_user(profile, hook=True, password_hash=SHA256)
