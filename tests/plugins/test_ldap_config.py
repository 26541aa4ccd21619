"""`ldap` source: config schema, check-config warnings, and the codes Samba cannot produce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import ldap
import pytest
import yaml

from gateway.config import ConfigError, config_warnings, parse_config
from gateway.metrics import KNOWN_UPSTREAM_CODES
from plugins.base import Result
from plugins.ldap import LdapConfig, LdapSource, SearchBind, classify
from plugins.registry import source_class
from tests.conftest import HOOK_PATH, HOOK_SECRET


def config_text(source: dict[str, Any], **top: Any) -> str:
    """A gateway config with one `ldap` source named `corp`."""
    base: dict[str, Any] = {
        "name": "corp",
        "type": "ldap",
        "url": "ldaps://dc1.corp.example:636",
        "bind": {"mode": "direct"},
    }
    base.update(source)
    config: dict[str, Any] = {
        "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
        "sources": [base],
        "routes": [{"match": {"domains": ["corp.example"]}, "sources": ["corp"]}],
    }
    config.update(top)
    return yaml.safe_dump(config)


def problems(source: dict[str, Any]) -> list[str]:
    """The config errors for a source, as `path: message` lines."""
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(source), env={})
    return caught.value.lines()


def test_ldap_is_a_builtin_type() -> None:
    assert source_class("ldap") is LdapSource


def test_defaults() -> None:
    (config,) = parse_config(config_text({}), env={}).sources
    assert isinstance(config, LdapConfig)
    assert config.policy.password_expired == "unverified"
    assert config.policy.password_must_change == "verified"
    assert config.active_directory is False
    assert config.pool_size == 16
    assert config.lockout_threshold is None
    assert config.idle_seconds == 300  # below AD's MaxConnIdleTime (900 s)


@pytest.mark.parametrize(
    "url",
    ["ldap://dc1.corp.example", "ldap://10.0.0.5:389", "ldap://dc1.corp.example:3268"],
)
def test_plain_ldap_outside_loopback_is_a_config_error(url: str) -> None:
    (line,) = problems({"url": url})
    assert line.startswith("sources[0]: ") and "start_tls" in line


@pytest.mark.parametrize("url", ["ldap://127.0.0.1:389", "ldap://localhost", "ldap://[::1]:3389"])
def test_plain_ldap_on_loopback_is_allowed(url: str) -> None:
    parse_config(config_text({"url": url}), env={})


def test_start_tls_makes_ldap_acceptable() -> None:
    parse_config(config_text({"url": "ldap://dc1.corp.example", "start_tls": True}), env={})


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ({"url": "https://dc1.corp.example"}, "sources[0].url"),
        ({"url": "ldaps://dc1.corp.example/dc=x"}, "sources[0].url"),
        ({"url": "ldaps://dc1.corp.example", "start_tls": True}, "sources[0]"),
        ({"ca_file": "/nonexistent/ca.pem"}, "sources[0].ca_file"),
        ({"bind": {"mode": "direct", "template": "uid=x"}}, "sources[0].bind.direct.template"),
        ({"bind": {"mode": "kerberos"}}, "sources[0].bind"),
        ({"pool_size": 0}, "sources[0].pool_size"),
        ({"idle_seconds": 0}, "sources[0].idle_seconds"),
        ({"idle_seconds": 901}, "sources[0].idle_seconds"),
        ({"idle_seconds": "5m"}, "sources[0].idle_seconds"),
        ({"lockout_threshold": 0}, "sources[0].lockout_threshold"),
        ({"policy": {"password_expired": "maybe"}}, "sources[0].policy.password_expired"),
        ({"timeouts": {"read_seconds": 1.0}}, "sources[0].timeouts.read_seconds"),
        ({"tls": True}, "sources[0].tls"),
    ],
)
def test_bad_settings_name_their_path(source: dict[str, Any], path: str) -> None:
    lines = problems(source)
    assert any(line.startswith(f"{path}: ") for line in lines), lines


SEARCH = {
    "mode": "search",
    "service_dn": "CN=svc-gateway,OU=Service,DC=corp,DC=example",
    "service_password": "Svc#Secret-7319",
    "base_dn": "DC=corp,DC=example",
}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"filter": "(uid=jdoe)"}, "filter"),
        ({"filter": "uid={username}"}, "filter"),
        ({"filter": "(|(uid={username})(mail={username})"}, "filter"),
        ({"base_dn": "not a dn"}, "base_dn"),
        ({"service_password": ""}, "service_password"),
    ],
)
def test_bad_search_settings_are_refused(override: dict[str, str], field: str) -> None:
    lines = problems({"bind": {**SEARCH, **override}})
    assert any(line.startswith(f"sources[0].bind.search.{field}: ") for line in lines), lines


def test_service_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "svc"
    secret.write_text("Svc#FromFile-7319\n")
    bind = {k: v for k, v in SEARCH.items() if k != "service_password"}
    bind["service_password_file"] = str(secret)
    (config,) = parse_config(config_text({"bind": bind}), env={}).sources
    assert isinstance(config, LdapConfig) and isinstance(config.bind, SearchBind)
    assert config.bind.service_password.get_secret_value() == "Svc#FromFile-7319"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("jdoe", "(|(userPrincipalName=jdoe)(mail=jdoe))"),
        ("*)(uid=*", r"(|(userPrincipalName=\2a\29\28uid=\2a)(mail=\2a\29\28uid=\2a))"),
        ("a\\b", r"(|(userPrincipalName=a\5cb)(mail=a\5cb))"),
    ],
)
def test_filter_input_is_escaped_per_rfc_4515(typed: str, expected: str) -> None:
    (config,) = parse_config(config_text({"bind": SEARCH}), env={}).sources
    assert isinstance(config, LdapConfig) and isinstance(config.bind, SearchBind)
    assert config.bind.filter_for(typed) == expected


def invalid_credentials(info: str) -> ldap.INVALID_CREDENTIALS:
    """Result 49 as python-ldap raises it, with AD's diagnostic message."""
    return ldap.INVALID_CREDENTIALS({"result": 49, "desc": "Invalid credentials", "info": info})


