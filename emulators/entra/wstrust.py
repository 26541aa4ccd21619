"""Emulated AD FS: ``POST /adfs/services/trust/{2005,13}/usernamemixed`` (WS-Trust).

The request is a SOAP 1.2 RequestSecurityToken carrying a WS-Security UsernameToken (Username
Token Profile 1.0, ``wsse:Username`` / ``wsse:Password``); the answer is a
RequestSecurityTokenResponse in the WS-Trust February 2005 flavour (``/2005/``: SAML V1.1) or a
RequestSecurityTokenResponseCollection in the WS-Trust 1.3 flavour (``/13/``: SAML V2.0), the
assertion from saml.py. Failures are SOAP 1.2 faults (SOAP 1.2 Part 1 §5.4) with AD FS's
subcodes and texts, sent as AD FS sends them: HTTP 500, even for a wrong password.

Only users of federated domains sign in here. There is no MEX endpoint: the realm answer names
the username-mixed endpoint directly (realm.py). Of the global fault modes only ``reflect_body``
applies here, with the global latency (faults.py).
"""

from __future__ import annotations

import asyncio
from typing import Literal
from xml.sax.saxutils import escape

from aiohttp import web

from emulators.entra.directory import EmulatedUser
from emulators.entra.faults import _reflected_body
from emulators.entra.saml import _NS, SamlAssertions, _parse_xml


def _soap_fault(subcode: str, reason: str) -> web.Response:
    """AD FS-style SOAP 1.2 fault; AD FS answers even a wrong password with HTTP 500."""
    body = (
        f"<s:Envelope xmlns:s='{_NS['s']}'><s:Body><s:Fault>"
        "<s:Code><s:Value>s:Sender</s:Value><s:Subcode>"
        f"<s:Value xmlns:a='{_NS['wst13']}'>a:{subcode}</s:Value>"
        "</s:Subcode></s:Code>"
        f"<s:Reason><s:Text xml:lang='en-US'>{escape(reason)}</s:Text></s:Reason>"
        "</s:Fault></s:Body></s:Envelope>"
    )
    return web.Response(status=500, text=body, content_type="application/soap+xml")


def _wrong_credentials_fault() -> web.Response:
    """Build the fault AD FS returns for an unknown user or a wrong password."""
    return _soap_fault(
        "FailedAuthentication",
        "ID3242: The security token could not be authenticated or authorized.",
    )


def _malformed_request_fault() -> web.Response:
    """Build the fault for a request that is not a usable WS-Trust RST."""
    return _soap_fault("InvalidRequest", "ID3035: The request was not valid or is malformed.")


class AdfsEndpoints(SamlAssertions):
    """The WS-Trust username/password handler."""

    async def handle_adfs(self, request: web.Request) -> web.Response:
        """``POST /adfs/services/trust/{2005,13}/usernamemixed`` (WS-Trust username/password)."""
        self.requests_by_kind["adfs"] += 1
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        try:
            body = await request.read()
        except ValueError:
            return _malformed_request_fault()
        if self.fault.mode == "reflect_body":
            return _reflected_body(body)
        root = _parse_xml(body)
        token = root.find(".//wsse:UsernameToken", _NS) if root is not None else None
        name_node = token.find("wsse:Username", _NS) if token is not None else None
        secret_node = token.find("wsse:Password", _NS) if token is not None else None
        if name_node is None or secret_node is None:
            return _malformed_request_fault()
        username = (name_node.text or "").strip()
        candidate = secret_node.text or ""
        user = self.directory.find(username) if username else None
        if user is None:
            return _wrong_credentials_fault()
        self.adfs_requests_by_user[user.key] += 1
        if user.latency_ms:
            await asyncio.sleep(user.latency_ms / 1000)
        if self.directory.realm(user.domain) != "Federated" or not user.password_matches(candidate):
            return _wrong_credentials_fault()
        version = "13" if request.path.startswith("/adfs/services/trust/13/") else "2005"
        return web.Response(
            status=200,
            text=self._rstr(user, version),
            content_type="application/soap+xml",
        )

    def _rstr(self, user: EmulatedUser, version: str) -> str:
        """Build the WS-Trust response envelope (2005 or 1.3 flavour) carrying the assertion."""
        saml_version: Literal["1.1", "2.0"] = "1.1" if version == "2005" else "2.0"
        token_type = (
            "urn:oasis:names:tc:SAML:1.0:assertion"
            if saml_version == "1.1"
            else "urn:oasis:names:tc:SAML:2.0:assertion"
        )
        assertion = self._saml_assertion(user, saml_version)
        if version == "2005":
            inner = (
                f"<t:RequestSecurityTokenResponse xmlns:t='{_NS['wst2005']}'>"
                f"<t:TokenType>{token_type}</t:TokenType>"
                f"<t:RequestedSecurityToken>{assertion}</t:RequestedSecurityToken>"
                "</t:RequestSecurityTokenResponse>"
            )
        else:
            inner = (
                f"<trust:RequestSecurityTokenResponseCollection xmlns:trust='{_NS['wst13']}'>"
                "<trust:RequestSecurityTokenResponse>"
                f"<trust:TokenType>{token_type}</trust:TokenType>"
                f"<trust:RequestedSecurityToken>{assertion}</trust:RequestedSecurityToken>"
                "</trust:RequestSecurityTokenResponse>"
                "</trust:RequestSecurityTokenResponseCollection>"
            )
        return f"<s:Envelope xmlns:s='{_NS['s']}'><s:Body>{inner}</s:Body></s:Envelope>"
