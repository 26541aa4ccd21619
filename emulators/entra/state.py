"""What one emulator instance keeps: directory, settings, global fault and counters.

`EmulatorState` is the base of every endpoint family's handlers (discovery.py, realm.py,
token.py, saml.py, wstrust.py, control.py; graph.py's functions take it as an argument) and
carries the answers they share: AADSTS error bodies (aadsts.py), simulated faults (faults.py)
and users' stable object ids.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final, Literal

from aiohttp import web

from emulators.entra.aadsts import aad_error_response
from emulators.entra.directory import EmulatedDirectory, EmulatedUser
from emulators.entra.faults import FaultMode, _FaultSettings, simulated_fault

DEFAULT_ENTRA_BASE: Final = "https://login.emulator.invalid"
DEFAULT_ADFS_BASE: Final = "https://adfs.emulator.invalid"


class EmulatorState:
    """Settings, global fault and counters of one emulated Entra ID and AD FS.

    Counters (also in ``GET /_emulator/stats``; zeroed by ``reset_counters()``):

    * ``requests_by_kind``: ``discovery``, ``instance``, ``realm``, ``token``, ``adfs``,
      ``graph``, ``control``
    * ``token_requests_by_user``: lowercased username -> password grants naming it (counted on
      arrival, whatever the outcome) plus SAML grants whose assertion verified for that user
    * ``token_requests_by_grant``: ``grant_type`` -> count (``<missing>`` when absent)
    * ``token_results``: ``ok``, ``aadsts_<code>`` or ``http_<status>`` per answered token request
    * ``adfs_requests_by_user``: WS-Trust requests naming a known user
    * ``in_flight`` / ``peak_in_flight``: concurrent token requests
    """

    def __init__(
        self,
        directory: EmulatedDirectory,
        *,
        entra_base: str = DEFAULT_ENTRA_BASE,
        adfs_base: str = DEFAULT_ADFS_BASE,
        latency_ms: int = 0,
        wstrust_version: Literal["2005", "13"] = "2005",
        assertion_lifetime_s: int = 600,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.directory = directory
        self.entra_base = entra_base.rstrip("/")
        self.adfs_base = adfs_base.rstrip("/")
        self.latency_ms = latency_ms
        # "2005" makes AD FS issue SAML 1.1 (saml1_1-bearer, what real AD FS does for Entra);
        # "13" issues SAML 2.0 so msal's saml2-bearer path can be exercised too.
        self.wstrust_version = wstrust_version
        self.assertion_lifetime_s = assertion_lifetime_s
        self.fault = _FaultSettings()
        self._assertion_key = secrets.token_bytes(32)
        self.requests_by_kind: Counter[str] = Counter()
        self.token_requests_by_user: Counter[str] = Counter()
        self.token_requests_by_grant: Counter[str] = Counter()
        self.token_results: Counter[str] = Counter()
        self.adfs_requests_by_user: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0

    # -- control ----------------------------------------------------------------------------
    def reset_counters(self) -> None:
        """Zero every counter (the fault and latency settings stay)."""
        for counter in (
            self.requests_by_kind,
            self.token_requests_by_user,
            self.token_requests_by_grant,
            self.token_results,
            self.adfs_requests_by_user,
        ):
            counter.clear()
        self.peak_in_flight = self.in_flight

    def set_fault(
        self, mode: FaultMode, retry_after: int = 5, latency_ms: int | None = None
    ) -> None:
        """Switch the global outage simulation; ``latency_ms=None`` keeps the current latency."""
        self.fault = _FaultSettings(mode=mode, retry_after=retry_after)
        if latency_ms is not None:
            self.latency_ms = latency_ms

    def set_behaviour(self, username: str, behaviour: str) -> None:
        """Change one existing user's behaviour at run time (e.g. lock an account mid-test)."""
        user = self.directory.find(username)
        if user is None:
            raise KeyError(username)
        self.directory.put_user(
            EmulatedUser.model_validate({**user.model_dump(), "behaviour": behaviour})
        )

    def stats(self) -> dict[str, Any]:
        """Counters and settings as JSON-ready data."""
        return {
            "requests_by_kind": dict(self.requests_by_kind),
            "token_requests_by_user": dict(self.token_requests_by_user),
            "token_requests_by_grant": dict(self.token_requests_by_grant),
            "token_results": dict(self.token_results),
            "adfs_requests_by_user": dict(self.adfs_requests_by_user),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "fault": {"mode": self.fault.mode, "retry_after": self.fault.retry_after},
            "latency_ms": self.latency_ms,
            "tenant_id": self.directory.tenant_id,
            "client_id": self.directory.client_id,
            "users": len(self.directory.users),
        }

    # -- answers every endpoint family gives ------------------------------------------------
    def aad_error(
        self,
        code: int,
        *,
        headers: Mapping[str, str] | None = None,
        **params: str,
    ) -> web.Response:
        """Build an error response shaped exactly like Entra's for this tenant (aadsts.py)."""
        return aad_error_response(self.directory, code, headers=headers, **params)

    async def fault_response(self, mode: str, retry_after: int) -> web.Response:
        """Simulate throttling, a server error, a proxy's HTML page or a hung connection."""
        return await simulated_fault(self.directory, mode, retry_after)

    def object_id(self, user: EmulatedUser) -> str:
        """Return the user's stable object id."""
        if user.object_id is not None:
            return str(user.object_id)
        return str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"entra-emulator:{self.directory.tenant_id}:{user.key}")
        )
