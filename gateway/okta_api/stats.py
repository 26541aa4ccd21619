"""Counters an Okta API client keeps, for the caller (progress lines, the bench) to read."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["OktaApiStats"]


@dataclass(slots=True)
class OktaApiStats:
    """What one client did; plain counters, read at any time (single event loop, no locking)."""

    requests: int = 0  # HTTP requests sent, retries and token requests included
    token_requests: int = 0  # of which to /oauth2/v1/token
    rate_limited: int = 0  # 429 answers of any kind
    concurrency_limited: int = 0  # of which concurrency 429s (Limit 0, Remaining 0)
    server_errors: int = 0  # 5xx answers
    timeouts: int = 0
    network_errors: int = 0
    retries: int = 0  # requests sent again (after 429, 5xx, timeout, network error)
    retries_refused: int = 0  # retries the retry budget did not allow
    token_refetches: int = 0  # access tokens fetched again after a 401
    recovered: int = 0  # non-idempotent calls whose lost answer was found by a lookup
    pacing_wait_seconds: float = 0.0  # spreading requests over a rate-limit window
    backoff_wait_seconds: float = 0.0  # waiting before a retry (429 Reset, 5xx backoff)

    @property
    def wait_seconds(self) -> float:
        """All time spent waiting on purpose (pacing and backoff)."""
        return self.pacing_wait_seconds + self.backoff_wait_seconds

    def as_dict(self) -> dict[str, float]:
        """The counters and ``wait_seconds`` as one flat mapping (for printing)."""
        values: dict[str, float] = asdict(self)
        values["wait_seconds"] = self.wait_seconds
        return values
