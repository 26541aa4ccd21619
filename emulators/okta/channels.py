"""What inline and event hooks share: the HTTP channel (``uri``, ``headers``, ``authScheme``) and links.

From the OpenAPI schemas ``InlineHookChannelConfig*`` and ``EventHookChannelConfig*``: the ``uri``
must be ``https://``, at most 1024 characters, with no white space; ``authScheme`` is
``{"type": "HEADER", "key", "value"}`` and its ``value`` is write-only (never returned). The
spec's response examples return the header name lower-cased (``"key": "authorization"``), and so
does the emulator, so a client that compares names case-sensitively finds out here, not in
production. For rehearsals on one machine, ``http://`` is accepted for loopback hosts only
(127.0.0.0/8, ``::1``, ``localhost``), the same exception the gateway makes for its own URLs.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final
from urllib.parse import urlsplit

from emulators.okta import errors

__all__ = ["hook_links", "public_channel", "stored_channel_config", "validate_uri"]

MAX_URI: Final = 1024


def _is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_uri(uri: Any) -> str:
    """The hook URI Okta would accept (https, <= 1024 characters, no white space)."""
    if not isinstance(uri, str) or not uri:
        raise errors.validation_failed("uri", "uri: The field cannot be left blank")
    if len(uri) > MAX_URI or any(ch.isspace() for ch in uri):
        raise errors.validation_failed("uri", "uri: The URI is not valid")
    parts = urlsplit(uri)
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return uri
    raise errors.validation_failed("uri", "uri: The URI must use https")


def _headers(raw: Any) -> list[dict[str, str]]:
    """Custom headers: a list of ``{key, value}`` string pairs."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise errors.validation_failed("headers", "headers: must be a list")
    headers: list[dict[str, str]] = []
    for item in raw:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("key"), str)
            or not isinstance(item.get("value"), str)
            or not item["key"]
        ):
            raise errors.validation_failed("headers", "headers: each needs a key and a value")
        if item["key"].lower() in ("accept", "content-type", "host", "content-length"):
            raise errors.validation_failed("headers", f"headers: {item['key']} is reserved")
        headers.append({"key": item["key"], "value": item["value"]})
    return headers


def _auth_scheme(raw: Any, previous: dict[str, Any] | None) -> dict[str, str] | None:
    """``authScheme`` HEADER; a missing ``value`` keeps the previous secret for the same key."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or str(raw.get("type", "")).upper() != "HEADER":
        raise errors.validation_failed("authScheme", "authScheme.type: must be HEADER")
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise errors.validation_failed(
            "authScheme", "authScheme.key: The field cannot be left blank"
        )
    value = raw.get("value")
    if value is None and previous is not None and previous.get("key", "").lower() == key.lower():
        value = previous.get("value")
    if not isinstance(value, str) or not value:
        raise errors.validation_failed(
            "authScheme", "authScheme.value: The field cannot be left blank"
        )
    return {"type": "HEADER", "key": key, "value": value}


def stored_channel_config(
    config: Any, *, previous: dict[str, Any] | None = None, oauth: bool = False
) -> dict[str, Any]:
    """Validate a channel ``config`` and return what the emulator keeps (secrets included)."""
    if not isinstance(config, dict):
        raise errors.validation_failed("config", "config: The field cannot be left blank")
    stored: dict[str, Any] = {
        "uri": validate_uri(config.get("uri")),
        "headers": _headers(config.get("headers")),
        "method": "POST",
    }
    if config.get("method") not in (None, "POST"):
        raise errors.validation_failed("method", "method: Only POST is supported")
    if not oauth:
        old_scheme = previous.get("authScheme") if previous else None
        stored["authScheme"] = _auth_scheme(config.get("authScheme"), old_scheme)
    return stored


def public_channel(channel: dict[str, Any]) -> dict[str, Any]:
    """The channel as Okta returns it: secrets removed, the auth header name lower-cased."""
    config = dict(channel["config"])
    scheme = config.get("authScheme")
    if isinstance(scheme, dict):
        config["authScheme"] = {"type": "HEADER", "key": str(scheme["key"]).lower()}
    config.pop("clientSecret", None)
    return {"type": channel["type"], "version": channel["version"], "config": config}


def hook_links(base: str, collection: str, hook_id: str, *, active: bool) -> dict[str, Any]:
    """``_links`` of a hook: self, the lifecycle move available, delete when inactive."""
    href = f"{base}/api/v1/{collection}/{hook_id}"
    post = {"hints": {"allow": ["POST"]}}
    links: dict[str, Any] = {"self": {"href": href}}
    if active:
        links["deactivate"] = {"href": f"{href}/lifecycle/deactivate", **post}
    else:
        links["activate"] = {"href": f"{href}/lifecycle/activate", **post}
        links["delete"] = {"href": href, "hints": {"allow": ["DELETE"]}}
    if collection == "eventHooks":
        links["verify"] = {"href": f"{href}/lifecycle/verify", **post}
    else:
        links["execute"] = {"href": f"{href}/execute", **post}
    return links
