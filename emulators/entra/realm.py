"""User realm: ``GET /common/userrealm/{username}?api-version=1.0`` (Managed/Federated/Unknown).

msal asks it before a password grant whether the domain is federated; the answer carries the
fields msal reads (``account_type``, ``domain_name``, ``federation_protocol``,
``federation_active_auth_url``, ``cloud_instance_name``, ``cloud_audience_urn``) in the shape
real Entra returns. A federated domain points msal at the emulated AD FS (wstrust.py) with no
``federation_metadata_url``, so msal posts straight to the WS-Trust endpoint without fetching a
MEX document.

The global fault modes apply here except ``reflect_body`` (faults.py).
"""

from __future__ import annotations

from aiohttp import web

from emulators.entra.state import EmulatorState


class RealmEndpoints(EmulatorState):
    """The user-realm handler."""

    async def handle_user_realm(self, request: web.Request) -> web.Response:
        """``GET /common/userrealm/{username}?api-version=1.0``."""
        self.requests_by_kind["realm"] += 1
        if self.fault.mode not in ("none", "reflect_body"):
            return await self.fault_response(self.fault.mode, self.fault.retry_after)
        username = request.match_info["username"]
        domain = username.rpartition("@")[2].lower()
        realm = self.directory.realm(domain) if "@" in username else "Unknown"
        common = {"cloud_instance_name": "microsoftonline.com"}
        if realm == "Managed":
            return web.json_response(
                {
                    "ver": "1.0",
                    "account_type": "Managed",
                    "domain_name": domain,
                    **common,
                    "cloud_audience_urn": "urn:federation:MicrosoftOnline",
                }
            )
        if realm == "Federated":
            # No federation_metadata_url: msal then posts straight to federation_active_auth_url.
            return web.json_response(
                {
                    "ver": "1.0",
                    "account_type": "Federated",
                    "domain_name": domain,
                    "federation_protocol": "WSTrust",
                    "federation_active_auth_url": (
                        f"{self.adfs_base}/adfs/services/trust/{self.wstrust_version}/usernamemixed"
                    ),
                    "federation_global_version": -1,
                    **common,
                    "cloud_audience_urn": "urn:federation:MicrosoftOnline",
                }
            )
        return web.json_response({"ver": "1.0", "account_type": "Unknown", **common})