def ad_info(code: str) -> str:
    return f"80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data {code}, v3839"


# Sub-codes of real AD that Samba does not produce, and the policy-dependent ones.
# code -> (result with default policy, reason, unknown_user)
REAL_AD_DECISIONS = {
    "52e": (Result.DENIED, "ad_52e", False),
    "525": (Result.DENIED, "ad_525", True),
    "530": (Result.DENIED, "ad_530", False),
    "531": (Result.DENIED, "ad_531", False),
    "532": (Result.DENIED, "ad_532", False),
    "533": (Result.DENIED, "ad_533", False),
    "701": (Result.DENIED, "ad_701", False),
    "773": (Result.VERIFIED, "ad_773", False),
    "775": (Result.DENIED, "ad_775", False),
    "999": (Result.DENIED, "invalid_credentials", False),  # unknown: fail closed
}


def ad_source(**extra: Any) -> LdapSource:
    (config,) = parse_config(config_text({"active_directory": True, **extra}), env={}).sources
    return LdapSource(config)


@pytest.mark.parametrize("code", sorted(REAL_AD_DECISIONS))
def test_ad_subcode_decision_table(code: str) -> None:
    verdict = ad_source()._invalid_credentials(invalid_credentials(ad_info(code)))
    assert (verdict.result, verdict.reason, verdict.unknown_user) == REAL_AD_DECISIONS[code]
    assert verdict.reason in LdapSource.known_reasons


@pytest.mark.parametrize(
    ("policy", "code", "result"),
    [
        ({"password_expired": "verified"}, "532", Result.VERIFIED),
        ({"password_must_change": "unverified"}, "773", Result.DENIED),
    ],
)
def test_policy_switches(policy: dict[str, str], code: str, result: Result) -> None:
    verdict = ad_source(policy=policy)._invalid_credentials(invalid_credentials(ad_info(code)))
    assert verdict.result is result


# python-ldap error -> reason; result 8 and 53 are unavailable, never "wrong password".
ERROR_REASONS = [
    (ldap.STRONG_AUTH_REQUIRED, "ldap_strong_auth_required"),
    (ldap.CONFIDENTIALITY_REQUIRED, "ldap_strong_auth_required"),
    (ldap.UNWILLING_TO_PERFORM, "ldap_unwilling"),
    (ldap.SERVER_DOWN, "network"),
    (ldap.TIMEOUT, "timeout"),
    (ldap.BUSY, "ldap_busy"),
    (ldap.UNAVAILABLE, "ldap_busy"),
    (ldap.NO_SUCH_OBJECT, "ldap_no_such_object"),
    (ldap.INSUFFICIENT_ACCESS, "ldap_insufficient_access"),
    (ldap.FILTER_ERROR, "ldap_filter_error"),
    (ldap.CONNECT_ERROR, "tls_error"),
    (ldap.PROTOCOL_ERROR, "other"),
]


@pytest.mark.parametrize(("error", "reason"), ERROR_REASONS)
def test_ldap_errors_map_to_unavailable_reasons(error: type[ldap.LDAPError], reason: str) -> None:
    assert classify(error({"result": -1, "desc": "x", "info": "y"})) == reason
    assert reason in LdapSource.known_reasons | set(KNOWN_UPSTREAM_CODES)


def test_outage_reasons_exclude_misconfiguration() -> None:
    assert "ldap_busy" in LdapSource.outage_reasons
    assert not LdapSource.outage_reasons & LdapSource.misconfiguration_reasons
    assert LdapSource.misconfiguration_reasons <= LdapSource.known_reasons


def test_no_warning_when_the_limit_is_below_the_threshold() -> None:
    config = parse_config(config_text({"lockout_threshold": 10}), env={})
    assert config_warnings(config) == []


def test_warns_when_the_per_user_limit_is_off() -> None:
    text = config_text({}, rate_limits={"per_username": None})
    ((path, message),) = config_warnings(parse_config(text, env={}))
    assert path == "rate_limits.per_username" and "lock" in message


@pytest.mark.parametrize("failures", [5, 6])
def test_warns_when_the_limit_is_not_below_the_lockout_threshold(failures: int) -> None:
    limits = {"per_username": {"failures": failures, "window_seconds": 900}}
    text = config_text({"lockout_threshold": 5}, rate_limits=limits)
    ((path, message),) = config_warnings(parse_config(text, env={}))
    assert path == "rate_limits.per_username.failures"
    assert "set it to 4 or less" in message


def test_check_config_prints_the_warning_and_still_passes(tmp_path: Path) -> None:
    limits = {"per_username": {"failures": 5, "window_seconds": 900}}
    path = tmp_path / "config.yaml"
    path.write_text(config_text({"lockout_threshold": 5}, rate_limits=limits))
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: rate_limits.per_username.failures: 5 is not below" in done.stderr
