"""Third-party log records never carry a body, a secret or user input, at any level."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest
import yaml

from emulators.entra import RunningEmulator
from gateway.logs import (
    LIBRARY_FILTER,
    LIBRARY_LOGGERS,
    JsonFormatter,
    configure_logging,
    install_library_filters,
)
from tests.conftest import SCAN, USERS, USERS_FILE, GatewayFactory, credential, post_hook

ALICE = "alice@contoso.com"
FEDERATED = "fed1@fabrikam.com"
CLIENT_SECRET: str = yaml.safe_load(USERS_FILE.read_text(encoding="utf-8"))["client_secret"]
# Stands in for a body a library would log; registered with the session-wide scan as well.
REFLECTED = "Reflected#Secret-7319"


class _Everything(logging.Handler):
    """Every record reaching the root logger, rendered every way a handler could render it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []
        self._json = JsonFormatter()
        self._plain = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.texts.append(self._json.format(record))
        self.texts.append(self._plain.format(record))
        self.texts.append(f"{record.msg!s} {record.args!r} {record.__dict__!r}")
        if record.exc_info:
            self.texts.append(self._plain.formatException(record.exc_info))

    def contains(self, secret: str) -> bool:
        return any(secret in text for text in self.texts)


@pytest.fixture
def everything(caplog: pytest.LogCaptureFixture) -> Iterator[_Everything]:
    """A root handler of the test's own (no filter on it), with libraries logging at DEBUG."""
    SCAN.secrets.add(REFLECTED)
    for name in LIBRARY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    handler = _Everything()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _forms(secret: str) -> list[str]:
    """A secret as it travels: as is, and form-encoded as in a token request body."""
    return [secret, quote_plus(secret)]


def _assert_nothing_secret(
    everything: _Everything, caplog: pytest.LogCaptureFixture, *secrets: str
) -> None:
    caught = caplog.text + "".join(f"{r.__dict__!r}" for r in caplog.records)
    for secret in secrets:
        for form in _forms(secret):
            assert not everything.contains(form), f"a {len(form)}-character secret was logged"
            assert form not in caught, f"a {len(form)}-character secret reached caplog"


async def test_reflected_token_response_never_reaches_the_log(
    make_gateway: GatewayFactory,
    entra: RunningEmulator,
    everything: _Everything,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_gateway()
    entra.emulator.set_fault("reflect_body")
    status, body = await post_hook(client, ALICE, USERS[ALICE])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    # The body carrying both secrets did reach msal, which logs such a response at ERROR.
    assert entra.emulator.token_results["http_400"] == 1
    _assert_nothing_secret(everything, caplog, USERS[ALICE], CLIENT_SECRET)
    assert not any("Token response is not in json" in str(r.msg) for r in everything.records)


async def test_reflected_ws_trust_response_never_reaches_the_log(
    make_gateway: GatewayFactory,
    entra: RunningEmulator,
    everything: _Everything,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_gateway()
    entra.emulator.set_fault("reflect_body")
    status, body = await post_hook(client, FEDERATED, USERS[FEDERATED])
    assert (status, credential(body)) == (200, "UNVERIFIED")
    assert entra.emulator.requests_by_kind["adfs"] == 1
    _assert_nothing_secret(everything, caplog, USERS[FEDERATED])


def test_library_loggers_created_later_are_filtered_too(everything: _Everything) -> None:
    install_library_filters()
    late = logging.getLogger("msal.module_imported_after_install")
    late.error("Token response is not in json format: %s", REFLECTED)
    late.debug("connecting to %s", REFLECTED)
    (record,) = everything.records
    assert record.getMessage() == "connecting to %s"
    assert record.__dict__["args_dropped"] is True
    assert not everything.contains(REFLECTED)


def test_library_exception_messages_keep_their_type_only(everything: _Everything) -> None:
    install_library_filters()
    try:
        raise ValueError(f"bad answer: {REFLECTED}")
    except ValueError:
        logging.getLogger("aiohttp.client").warning("request failed", exc_info=True)
    (record,) = everything.records
    assert record.exc_info is None
    assert record.__dict__["exc_type"] == "ValueError"
    assert not everything.contains(REFLECTED)


def test_gateway_records_keep_their_arguments(everything: _Everything) -> None:
    install_library_filters()
    logging.getLogger("gateway.example").info("source %s ready", "entra")
    (record,) = everything.records
    assert record.getMessage() == "source entra ready"


def test_every_existing_library_logger_gets_the_filter() -> None:
    install_library_filters()
    names = ["msal.oauth2cli.oauth2", "msal.wstrust_request", "urllib3.connectionpool"]
    for name in names:
        assert LIBRARY_FILTER in logging.getLogger(name).filters


def test_configured_handler_filters_library_records_whatever_the_level() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved = {n: logging.getLogger(n).level for n in LIBRARY_LOGGERS}
    try:
        configure_logging("debug", "json", library_debug=True)
        (handler,) = root.handlers
        assert LIBRARY_FILTER in handler.filters
        assert logging.getLogger("msal").isEnabledFor(logging.DEBUG)
        record = logging.makeLogRecord(
            {"name": "msal.x", "levelno": logging.ERROR, "msg": "%s", "args": (REFLECTED,)}
        )
        assert handler.filter(record)
        assert record.getMessage() == "%s"
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
