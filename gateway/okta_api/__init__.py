"""Okta Management API client for the migration commands (users, hooks), on aiohttp.

One module per concern:

* ``client``: ``OktaApiClient`` and its typed calls (users, inline hooks, event hooks, preflight);
* ``transport``: one request with auth, pacing, concurrency, timeouts, retries and error mapping;
* ``auth``: SSWS API tokens and OAuth 2.0 service apps (private_key_jwt, cached access token);
* ``pacing``: per-bucket spreading from ``X-Rate-Limit-*`` headers, on Okta's clock;
* ``retry``: ``Reset - Date + 1`` waits, jittered backoff, the per-client ``RetryBudget``;
* ``links``: ``Link`` header parsing, path templates and rate-limit bucket keys;
* ``errors``: ``OktaApiError`` with ``one_line()``; ``stats``: counters; ``clock``: injectable time;
* ``hooks``: request bodies for registering the password import and event hooks.

It imports nothing from the web layer or the configuration: callers pass plain values.
"""

from gateway.okta_api.auth import OAuthServiceApp, SswsToken, load_private_key
from gateway.okta_api.client import MAX_PAGE_SIZE, OktaApiClient, ScopeCheck, check_org_url
from gateway.okta_api.clock import SYSTEM_CLOCK, Clock, SystemClock
from gateway.okta_api.errors import (
    ALREADY_ACTIVE,
    DUPLICATE_LOGIN_CAUSE,
    INSUFFICIENT_SCOPE,
    INVALID_TOKEN,
    NOT_FOUND,
    RATE_LIMITED,
    VALIDATION_FAILED,
    OktaApiError,
)
from gateway.okta_api.hooks import (
    PASSWORD_IMPORT_HOOK_TYPE,
    event_hook_body,
    http_channel,
    oauth_channel,
    password_import_hook_body,
)
from gateway.okta_api.retry import RetryBudget
from gateway.okta_api.stats import OktaApiStats

__all__ = [
    "ALREADY_ACTIVE",
    "DUPLICATE_LOGIN_CAUSE",
    "INSUFFICIENT_SCOPE",
    "INVALID_TOKEN",
    "MAX_PAGE_SIZE",
    "NOT_FOUND",
    "PASSWORD_IMPORT_HOOK_TYPE",
    "RATE_LIMITED",
    "SYSTEM_CLOCK",
    "VALIDATION_FAILED",
    "Clock",
    "OAuthServiceApp",
    "OktaApiClient",
    "OktaApiError",
    "OktaApiStats",
    "RetryBudget",
    "ScopeCheck",
    "SswsToken",
    "SystemClock",
    "check_org_url",
    "event_hook_body",
    "http_channel",
    "load_private_key",
    "oauth_channel",
    "password_import_hook_body",
]
