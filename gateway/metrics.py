"""Prometheus metrics with DESIGN.md's names, in a registry owned by one app."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from gateway import __version__
from gateway.hook_oauth import AUTH_ERRORS
from gateway.okta_api.operations import OPERATIONS as OKTA_OPERATIONS
from gateway.okta_api.operations import STATUSES as OKTA_STATUSES
from plugins.base import Result, Verdict

# `_created` series double the series count and nobody alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]

HOOK_OUTCOMES = ("verified", "unverified", "bad_request", "unauthorized", "too_large")
RATE_LIMITS = ("username", "ip", "source", "cooldown", "circuit", "busy")
STATE_STORES = ("protection", "cache")
CACHES = ("verdict", "token", "username")
# `gateway_migration_users{state}`, as gateway/migrate/report.py defines them.
MIGRATION_STATES = ("imported", "migrated", "verified_unconfirmed", "pending", "finished")
# Okta event hook deliveries (gateway/event_hook.py): the types acted on, every other one `other`.
OKTA_EVENT_TYPES = (
    "user.import.password", "user.lifecycle.activate", "user.lifecycle.create",
    "application.user_membership.add", "other",
)  # fmt: skip
# Connections by listener (gateway/connections.py) and why they closed.
LISTENERS = ("hook", "metrics", "admin")
CONNECTION_CLOSE_REASONS = ("normal", "header_timeout", "body_timeout", "over_capacity")
OKTA_EVENT_OUTCOMES = ("recorded", "duplicate", "ignored", "import_failed", "failed")
# Fine below 100 ms (cache hits, fast directories), coarse up to the 3 s Okta limit.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 2.5, 3.0,
)  # fmt: skip
# The reason of a plain upstream success; anything else is counted in gateway_upstream_errors_total.
SUCCESS_REASON = "ok"
# Reason codes every source type can answer, exported at 0 from start-up so alerts see a series;
# each type adds its own (`Source.known_reasons`, e.g. Entra's aadsts_*) through declare_codes.
KNOWN_UPSTREAM_CODES = ("http_429", "http_5xx", "timeout", "network", "bad_response", "other")


class GatewayMetrics:
    """Every metric the gateway exports; one instance per app, so tests can read exact values."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, with_redis_gauge: bool = True
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hook_requests = Counter(
            "gateway_hook_requests_total", "Okta hook requests by outcome.", ["outcome"], registry=r
        )
        # Why hook requests got a 401 (gateway/hook_oauth.py AUTH_ERRORS), all exported from 0.
        self.hook_auth_failures = Counter(
            "gateway_hook_auth_failures_total",
            "Hook requests refused with 401, by machine reason (missing, bad_secret, expired, "
            "unknown_kid, keys_unavailable, ...).",
            ["reason"],
            registry=r,
        )
        for auth_error in AUTH_ERRORS:
            self.hook_auth_failures.labels(reason=auth_error)
        self.verifications = Counter(
            "gateway_verifications_total",
            "Verifications by source and result.",
            ["source", "result"],
            registry=r,
        )
        self.verification_seconds = Histogram(
            "gateway_verification_duration_seconds",
            "Time a source took to answer, in seconds.",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total",
            "Upstream answers that were not a success (denials included), by reason code.",
            ["source", "code"],
            registry=r,
        )
        self.shadow_verifications = Counter(
            "gateway_shadow_verifications_total",
            "Shadow verifications of a route's calls against its shadow source, by whether that "
            "source agreed with the answer Okta got (same, different, unavailable).",
            ["route", "agreement"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "gateway_shadow_dropped_total",
            "Shadow verifications not made: queue_full (the route's queue) or expired (not done "
            "within one budget).",
            ["route", "reason"],
            registry=r,
        )
        self.source_misconfigured = Counter(
            "gateway_source_misconfigured_total",
            "Answers saying the gateway's settings for a source are wrong (each source type "
            "declares which of its reason codes mean that), by source and code.",
            ["source", "code"],
            registry=r,
        )
        self._misconfigured: dict[str, frozenset[str]] = {}
        self.rate_limited = Counter(
            "gateway_rate_limited_total", "Requests refused by a limit.", ["limit"], registry=r
        )
        self.state_full = Counter(
            "gateway_state_full_total",
            "Per-process store full: protection (a new user was refused, fail closed) or cache "
            "(a live entry was evicted).",
            ["store"],
            registry=r,
        )
        self.cache_requests = Counter(
            "gateway_cache_requests_total", "Cache lookups.", ["cache", "result"], registry=r
        )
        self.inflight = Gauge(
            "gateway_inflight_requests", "Hook requests being answered now.", registry=r
        )
        self.connections_open = Gauge(
            "gateway_connections_open", "Open client connections by listener.", ["listener"],
            registry=r,
        )  # fmt: skip
        self.connections_closed = Counter(
            "gateway_connections_closed_total",
            "Client connections closed, by listener and reason: normal, header_timeout (request "
            "head or TLS handshake not done in time), body_timeout, over_capacity (refused at "
            "server.max_connections).",
            ["listener", "reason"],
            registry=r,
        )
        for listener in LISTENERS:
            self.connections_open.labels(listener=listener)
            for close_reason in CONNECTION_CLOSE_REASONS:
                self.connections_closed.labels(listener=listener, reason=close_reason)
        self.event_loop_lag = Gauge(
            "gateway_event_loop_lag_seconds",
            "Worst lateness of the event loop over the last 15 s (every answer waits for it).",
            registry=r,
        )
        self.last_success = Gauge(
            "gateway_source_last_success_timestamp_seconds",
            "Unix time of the last verified answer from a source (0 = never).",
            ["source"],
            registry=r,
        )
        self.source_ready = Gauge(
            "gateway_source_ready", "1 when a source has started and can verify.", ["source"],
            registry=r,
        )  # fmt: skip
        self.circuit_state = Gauge(
            "gateway_source_circuit_state",
            "Circuit breaker per source: 0 closed, 1 half-open (probing), 2 open.",
            ["source"],
            registry=r,
        )
        # Only with a Redis backend: a 0 there means "falling back", not "no Redis configured".
        self.redis_up = Gauge(
            "gateway_redis_up",
            "1 when the shared Redis answers; 0 while the gateway falls back to per-process state.",
            registry=r if with_redis_gauge else None,
        )
        self.build_info = Gauge(
            "gateway_build_info", "Always 1; the version label says which build runs.", ["version"],
            registry=r,
        )  # fmt: skip
        self.build_info.labels(version=__version__).set(1)
        # As Prometheus reports its own configuration: what runs, and whether the last reload took.
        self.config_reloads = Counter(
            "gateway_config_reload_total",
            "Configuration reloads by result (success, failure).",
            ["result"],
            registry=r,
        )
        self.config_last_reload_successful = Gauge(
            "gateway_config_last_reload_successful",
            "1 when the last reload (or the start-up load) succeeded, 0 when it failed.",
            registry=r,
        )
        self.config_last_reload_success = Gauge(
            "gateway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the configuration.",
            registry=r,
        )
        self.config_info = Gauge(
            "gateway_config_info",
            "Always 1; hash is the first 12 hex digits of the SHA-256 of the loaded config file.",
            ["hash"],
            registry=r,
        )
        self.okta_events = Counter(
            "gateway_okta_events_total",
            "Okta event hook events by type and outcome: recorded (new, acted on), duplicate "
            "(uuid seen before), ignored (new, nothing to do), import_failed (Okta reported a "
            "password import FAILURE), failed (new, unusable).",
            ["type", "outcome"],
            registry=r,
        )
        for event_type in OKTA_EVENT_TYPES:
            for event_outcome in OKTA_EVENT_OUTCOMES:
                self.okta_events.labels(type=event_type, outcome=event_outcome)
        # Okta Management API calls of this process (serve's background prepare/sync).
        self.okta_api_requests = Counter(
            "gateway_okta_api_requests_total",
            "Okta Management API requests (every attempt) by client operation and status class.",
            ["operation", "status"],
            registry=r,
        )
        for operation in OKTA_OPERATIONS:
            for status in OKTA_STATUSES:
                self.okta_api_requests.labels(operation=operation, status=status)
        # Set from the ledger every minute when serve uses it (gateway/migration_gauges.py); no
        # series without a ledger, rather than zeros that would read as "nobody pending".
        self.migration_users = Gauge(
            "gateway_migration_users",
            "Users of a source by migration state, from the ledger "
            "(imported = migrated + verified_unconfirmed + pending + finished).",
            ["source", "state"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result=result)
        for outcome in HOOK_OUTCOMES:
            self.hook_requests.labels(outcome=outcome)
        for limit in RATE_LIMITS:
            self.rate_limited.labels(limit=limit)
        for store in STATE_STORES:
            self.state_full.labels(store=store)
        for cache in CACHES:
            for result in ("hit", "miss"):
                self.cache_requests.labels(cache=cache, result=result)

    def count_okta_request(self, operation: str, status: str) -> None:
        """An Okta API client's `on_request` observer: one attempt, by operation and status."""
        self.okta_api_requests.labels(operation=operation, status=status).inc()

    def declare_codes(
        self, source: str, codes: Iterable[str], misconfigured: Iterable[str] = ()
    ) -> None:
        """Export a source type's own reason codes at 0 (alerts need the series to exist).

        `misconfigured`: the type's reasons that mean its settings are wrong; answers with one
        of them are also counted in gateway_source_misconfigured_total.
        """
        for code in codes:
            self.upstream_errors.labels(source=source, code=code)
        self._misconfigured[source] = frozenset(misconfigured)
        for code in self._misconfigured[source]:
            self.source_misconfigured.labels(source=source, code=code)

    def declare_sources(self, names: Iterable[str]) -> None:
        """Export each source's series at 0 before its first request."""
        for name in names:
            for result in Result:
                self.verifications.labels(source=name, result=result.value)
            for code in KNOWN_UPSTREAM_CODES:
                self.upstream_errors.labels(source=name, code=code)
            self.verification_seconds.labels(source=name)
            self.last_success.labels(source=name)
            self.source_ready.labels(source=name)
            self.circuit_state.labels(source=name)

    def config_loaded(self, digest: str, previous: str | None = None) -> None:
        """A configuration is now running: its hash, and a successful load."""
        if previous is not None and previous != digest:
            self.config_info.remove(previous)
        self.config_info.labels(hash=digest).set(1)
        self.config_last_reload_successful.set(1)
        self.config_last_reload_success.set_to_current_time()

    def forget_sources(self, names: Iterable[str]) -> None:
        """Drop the gauges of sources a reload removed (their counters stay, as counters do)."""
        for name in names:
            for gauge in (self.source_ready, self.circuit_state, self.last_success):
                with contextlib.suppress(KeyError):
                    gauge.remove(name)

    def record_verdict(self, verdict: Verdict, *, upstream: bool, seconds: float = 0.0) -> None:
        """Count one source answer; latency and error codes only for real upstream calls.

        Every upstream answer but a plain success (`ok`) counts as an upstream error, verified
        ones included (MFA or Conditional Access after a right password), so the code mix shows.
        """
        self.verifications.labels(source=verdict.source, result=verdict.result.value).inc()
        if upstream:
            self.verification_seconds.labels(source=verdict.source).observe(seconds)
            if verdict.reason != SUCCESS_REASON:
                self.upstream_errors.labels(source=verdict.source, code=verdict.reason).inc()
                if verdict.reason in self._misconfigured.get(verdict.source, ()):
                    self.source_misconfigured.labels(
                        source=verdict.source, code=verdict.reason
                    ).inc()
