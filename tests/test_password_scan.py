"""Passwords and secrets never reach logs: drive traffic with everything at DEBUG, then look."""

from __future__ import annotations

import logging

from emulators.entra import RunningEmulator
from tests.conftest import USERS, GatewayFactory, SecretScan, post_hook


async def test_password_never_logged(
    make_gateway: GatewayFactory, entra: RunningEmulator, secret_scan: SecretScan
) -> None:
    client = await make_gateway(budget=1.0)
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    assert logging.getLogger("urllib3").isEnabledFor(logging.DEBUG)
    sent = []
    for username, password in USERS.items():
        for typed in (password, password + "-wrong"):
            await post_hook(client, username, typed)
            sent.append(typed)
    await post_hook(client, "nobody@elsewhere.example", "Unrouted#Pass-4242")
    sent.append("Unrouted#Pass-4242")
    assert any("hook_decision" in text for text in secret_scan.texts)
    secret_scan.secrets.update(sent)
    assert secret_scan.leaks() == []


def test_scan_finds_a_planted_leak() -> None:
    scan = SecretScan()
    scan.secrets.add("Planted#Secret-9")
    logger = logging.getLogger("tests.planted")
    logger.addHandler(scan)
    try:
        logger.debug("oops %s", "prefix-Planted#Secret-9-suffix")
    finally:
        logger.removeHandler(scan)
    assert len(scan.leaks()) == 1
