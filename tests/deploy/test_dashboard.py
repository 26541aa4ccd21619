"""The dashboard and the alert rules query only metrics the gateway really exports."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.deploy.promql import (
    ROOT,
    alert_rules,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    exported_names,
    metric_names,
)

# What the dashboard must show, by the metric each panel is built on.
REQUIRED_DASHBOARD_METRICS = {
    "gateway_hook_requests_total",
    "gateway_verification_duration_seconds_bucket",
    "gateway_upstream_errors_total",
    "gateway_source_misconfigured_total",
    "gateway_rate_limited_total",
    "gateway_cache_requests_total",
    "gateway_verifications_total",
    "gateway_inflight_requests",
    "gateway_event_loop_lag_seconds",
    "gateway_source_ready",
    "gateway_source_circuit_state",
    "gateway_source_last_success_timestamp_seconds",
    "gateway_redis_up",
    "gateway_build_info",
    "gateway_state_full_total",
    "gateway_config_last_reload_successful",
    "gateway_config_info",
    "gateway_migration_users",
    "gateway_okta_api_requests_total",
    "gateway_connections_open",
    "gateway_connections_closed_total",
}
REQUIRED_ALERTS = {
    "GatewayDown",
    "HookLatencyNearBudget",
    "SourceUnavailableRatio",
    "SourceNotReady",
    "MisconfigurationCodesSeen",
    "LockoutProtectionSpike",
    "Aadsts50053Spike",
    "CircuitOpen",
    "ProtectionStoreFull",
    "ConfigReloadFailed",
    "RedisDown",
    "MigrationStalled",
    "EventLoopLagHigh",
    "HookCallsUnauthorized",
    "ConnectionsRefusedAtCap",
}


def _unknown(names: set[str]) -> set[str]:
    return names - exported_names()


def _generator() -> ModuleType:
    path = ROOT / "deploy" / "grafana" / "dashboard.py"
    spec = importlib.util.spec_from_file_location("gateway_dashboard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (source, le) (rate(gateway_x_bucket{code=~"a|b"}[$__rate_interval]))',
            {"gateway_x_bucket"},
        ),
        ("time() - max by (source) (gateway_ts > 0)", {"gateway_ts"}),
        (
            "a_total unless b_total offset 10m and on(job) group_left(x) c",
            {"a_total", "b_total", "c"},
        ),
        (
            'histogram_quantile(0.99, sum by (le) (rate(h_bucket{le!="+Inf"}[5m]))) > 2',
            {"h_bucket"},
        ),
    ],
)
def test_metric_names_extracts_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_include_suffixed_series() -> None:
    exported = exported_names()
    assert {
        "gateway_hook_requests_total",
        "gateway_verification_duration_seconds_bucket",
        "gateway_verification_duration_seconds_count",
        "gateway_verification_duration_seconds_sum",
        "gateway_build_info",
    } <= exported
    assert "gateway_hook_requests" not in exported  # the family name is not a series


def test_a_misspelt_metric_is_reported() -> None:
    expr = "sum by (outcome) (rate(gateway_hook_request_total[5m]))"
    assert _unknown(metric_names(expr)) == {"gateway_hook_request_total"}


def test_every_dashboard_query_uses_exported_metrics() -> None:
    exprs = dashboard_exprs()
    assert exprs, "the dashboard has no queries"
    problems = {
        title: sorted(_unknown(metric_names(expr)))
        for title, expr in exprs
        if _unknown(metric_names(expr))
    }
    assert problems == {}


def test_dashboard_covers_every_required_metric() -> None:
    queried = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))
    assert REQUIRED_DASHBOARD_METRICS - queried == set()


def test_dashboard_datasource_is_a_template_variable() -> None:
    variables = dashboard()["templating"]["list"]
    assert any(
        v["name"] == "datasource" and v["type"] == "datasource" and v["query"] == "prometheus"
        for v in variables
    )
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))


def test_committed_dashboard_is_up_to_date() -> None:
    committed = (ROOT / "deploy" / "grafana" / "gateway-dashboard.json").read_text(encoding="utf-8")
    assert _generator().render() == committed, "run `make dashboard` and commit the JSON"


def test_every_alert_expression_uses_exported_metrics() -> None:
    problems = {
        rule["alert"]: sorted(_unknown(metric_names(rule["expr"]) - {"up"}))
        for rule in alert_rules()
        if _unknown(metric_names(rule["expr"]) - {"up"})
    }
    assert problems == {}


def test_every_required_alert_exists_with_summary_description_and_runbook() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == REQUIRED_ALERTS
    for name, rule in rules.items():
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{name} has no {key}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name


def test_misconfiguration_alert_is_source_neutral() -> None:
    # Each source type declares its misconfiguration codes (Source.misconfiguration_reasons);
    # the alert watches their counter, never one type's codes by pattern.
    (rule,) = [r for r in alert_rules() if r["alert"] == "MisconfigurationCodesSeen"]
    assert "gateway_source_misconfigured_total" in rule["expr"]
    assert "code=~" not in rule["expr"] and "aadsts" not in rule["expr"]


def test_migration_stalled_is_built_on_the_ledger_gauges() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "MigrationStalled"]
    assert metric_names(rule["expr"]) == {"gateway_migration_users"}
    assert 'state="pending"' in rule["expr"] and 'state="migrated"' in rule["expr"]
