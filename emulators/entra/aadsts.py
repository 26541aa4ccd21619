"""The AADSTS catalogue and the error bodies built from it, shaped exactly like Entra's.

Codes, OAuth ``error`` classes, HTTP statuses, texts and suberrors follow Microsoft's public
AADSTS reference ("Microsoft Entra authentication and authorization error codes") and observed
responses. The body is RFC 6749 §5.2 (``error``, ``error_description``, ``error_uri``) plus
Entra's fields: ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``, ``suberror``.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from emulators.entra.directory import EmulatedDirectory
from emulators.entra.encoding import _now

# Microsoft Graph's application id: the `$resource` in MFA texts, the audience of user tokens.
_GRAPH_RESOURCE: Final = "00000003-0000-0000-c000-000000000000"


@dataclass(frozen=True, slots=True)
class _AadCode:
    """How real Entra reports one AADSTS code: OAuth error class, HTTP status, text, suberror."""

    error: str
    status: int
    message: str
    suberror: str | None = None


_MFA_TEXT: Final = (
    "Due to a configuration change made by your administrator, or because you moved to a new "
    "location, you must "
)

# Texts follow Microsoft's public AADSTS reference / observed responses; `$name` placeholders
# are filled per request. Codes not listed get a generic invalid_grant.
_AAD_CODES: Final[dict[int, _AadCode]] = {
    50000: _AadCode(
        "server_error",
        500,
        "There was an error issuing a token or an issue with our sign-in service.",
    ),
    50008: _AadCode(
        "invalid_grant", 400, "SAML assertion is missing or misconfigured in the token."
    ),
    50013: _AadCode("invalid_grant", 400, "Assertion failed signature validation or has expired."),
    50027: _AadCode("invalid_request", 400, "JWT token is invalid or malformed."),
    50034: _AadCode(
        "invalid_grant",
        400,
        "The user account {EmailHidden} does not exist in the $tenant directory. To sign into "
        "this application, the account must be added to the directory.",
    ),
    50053: _AadCode(
        "invalid_grant",
        400,
        "The account is locked, you've tried to sign in too many times with an incorrect user ID "
        "or password.",
    ),
    50055: _AadCode("invalid_grant", 400, "The password is expired.", "user_password_expired"),
    50056: _AadCode(
        "invalid_grant",
        400,
        "Invalid or null password: password doesn't exist in the directory for this user.",
    ),
    50057: _AadCode("invalid_grant", 400, "The user account is disabled."),
    50059: _AadCode(
        "invalid_request",
        400,
        "No tenant-identifying information found in either the request or implied by any "
        "provided credentials.",
    ),
    50072: _AadCode(
        "interaction_required",
        400,
        _MFA_TEXT + "enroll in multi-factor authentication to access '$resource'.",
    ),
    50074: _AadCode("interaction_required", 400, "Strong Authentication is required."),
    50076: _AadCode(
        "interaction_required",
        400,
        _MFA_TEXT + "use multi-factor authentication to access '$resource'.",
        "basic_action",
    ),
    50079: _AadCode(
        "interaction_required",
        400,
        _MFA_TEXT + "enroll in multi-factor authentication to access '$resource'.",
    ),
    50105: _AadCode(
        "invalid_grant",
        400,
        "Your administrator has configured the application ('$client_id') to block users unless "
        "they are specifically granted ('assigned') access to the application.",
    ),
    50125: _AadCode(
        "interaction_required",
        400,
        "Sign-in was interrupted because of a password reset or password registration entry.",
    ),
    50126: _AadCode(
        "invalid_grant", 400, "Error validating credentials due to invalid username or password."
    ),
    50128: _AadCode(
        "invalid_request",
        400,
        "Invalid domain name - No tenant-identifying information found in either the request or "
        "implied by any provided credentials.",
    ),
    50135: _AadCode("invalid_grant", 400, "Password change is required due to account risk."),
    50144: _AadCode("invalid_grant", 400, "User's Active Directory password has expired."),
    50158: _AadCode(
        "interaction_required",
        400,
        "External security challenge not satisfied. User will be redirected to another page or "
        "authentication provider to satisfy additional authentication challenges.",
    ),
    50196: _AadCode(
        "temporarily_unavailable",
        400,
        "The server terminated an operation because it encountered a client request loop. "
        "Please contact your app vendor.",
    ),
    53003: _AadCode(
        "interaction_required",
        400,
        "Access has been blocked by Conditional Access policies. The access policy does not "
        "allow token issuance.",
    ),
    53011: _AadCode("invalid_grant", 400, "User blocked due to risk on home tenant."),
    65001: _AadCode(
        "invalid_grant",
        400,
        "The user or administrator has not consented to use the application with ID "
        "'$client_id'. Send an interactive authorization request for this user and resource.",
        "consent_required",
    ),
    70003: _AadCode(
        "unsupported_grant_type", 400, "The app requested an unsupported grant type '$grant_type'."
    ),
    80001: _AadCode(
        "invalid_grant", 400, "The Authentication Agent is unable to connect to Active Directory."
    ),
    90002: _AadCode(
        "invalid_request",
        400,
        "Tenant '$tenant' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    ),
    90023: _AadCode("invalid_request", 400, "The request body could not be parsed."),
    90055: _AadCode(
        "temporarily_unavailable",
        429,
        "The request was throttled because there were too many incoming requests. Try again later.",
    ),
    500121: _AadCode(
        "invalid_grant", 400, "Authentication failed during strong authentication request."
    ),
    530035: _AadCode(
        "invalid_grant",
        400,
        "Access has been blocked by security defaults. This is due to the request using legacy "
        "auth or being deemed unsafe by security defaults policies.",
    ),
    700016: _AadCode(
        "unauthorized_client",
        400,
        "Application with identifier '$client_id' was not found in the directory '$tenant'. This "
        "can happen if the application has not been installed by the administrator of the tenant "
        "or consented to by any user in the tenant. You may have sent your authentication request "
        "to the wrong tenant.",
    ),
    700021: _AadCode(
        "invalid_client",
        401,
        "Client assertion application identifier doesn't match 'client_id' parameter.",
    ),
    700024: _AadCode("invalid_client", 401, "Client assertion is not within its valid time range."),
    900144: _AadCode(
        "invalid_request", 400, "The request body must contain the following parameter: '$name'."
    ),
    1002012: _AadCode(
        "invalid_scope",
        400,
        "The provided value for scope $scope is not valid. Client credential flows must have a "
        "scope value with /.default suffixed to the resource identifier (application ID URI).",
    ),
    7000215: _AadCode(
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '$client_id'.",
    ),
    7000218: _AadCode(
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    7000219: _AadCode(
        "invalid_client",
        401,
        "'client_assertion_type' is required when 'client_assertion' is sent.",
    ),
    7000222: _AadCode(
        "invalid_client", 401, "The provided client secret keys for app '$client_id' are expired."
    ),
    9001023: _AadCode(
        "invalid_request",
        400,
        "The grant type isn't supported over the /common or /consumers endpoints. Please use the "
        "/organizations or tenant-specific endpoint.",
    ),
}
_GENERIC_CODE: Final = _AadCode("invalid_grant", 400, "Emulated error (code $code).")


def aad_error_response(
    directory: EmulatedDirectory,
    code: int,
    /,
    *,
    headers: Mapping[str, str] | None = None,
    **params: str,
) -> web.Response:
    """Build an error response shaped exactly like Entra's (description, ids, timestamp, uri)."""
    spec = _AAD_CODES.get(code, _GENERIC_CODE)
    values = {
        "tenant": directory.tenant_id,
        "client_id": directory.client_id,
        "resource": _GRAPH_RESOURCE,
        "code": str(code),
        **params,
    }
    message = string.Template(spec.message).safe_substitute(values)
    timestamp = _now().strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    body: dict[str, Any] = {
        "error": spec.error,
        "error_description": (
            f"AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if spec.suberror:
        body["suberror"] = spec.suberror
    all_headers = {"x-ms-request-id": trace_id, "Cache-Control": "no-store, no-cache"}
    all_headers.update(headers or {})
    return web.json_response(body, status=spec.status, headers=all_headers)
