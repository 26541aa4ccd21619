"""The org file (STAGED users as Office 365 leaves them, groups, tokens) and `python -m emulators.okta`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from emulators.okta import OktaEmulator, OktaOrg, OrgFileError, load_org

REPO = Path(__file__).resolve().parents[3]
ORG_FILE = """
api_tokens: [00test-token-from-the-org-file]
custom_attributes: [adObjectGuid]
rate_limits: {users_collection: 1200}
groups:
  - {name: Office 365 users}
users:
  - profile: {login: a@contoso.com, email: a@contoso.com, firstName: A, lastName: One,
              adObjectGuid: 6f1c}
    groups: [Office 365 users]
  - profile: {login: b@contoso.com, email: b@contoso.com, firstName: B, lastName: Two}
    status: ACTIVE
    credential: hook
"""


def test_org_file_seeds_staged_users_groups_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(ORG_FILE, encoding="utf-8")
    emulator = OktaEmulator(load_org(path))
    users = {user.login: user for user in emulator.users.values()}
    assert users["a@contoso.com"].status == "STAGED"
    assert users["a@contoso.com"].provider == "OKTA"
    assert users["b@contoso.com"].status == "ACTIVE"
    assert users["b@contoso.com"].provider == "IMPORT"
    group = next(iter(emulator.groups.values()))
    assert group.member_ids == {users["a@contoso.com"].id}
    assert emulator.limiter.limits["users_collection"] == 1200


def test_org_file_seeds_authorization_servers_without_showing_secrets(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(
        """
authorization_servers:
  - id: ausemulatorhooks0001
    audience: api://okta-password-gateway
    scopes: [okta.hooks.password]
    clients: [{client_id: 0oaemulatorhook00001, client_secret: 00secret-hook-client}]
""",
        encoding="utf-8",
    )
    org = load_org(path)
    assert "00secret-hook-client" not in repr(org)
    emulator = OktaEmulator(org)
    server = emulator.authorization_servers["ausemulatorhooks0001"]
    assert server.audience == "api://okta-password-gateway"
    assert server.client_matches("0oaemulatorhook00001", "00secret-hook-client") is True
    assert server.client_matches("0oaemulatorhook00001", "wrong") is False
    assert server.client_matches("0oaother", "00secret-hook-client") is None
    assert "00secret-hook-client" not in repr(server)
    kid = server.key.kid
    emulator.reset_all()
    assert emulator.authorization_servers["ausemulatorhooks0001"].key.kid != kid
    assert OktaEmulator(OktaOrg()).authorization_servers == {}


def test_generated_staged_users() -> None:
    emulator = OktaEmulator(OktaOrg.with_staged_users(1000))
    assert len(emulator.users) == 1000
    assert {user.status for user in emulator.users.values()} == {"STAGED"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("users: [{profile: {login: x}}", "invalid YAML"),
        ("api_tokens: [00secret-token]\nusers: 3", "users"),
        ("colour: blue", "colour"),
        ("users: [{profile: {login: a@b.co, email: a@b.co}}]", "firstName"),
        (
            "users: [{profile: {login: a@b.co, email: a@b.co, firstName: A, lastName: B},"
            " groups: [nope]}]",
            "nope",
        ),
        (
            "authorization_servers: [{id: aus1, audience: api://x, scopes: [s],"
            " clients: [{client_id: c, client_secret: 00secret-token}]}]",
            "authorization_servers.0.id",
        ),
        (
            "authorization_servers: [{id: default, audience: api://x, scopes: [a b],"
            " clients: [{client_id: c, client_secret: 00secret-token}]}]",
            "white space",
        ),
        (
            "authorization_servers: [{id: default, audience: api://x, scopes: [s],"
            " clients: [{client_id: c, client_secret: 00secret-token},"
            " {client_id: c, client_secret: 00secret-token}]}]",
            "client ids must be unique",
        ),
        (
            "authorization_servers: [{id: default, audience: a, scopes: [s]},"
            " {id: default, audience: b, scopes: [s]}]",
            "server ids must be unique",
        ),
    ],
)
def test_bad_org_files_are_explained_without_echoing_them(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OrgFileError) as caught:
        OktaEmulator(load_org(path))
    assert expected in str(caught.value)
    assert "00secret-token" not in str(caught.value)


async def test_python_m_emulators_okta_serves_the_org_file(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(ORG_FILE, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulators.okta", "--port", "0", "--users", str(path),
        cwd=REPO, env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("Okta emulator listening on http://127.0.0.1:"), line
        url = line.split()[4]
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{url}/api/v1/users",
                params={"search": 'status eq "STAGED"'},
                headers={"Authorization": "SSWS 00test-token-from-the-org-file"},
            ) as resp,
        ):
            assert resp.status == 200
            assert [u["profile"]["login"] for u in await resp.json()] == ["a@contoso.com"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_python_m_emulators_okta_refuses_a_bad_org_file(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("colour: blue", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulators.okta", "--port", "0", "--users", str(path),
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"colour" in stderr
