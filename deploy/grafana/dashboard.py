"""Build the gateway's Grafana dashboard with grafana-foundation-sdk and write it as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DashboardCursorSync,
    DataSourceRef,
    FieldColorModeId,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUTPUT = Path(__file__).with_name("gateway-dashboard.json")
UID = "okta-password-gateway"
# Every panel and query reads from the data source the viewer picks in this variable.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
BUDGET_SECONDS = 2.5  # budget_seconds default; Okta gives up at 3 s


def _query(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    """A range query on the dashboard's data source."""
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def _instant(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    """An instant query, for panels that show the value now."""
    return _query(expr, legend, ref).instant()


def _legend() -> common_builders.VizLegendOptions:
    """A table legend with the last and max values, so numbers can be read without hovering."""
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (from minus infinity)."""
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _mapping(options: dict[str, tuple[str, str]]) -> ValueMap:
    """Map gauge values to words and colours (`{"1": ("ready", "green")}`)."""
    return ValueMap(
        options={
            value: ValueMappingResult(text=text, color=color, index=index)
            for index, (value, (text, color)) in enumerate(options.items())
        }
    )


def _timeseries(title: str, description: str, unit: str) -> timeseries.Panel:
    """A time series panel with the shared defaults."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .legend(_legend())
        .fill_opacity(10)
        .height(8)
        .span(12)
    )


