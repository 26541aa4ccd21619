"""Okta Management API emulator over plain HTTP on loopback, for the migration commands' tests.

One module per endpoint family:

* ``users``: ``/api/v1/users`` create (``activate``, ``credentials.password.hook``, ``groupIds``),
  list (``limit``, ``after``, ``search``, ``filter``, ``q``; ``Link`` self/next), get by id or login,
  partial update (POST), replace (PUT), delete;
* ``lifecycle``: ``/api/v1/users/{id}/lifecycle/activate|deactivate|reset_password|expire_password``
  (``sendEmail``; emails counted);
* ``system_log`` / ``logs``: the events the org publishes (LogEvent) and ``GET /api/v1/logs``
  (``since``, ``until``, ``filter``, ``q``, ``limit``, ``sortOrder``, ``after``; Link paging);
* ``delivery`` / ``event_control``: event hook deliveries as Okta makes them (batches, 3 s, one
  retry) and ``/_emulator/events/*`` (flush, pause, resume, settings, drop, deliveries),
  ``/_emulator/apps/{appId}/users/{userId}`` (app assignment);
* ``groups``: ``/api/v1/groups`` create/list/get/members, ``/api/v1/users/{id}/groups``;
* ``inline_hooks`` / ``event_hooks``: hook management, event hook verification (the real GET);
* ``oauth``: ``SSWS`` tokens and ``/oauth2/v1/token`` (private_key_jwt, signature verified);
* ``auth_servers``: custom authorization servers ``/oauth2/{id}`` (metadata, keys, client
  credentials tokens as RS256 JWTs) for OAuth 2.0 inline hook channels;
* ``gate``: per-bucket rate limits (``X-Rate-Limit-*``, 429 E0000047), concurrency limit, faults;
* ``control`` / ``signin``: ``/_emulator/`` stats, reset, fault, limits, simulated sign-in;
* ``state``: ``OktaEmulator``, the org, with its rules by family in ``org_users``, ``org_groups``,
  ``org_lifecycle``, ``org_events`` and ``org_traffic``; ``tokens``: its tokens and signing keys;
* ``models`` / ``directory`` / ``search`` / ``errors``: records, the org file, search, errors;
* ``app``: ``create_app``, ``start_okta_emulator``, ``serve`` (``python -m emulators.okta``).

Error objects, statuses and JSON shapes follow Okta's management OpenAPI spec (2026.06.3) and
reference/okta-hooks.md §1-3; where Okta documents no wording, the module says so.
"""

from emulators.okta.app import RunningOktaEmulator, create_app, serve, start_okta_emulator
from emulators.okta.delivery import DeliveryRecord
from emulators.okta.directory import (
    DEFAULT_API_TOKEN,
    DEFAULT_HOOK_AUDIENCE,
    DEFAULT_HOOK_AUTH_SERVER,
    DEFAULT_HOOK_AUTH_SERVER_ID,
    DEFAULT_HOOK_CLIENT_ID,
    DEFAULT_HOOK_CLIENT_SECRET,
    DEFAULT_HOOK_SCOPE,
    DEFAULT_OAUTH_CLIENT_ID,
    OktaOrg,
    OrgFileError,
    SeedAuthorizationServer,
    SeedAuthServerClient,
    SeedGroup,
    SeedOAuthClient,
    SeedUser,
    load_org,
)
from emulators.okta.limits import BUCKETS, DEFAULT_LIMITS, FaultMode
from emulators.okta.models import Credential, Status, UserRecord
from emulators.okta.state import OktaEmulator

__all__ = [
    "BUCKETS",
    "DEFAULT_API_TOKEN",
    "DEFAULT_HOOK_AUDIENCE",
    "DEFAULT_HOOK_AUTH_SERVER",
    "DEFAULT_HOOK_AUTH_SERVER_ID",
    "DEFAULT_HOOK_CLIENT_ID",
    "DEFAULT_HOOK_CLIENT_SECRET",
    "DEFAULT_HOOK_SCOPE",
    "DEFAULT_LIMITS",
    "DEFAULT_OAUTH_CLIENT_ID",
    "Credential",
    "DeliveryRecord",
    "FaultMode",
    "OktaEmulator",
    "OktaOrg",
    "OrgFileError",
    "RunningOktaEmulator",
    "SeedAuthServerClient",
    "SeedAuthorizationServer",
    "SeedGroup",
    "SeedOAuthClient",
    "SeedUser",
    "Status",
    "UserRecord",
    "create_app",
    "load_org",
    "serve",
    "start_okta_emulator",
]
