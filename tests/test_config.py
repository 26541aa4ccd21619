"""Config loading: `${VAR}` expansion, `*_file` secrets, and every problem reported by its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from plugins.azure_ad import AzureAdConfig
from tests.conftest import SecretScan

REPO = Path(__file__).parent.parent
VALID = """
okta:
  auth: {secrets: ["${HOOK_SECRET}"]}
sources:
  - name: entra
    type: azure_ad
    tenant_id: ${TENANT:-11111111-2222-3333-4444-555555555555}
    client_id: aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee
    client_secret_file: SECRET_FILE
routes:
  - match: {domains: [Contoso.com]}
    sources: [entra]
"""


def _problems(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    return dict(_problem_list(text, env))


def _problem_list(text: str, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env or {})
    return caught.value.problems


def test_valid_config_expands_env_and_secret_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text("from-a-file-0001\n", encoding="utf-8")
    config = parse_config(
        VALID.replace("SECRET_FILE", str(secret_file)), env={"HOOK_SECRET": "Basic c2VjcmV0OjE="}
    )
    (source,) = config.sources
    assert isinstance(source, AzureAdConfig)
    assert source.tenant_id == "11111111-2222-3333-4444-555555555555"
    assert source.client_secret is not None
    assert source.client_secret.get_secret_value() == "from-a-file-0001"
    assert config.okta.auth.secrets[0].get_secret_value() == "Basic c2VjcmV0OjE="
    assert config.routes[0].match.domains == ["contoso.com"]
    assert config.budget_seconds == 2.5
    assert config.okta.hook_path == "/okta/password-import"


def test_dollar_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    secret_file = tmp_path / "s"
    secret_file.write_text("x" * 10, encoding="utf-8")
    text = VALID.replace("SECRET_FILE", str(secret_file)).replace(
        '"${HOOK_SECRET}"', '"pa$$word-0001"'
    )
    config = parse_config(text, env={})
    assert config.okta.auth.secrets[0].get_secret_value() == "pa$word-0001"


PLANTED = """
server: {port: 99999, colour: blue}
okta:
  auth: {secrets: []}
budget_seconds: 4
sources:
  - name: entra
    type: azure_ad
    tenant_id: common
    client_id: ${MISSING_CLIENT_ID}
    authority: http://login.example.com
    policy: {mfa_required: maybe}
    scopes: [User.Read, offline_access]
  - name: entra
    type: azure_ad
    tenant_id: t1
    client_id: c1
    client_secret: s1
  - name: other
    type: carrier_pigeon
routes:
  - match: {domains: [a.com], regex: "x"}
    sources: [nowhere]
  - match: {regex: "(unclosed"}
    sources: [entra]
"""

EXPECTED_PATHS = {
    "server.port",
    "server.colour",
    "okta.auth.secrets",
    "budget_seconds",
    "sources[0].tenant_id",
    "sources[0].client_id",
    "sources[0].authority",
    "sources[0].policy.mfa_required",
    "sources[0].scopes",
    "sources[1].name",
    "sources[2].type",
    "routes[0].match",
    "routes[0].sources[0]",
    "routes[1].match.regex",
}


def test_every_planted_problem_is_reported_by_path() -> None:
    problems = _problems(PLANTED)
    assert set(problems) >= EXPECTED_PATHS, set(problems) ^ EXPECTED_PATHS
    assert "use your tenant id" in problems["sources[0].tenant_id"]
    assert "MISSING_CLIENT_ID" in problems["sources[0].client_id"]
    assert problems["server.colour"] == "unknown key"
    assert "carrier_pigeon" in problems["sources[2].type"]


def test_source_needs_exactly_one_credential() -> None:
    problems = _problems(
        "okta: {auth: {secrets: [abcdefgh1]}}\n"
        "sources: [{name: e, type: azure_ad, tenant_id: t, client_id: c}]\n"
        "routes: [{match: {domains: [a.com]}, sources: [e]}]\n"
    )
    assert "exactly one of client_secret or certificate" in problems["sources[0]"]


def test_route_to_unknown_source_is_reported() -> None:
    problems = _problems(
        "okta: {auth: {secrets: [abcdefgh1]}}\n"
        "sources: [{name: e, type: azure_ad, tenant_id: t, client_id: c, client_secret: s}]\n"
        "routes: [{match: {domains: [a.com]}, sources: [e, ghost]}]\n"
    )
    assert "ghost" in problems["routes[0].sources[1]"]


def test_unreadable_secret_file_is_reported() -> None:
    problems = _problems(
        VALID.replace("SECRET_FILE", "/nonexistent/secret"), env={"HOOK_SECRET": "x" * 9}
    )
    assert "cannot read secret file" in problems["sources[0].client_secret_file"]


@pytest.mark.parametrize(
    "text",
    ["", "just a string", "[1, 2]", "okta: [", "\tbad: indent", "a: b: c"],
)
def test_non_mapping_or_broken_yaml_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert caught.value.lines()


def test_check_config_cli_reports_paths_and_exits_nonzero(
    tmp_path: Path, secret_scan: SecretScan
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(PLANTED, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
    )
    secret_scan.add_output(result.stdout + result.stderr)
    assert result.returncode == 1
    for expected in EXPECTED_PATHS:
        assert f"  {expected}: " in result.stderr


def test_shipped_config_template_is_valid() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", "config.yaml"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "OKTA_HOOK_SECRET": "Basic dGVzdDp0ZXN0LXNlY3JldA==",
            "AZURE_TENANT_ID": "11111111-2222-3333-4444-555555555555",
            "AZURE_CLIENT_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "AZURE_CLIENT_SECRET": "template-check-secret",
        },
    )
    assert result.returncode == 0, result.stderr


BASE = """
server:
  port: {port}
