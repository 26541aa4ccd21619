"""Metric names in PromQL expressions and the names a real gateway registry exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from gateway.metrics import GatewayMetrics
from plugins.azure_ad import AzureAdSource

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_JSON = ROOT / "deploy" / "grafana" / "gateway-dashboard.json"
ALERTS_YAML = ROOT / "deploy" / "prometheus" / "alerts.yaml"

_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w$.:])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and durations left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    names = set()
    for match in _NAME.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def exported_names() -> set[str]:
    """Every sample name a gateway with one source exports (`_total`, `_bucket`, ... included)."""
    metrics = GatewayMetrics()
    metrics.declare_sources(["entra"])
    # As the runtime does for an azure_ad source: its own codes and misconfiguration codes.
    metrics.declare_codes(
        "entra", AzureAdSource.known_reasons, AzureAdSource.misconfiguration_reasons
    )
    metrics.config_loaded("0123456789ab")  # as every gateway does once its config is loaded
    # As gateway.migration_gauges does once the ledger of a migrating gateway is read.
    metrics.migration_users.labels(source="entra", state="pending").set(0)
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    """The committed dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard, rows and panels inside collapsed rows included."""
    return list(_panels(dashboard()["panels"]))


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) for every query of the dashboard."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/alerts.yaml."""
    data = yaml.safe_load(ALERTS_YAML.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]
