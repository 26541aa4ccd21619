"""SAML assertions the emulated AD FS issues and the token endpoint redeems.

WS-Trust 2005 answers carry a SAML V1.1 assertion (``saml1_1-bearer``, what real AD FS issues
for Entra); WS-Trust 1.3 answers carry a SAML V2.0 assertion (``saml2-bearer``, RFC 7522 §2.1)
so msal's other path can be exercised too. The UPN travels in the ``UPN`` attribute (1.1) or
``IDPEmail`` (2.0), the ImmutableID as the subject, as AD FS sends them to Entra.

Deliberate simplification: an assertion carries an HMAC (keyed by a per-process secret) instead
of an XML signature, so the token endpoint only accepts assertions this emulator issued. The XML
namespaces and the parser for untrusted XML (no DTDs, so no entity expansion) live here too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from emulators.entra.directory import EmulatedUser
from emulators.entra.encoding import _b64url, _now
from emulators.entra.state import EmulatorState

_NS: Final = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml1": "urn:oasis:names:tc:SAML:1.0:assertion",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "wst2005": "http://schemas.xmlsoap.org/ws/2005/02/trust",
    "wst13": "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
}


def _iso(moment: datetime) -> str:
    """SAML/WS-Trust timestamp format."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_xml(body: bytes) -> ET.Element | None:
    """Parse untrusted XML; refuse DTDs (entity expansion) and return None on any junk."""
    head = body[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in head or b"<!entity" in body.lower():
        return None
    try:
        # DTDs were rejected above, so no entity expansion can happen; expat resolves no
        # external resources by default.
        return ET.fromstring(body)  # noqa: S314
    except (ET.ParseError, ValueError, UnicodeError):
        return None


@dataclass(frozen=True, slots=True)
class _VerifiedAssertion:
    """What the token endpoint learned from an assertion the emulated AD FS issued."""

    version: Literal["1.1", "2.0"]
    upn: str
    expired: bool


class SamlAssertions(EmulatorState):
    """Issue and verify the emulated AD FS's assertions."""

    def _signature(self, version: str, assertion_id: str, upn: str, not_on_or_after: str) -> str:
        """HMAC standing in for AD FS's XML signature."""
        message = json.dumps([version, assertion_id, upn, not_on_or_after]).encode()
        return _b64url(hmac.new(self._assertion_key, message, hashlib.sha256).digest())

    def _saml_assertion(self, user: EmulatedUser, version: Literal["1.1", "2.0"]) -> str:
        """Build a SAML assertion naming the user, with an HMAC instead of an XML signature."""
        now = _now()
        issued, expires = _iso(now), _iso(now + timedelta(seconds=self.assertion_lifetime_s))
        assertion_id = "_" + uuid.uuid4().hex
        upn = user.username
        immutable_id = base64.b64encode(uuid.UUID(self.object_id(user)).bytes).decode()
        signature = (
            f"<ds:Signature xmlns:ds='{_NS['ds']}'><ds:SignatureValue>"
            f"{self._signature(version, assertion_id, upn, expires)}"
            "</ds:SignatureValue></ds:Signature>"
        )
        issuer = escape(f"{self.adfs_base}/adfs/services/trust")
        if version == "1.1":
            subject = (
                "<saml:Subject><saml:NameIdentifier Format="
                "'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified'>"
                f"{escape(immutable_id)}</saml:NameIdentifier><saml:SubjectConfirmation>"
                "<saml:ConfirmationMethod>urn:oasis:names:tc:SAML:1.0:cm:bearer"
                "</saml:ConfirmationMethod></saml:SubjectConfirmation></saml:Subject>"
            )
            return (
                f"<saml:Assertion MajorVersion='1' MinorVersion='1' AssertionID='{assertion_id}'"
                f" Issuer={quoteattr(issuer)} IssueInstant='{issued}'"
                f" xmlns:saml='{_NS['saml1']}'>"
                f"<saml:Conditions NotBefore='{issued}' NotOnOrAfter='{expires}'>"
                "<saml:AudienceRestrictionCondition><saml:Audience>"
                "urn:federation:MicrosoftOnline</saml:Audience>"
                "</saml:AudienceRestrictionCondition></saml:Conditions>"
                f"<saml:AttributeStatement>{subject}"
                "<saml:Attribute AttributeName='UPN' AttributeNamespace="
                "'http://schemas.xmlsoap.org/claims'>"
                f"<saml:AttributeValue>{escape(upn)}</saml:AttributeValue></saml:Attribute>"
                "<saml:Attribute AttributeName='ImmutableID' AttributeNamespace="
                "'http://schemas.microsoft.com/LiveID/Federation/2008/05'>"
                f"<saml:AttributeValue>{escape(immutable_id)}</saml:AttributeValue>"
                "</saml:Attribute></saml:AttributeStatement>"
                "<saml:AuthenticationStatement AuthenticationMethod="
                f"'urn:oasis:names:tc:SAML:1.0:am:password' AuthenticationInstant='{issued}'>"
                f"{subject}</saml:AuthenticationStatement>{signature}</saml:Assertion>"
            )
        return (
            f"<saml:Assertion ID='{assertion_id}' IssueInstant='{issued}' Version='2.0'"
            f" xmlns:saml='{_NS['saml2']}'><saml:Issuer>{issuer}</saml:Issuer>{signature}"
            "<saml:Subject><saml:NameID Format="
            "'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'>"
            f"{escape(immutable_id)}</saml:NameID><saml:SubjectConfirmation"
            " Method='urn:oasis:names:tc:SAML:2.0:cm:bearer'/></saml:Subject>"
            f"<saml:Conditions NotBefore='{issued}' NotOnOrAfter='{expires}'>"
            "<saml:AudienceRestriction><saml:Audience>urn:federation:MicrosoftOnline"
            "</saml:Audience></saml:AudienceRestriction></saml:Conditions>"
            "<saml:AttributeStatement><saml:Attribute Name='IDPEmail'>"
            f"<saml:AttributeValue>{escape(upn)}</saml:AttributeValue></saml:Attribute>"
            "</saml:AttributeStatement>"
            f"<saml:AuthnStatement AuthnInstant='{issued}'><saml:AuthnContext>"
            "<saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:"
            "PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>"
            "</saml:AuthnStatement></saml:Assertion>"
        )

    def _verify_assertion(self, raw: bytes) -> _VerifiedAssertion | None:
        """Check an assertion's HMAC and read its UPN; None if it was not issued here."""
        root = _parse_xml(raw)
        if root is None:
            return None
        version: Literal["1.1", "2.0"]
        if root.tag == f"{{{_NS['saml1']}}}Assertion":
            version, prefix = "1.1", "saml1"
            assertion_id = root.get("AssertionID", "")
            upn_node = root.find(
                "saml1:AttributeStatement/saml1:Attribute[@AttributeName='UPN']/saml1:AttributeValue",
                _NS,
            )
        elif root.tag == f"{{{_NS['saml2']}}}Assertion":
            version, prefix = "2.0", "saml2"
            assertion_id = root.get("ID", "")
            upn_node = root.find(
                "saml2:AttributeStatement/saml2:Attribute[@Name='IDPEmail']/saml2:AttributeValue",
                _NS,
            )
        else:
            return None
        conditions = root.find(f"{prefix}:Conditions", _NS)
        signature_node = root.find("ds:Signature/ds:SignatureValue", _NS)
        if upn_node is None or conditions is None or signature_node is None:
            return None
        upn = upn_node.text or ""
        not_on_or_after = conditions.get("NotOnOrAfter", "")
        expected = self._signature(version, assertion_id, upn, not_on_or_after)
        if not hmac.compare_digest(expected.encode(), (signature_node.text or "").encode()):
            return None
        try:
            deadline = datetime.strptime(not_on_or_after, "%Y-%m-%dT%H:%M:%S.000Z")
        except ValueError:
            return None
        return _VerifiedAssertion(
            version=version, upn=upn, expired=deadline.replace(tzinfo=UTC) <= _now()
        )