okta:
  auth: {{secrets: ["{hook_secret}"]}}
budget_seconds: {budget}
sources:
  - name: entra
    type: azure_ad
    tenant_id: {tenant}
    client_id: {client_id}
    client_secret: s3cret-value
    max_connections: {max_connections}
    timeouts:
      connect_seconds: {connect}
routes:
  - match: {{domains: [contoso.com]}}
    sources: [entra]
logging:
  library_debug: {library_debug}
rate_limits:
  per_source:
    rate_per_second: {rate}
"""
GOOD = {
    "port": "8080",
    "hook_secret": "hook-secret-0001",
    "budget": "2.5",
    "tenant": "t1",
    "client_id": "c1",
    "max_connections": "32",
    "connect": "1.5",
    "library_debug": "false",
    "rate": "null",
}


def _config_text(**values: str) -> str:
    return BASE.format(**{**GOOD, **values})


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"port": "true"}, "server.port", "valid integer"),
        ({"port": "8080.0"}, "server.port", "valid integer"),
        ({"port": '"8080"'}, "server.port", "valid integer"),
        ({"budget": '"2.5"'}, "budget_seconds", "valid number"),
        ({"budget": "true"}, "budget_seconds", "valid number"),
        ({"library_debug": "1"}, "logging.library_debug", "valid boolean"),
        ({"library_debug": '"true"'}, "logging.library_debug", "valid boolean"),
        ({"rate": '"10"'}, "rate_limits.per_source.rate_per_second", "valid number"),
        ({"max_connections": "true"}, "sources[0].max_connections", "valid integer"),
        ({"connect": '"1.5"'}, "sources[0].timeouts.connect_seconds", "valid number"),
    ],
)
def test_numbers_and_booleans_written_in_the_file_are_strict(
    values: dict[str, str], path: str, message: str
) -> None:
    ((where, problem),) = _problem_list(_config_text(**values))
    assert where == path
    assert message in problem


def test_an_integer_is_a_number() -> None:
    config = parse_config(_config_text(budget="2", connect="1", rate="5"), env={})
    assert config.budget_seconds == 2.0
    assert config.rate_limits.per_source.rate_per_second == 5.0
    (source,) = config.sources
    assert isinstance(source, AzureAdConfig)
    assert source.timeouts.connect_seconds == 1.0


def test_environment_values_are_read_as_the_numbers_and_booleans_the_keys_expect() -> None:
    text = _config_text(
        port="${PORT}",
        budget="${BUDGET}",
        max_connections="${MAX_CONNECTIONS}",
        connect='"${CONNECT}"',
        library_debug="${LIBRARY_DEBUG}",
        rate="${RATE:-12.5}",
    )
    env = {
        "PORT": "8443",
        "BUDGET": "2",
        "MAX_CONNECTIONS": "32",
        "CONNECT": "0.5",
        "LIBRARY_DEBUG": "True",
    }
    config = parse_config(text, env=env)
    assert (config.server.port, config.budget_seconds) == (8443, 2.0)
    assert config.logging.library_debug is True
    assert config.rate_limits.per_source.rate_per_second == 12.5
    (source,) = config.sources
    assert isinstance(source, AzureAdConfig)
    assert (source.max_connections, source.timeouts.connect_seconds) == (32, 0.5)


def test_environment_values_stay_text_where_the_keys_expect_text() -> None:
    text = _config_text(hook_secret="${HOOK_SECRET}", client_id="${CLIENT_ID}", tenant="${TENANT}")
    config = parse_config(text, env={"HOOK_SECRET": "12345678", "CLIENT_ID": "42", "TENANT": "7"})
    assert config.okta.auth.secrets[0].get_secret_value() == "12345678"
    (source,) = config.sources
    assert isinstance(source, AzureAdConfig)
    assert (source.client_id, source.tenant_id) == ("42", "7")


@pytest.mark.parametrize(
    ("value", "path"),
    [("eighty", "server.port"), ("80.5", "server.port"), ("yes", "logging.library_debug")],
)
def test_environment_text_that_is_not_the_expected_kind_is_reported(value: str, path: str) -> None:
    key = "port" if path == "server.port" else "library_debug"
    problems = _problem_list(_config_text(**{key: "${VALUE}"}), env={"VALUE": value})
    assert [where for where, _ in problems] == [path]


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"port": "${MISSING}"}, "server.port"),
        ({"budget": "${MISSING}"}, "budget_seconds"),
        ({"hook_secret": "${MISSING}"}, "okta.auth.secrets[0]"),
        ({"tenant": "${MISSING}"}, "sources[0].tenant_id"),
        ({"connect": '"${MISSING}"'}, "sources[0].timeouts.connect_seconds"),
    ],
)
def test_one_missing_variable_is_one_problem(values: dict[str, str], path: str) -> None:
    problems = _problem_list(_config_text(**values))
    assert problems == [(path, "environment variable MISSING is not set")]


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("client_secret: s3cret-value", "client_secret_file: ${MISSING}", "client_secret_file"),
        (
            'okta:\n  auth: {secrets: ["hook-secret-0001"]}',
            'okta:\n  auth: {secrets_file: "${MISSING}"}',
            "",
        ),
        ("sources: [entra]", 'sources: ["${MISSING}"]', ""),
    ],
)
def test_one_missing_variable_in_a_file_key_or_a_reference_is_one_problem(
    old: str, new: str, path: str
) -> None:
    text = _config_text()
    assert old in text
    problems = _problem_list(text.replace(old, new))
    assert len(problems) == 1, problems
    ((where, message),) = problems
    assert message == "environment variable MISSING is not set"
    assert where.endswith(path)


def test_an_unreadable_secret_file_is_one_problem() -> None:
    text = _config_text().replace(
        "client_secret: s3cret-value", "client_secret_file: /nonexistent/secret"
    )
    ((where, message),) = _problem_list(text)
    assert where == "sources[0].client_secret_file"
    assert "cannot read secret file" in message


@pytest.mark.parametrize(
    ("server", "path", "message"),
    [
        ("{header_timeout_seconds: 0}", "server.header_timeout_seconds", "greater than 0"),
        ("{header_timeout_seconds: 301}", "server.header_timeout_seconds", "less than or equal"),
        ('{header_timeout_seconds: "10"}', "server.header_timeout_seconds", "valid number"),
        ("{max_connections: 0}", "server.max_connections", "greater than or equal to 1"),
        ("{max_connections: 2000000}", "server.max_connections", "less than or equal"),
        ("{max_connections: 10.5}", "server.max_connections", "valid integer"),
    ],
)
def test_slow_client_limits_are_positive_and_bounded(server: str, path: str, message: str) -> None:
    problems = _problems(VALID.replace("SECRET_FILE", "/dev/null") + f"server: {server}\n")
    assert message in problems[path]


def test_slow_client_limits_default_to_ten_seconds_and_a_thousand_connections() -> None:
    text = VALID.replace("client_secret_file: SECRET_FILE", "client_secret: s")
    server = parse_config(text, env={"HOOK_SECRET": "Basic dXNlcjpwYXNz"}).server
    assert (server.header_timeout_seconds, server.max_connections) == (10.0, 1000)
