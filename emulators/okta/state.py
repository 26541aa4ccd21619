"""The emulated Okta org: ``OktaEmulator`` seeds, resets and counts; its bases hold the rules.

Handlers (one module per endpoint family) parse requests and call into ``OktaEmulator``. The rules
live by family in its bases, free of HTTP: ``org_users`` (profiles, creation order, apps),
``org_groups``, ``org_lifecycle`` (statuses, emails, the first sign-in), ``org_events`` (System
Log, event hook queue) and ``org_traffic`` (faults, limits); tokens and keys are in ``tokens``.
Seeding from the org file publishes nothing: it is the org's past.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from emulators.okta import errors
from emulators.okta.delivery import EventDelivery
from emulators.okta.directory import OktaOrg, OrgFileError, SeedOAuthClient
from emulators.okta.limits import FaultPlan, RateLimiter
from emulators.okta.models import Credential, Status
from emulators.okta.org_events import event_generator
from emulators.okta.org_traffic import OrgTraffic
from emulators.okta.org_users import OrgUsers
from emulators.okta.system_log import SystemLog
from emulators.okta.tokens import AccessToken, AuthorizationServer, HookToken

__all__ = ["EMULATOR_KEY", "AccessToken", "HookToken", "OktaEmulator"]


class OktaEmulator(OrgUsers, OrgTraffic):
    """All state of one emulated org, its counters and its rate limiter."""

    def __init__(
        self,
        org: OktaOrg,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.org = org
        self.clock = clock
        self.seed = seed
        self.org_url = "http://127.0.0.1"  # set to the listening URL by start_okta_emulator
        # Event uuids: reproducible with a seed; random by default, so two runs of a demo
        # against one persistent consumer never share uuids (it dedupes on them).
        self._rng = event_generator(seed)
        self.system_log = SystemLog()
        self.delivery = EventDelivery(self)
        self.limiter = RateLimiter(org.rate_limits, clock=clock)
        self.concurrency_limit = org.concurrency_limit
        self.fault = FaultPlan()
        self.latency_ms = 0
        self.hook_timeout = 3.0  # Okta's limit for inline hook calls and event hook verification
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests_by_endpoint: Counter[str] = Counter()
        self.responses_by_status: Counter[int] = Counter()
        self.rate_limited_by_bucket: Counter[str] = Counter()
        self.concurrency_rejections = 0
        self.faults_injected: Counter[str] = Counter()
        self.events = Counter()  # users_created, users_activated, ...
        self.activation_emails = Counter()  # login -> emails that would be sent
        self.deactivation_emails = Counter()
        self.password_reset_emails = Counter()
        self.profile_updates = []  # {"id", "method", "attributes"}
        self._load(org)

    def _load(self, org: OktaOrg) -> None:
        """(Re)build every store from the org file."""
        self.users = {}
        self._by_login = {}
        self._seq_of = {}  # kept after deletion so an ``after`` cursor still works
        self._order = []
        self._by_seq = {}
        self._next_seq = 0
        self.groups = {}
        self.inline_hooks: dict[str, dict[str, Any]] = {}
        self.event_hooks: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.used_assertion_ids: dict[str, float] = {}
        self.api_tokens = frozenset(org.api_tokens)
        self.app_users = {}  # app id -> {user id: app label}
        self.oauth_clients: dict[str, SeedOAuthClient] = {c.client_id: c for c in org.oauth_clients}
        self.authorization_servers: dict[str, AuthorizationServer] = {
            server.id: AuthorizationServer(server) for server in org.authorization_servers
        }
        self.hook_tokens: dict[str, HookToken] = {}  # inline hook id -> its cached access token
        self.custom_attributes = frozenset(org.custom_attributes)
        for seed_group in org.groups:
            self.add_group(seed_group.name, seed_group.description, group_id=seed_group.id)
        names = {group.name: group.id for group in self.groups.values()}
        for index, seed in enumerate(org.users):
            group_ids = [names.get(ref, ref) for ref in seed.groups]
            try:
                self._check_groups(group_ids)
                self.validate_profile(seed.profile)
            except errors.OktaApiError as err:
                raise OrgFileError(
                    f"users[{index}]: {'; '.join(err.causes) or err.summary}"
                ) from None
            user = self._insert(seed.profile, Credential(seed.credential), seed.id)
            self.add_memberships(user, group_ids)
            if seed.status != "STAGED":
                self._set_status(user, Status(seed.status))

    def reset_counters(self) -> None:
        """Zero every counter and rate-limit window (users, hooks and settings stay)."""
        for counter in (
            self.requests_by_endpoint,
            self.responses_by_status,
            self.rate_limited_by_bucket,
            self.faults_injected,
            self.events,
            self.activation_emails,
            self.deactivation_emails,
            self.password_reset_emails,
        ):
            counter.clear()
        self.delivery.reset_counters()
        self.profile_updates.clear()
        self.concurrency_rejections = 0
        self.peak_in_flight = self.in_flight
        self.limiter.reset()

    def reset_all(self) -> None:
        """Back to the org file: counters zeroed; users, groups, hooks, tokens as seeded."""
        self.reset_counters()
        self.fault = FaultPlan()
        self.latency_ms = 0
        self.delivery.discard_pending()
        self.system_log.clear()
        self._load(self.org)

    def rotate_authorization_server_key(self, server_id: str) -> str:
        """A new signing key and ``kid`` for the server (the old key is dropped); the new kid.

        Cached hook tokens are forgotten, so the next hook call carries a token signed with the
        new key. KeyError for an unknown server id.
        """
        kid = self.authorization_servers[server_id].rotate_key()
        self.hook_tokens.clear()
        return kid

    def stats(self) -> dict[str, Any]:
        """Counters, settings and a census of users, as JSON-ready data."""
        by_status = Counter(user.status.value for user in self.users.values())
        by_provider = Counter(user.provider for user in self.users.values())
        return {
            "requests_by_endpoint": dict(self.requests_by_endpoint),
            "requests_total": sum(self.requests_by_endpoint.values()),
            "responses_by_status": {str(k): v for k, v in sorted(self.responses_by_status.items())},
            "rate_limited_by_bucket": dict(self.rate_limited_by_bucket),
            "rate_limited_total": sum(self.rate_limited_by_bucket.values()),
            "http_429_total": self.responses_by_status[429],  # buckets, concurrency and faults
            "concurrency_rejections": self.concurrency_rejections,
            "faults_injected": dict(self.faults_injected),
            "events": dict(self.events),
            "activation_emails": dict(self.activation_emails),
            "activation_emails_total": sum(self.activation_emails.values()),
            "deactivation_emails_total": sum(self.deactivation_emails.values()),
            "password_reset_emails": dict(self.password_reset_emails),
            "password_reset_emails_total": sum(self.password_reset_emails.values()),
            "emails_total": sum(self.activation_emails.values())
            + sum(self.deactivation_emails.values())
            + sum(self.password_reset_emails.values()),
            "system_log_events": len(self.system_log),
            "event_delivery": self.delivery.totals(),
            "app_assignments": sum(len(users) for users in self.app_users.values()),
            "profile_updates": len(self.profile_updates),
            "users": len(self.users),
            "users_by_status": dict(by_status),
            "users_by_provider": dict(by_provider),
            "groups": len(self.groups),
            "inline_hooks": len(self.inline_hooks),
            "event_hooks": len(self.event_hooks),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "rate_limits": dict(self.limiter.limits),
            "concurrency_limit": self.concurrency_limit,
            "fault": self.fault.to_json(),
            "latency_ms": self.latency_ms,
        }


EMULATOR_KEY: Final = web.AppKey("okta_emulator", OktaEmulator)
