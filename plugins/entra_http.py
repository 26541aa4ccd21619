"""The HTTP client msal uses for Entra ID: lean, bounded in time, and safe across users.

msal accepts any object with `get`/`post` returning `status_code`, `text`, `headers` and
`raise_for_status()`. This one is built on urllib3 directly: requests' per-call work (environment
and .netrc lookups, hooks, cookie jars, header dict copies) cost about a third of the CPU of a
verification and bought nothing here. It also
- applies connect/read timeouts to every request (msal sets none),
- caches the user-realm answer per domain (one HTTP request per verification instead of two,
  and no per-user growth),
- quotes the username msal puts raw into the realm URL, and drops non-ASCII header values,
- in loopback mode sends every URL msal asks for, whatever its host, to the emulator base,
- records the token endpoint's status and Retry-After per thread (msal hides them).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import certifi
import urllib3
from cachetools import TLRUCache


class UpstreamHTTPError(Exception):
    """An HTTP error status msal asked us to raise for (`raise_for_status`)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class HttpResponse:
    """The response shape msal reads."""

    __slots__ = ("headers", "status_code", "text")

    def __init__(self, status_code: int, text: str, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.text = text
        self.headers = headers

    def raise_for_status(self) -> None:
        """Raise for 4xx/5xx, as `requests.Response.raise_for_status` would."""
        if self.status_code >= 400:
            raise UpstreamHTTPError(self.status_code)


class _LastResponse(threading.local):
    """What the token endpoint last answered on this thread."""

    status: int | None = None
    retry_after: str | None = None


class EntraHttpClient:
    """The `http_client` handed to msal (see the module docstring for why it exists)."""

    def __init__(
        self,
        *,
        loopback_base: str | None,
        connect_seconds: float,
        read_seconds: float,
        pool_size: int,
        realm_cache_seconds: float,
        realm_cache_size: int,
    ) -> None:
        self._loopback = urlsplit(loopback_base) if loopback_base else None
        self._timeout = urllib3.Timeout(connect=connect_seconds, read=read_seconds)
        self._pool_size = pool_size
        # Operators point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at a corporate CA, as for requests.
        self._ca_certs = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("SSL_CERT_FILE")
            or certifi.where()
        )
        self._direct = self._manager(None)
        self._proxied: dict[str, urllib3.PoolManager] = {}
        self._managers_lock = threading.Lock()
        self._realms: TLRUCache[str, HttpResponse] = TLRUCache(
            maxsize=realm_cache_size,
            ttu=lambda _key, _value, now: now + realm_cache_seconds,
            timer=time.monotonic,
        )
        self._realms_lock = threading.Lock()
        self.last = _LastResponse()
        self.upstream_requests = 0  # what verifications cost, for tests and benchmarks

    def _manager(self, proxy: str | None) -> urllib3.PoolManager:
        options: dict[str, Any] = {
            "num_pools": 8,
            "maxsize": self._pool_size,
            "retries": False,  # no time for retries inside Okta's 3 s; the user retries
            "timeout": self._timeout,
            "ca_certs": self._ca_certs,
        }
        if proxy:
            return urllib3.ProxyManager(proxy, **options)
        return urllib3.PoolManager(**options)

    def _manager_for(self, url: str) -> urllib3.PoolManager:
        """Honour HTTPS_PROXY / NO_PROXY as requests would, resolved once per host."""
        if self._loopback is not None:
            return self._direct
        parts = urlsplit(url)
        host = parts.hostname or ""
        with self._managers_lock:
            manager = self._proxied.get(host)
            if manager is None:
                proxy = getproxies().get(parts.scheme)
                manager = self._direct if not proxy or proxy_bypass(host) else self._manager(proxy)
                self._proxied[host] = manager
        return manager

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> HttpResponse:
        """GET on msal's behalf (discovery, user realm, MEX)."""
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        path = urlsplit(url).path
        if path.startswith("/common/userrealm/"):
            return self._user_realm(url, headers)
        return self._send("GET", url, None, headers)

    def post(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> HttpResponse:
        """POST on msal's behalf (token endpoint, AD FS WS-Trust)."""
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        body: bytes | None
        sent_headers = dict(headers or {})
        if isinstance(data, Mapping):
            body = urlencode(data).encode("ascii")
            sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(data, str):
            body = data.encode("utf-8")
        else:
            body = data
        response = self._send("POST", url, body, sent_headers)
        self.last.status = response.status_code
        self.last.retry_after = response.headers.get("Retry-After")
        return response

    def close(self) -> None:
        """Close pooled connections."""
        self._direct.clear()
        for manager in self._proxied.values():
            manager.clear()

    def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None
    ) -> HttpResponse:
        if self._loopback is not None:
            parts = urlsplit(url)
            base = self._loopback
            url = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        self.upstream_requests += 1
        raw = self._manager_for(url).request(
            method, url, body=body, headers=_ascii_headers(headers), redirect=False
        )
        return HttpResponse(raw.status, raw.data.decode("utf-8", "replace"), raw.headers)

    def _user_realm(self, url: str, headers: Mapping[str, str] | None) -> HttpResponse:
        # msal formats the username into the URL unescaped ('#', '?', '/' would corrupt it).
        raw_username = url.split("/common/userrealm/", 1)[1].rsplit("?api-version=", 1)[0]
        domain = raw_username.rpartition("@")[2].lower() if "@" in raw_username else ""
        if domain:
            with self._realms_lock:
                cached = self._realms.get(domain)
            if cached is not None:
                return cached
        parts = urlsplit(url)
        safe_url = urlunsplit(
            (parts.scheme, parts.netloc, "/common/userrealm/" + quote(raw_username, safe="@"),
             "api-version=1.0", "")
        )  # fmt: skip
        response = self._send("GET", safe_url, None, headers)
        if domain and response.status_code == 200:
            with self._realms_lock:
                self._realms[domain] = response
        return response


def _ascii_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Drop header values that are not ASCII: msal copies the username into X-AnchorMailbox.

    http.client would send a non-ASCII username as Latin-1 or fail; the header is only a routing
    hint for Entra, so leaving it out is safe.
    """
    if not headers:
        return {}
    return {k: v for k, v in headers.items() if not isinstance(v, str) or v.isascii()}
