"""Discovery endpoints: tenant metadata (OpenID configuration) and msal's instance discovery.

* ``GET /{tenant}/v2.0/.well-known/openid-configuration``: OpenID Connect Discovery 1.0 §4
  (the metadata fields of §3), plus the fields real Entra adds (``cloud_instance_name``,
  ``msgraph_host``, ``tenant_region_scope``, ...). A domain-name tenant gets GUID-based
  endpoints, an alias keeps its own, and an unknown tenant gets AADSTS90002, as in Entra.
* ``GET /common/discovery/instance``: the instance-discovery document msal fetches to validate
  an authority (``tenant_discovery_endpoint`` and the host's ``aliases``); any host is accepted.

Both advertise the emulator's fake https base (``entra_base``) in the URLs they return.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from emulators.entra.directory import _TENANT_ALIASES
from emulators.entra.state import EmulatorState

_CLAIMS_SUPPORTED: Final = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "nonce",
    "preferred_username",
    "name",
    "tid",
    "ver",
    "at_hash",
    "c_hash",
    "email",
)


class DiscoveryEndpoints(EmulatorState):
    """Tenant discovery and instance discovery handlers."""

    async def handle_openid_configuration(self, request: web.Request) -> web.Response:
        """``GET /{tenant}/v2.0/.well-known/openid-configuration``."""
        self.requests_by_kind["discovery"] += 1
        tenant = request.match_info["tenant"]
        if not self.directory.accepts_tenant(tenant):
            return self.aad_error(90002, tenant=tenant)
        # Entra answers a domain-name request with GUID-based endpoints; aliases keep theirs.
        alias = tenant.lower() in _TENANT_ALIASES
        segment = tenant.lower() if alias else self.directory.tenant_id
        issuer_tenant = "{tenantid}" if alias else self.directory.tenant_id
        base = f"{self.entra_base}/{segment}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self.entra_base}/{issuer_tenant}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": list(_CLAIMS_SUPPORTED),
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    async def handle_instance_discovery(self, request: web.Request) -> web.Response:
        """``GET /common/discovery/instance`` (any authority host is accepted)."""
        self.requests_by_kind["instance"] += 1
        authorize = request.query.get("authorization_endpoint", "")
        parts = urlsplit(authorize)
        segments = [s for s in parts.path.split("/") if s]
        if not parts.hostname or not segments:
            return web.json_response(
                {
                    "error": "invalid_instance",
                    "error_description": "AADSTS50049: Unknown or invalid instance.",
                },
                status=400,
            )
        tenant = segments[0]
        host = urlsplit(self.entra_base).hostname or parts.hostname
        return web.json_response(
            {
                "tenant_discovery_endpoint": (
                    f"{self.entra_base}/{tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {
                        "preferred_network": host,
                        "preferred_cache": host,
                        "aliases": sorted({host, parts.hostname}),
                    }
                ],
            }
        )
