"""Token endpoint: ``POST /{tenant}/oauth2/v2.0/token``, as Entra's v2.0 endpoint answers it.

Grants: ``password`` (ROPC, RFC 6749 §4.3) with the users file's behaviours;
``client_credentials`` (RFC 6749 §4.4; the scope must be ``<resource>/.default``, as in Entra);
SAML bearer assertions from the emulated AD FS (``saml2-bearer``, RFC 7522 §2.1, and Microsoft's
``saml1_1-bearer``). Client authentication: ``client_secret`` or a JWT ``client_assertion``
(RFC 7521 §4.2, RFC 7523 §2.2). After the global fault modes (faults.py), checks run in the
order Entra applies them: tenant (``common`` and ``consumers`` refuse every grant here:
AADSTS9001023), client, grant; for ROPC, account state (locked, disabled) before the password,
MFA, Conditional Access, expiry and ``aadsts_<code>`` only after it. Errors are AADSTS bodies
(aadsts.py); successes carry unsigned tokens (encoding.py).

Deliberate simplification: a JWT ``client_assertion`` is accepted when it decodes and its
``iss`` and ``sub`` equal the client id (its signature is NOT checked).

Counters: ``token_requests_by_user`` counts password grants naming a user on arrival, whatever
the outcome, plus SAML grants whose assertion verified; ``token_results`` records each answer
(``ok``, ``aadsts_<code>``, ``http_<status>``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from emulators.entra.aadsts import _GRAPH_RESOURCE
from emulators.entra.directory import EmulatedUser
from emulators.entra.encoding import _b64url, _b64url_decode, _unsigned_jwt
from emulators.entra.faults import _reflected_body
from emulators.entra.saml import SamlAssertions

GRANT_ROPC: Final = "password"
GRANT_CLIENT_CREDENTIALS: Final = "client_credentials"
GRANT_SAML1: Final = "urn:ietf:params:oauth:grant-type:saml1_1-bearer"
GRANT_SAML2: Final = "urn:ietf:params:oauth:grant-type:saml2-bearer"
CLIENT_ASSERTION_TYPE_JWT: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Entra aliases on which the token endpoint refuses these grants (AADSTS9001023).
_NO_ROPC_ALIASES: Final = frozenset({"common", "consumers"})


class TokenEndpoints(SamlAssertions):
    """The token handler and its grants."""

    def _user_tokens(self, user: EmulatedUser, scope: str) -> web.Response:
        """Build the delegated-token success body Entra v2 returns for ROPC/SAML grants."""
        tenant = self.directory.tenant_id
        oid = self.object_id(user)
        now = int(time.time())
        display_name = user.display_name or user.username.rpartition("@")[0]
        claims = {
            "aud": self.directory.client_id,
            "iss": f"{self.entra_base}/{tenant}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": display_name,
            "oid": oid,
            "preferred_username": user.username,
            "sub": _b64url(hashlib.sha256(f"{oid}:{self.directory.client_id}".encode()).digest()),
            "tid": tenant,
            "ver": "2.0",
        }
        requested = scope.split() or ["openid", "profile"]
        granted = [s for s in requested if s != "offline_access"]
        access_claims = {
            "aud": _GRAPH_RESOURCE,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3599,
            "oid": oid,
            "upn": user.username,
            "scp": " ".join(s for s in granted if s not in ("openid", "profile", "email")),
            "tid": tenant,
            "appid": self.directory.client_id,
        }
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(granted),
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": _unsigned_jwt(access_claims),
            "id_token": _unsigned_jwt(claims),
            "client_info": _b64url(json.dumps({"uid": oid, "utid": tenant}).encode()),
        }
        if "offline_access" in requested:
            body["refresh_token"] = "emulator-rt-" + secrets.token_hex(16)
        self.token_results["ok"] += 1
        return web.json_response(body, headers={"Cache-Control": "no-store, no-cache"})

    async def handle_token(self, request: web.Request) -> web.Response:
        """``POST /{tenant}/oauth2/v2.0/token``."""
        self.requests_by_kind["token"] += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        loop = asyncio.get_running_loop()
        # The answer leaves `latency_ms` after the request arrived, whatever the work took, so
        # a benchmark's directory latency is L itself, not L plus the emulator's own queueing.
        answer_at = loop.time() + self.latency_ms / 1000
        try:
            response = await self._token(request)
            delay = answer_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            return response
        finally:
            self.in_flight -= 1

    async def _token(self, request: web.Request) -> web.Response:
        """Token endpoint body: global latency/fault, tenant, client auth, then the grant."""
        try:
            raw_form = await request.post()
        except (ValueError, UnicodeError):
            return self.aad_error(90023)
        form = {key: value for key, value in raw_form.items() if isinstance(value, str)}
        grant = form.get("grant_type", "")
        self.token_requests_by_grant[grant or "<missing>"] += 1
        if grant == GRANT_ROPC and form.get("username"):
            self.token_requests_by_user[form["username"].lower()] += 1
        if self.fault.mode == "reflect_body":
            return self._counted(_reflected_body(await request.read()))
        if self.fault.mode != "none":
            return self._counted(await self.fault_response(self.fault.mode, self.fault.retry_after))
        tenant = request.match_info["tenant"]
        response = self._check_tenant_and_client(tenant, form)
        if response is not None:
            return self._counted(response)
        if not grant:
            return self._counted(self.aad_error(900144, name="grant_type"))
        if grant == GRANT_ROPC:
            return self._counted(await self._password_grant(form))
        if grant == GRANT_CLIENT_CREDENTIALS:
            return self._counted(self._client_credentials_grant(form))
        if grant in (GRANT_SAML1, GRANT_SAML2):
            return self._counted(await self._saml_grant(grant, form))
        return self._counted(self.aad_error(70003, grant_type=grant))

    def _counted(self, response: web.Response) -> web.Response:
        """Record the outcome of an error response in ``token_results``."""
        if response.status >= 400 and response.content_type == "application/json":
            body = json.loads(response.text or "{}")
            codes = body.get("error_codes") or []
            key = f"aadsts_{codes[0]}" if codes else f"http_{response.status}"
            self.token_results[key] += 1
        elif response.status >= 400:
            self.token_results[f"http_{response.status}"] += 1
        return response

    def _check_tenant_and_client(self, tenant: str, form: Mapping[str, str]) -> web.Response | None:
        """Tenant routing and client authentication, in the order Entra applies them."""
        if not self.directory.accepts_tenant(tenant):
            return self.aad_error(90002, tenant=tenant)
        if tenant.lower() in _NO_ROPC_ALIASES:
            return self.aad_error(9001023)
        client_id = form.get("client_id", "")
        if not client_id:
            return self.aad_error(900144, name="client_id")
        if client_id.lower() != self.directory.client_id:
            return self.aad_error(700016, client_id=client_id)
        secret = form.get("client_secret") or None
        assertion = form.get("client_assertion") or None
        if secret is None and assertion is None:
            return self.aad_error(7000218)
        if secret is not None:
            if not hmac.compare_digest(secret.encode(), self.directory.client_secret.encode()):
                return self.aad_error(7000215)
            return None
        assert assertion is not None
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE_JWT:
            return self.aad_error(7000219)
        return self._check_client_assertion(assertion)

    def _check_client_assertion(self, assertion: str) -> web.Response | None:
        """Accept a JWT whose iss and sub are the client id; the signature is NOT verified."""
        parts = assertion.split(".")
        try:
            if len(parts) != 3:
                raise ValueError("not a JWT")
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            if not isinstance(header, dict) or not isinstance(claims, dict):
                raise ValueError("not a JWT")
        except ValueError:
            return self.aad_error(50027)
        client_id = self.directory.client_id
        if str(claims.get("iss", "")).lower() != client_id or (
            str(claims.get("sub", "")).lower() != client_id
        ):
            return self.aad_error(700021)
        expiry = claims.get("exp")
        if isinstance(expiry, int | float) and expiry < time.time():
            return self.aad_error(700024)
        return None

    async def _apply_user_faults(self, user: EmulatedUser) -> web.Response | None:
        """Per-user latency, then the user's HTTP fault if any."""
        if user.latency_ms:
            await asyncio.sleep(user.latency_ms / 1000)
        if user.fault is not None:
            return await self.fault_response(user.fault, user.retry_after)
        return None

    async def _password_grant(self, form: Mapping[str, str]) -> web.Response:
        """ROPC: the behaviours of the users file."""
        username = form.get("username", "")
        password = form.get("password", "")
        if not username:
            return self.aad_error(900144, name="username")
        if not password:
            return self.aad_error(900144, name="password")
        user = self.directory.find(username)
        if user is None:
            return self.aad_error(50034)
        fault = await self._apply_user_faults(user)
        if fault is not None:
            return fault
        if self.directory.realm(user.domain) == "Federated":
            # Without password hash sync + AllowCloudPasswordValidation Entra cannot check it.
            return self.aad_error(50126)
        if user.code_before_password is not None:
            return self.aad_error(user.code_before_password)
        if not user.password_matches(password):
            return self.aad_error(50126)
        if user.code_after_password is not None:
            return self.aad_error(user.code_after_password)
        return self._user_tokens(user, form.get("scope", ""))

    def _client_credentials_grant(self, form: Mapping[str, str]) -> web.Response:
        """App-only token; scope must be ``<resource>/.default`` like in Entra."""
        scope = form.get("scope", "")
        if not scope:
            return self.aad_error(900144, name="scope")
        if not all(s.endswith("/.default") for s in scope.split()):
            return self.aad_error(1002012, scope=scope)
        now = int(time.time())
        claims = {
            "aud": scope.split()[0].removesuffix("/.default"),
            "iss": f"https://sts.windows.net/{self.directory.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.directory.app_token_lifetime_seconds,
            "appid": self.directory.client_id,
            "tid": self.directory.tenant_id,
            "roles": [],
        }
        self.token_results["ok"] += 1
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.directory.app_token_lifetime_seconds,
                "ext_expires_in": self.directory.app_token_lifetime_seconds,
                "access_token": _unsigned_jwt(claims),
            },
            headers={"Cache-Control": "no-store, no-cache"},
        )

    async def _saml_grant(self, grant: str, form: Mapping[str, str]) -> web.Response:
        """Exchange an assertion from the emulated AD FS for the named user's tokens."""
        encoded = form.get("assertion", "")
        if not encoded:
            return self.aad_error(900144, name="assertion")
        try:
            raw = _b64url_decode(encoded)
        except ValueError:
            return self.aad_error(50008)
        verified = self._verify_assertion(raw)
        if verified is None:
            return self.aad_error(50008)
        if (verified.version == "2.0") != (grant == GRANT_SAML2):
            return self.aad_error(50008)
        if verified.expired:
            return self.aad_error(50013)
        user = self.directory.find(verified.upn)
        if user is None:
            return self.aad_error(50034)
        self.token_requests_by_user[user.key] += 1
        fault = await self._apply_user_faults(user)
        if fault is not None:
            return fault
        code = user.code_before_password or user.code_after_password
        if code is not None:
            return self.aad_error(code)
        return self._user_tokens(user, form.get("scope", ""))
