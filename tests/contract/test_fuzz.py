"""schemathesis against a live gateway: no 5xx, no answer outside openapi.yaml, no hang.

The gateway (every endpoint on, the Entra emulator behind it) runs on real sockets; every case
carries the right credentials so the fuzzing reaches the parsers, the service and the ledger.
Deterministic (hypothesis derandomized, no example database) and bounded: a fixed number of
examples per operation and mode, each request with a timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import HOOK_SECRET, USERS
from tests.contract.gateway_config import ADMIN_SECRET, EVENT_SECRET, OPENAPI_PATH
from tests.contract.live import LiveGateway, live_gateway

# Per operation and mode; the hook and the event hook get more (their parsers are the surface).
EXAMPLES = {"passwordImport": 150, "eventHookDelivery": 60, "eventHookVerification": 60}
DEFAULT_EXAMPLES = 25
# A hook answer is due within budget_seconds (2.5 s); anything near this is a hang.
REQUEST_TIMEOUT_SECONDS = 5.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SECRETS = {"oktaHookAuth": HOOK_SECRET, "eventHookAuth": EVENT_SECRET, "adminAuth": ADMIN_SECRET}

SCHEMA = schemathesis.openapi.from_path(OPENAPI_PATH)


def _operations() -> Iterator[Any]:
    for result in SCHEMA.get_all_operations():
        yield result.ok()


OPERATIONS = {operation.definition.raw["operationId"]: operation for operation in _operations()}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """One live gateway for the module (ledger, event hook and admin listener on)."""
    with live_gateway(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive session for every request of the module."""
    with requests.Session() as http:
        yield http


def _has_inputs(operation: Any) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


def _auth_headers(operation: Any) -> dict[str, str]:
    raw = operation.definition.raw
    # The first alternative: the static secrets the live gateway is configured with.
    requirements = raw.get("security", [])
    return {"Authorization": SECRETS[next(iter(requirements[0]))]} if requirements else {}


def _run(
    operation: Any, mode: GenerationMode, gateway: LiveGateway, session: requests.Session
) -> None:
    raw = operation.definition.raw
    base_url = gateway.admin_url if "admin" in raw.get("tags", []) else gateway.url
    auth = _auth_headers(operation)
    examples = EXAMPLES.get(raw["operationId"], DEFAULT_EXAMPLES)

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        case.headers = {**(case.headers or {}), **auth}
        case.call_and_validate(
            base_url=base_url,
            session=session,
            checks=CHECKS,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )

    fuzz()


def _cases() -> list[Any]:
    cases = []
    for name, operation in sorted(OPERATIONS.items()):
        cases.append(pytest.param(name, GenerationMode.POSITIVE, id=f"{name}-positive"))
        if _has_inputs(operation):
            cases.append(pytest.param(name, GenerationMode.NEGATIVE, id=f"{name}-negative"))
    return cases


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("operation_id", "mode"), _cases())
def test_fuzzed_requests_get_documented_answers(
    operation_id: str, mode: GenerationMode, gateway: LiveGateway, session: requests.Session
) -> None:
    _run(OPERATIONS[operation_id], mode, gateway, session)


def test_the_fuzzing_reaches_the_service(gateway: LiveGateway, session: requests.Session) -> None:
    """With the fuzzer's credentials a real user is VERIFIED: the cases get past auth."""
    operation = OPERATIONS["passwordImport"]
    body = operation.definition.raw["requestBody"]["content"]["application/json"]["examples"]
    payload = body["identityEngine"]["value"]
    payload["data"]["context"]["credential"] = {
        "username": "alice@contoso.com",
        "password": USERS["alice@contoso.com"],
    }
    answer = session.post(
        gateway.url + "/okta/password-import",
        json=payload,
        headers=_auth_headers(operation),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert answer.status_code == 200
    assert answer.json()["commands"][0]["value"]["credential"] == "VERIFIED"


def test_a_wrong_answer_would_be_caught(gateway: LiveGateway, session: requests.Session) -> None:
    """The checks fail on an answer outside the document (here: /healthz with an extra field)."""
    case = OPERATIONS["liveness"].Case()
    real = case.call(base_url=gateway.url, session=session, timeout=REQUEST_TIMEOUT_SECONDS)
    case.validate_response(real, checks=CHECKS)  # the real answer passes
    response = case.call(base_url=gateway.url, session=session, timeout=REQUEST_TIMEOUT_SECONDS)
    response.content = b'{"status": "ok", "extra": 1}'  # as if the handler had changed
    with pytest.raises(FailureGroup, match="Response violates schema"):
        case.validate_response(response, checks=CHECKS)
