"""Properties: the hook parser and config loading refuse anything with their own error, never crash.

- `parse_password_import` on any JSON value, any bytes and odd Unicode: a `BadHookRequest` (a
  400 with Okta's error shape) or a request with text username and password; nothing else.
- Through the live app, any body: 400 with the error shape when the parser refuses it, else 200
  with a valid verdict (never a 5xx, never a 200 hiding a refused body).
- `parse_config` / `load_config` on any YAML document or text: a `ConfigError` listing problems
  by path, or a config; never another exception.
Derandomized with modest example counts: the same cases on every CI run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emulators.demo import okta_payload
from gateway.config import ConfigError, GatewayConfig, load_config, parse_config
from gateway.okta import (
    EVENT_TYPE,
    BadHookRequest,
    PasswordImportRequest,
    parse_password_import,
    reply_body,
)
from tests.conftest import HOOK_PATH, HOOK_SECRET, gateway_yaml
from tests.contract.gateway_config import load_openapi
from tests.contract.live import LiveGateway, live_gateway

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text with what breaks naive code: NUL, lone surrogates, BOM, RTL marks, combining characters,
# non-characters and astral code points.
ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),  # any code point, surrogates included
        st.sampled_from(["\x00", "\ufeff", "\u202e", "\u0301", "\uffff", "\U0001f600", "\ud800"]),
    ),
    max_size=40,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    ODD_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(ODD_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


def _maybe(valid: Any) -> st.SearchStrategy[Any]:
    """The valid value four times in five, otherwise any JSON value."""
    return st.integers(0, 4).flatmap(lambda n: JSON_VALUES if n == 4 else st.just(valid))


@st.composite
def near_payloads(draw: st.DrawFn) -> Any:
    """Okta's payload with any part replaced by any JSON value: reaches every check."""
    username = draw(st.one_of(st.just("alice@contoso.com"), ODD_TEXT, JSON_VALUES))
    password = draw(
        st.one_of(st.just("pw"), ODD_TEXT, st.text(min_size=1000, max_size=1100), JSON_VALUES)
    )
    credential = draw(_maybe({"username": username, "password": password}))
    request = draw(
        _maybe(
            {
                "id": draw(_maybe("XiIl6wn7005Rr@fjYqeC7CCDBxw")),
                "url": draw(_maybe({"value": draw(_maybe("/api/v1/authn"))})),
                "ipAddress": draw(_maybe("66.124.153.138")),
            }
        )
    )
    context = draw(
        _maybe({"credential": credential, "request": request, "user": draw(_maybe({"id": "0u1"}))})
    )
    return {
        "eventType": draw(_maybe(EVENT_TYPE)),
        "eventId": draw(_maybe("3o9jBzq1SmOGmmsDsqyyeQ")),
        "data": draw(_maybe({"context": context})),
    }


def _dumps(value: Any) -> bytes:
    # Lone surrogates become \udXXX escapes: valid JSON, text that cannot be sent upstream.
    return json.dumps(value).encode()


def _schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load_openapi()["components"]["schemas"][name]
    return jsonschema.Draft202012Validator(schema)


ERROR_SHAPE = _schema_validator("Error")
REPLY_SHAPE = _schema_validator("PasswordImportResponse")


def _assert_parses_or_refuses(body: bytes) -> None:
    try:
        request = parse_password_import(body)
    except BadHookRequest as err:
        assert isinstance(err.summary, str)
        assert err.summary
        ERROR_SHAPE.validate(json.loads(err.body()))
        return
    assert isinstance(request, PasswordImportRequest)
    assert isinstance(request.username, str)
    assert request.username.strip()
    assert isinstance(request.password, str)
    request.username.encode("utf-8")  # what the sources send upstream
    request.password.encode("utf-8")


@PROPERTY
@given(value=JSON_VALUES)
def test_any_json_value_is_a_request_or_a_400(value: Any) -> None:
    _assert_parses_or_refuses(_dumps(value))


@PROPERTY
@given(payload=near_payloads())
@example(payload=okta_payload("alice@contoso.com", "pw"))
@example(payload=okta_payload("\ud800@contoso.com", "pw"))
@example(payload=okta_payload("alice@contoso.com", "a\x00b"))
@example(payload=okta_payload(" \t", "pw"))
def test_any_near_okta_payload_is_a_request_or_a_400(payload: Any) -> None:
    _assert_parses_or_refuses(_dumps(payload))


