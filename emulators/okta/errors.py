"""Okta's error object (errorCode, errorSummary, errorLink, errorId, errorCauses) and its catalogue.

Codes and summaries follow the management OpenAPI spec's ``Error*`` examples (E0000001, E0000006,
E0000007, E0000009, E0000011, E0000028, E0000047, E0000093) and what Okta is known to answer where
the spec has no example (E0000003, E0000016, E0000022, E0000031, the duplicate-login cause, and
E0000038, quoted by Okta Support for an operation refused in the user's current status). Only
``errorCode`` is stable for program logic (reference/okta-hooks.md §2.6); clients should not parse
the summaries, but the emulator keeps them as close to Okta's as is known so logs look familiar.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

__all__ = [
    "DUPLICATE_LOGIN_CAUSE",
    "OktaApiError",
    "already_active",
    "bad_json",
    "error_body",
    "error_id",
    "forbidden",
    "internal_error",
    "invalid_search",
    "invalid_token",
    "method_not_allowed",
    "missing_parameter",
    "not_found",
    "rate_limited",
    "validation_failed",
    "wrong_status",
]

DUPLICATE_LOGIN_CAUSE = (
    "login: An object with this field already exists in the current organization"
)
_ID_ALPHABET = string.ascii_letters + string.digits + "-_"


def error_id() -> str:
    """A fresh ``errorId`` shaped like Okta's (``oae`` and 22 URL-safe characters)."""
    return "oae" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def error_body(
    code: str, summary: str, causes: Sequence[str] = (), *, link: str | None = None
) -> dict[str, Any]:
    """The JSON error object exactly as Okta shapes it (causes carry only ``errorSummary``)."""
    return {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": link or code,
        "errorId": error_id(),
        "errorCauses": [{"errorSummary": cause} for cause in causes],
    }


class OktaApiError(Exception):
    """Raised by a handler; the error middleware turns it into Okta's JSON error response."""

    def __init__(
        self,
        status: int,
        code: str,
        summary: str,
        causes: Sequence[str] = (),
        *,
        link: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {summary}")
        self.status = status
        self.code = code
        self.summary = summary
        self.causes = tuple(causes)
        self.link = link
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """Render the error as the HTTP response Okta would send."""
        return web.json_response(
            error_body(self.code, self.summary, self.causes, link=self.link),
            status=self.status,
            headers=self.headers,
        )


def validation_failed(field: str, *causes: str) -> OktaApiError:
    """400 E0000001: Okta names the first offending field in the summary, every problem in causes."""
    return OktaApiError(400, "E0000001", f"Api validation failed: {field}", causes)


def bad_json() -> OktaApiError:
    """400 E0000003: the body is not JSON (or not the JSON object the endpoint takes)."""
    return OktaApiError(400, "E0000003", "The request body was not well-formed.")


def not_found(resource_id: str, kind: str) -> OktaApiError:
    """404 E0000007 with Okta's ``Resource not found: <id> (<Type>)`` summary."""
    return OktaApiError(404, "E0000007", f"Not found: Resource not found: {resource_id} ({kind})")


def invalid_token() -> OktaApiError:
    """401 E0000011: no, unknown or expired API token / access token."""
    return OktaApiError(
        401,
        "E0000011",
        "Invalid token provided",
        headers={"WWW-Authenticate": 'Bearer realm="IdentityProvider", error="invalid_token"'},
    )


def forbidden(scope: str | None = None, resource: str | None = None) -> OktaApiError:
    """403 E0000006; for an OAuth token missing a scope Okta also names it in WWW-Authenticate."""
    headers: dict[str, str] = {}
    if scope is not None:
        headers["WWW-Authenticate"] = (
            f'Bearer realm="IdentityProvider", scope="{scope}", error="insufficient_scope", '
            'error_description="The access token provided does not contain the required '
            f'scopes.", resource="{resource or ""}"'
        )
    return OktaApiError(
        403,
        "E0000006",
        "You do not have permission to perform the requested action",
        headers=headers,
    )


def already_active() -> OktaApiError:
    """403 E0000016: activate called on a user that is not STAGED or DEPROVISIONED."""
    return OktaApiError(403, "E0000016", "Activation failed because the user is already active")


def wrong_status() -> OktaApiError:
    """403 E0000038: the lifecycle operation is not allowed in the user's current status."""
    return OktaApiError(
        403, "E0000038", "This operation is not allowed in the user's current status."
    )


def missing_parameter(name: str) -> OktaApiError:
    """400 E0000028: a required query parameter (e.g. ``sendEmail`` of reset_password) is missing."""
    return OktaApiError(
        400, "E0000028", "The request is missing a required parameter.", (f"{name}: required",)
    )


def method_not_allowed() -> OktaApiError:
    """405 E0000022."""
    return OktaApiError(405, "E0000022", "The endpoint does not support the provided HTTP method")


def invalid_search(cause: str) -> OktaApiError:
    """400 E0000031: a ``search`` or ``filter`` expression Okta would not accept."""
    return OktaApiError(400, "E0000031", "Invalid search criteria.", (cause,))


def rate_limited(headers: Mapping[str, str]) -> OktaApiError:
    """429 E0000047, with the ``X-Rate-Limit-*`` headers of the exhausted bucket."""
    return OktaApiError(
        429,
        "E0000047",
        "API call exceeded rate limit due to too many requests.",
        headers=headers,
    )


def internal_error() -> OktaApiError:
    """500 E0000009 (the spec's example really links E0000000)."""
    return OktaApiError(500, "E0000009", "Internal Server Error", link="E0000000")
