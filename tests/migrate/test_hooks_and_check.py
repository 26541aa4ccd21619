"""`gateway migrate register-hooks` and `gateway migrate check` against the Okta and Entra emulators."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulators.entra import EmulatedDirectory, RunningEmulator, start_emulator
from emulators.okta import RunningOktaEmulator
from gateway.config import load_config
from gateway.migrate.hooks import register
from tests.conftest import HOOK_SECRET, SCAN
from tests.migrate.test_import import _config
from tests.migrate.test_import import okta as okta  # the fixture, re-exported for pytest

HOOK_URL = "https://gw.example.com/okta/password-import"
LAST_CREATED = "register-hooks: created=1 updated=0 unchanged=0 failed=0"
LAST_UNCHANGED = "register-hooks: created=0 updated=0 unchanged=1 failed=0"
LAST_UPDATED = "register-hooks: created=0 updated=1 unchanged=0 failed=0"


@pytest.fixture
async def tenant() -> AsyncIterator[RunningEmulator]:
    """A small Entra tenant whose users all sign in at contoso.com (the routed domain)."""
    running = await start_emulator(EmulatedDirectory.with_generated_users(20))
    try:
        yield running
    finally:
        await running.close()


def _write(
    tmp_path: Path, entra: RunningEmulator, okta: RunningOktaEmulator, **changes: Any
) -> Path:
    """test_import's config, then `changes` applied: okta.<key>, sources, routes."""
    path = _config(tmp_path / "c.yaml", entra, okta, f"sqlite:///{tmp_path / 'l.db'}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key == "client_secret":
            data["sources"][0]["client_secret"] = value
        elif key == "routes":
            data["routes"] = value
        else:
            data["okta"][key] = value
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def _cli(verb: str, config: Path) -> tuple[int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "migrate", verb, "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    SCAN.add_output(out.decode() + err.decode())  # the session's secret scan reads it too
    assert HOOK_SECRET not in out.decode() + err.decode()
    return process.returncode, out.decode().strip().splitlines()


def _hooks(okta: RunningOktaEmulator) -> list[dict[str, Any]]:
    return list(okta.emulator.inline_hooks.values())


def _writes(okta: RunningOktaEmulator) -> tuple[int, int]:
    events = okta.emulator.stats()["events"]
    return events.get("inline_hooks_created", 0), events.get("inline_hooks_updated", 0)


async def test_register_hooks_creates_once_then_changes_nothing_then_check_passes(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config = _write(tmp_path, tenant, okta, hook_url=HOOK_URL)
    code, lines = await _cli("register-hooks", config)
    assert code == 0, lines
    assert lines[0].startswith(f"created password-import: {HOOK_URL} (id ")
    assert lines[-1] == LAST_CREATED
    (hook,) = _hooks(okta)
    assert hook["status"] == "ACTIVE"
    assert hook["type"] == "com.okta.user.credential.password.import"
    assert hook["channel"]["config"]["uri"] == HOOK_URL
    auth = hook["channel"]["config"]["authScheme"]
    assert (auth["key"], auth["value"]) == ("Authorization", HOOK_SECRET)  # sent back verbatim
    assert _writes(okta) == (1, 0)

    code, lines = await _cli("register-hooks", config)
    assert code == 0, lines
    assert lines[0].startswith("unchanged password-import: ")
    assert lines[-1] == LAST_UNCHANGED
    assert _writes(okta) == (1, 0)  # the second run wrote nothing
    assert len(_hooks(okta)) == 1

    code, lines = await _cli("check", config)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [
        "PASS okta-api", "PASS inline-hook", "PASS source-entra", "PASS route-0", "PASS ledger",
    ]  # fmt: skip


async def test_a_changed_hook_url_or_an_inactive_hook_is_updated_in_place(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    code, _ = await _cli("register-hooks", _write(tmp_path, tenant, okta, hook_url=HOOK_URL))
    assert code == 0
    moved = "https://gw2.example.com/okta/password-import"
    config = _write(tmp_path, tenant, okta, hook_url=moved)
    code, lines = await _cli("register-hooks", config)
    assert code == 0, lines
    assert lines[0].startswith(f"updated password-import: {moved} (id ")
    assert lines[-1] == LAST_UPDATED
    (hook,) = _hooks(okta)  # updated, not a second hook (an org holds one)
    assert hook["channel"]["config"]["uri"] == moved
    assert hook["name"] == "Okta password gateway: password import"
    assert _writes(okta) == (1, 1)

    hook["status"] = "INACTIVE"  # an admin deactivated it in the console
    code, lines = await _cli("register-hooks", config)
    assert code == 0, lines
    assert "activated" in lines[0]
    assert lines[-1] == LAST_UPDATED
    assert hook["status"] == "ACTIVE"


async def test_a_secret_rotation_is_sent_only_with_force(
    tenant: RunningEmulator,
    okta: RunningOktaEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Okta never returns the secret, so a rotation cannot be seen: `--force` re-sends it."""
    code, _ = await _cli("register-hooks", _write(tmp_path, tenant, okta, hook_url=HOOK_URL))
    assert code == 0
    rotated = "Basic cm90YXRlZC1zZWNyZXQtNDQyMQ=="
    SCAN.secrets.add(rotated)
    config = load_config(
        _write(tmp_path, tenant, okta, hook_url=HOOK_URL, auth={"secrets": [rotated, HOOK_SECRET]})
    )
    (hook,) = _hooks(okta)

    counts = await register(config)
    assert (counts["unchanged"], counts["updated"]) == (1, 0)
    assert hook["channel"]["config"]["authScheme"]["value"] == HOOK_SECRET  # not seen, not sent

    counts = await register(config, force=True)
    assert (counts["unchanged"], counts["updated"]) == (0, 1)
    assert hook["channel"]["config"]["authScheme"]["value"] == rotated
    assert rotated not in capsys.readouterr().out


async def test_check_fails_without_the_hook(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config = _write(tmp_path, tenant, okta, hook_url=HOOK_URL)
    code, lines = await _cli("check", config)
    assert code == 1
    assert (
        "FAIL inline-hook: Okta has no password import inline hook: "
        f"run: gateway migrate register-hooks -c {config}"
    ) in lines
    assert [line for line in lines if line.startswith("FAIL")] == [lines[1]]  # only that one


async def test_check_fails_with_a_wrong_api_token(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config = _write(tmp_path, tenant, okta, hook_url=HOOK_URL)
    code, _ = await _cli("register-hooks", config)
    assert code == 0
    config = _write(tmp_path, tenant, okta, hook_url=HOOK_URL, api={"token": "00wrong-token-1"})
    code, lines = await _cli("check", config)
    assert code == 1
    assert lines[0].startswith("FAIL okta-api: Okta did not answer: ")
    assert "401" in lines[0] and "okta.api" in lines[0]


async def test_check_fails_when_a_source_gets_no_graph_token(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    config = _write(tmp_path, tenant, okta, hook_url=HOOK_URL)
    code, _ = await _cli("register-hooks", config)
    assert code == 0
    config = _write(tmp_path, tenant, okta, hook_url=HOOK_URL, client_secret="not-the-secret-1")
    code, lines = await _cli("check", config)
    assert code == 1
    (line,) = [line for line in lines if line.startswith("FAIL")]
    assert line.startswith("FAIL source-entra: cannot get a Graph token (aadsts_")
    assert "client secret" in line
    assert "WARN route-0: routes[0]: cannot tell" in "\n".join(lines)


async def test_check_fails_a_route_whose_domain_has_no_user(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path
) -> None:
    routes = [
        {"match": {"domains": ["contoso.com"]}, "sources": ["entra"]},
        {"name": "fab", "match": {"domains": ["fabrikam.com"]}, "sources": ["entra"]},
    ]
    config = _write(tmp_path, tenant, okta, hook_url=HOOK_URL, routes=routes)
    code, _ = await _cli("register-hooks", config)
    assert code == 0
    code, lines = await _cli("check", config)
    assert code == 1
    assert "PASS route-0: routes[0]: every domain has users in the source" in lines
    assert (
        "FAIL route-1: routes[1] (fab): no user in entra has a login at fabrikam.com: "
        "fix the route's domains or sources"
    ) in lines


EVENT_SECRET = "Basic ZXZlbnRzOmV2ZW50LWhvb2stc2VjcmV0"


async def test_register_hooks_creates_and_verifies_the_event_hook_against_the_running_gateway(
    tenant: RunningEmulator, okta: RunningOktaEmulator, tmp_path: Path, aiohttp_server: Any
) -> None:
    from gateway.app import create_app

    path = _write(tmp_path, tenant, okta)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["migration"]["event_hook"] = {"auth": {"secrets": [EVENT_SECRET]}}
    data["migration"]["sync_on_activate"] = True
    server = await aiohttp_server(create_app(load_config(_dump(path, data))))
    data["okta"]["hook_url"] = f"http://127.0.0.1:{server.port}/okta/password-import"
    config = _dump(path, data)

    code, lines = await _cli("register-hooks", config)
    assert code == 0, lines
    assert lines[1].startswith(f"created event-hook: http://127.0.0.1:{server.port}/okta/events")
    assert lines[-1] == "register-hooks: created=2 updated=0 unchanged=0 failed=0"
    (hook,) = okta.emulator.event_hooks.values()
    assert (hook["status"], hook["verificationStatus"]) == ("ACTIVE", "VERIFIED")
    assert sorted(hook["events"]["items"]) == ["user.import.password", "user.lifecycle.activate"]
    auth = hook["channel"]["config"]["authScheme"]
    assert (auth["key"], auth["value"]) == ("Authorization", EVENT_SECRET)

    code, lines = await _cli("register-hooks", config)
    assert lines[-1] == "register-hooks: created=0 updated=0 unchanged=2 failed=0", lines

    # Fewer event types wanted: updated in place, verified again.
    data["migration"]["sync_on_activate"] = False
    code, lines = await _cli("register-hooks", _dump(path, data))
    assert lines[-1] == "register-hooks: created=0 updated=1 unchanged=1 failed=0", lines
    assert hook["events"]["items"] == ["user.import.password"]
    assert hook["verificationStatus"] == "VERIFIED"

    # Okta cannot verify a hook nobody answers: the line says so, exit 1.
    await server.close()
    data["migration"]["event_hook"]["path"] = "/okta/other-events"
    code, lines = await _cli("register-hooks", _dump(path, data))
    assert code == 1
    assert lines[1].startswith("failed event-hook: ") and "start `gateway serve`" in lines[1]
    assert EVENT_SECRET not in "\n".join(lines)


def _dump(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
