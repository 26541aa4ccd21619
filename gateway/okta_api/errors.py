"""Okta's error objects (and every other way a call can fail) as one exception with one clear line.

Okta answers errors as ``{"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses":
[{"errorSummary"}]}`` (reference/okta-hooks.md §2.6); only ``errorCode`` is stable for program
logic. The token endpoint answers OAuth 2.0 errors (``{"error", "error_description"}``); a load
balancer in front of Okta answers bare HTML. Timeouts and connection failures have no answer at
all. All of them become an ``OktaApiError`` whose ``one_line()`` a migration report or a log can
print per failed user. Nothing the client sent (bodies, tokens, assertions) is ever part of it:
the text comes from Okta's answer, the request's method and path *template* (never the concrete
path, which can hold a login) and the client's own wording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

__all__ = [
    "ALREADY_ACTIVE",
    "DUPLICATE_LOGIN_CAUSE",
    "INSUFFICIENT_SCOPE",
    "INVALID_TOKEN",
    "NOT_FOUND",
    "RATE_LIMITED",
    "VALIDATION_FAILED",
    "GaveUp",
    "OktaApiError",
    "error_from_answer",
]

VALIDATION_FAILED: Final = "E0000001"
INSUFFICIENT_SCOPE: Final = "E0000006"
NOT_FOUND: Final = "E0000007"
INVALID_TOKEN: Final = "E0000011"  # noqa: S105 - an error code
ALREADY_ACTIVE: Final = "E0000016"
RATE_LIMITED: Final = "E0000047"
# The cause Okta gives for a create or update whose login another user holds.
DUPLICATE_LOGIN_CAUSE: Final = "login: An object with this field already exists"

GaveUp = Literal["max_retries", "retry_budget"]

_MAX_TEXT = 300  # per summary or cause: a report line, not a dump
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SCOPE = re.compile(r'\bscope="([^"]*)"')


def _clean(text: object) -> str:
    """Server text made safe for one log or CSV line: no control characters, bounded length."""
    flat = _CONTROL.sub(" ", str(text)).strip()
    return flat if len(flat) <= _MAX_TEXT else flat[: _MAX_TEXT - 1] + "…"


class OktaApiError(Exception):
    """A call to the Okta Management API that did not succeed.

    ``status`` is the HTTP status (None when no answer came), ``code`` Okta's ``errorCode``
    (``E0000001``...), the OAuth ``error`` of the token endpoint (``invalid_client``...), or the
    client's own lowercase code when Okta sent no error object: ``timeout``, ``network``,
    ``http_503`` (a non-JSON answer), ``bad_response`` (an answer of the wrong shape).
    ``outcome_unknown`` means the request may have been carried out although no success was
    seen (a timeout, a dropped connection or a 5xx after the request went out).
    """

    def __init__(
        self,
        status: int | None,
        code: str,
        summary: str,
        causes: Sequence[str] = (),
        *,
        operation: str = "",
        error_id: str | None = None,
        request_id: str | None = None,
        required_scope: str | None = None,
        attempts: int = 1,
        outcome_unknown: bool = False,
        gave_up: GaveUp | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.summary = _clean(summary)
        self.causes = tuple(_clean(cause) for cause in causes)
        self.operation = operation
        self.error_id = error_id
        self.request_id = request_id
        self.required_scope = required_scope
        self.attempts = attempts
        self.outcome_unknown = outcome_unknown
        self.gave_up = gave_up
        super().__init__(self.one_line())

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (no answer, 429 or 5xx)."""
        return self.status is None or self.status == 429 or self.status >= 500

    def has_cause(self, text: str) -> bool:
        """Whether a cause starts with ``text`` (e.g. ``DUPLICATE_LOGIN_CAUSE``)."""
        return any(cause.startswith(text) for cause in self.causes)

    def one_line(self) -> str:
        """``POST /api/v1/users -> 400 E0000001: Api validation failed: login (login: ...)``."""
        where = f"{self.operation} -> " if self.operation else ""
        status = f"{self.status} " if self.status is not None else ""
        line = f"{where}{status}{self.code}: {self.summary}"
        if self.causes:
            line += f" ({'; '.join(self.causes)})"
        notes = []
        if self.required_scope:
            notes.append(f"the token lacks scope {self.required_scope}")
        if self.attempts > 1:
            notes.append(f"{self.attempts} attempts")
        if self.gave_up == "retry_budget":
            notes.append("retry budget exhausted, not retried: Okta is failing many calls")
        elif self.gave_up == "max_retries":
            notes.append("gave up after the retry limit")
        if self.outcome_unknown:
            notes.append("the request may have been carried out")
        if notes:
            line += f" [{'; '.join(notes)}]"
        return line

    def evolve(self, **changes: Any) -> OktaApiError:
        """A copy with some attributes changed (the retry loop annotates the final error)."""
        fields: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "summary": self.summary,
            "causes": self.causes,
            "operation": self.operation,
            "error_id": self.error_id,
            "request_id": self.request_id,
            "required_scope": self.required_scope,
            "attempts": self.attempts,
            "outcome_unknown": self.outcome_unknown,
            "gave_up": self.gave_up,
        }
        fields.update(changes)
        status, code, summary = fields.pop("status"), fields.pop("code"), fields.pop("summary")
        return type(self)(status, code, summary, fields.pop("causes"), **fields)


def error_from_answer(
    status: int,
    reason: str | None,
    headers: Mapping[str, str],
    body: bytes,
    *,
    operation: str,
) -> OktaApiError:
    """Map a non-2xx answer to an ``OktaApiError`` (Okta error object, OAuth error, or bare)."""
    parsed: Any = None
    try:
        parsed = json.loads(body) if body else None
    except (UnicodeDecodeError, ValueError):
        parsed = None
    request_id = headers.get("X-Okta-Request-Id")
    required_scope = None
    challenge = headers.get("WWW-Authenticate", "")
    if "insufficient_scope" in challenge:
        match = _SCOPE.search(challenge)
        required_scope = match.group(1) if match else None
    if isinstance(parsed, dict) and isinstance(parsed.get("errorCode"), str):
        raw_causes = parsed.get("errorCauses")
        causes = [
            str(cause["errorSummary"])
            for cause in (raw_causes if isinstance(raw_causes, list) else [])
            if isinstance(cause, dict) and "errorSummary" in cause
        ]
        error_id = parsed.get("errorId")
        return OktaApiError(
            status,
            parsed["errorCode"],
            str(parsed.get("errorSummary") or ""),
            causes,
            operation=operation,
            error_id=error_id if isinstance(error_id, str) else None,
            request_id=request_id,
            required_scope=required_scope,
        )
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        description = parsed.get("error_description")
        return OktaApiError(
            status,
            parsed["error"],
            str(description) if description else parsed["error"],
            operation=operation,
            request_id=request_id,
        )
    # A proxy or load balancer answered (or Okta sent no body): keep the reason phrase only.
    return OktaApiError(
        status,
        f"http_{status}",
        reason or "no error object in the answer",
        operation=operation,
        request_id=request_id,
        required_scope=required_scope,
    )
