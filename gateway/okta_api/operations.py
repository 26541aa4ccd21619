"""Every request the client sends, named after the client method that sends it, and its outcome.

``gateway_okta_api_requests_total{operation,status}`` is labelled with these closed sets:
``operation`` is one of ``OPERATIONS`` (``other`` for a path the table does not know), and
``status`` is one of ``STATUSES``: ``2xx``, ``4xx``, ``429``, ``5xx``, or ``error`` (no HTTP
answer: timeout, dropped connection; or an answer Okta never gives, such as a redirect). Every
attempt counts, so retries after a 429 or a 5xx show up.

The client reports each attempt to a ``RequestObserver`` (``OktaApiClient(on_request=...)``):
``gateway serve`` hands it the Prometheus counter, the one-shot CLI commands a ``RequestTally``
they print when they finish (a process that exits cannot be scraped).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final

from gateway.okta_api.links import path_template

__all__ = [
    "OPERATIONS",
    "STATUSES",
    "RequestObserver",
    "RequestTally",
    "operation_of",
    "status_of",
]

RequestObserver = Callable[[str, str], None]
"""Called once per HTTP attempt with ``(operation, status)``; must not raise or block."""

_USERS = "/api/v1/users"
_USER = "/api/v1/users/{id}"
_INLINE = "/api/v1/inlineHooks"
_EVENT = "/api/v1/eventHooks"

# (method, path template) -> the client method that sends it.
_TABLE: Final[dict[tuple[str, str], str]] = {
    ("POST", "/oauth2/v1/token"): "fetch_token",
    ("GET", _USERS): "list_users",
    ("POST", _USERS): "create_user",
    ("GET", _USER): "get_user",
    ("POST", _USER): "update_user",  # put_password_hook and update_profile (partial update)
    ("DELETE", _USER): "delete_user",
    ("POST", f"{_USER}/lifecycle/activate"): "activate",
    ("POST", f"{_USER}/lifecycle/deactivate"): "deactivate",
    ("POST", f"{_USER}/lifecycle/reset_password"): "reset_password",
    ("POST", f"{_USER}/lifecycle/expire_password"): "expire_password",
    ("GET", "/api/v1/logs"): "list_log_events",
    ("GET", _INLINE): "list_inline_hooks",
    ("POST", _INLINE): "create_inline_hook",
    ("POST", f"{_INLINE}/{{id}}"): "update_inline_hook",
    ("POST", f"{_INLINE}/{{id}}/lifecycle/activate"): "activate_inline_hook",
    ("GET", _EVENT): "list_event_hooks",
    ("POST", _EVENT): "create_event_hook",
    ("PUT", f"{_EVENT}/{{id}}"): "update_event_hook",
    ("POST", f"{_EVENT}/{{id}}/lifecycle/activate"): "activate_event_hook",
    ("POST", f"{_EVENT}/{{id}}/lifecycle/verify"): "verify_event_hook",
}
OTHER: Final = "other"
OPERATIONS: Final[tuple[str, ...]] = (*dict.fromkeys(_TABLE.values()), OTHER)
STATUSES: Final = ("2xx", "4xx", "429", "5xx", "error")


def operation_of(method: str, raw_path: str) -> str:
    """The operation a request is (``other`` when the table does not know it)."""
    return _TABLE.get((method.upper(), path_template(raw_path)), OTHER)


def status_of(status: int | None) -> str:
    """The status class of an answer; ``error`` for no answer (None) or a 1xx/3xx."""
    if status is None:
        return "error"
    if status == 429:
        return "429"
    if 200 <= status < 300:
        return "2xx"
    if 400 <= status < 500:
        return "4xx"
    if 500 <= status < 600:
        return "5xx"
    return "error"


class RequestTally:
    """Counts per (operation, status) in one process: what a CLI command prints when it ends."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def __call__(self, operation: str, status: str) -> None:
        """A ``RequestObserver``."""
        self.counts[(operation, status)] += 1

    def summary(self) -> str:
        """``okta api requests: list_users 2xx=5; create_user 2xx=998 429=2`` (empty: none)."""
        if not self.counts:
            return ""
        parts = []
        for operation in OPERATIONS:
            statuses = [
                f"{status}={self.counts[(operation, status)]}"
                for status in STATUSES
                if self.counts[(operation, status)]
            ]
            if statuses:
                parts.append(f"{operation} " + " ".join(statuses))
        return "okta api requests: " + "; ".join(parts)
