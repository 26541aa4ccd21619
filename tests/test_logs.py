"""Structured logs: one hook_decision line per hook request, usernames redacted, libraries quiet."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.logs import JsonFormatter, UsernameRedactor, configure_logging
from tests.conftest import HOOK_PATH, HOOK_SECRET, USERS, GatewayFactory, post_hook

ALICE = "alice@contoso.com"
FIELDS = {
    "event_id",
    "okta_request_id",
    "user",
    "route",
    "source",
    "result",
    "reason",
    "latency_ms",
}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, Any]] = []
        self.formatter_ = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.formatter_.format(record)))


@pytest.fixture
def decisions() -> Iterator[_Lines]:
    """JSON-rendered records of the decision logger."""
    handler = _Lines()
    logger = logging.getLogger("gateway.decision")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_one_decision_line_per_hook_request(
    make_gateway: GatewayFactory, decisions: _Lines
) -> None:
    client = await make_gateway()
    await post_hook(client, ALICE, USERS[ALICE])
    await post_hook(client, ALICE, "Wrong#Pass-1")
    await client.post(HOOK_PATH, data=b"{}", headers={"Authorization": HOOK_SECRET})
    await client.post(HOOK_PATH, data=b"{}")
    await client.post(HOOK_PATH, data=b"x" * 70_000, headers={"Authorization": HOOK_SECRET})
    results = [(line["result"], line["reason"]) for line in decisions.lines]
    assert results == [
        ("verified", "ok"),
        ("unverified", "aadsts_50126"),
        ("bad_request", "bad_request"),
        ("unauthorized", "unauthorized"),
        ("too_large", "too_large"),
    ]
    first = decisions.lines[0]
    assert set(first) >= FIELDS
    assert first["event_id"] == "3o9jBzq1SmOGmmsDsqyyeQ"
    assert first["okta_request_id"] == "XiIl6wn7005Rr@fjYqeC7CCDBxw"
    assert first["source"] == "entra"
    assert first["user"].startswith("h:")
    assert ALICE not in json.dumps(decisions.lines)


def test_hashed_usernames_are_stable_and_case_insensitive() -> None:
    redact = UsernameRedactor("hash", b"k" * 32)
    assert redact(ALICE) == redact("Alice@Contoso.com")
    assert redact(ALICE) != redact("bob@contoso.com")
    assert redact(ALICE) != UsernameRedactor("hash", b"j" * 32)(ALICE)


def test_masked_and_clear_usernames() -> None:
    assert UsernameRedactor("mask")(ALICE) == "a***@contoso.com"
    assert UsernameRedactor("clear")(ALICE) == ALICE


async def test_mask_mode_applies_to_decision_lines(
    make_gateway: GatewayFactory, decisions: _Lines
) -> None:
    client = await make_gateway(extra={"logging": {"usernames": "mask", "level": "debug"}})
    await post_hook(client, ALICE, USERS[ALICE])
    assert decisions.lines[-1]["user"] == "a***@contoso.com"


def test_third_party_loggers_stay_at_warning_unless_asked() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved = {n: logging.getLogger(n).level for n in ("urllib3", "msal")}
    try:
        configure_logging("debug", "json")
        assert not logging.getLogger("urllib3").isEnabledFor(logging.INFO)
        assert not logging.getLogger("msal").isEnabledFor(logging.INFO)
        assert logging.getLogger("gateway").isEnabledFor(logging.DEBUG)
        configure_logging("info", "json", library_debug=True)
        assert logging.getLogger("urllib3").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_json_formatter_keeps_exception_type_not_message() -> None:
    try:
        raise ValueError("https://login.example/common/userrealm/alice@contoso.com")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["exc_type"] == "ValueError"
    assert ALICE not in json.dumps(line)
