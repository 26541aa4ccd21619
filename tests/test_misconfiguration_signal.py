"""The misconfiguration signal is source-neutral: each type declares its codes, one counter counts."""

from __future__ import annotations

from gateway.metrics import GatewayMetrics
from plugins.azure_ad import MISCONFIGURATION_REASONS, AzureAdSource
from plugins.base import Result, Source, Verdict


def _value(metrics: GatewayMetrics, source: str, code: str) -> float | None:
    return metrics.registry.get_sample_value(
        "gateway_source_misconfigured_total", {"source": source, "code": code}
    )


def test_each_type_declares_its_codes_and_only_those_count() -> None:
    metrics = GatewayMetrics(with_redis_gauge=False)
    metrics.declare_codes(
        "entra", AzureAdSource.known_reasons, AzureAdSource.misconfiguration_reasons
    )
    metrics.declare_codes("other", {"invalid_client", "invalid_grant"}, {"invalid_client"})
    assert AzureAdSource.misconfiguration_reasons == MISCONFIGURATION_REASONS
    for code in MISCONFIGURATION_REASONS:
        assert _value(metrics, "entra", code) == 0  # exported before the first answer
    assert _value(metrics, "other", "invalid_client") == 0
    assert Source.misconfiguration_reasons == frozenset()  # a type must opt in

    def answer(source: str, reason: str) -> None:
        verdict = Verdict(Result.UNAVAILABLE, source, reason)
        metrics.record_verdict(verdict, upstream=True, seconds=0.01)

    answer("entra", "aadsts_7000215")
    answer("entra", "aadsts_50126")  # a wrong password: not misconfiguration
    answer("other", "invalid_client")
    answer("other", "invalid_grant")
    answer("other", "aadsts_7000215")  # another type's code means nothing for this source
    assert _value(metrics, "entra", "aadsts_7000215") == 1
    assert _value(metrics, "entra", "aadsts_50126") is None
    assert _value(metrics, "other", "invalid_client") == 1
    assert _value(metrics, "other", "invalid_grant") is None
    assert _value(metrics, "other", "aadsts_7000215") is None