@PROPERTY
@given(
    body=st.one_of(
        st.binary(max_size=200), ODD_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))
    )
)
@example(body=b"[" * 100_000)  # deeper than the JSON parser's stack
@example(body=b'{"a":' * 50_000)
@example(body=b"\xef\xbb\xbf{}")  # a UTF-8 BOM
@example(body=b"{}" + b"\x00")
@example(body=b"NaN")
@example(body=b"1e999999")
def test_any_bytes_are_a_request_or_a_400(body: bytes) -> None:
    _assert_parses_or_refuses(body)


# Through the app: a live gateway on a real socket, with the right credentials.


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """One live gateway for the module."""
    with live_gateway(tmp_path_factory.mktemp("properties")) as running:
        yield running


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive session for every request of the module."""
    with requests.Session() as http:
        yield http


@settings(PROPERTY, max_examples=100)
@given(
    body=st.one_of(
        near_payloads().map(_dumps),
        near_payloads().map(_dumps),
        JSON_VALUES.map(_dumps),
        st.binary(max_size=100),
    )
)
@example(body=b"[" * 60_000)
def test_any_body_through_the_app_is_a_400_or_a_verdict(
    body: bytes, gateway: LiveGateway, session: requests.Session
) -> None:
    answer = session.post(
        gateway.url + HOOK_PATH,
        data=body,
        headers={"Authorization": HOOK_SECRET, "Content-Type": "application/json"},
        timeout=5,
    )
    try:
        parse_password_import(body)
        expected = 200
    except BadHookRequest:
        expected = 400
    # The app answers what its parser decides; a crash behind it would be a 200 UNVERIFIED.
    assert answer.status_code == expected, answer.status_code
    assert answer.headers["Content-Type"].startswith("application/json")
    if answer.status_code == 400:
        ERROR_SHAPE.validate(answer.json())
    else:
        REPLY_SHAPE.validate(answer.json())
        assert answer.content in {reply_body(True), reply_body(False)}


# Config loading.

CONFIG_KEYS = st.sampled_from(
    [
        "server", "okta", "sources", "routes", "cache", "rate_limits", "logging", "admin",
        "migration", "budget_seconds", "host", "port", "hook_path", "auth", "secrets", "header",
        "name", "type", "tenant_id", "client_id", "client_secret", "authority", "match",
        "domains", "regex", "backend", "url", "hmac_secret", "per_username", "failures",
        "window_seconds", "level", "format", "ledger", "event_hook", "path", "policy",
        "max_body_bytes", "tls", "cert_file", "client_secret_file", "timeouts",
    ]
)  # fmt: skip
YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["${OKTA_HOOK_SECRET}", "${", "azure_ad", "memory", "redis", "0.0.0.0"]),
)
YAML_STRUCTURES = st.recursive(
    YAML_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(CONFIG_KEYS, st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=25,
)


@st.composite
def near_configs(draw: st.DrawFn) -> Any:
    """The test config with one section replaced by any structure."""
    config = yaml.safe_load(gateway_yaml("http://127.0.0.1:9"))
    section = draw(st.sampled_from(sorted(config)))
    config[section] = draw(YAML_STRUCTURES)
    return config


def _assert_config_or_problems(load: Any) -> None:
    try:
        config = load()
    except ConfigError as err:
        assert err.problems, "a ConfigError with no problem in it"
        for path, message in err.problems:
            assert isinstance(path, str)
            assert isinstance(message, str)
            assert message
        return
    assert isinstance(config, GatewayConfig)


@settings(PROPERTY, max_examples=150)
@given(document=st.one_of(YAML_STRUCTURES, near_configs()))
def test_any_yaml_document_is_a_config_or_a_config_error(document: Any) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    _assert_config_or_problems(lambda: parse_config(text, env={}))


@settings(PROPERTY, max_examples=200)
@given(text=st.text(max_size=200))
@example(text="[" * 10_000)  # found by this test: a RecursionError out of PyYAML
@example(text="a: " + "[" * 10_000)
@example(text="sources: " + "{a: " * 300 + "1" + "}" * 300)  # deep, yet within PyYAML's reach
@example(text="a: &a [1]\nb: *a\n")
@example(text="!!python/object:os.system 'true'")
@example(text="\ufeffserver: {}")
@example(text="{")
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    _assert_config_or_problems(lambda: parse_config(text, env={}))


@settings(PROPERTY, max_examples=100)
@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfe\x00s")
def test_any_file_is_a_config_or_a_config_error(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.getbasetemp() / "property-config.yaml"
    path.write_bytes(data)
    _assert_config_or_problems(lambda: load_config(path, env={}))