def _stat(title: str, description: str, unit: str) -> stat.Panel:
    """A stat panel showing the latest value per series."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .height(6)
        .span(6)
    )


def _traffic_row(builder: dash.Dashboard) -> None:
    """Hook outcomes, in-flight requests and latency against Okta's budget."""
    builder.with_row(dash.Row("Okta hook traffic"))
    builder.with_panel(
        _timeseries(
            "Hook requests by outcome",
            "Okta password-import calls per second. verified/unverified are answered decisions; "
            "bad_request (400), unauthorized (401) and too_large (413) are refused before any "
            "directory is asked.",
            "reqps",
        )
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        .with_target(
            _query(f"sum by (outcome) (rate(gateway_hook_requests_total[{RATE}]))", "{{outcome}}")
        )
    )
    builder.with_panel(
        _timeseries(
            "Verification latency per source (p50 / p95 / p99)",
            f"Time each source took to answer. The whole hook answer is bounded by budget_seconds "
            f"({BUDGET_SECONDS} s, red line); Okta gives up at 3 s.",
            "s",
        )
        .thresholds(_thresholds((None, "green"), (2.0, "orange"), (BUDGET_SECONDS, "red")))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
        .targets(
            [
                _query(
                    f"histogram_quantile({q}, sum by (source, le) "
                    f"(rate(gateway_verification_duration_seconds_bucket[{RATE}])))",
                    f"{{{{source}}}} p{round(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
            ]
        )
    )
    builder.with_panel(
        _timeseries(
            "In-flight hook requests",
            "Hook requests being answered right now, summed over replicas.",
            "short",
        ).with_target(_query("sum(gateway_inflight_requests)", "in flight"))
    )
    builder.with_panel(
        _timeseries(
            "Event-loop lag",
            "Worst lateness of each replica's event loop over the last 15 s. Every answer waits "
            "for the loop: near the 2.5 s budget it is the replica (CPU starved, a blocking "
            "call), not the directory.",
            "s",
        ).with_target(_query("max by (instance) (gateway_event_loop_lag_seconds)", "{{instance}}"))
    )
    builder.with_panel(
        _timeseries(
            "Connections",
            "Open connections per listener (each capped by server.max_connections), and the "
            "rate of connections the gateway closed: header_timeout (a request head that did not "
            "arrive within server.header_timeout_seconds: slow or hostile clients), body_timeout "
            "(a body that did not arrive within the budget), over_capacity (refused at the cap).",
            "short",
        )
        .with_target(_query("sum by (listener) (gateway_connections_open)", "open: {{listener}}"))
        .with_target(
            _query(
                f"sum by (reason) (rate(gateway_connections_closed_total"
                f'{{reason!="normal"}}[{RATE}]))',
                "closed/s: {{reason}}",
                ref="B",
            )
        )
    )
    builder.with_panel(
        _timeseries(
            "Rate-limit refusals by limit",
            "Requests refused by a limit: username and ip protect users from lockout and "
            "password spraying; source, cooldown, circuit and busy protect the directory; "
            "full: protection is the store refusing new users (fail closed), cache evictions.",
            "reqps",
        )
        .with_target(
            _query(f"sum by (limit) (rate(gateway_rate_limited_total[{RATE}]))", "{{limit}}")
        )
        .with_target(
            _query(f"sum by (store) (rate(gateway_state_full_total[{RATE}]))", "full: {{store}}")
        )
    )


def _sources_row(builder: dash.Dashboard) -> None:
    """Readiness, circuit breakers, freshness and error codes of each directory."""
    builder.with_row(dash.Row("Sources"))
    builder.with_panel(
        _stat(
            "Source readiness",
            "1 when a source has started and can verify (the worst replica is shown). A source "
            "that is not ready answers UNVERIFIED (not_ready) to all its users.",
            "none",
        )
        .mappings([_mapping({"0": ("not ready", "red"), "1": ("ready", "green")})])
        .thresholds(_thresholds((None, "red"), (1, "green")))
        .with_target(_instant("min by (source) (gateway_source_ready)", "{{source}}"))
    )
    builder.with_panel(
        _stat(
            "Time since last verified answer",
            "How long ago each source last said VERIFIED (latest over replicas). Empty: never "
            "since the gateway started.",
            "s",
        )
        .thresholds(_thresholds((None, "green"), (3600, "orange"), (86400, "red")))
        .no_value("never")
        .with_target(
            _instant(
                "time() - max by (source) (gateway_source_last_success_timestamp_seconds > 0)",
                "{{source}}",
            )
        )
    )
    builder.with_panel(
        statetimeline.Panel()
        .title("Circuit breaker state")
        .description(
            "Per source, worst replica: closed (normal), half-open (probing after failures), "
            "open (the source is skipped and its users get UNVERIFIED)."
        )
        .datasource(DATASOURCE)
        .mappings(
            [
                _mapping(
                    {
                        "0": ("closed", "green"),
                        "1": ("half-open", "orange"),
                        "2": ("open", "red"),
                    }
                )
            ]
        )
        .thresholds(_thresholds((None, "green"), (1, "orange"), (2, "red")))
        .color_scheme(dash.FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .with_target(_query("max by (source) (gateway_source_circuit_state)", "{{source}}"))
        .height(6)
        .span(12)
    )
    builder.with_panel(
        _timeseries(
            "Upstream error codes",
            "Non-success answers per source and reason code, per second. Denials "
            "(aadsts_50126 wrong password, aadsts_50034 unknown user) are normal; misconfiguration "
            "codes (65001, 7000215, 700016, ...) and http_5xx/timeout/network need action.",
            "reqps",
        ).with_target(
            _query(
                f"sum by (source, code) (rate(gateway_upstream_errors_total[{RATE}])) > 0",
                "{{source}} {{code}}",
            )
        )
    )
    builder.with_panel(
        _timeseries(
            "Misconfiguration answers",
            "Answers whose code the source's type declares as misconfiguration (a wrong client "
            "secret, missing consent, a refused grant type): every user of that source gets "
            "UNVERIFIED until an admin fixes the settings. Should be empty.",
            "reqps",
        ).with_target(
            _query(
                f"sum by (source, code) (rate(gateway_source_misconfigured_total[{RATE}])) > 0",
                "{{source}} {{code}}",
            )
        )
    )
    builder.with_panel(
        _timeseries(
            "Verifications by source and result",
            "verified: password right; denied: the source said no; unavailable: the source "
            "could not answer (outage, timeout, throttling, misconfiguration).",
            "reqps",
        ).with_target(
            _query(
                f"sum by (source, result) (rate(gateway_verifications_total[{RATE}]))",
                "{{source}} {{result}}",
            )
        )
    )


def _migration_row(builder: dash.Dashboard) -> None:
    """How many users have been migrated, per source."""
    builder.with_row(dash.Row("Migration progress"))
    verified = 'gateway_verifications_total{result="verified"}'
    builder.with_panel(
        _timeseries(
            "Users verified per source (per interval)",
            "Verified answers per source in each interval: each one is a user whose password Okta "
            "now stores (Okta does not call the hook again for that user).",
            "short",
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        .with_target(_query(f"sum by (source) (increase({verified}[$__interval]))", "{{source}}"))
    )
    builder.with_panel(
        _stat(
            "Users verified in the selected range",
            "Verified answers per source over the dashboard's time range.",
            "short",
        )
        .color_mode(common.BigValueColorMode.NONE)
        .with_target(_instant(f"sum by (source) (increase({verified}[$__range]))", "{{source}}"))
    )
    # From the ledger (every replica reads the same one, hence max, not sum, over replicas).
    users = "gateway_migration_users"
    builder.with_panel(
        _stat(
            "Migrated share per source",
            "Migrated users (Okta holds the password; native hashes included) out of the users "
            "imported into Okta, from the migration ledger. Same numbers as `gateway migrate "
            "status`.",
            "percentunit",
        )
        .thresholds(_thresholds((None, "orange"), (0.5, "yellow"), (0.9, "green")))
        .with_target(
            _instant(
                f'max by (source) ({users}{{state="migrated"}}) '
                f'/ max by (source) ({users}{{state="imported"}} > 0)',
                "{{source}}",
            )
        )
    )
    builder.with_panel(
        _stat(
            "Users still pending per source",
            "Imported users who have never signed in (nobody verified their password yet) and "
            "that `gateway migrate finish` has not acted on: `gateway migrate status "
            "--stragglers FILE.csv` lists them. 0 when the source can be retired.",
            "short",
        )
        .color_mode(common.BigValueColorMode.NONE)
        .with_target(_instant(f'max by (source) ({users}{{state="pending"}})', "{{source}}"))
    )
    builder.with_panel(
        _timeseries(
            "Users by migration state",
            "Per source: migrated, verified_unconfirmed (the hook said VERIFIED, no Okta event "
            "or `migrate status --refresh` has confirmed it yet), pending and finished (never "
            "signed in; `gateway migrate finish` reset, expired or deactivated them). A growing "
            "verified_unconfirmed means Okta's events are not reaching the gateway.",
            "short",
        )
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        .with_target(
            _query(
                f'max by (source, state) ({users}{{state!="imported"}})',
                "{{source}} {{state}}",
            )
        )
    )
    builder.with_panel(
        _timeseries(
            "Okta API requests by operation and status",
            "Okta Management API calls made by the gateway (background prepare and attribute "
            "sync), every attempt: 429 means Okta's rate limit was met (the client waits and "
            "retries), error means no answer. The `gateway migrate` commands print their own "
            "counts when they finish.",
            "reqps",
        ).with_target(
            _query(
                f"sum by (operation, status) (rate(gateway_okta_api_requests_total[{RATE}])) > 0",
                "{{operation}} {{status}}",
            )
        )
    )


def _state_row(builder: dash.Dashboard) -> None:
    """Caches, Redis and the running build."""
    builder.with_row(dash.Row("Caches, Redis and build"))
    builder.with_panel(
        _timeseries(
            "Cache hit ratio by cache",
            "Share of lookups answered from each cache (verdict, token, username).",
            "percentunit",
        )
        .min(0)
        .max(1)
        .with_target(
            _query(
                f'sum by (cache) (rate(gateway_cache_requests_total{{result="hit"}}[{RATE}])) '
                f"/ sum by (cache) (rate(gateway_cache_requests_total[{RATE}]))",
                "{{cache}}",
            )
        )
    )
    builder.with_panel(
        _stat(
            "Redis up",
            "Per replica: 1 when the shared Redis answers; 0 while that replica falls back to "
            "per-process caches and limits (limits then no longer hold across the fleet).",
            "none",
        )
        .mappings([_mapping({"0": ("down", "red"), "1": ("up", "green")})])
        .thresholds(_thresholds((None, "red"), (1, "green")))
        .with_target(_instant("gateway_redis_up", "{{instance}}"))
    )
    builder.with_panel(
        table.Panel()
        .title("Build info")
        .description("Which gateway version each replica runs.")
        .datasource(DATASOURCE)
        .with_target(
            _instant("max by (instance, job, version) (gateway_build_info)", "{{version}}").format(
                PromQueryFormat.TABLE
            )
        )
        .height(6)
        .span(6)
    )
    builder.with_panel(
        _stat(
            "Last config reload",
            "Per replica: 1 when the last reload (or the start-up load) succeeded; 0 when a "
            "reload failed and the replica still runs its previous configuration.",
            "none",
        )
        .mappings([_mapping({"0": ("failed", "red"), "1": ("ok", "green")})])
        .thresholds(_thresholds((None, "red"), (1, "green")))
        .with_target(_instant("gateway_config_last_reload_successful", "{{instance}}"))
    )
    builder.with_panel(
        table.Panel()
        .title("Running configuration")
        .description(
            "The config file hash each replica runs (first 12 hex digits of its SHA-256): "
            "replicas that differ have not all been reloaded."
        )
        .datasource(DATASOURCE)
        .with_target(
            _instant("max by (instance, job, hash) (gateway_config_info)", "{{hash}}").format(
                PromQueryFormat.TABLE
            )
        )
        .height(6)
        .span(6)
    )


def build() -> Dashboard:
    """The whole dashboard, datasource picked through the `datasource` template variable."""
    builder = (
        dash.Dashboard("Okta password-import gateway")
        .uid(UID)
        .description(
            "Okta Password Import Inline Hook gateway: hook outcomes, directory latency against "
            "Okta's 3 s limit, source health and migration progress."
        )
        .tags(["okta", "entra", "password-import", "gateway"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(
            dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
    _traffic_row(builder)
    _sources_row(builder)
    _migration_row(builder)
    _state_row(builder)
    built = builder.build()
    # Stable, unique panel ids: Grafana links and library tooling address panels by id.
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def render() -> str:
    """The dashboard as stable, sorted JSON (so a regenerated file diffs cleanly)."""
    text = json.dumps(build(), cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False)
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard JSON (default: next to this script)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help="where to write")
    args = parser.parse_args(argv)
    args.output.write_text(render(), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
