"""The HTTP client msal uses for Entra ID: async underneath, bounded in time, safe across users.

msal accepts any object with `get`/`post` returning `status_code`, `text`, `headers` and
`raise_for_status()`. msal runs bridged onto the event loop (`plugins.sync_bridge`), and this
client sends its requests with aiohttp through `await_only`, so no thread waits on a socket. It
also
- applies connect/read timeouts to every request (msal sets none),
- caches the user-realm answer per domain (one HTTP request per verification instead of two,
  and no per-user growth),
- quotes the username msal puts raw into the realm URL, and drops non-ASCII header values,
- in loopback mode sends every URL msal asks for, whatever its host, to the emulator base,
- records the token endpoint's status and Retry-After for the current call (msal hides them),
- reads every answer under a size cap, inflating compressed ones in capped steps
  (`gateway.upstream_body`): msal's answers (token, realm, discovery, AD FS MEX and WS-Trust)
  under `max_response_bytes`, Graph pages (`graph_get`) under `max_graph_response_bytes`, and
  each request within `total_seconds`, because a read timeout alone never ends a drip.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urlencode, urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import certifi

from gateway.upstream_body import capped_session, read_capped
from plugins.sync_bridge import await_only, call_state

# A token, realm, discovery or AD FS answer is a few kilobytes: far below this.
MAX_RESPONSE_BYTES = 1024 * 1024


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


def password_sent() -> bool:
    """Whether a password-carrying POST (token or AD FS) of this call may have reached a server."""
    return bool(call_state().get("posted"))


def last_token_response() -> tuple[int | None, str | None]:
    """Status and Retry-After of the last POST in the current bridged call."""
    state = call_state()
    return state.get("status"), state.get("retry_after")


class EntraHttpClient:
    """The `http_client` handed to msal (see the module docstring for why it exists)."""

    def __init__(
        self,
        *,
        loopback_base: str | None,
        connect_seconds: float,
        read_seconds: float,
        total_seconds: float,
        max_connections: int,
        max_graph_response_bytes: int,
        realm_cache_seconds: float,
        realm_cache_size: int,
    ) -> None:
        self._loopback = urlsplit(loopback_base) if loopback_base else None
        # "http://127.0.0.1:8400": what replaces scheme and host of every URL in loopback mode.
        self._loopback_origin = (
            f"{self._loopback.scheme}://{self._loopback.netloc}" if self._loopback else None
        )
        self._timeout = aiohttp.ClientTimeout(
            total=total_seconds, connect=connect_seconds, sock_read=read_seconds
        )
        self._max_graph_bytes = max_graph_response_bytes
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        # domain -> (expires at, answer); a plain dict, read on every verification.
        self._realms: dict[str, tuple[float, HttpResponse]] = {}
        self._realm_seconds = realm_cache_seconds
        self._realm_size = realm_cache_size
        self.upstream_requests = 0  # what verifications cost, for tests and benchmarks

    async def start(self) -> None:
        """Open the connection pool (needs the running loop)."""
        # Operators point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at a corporate CA, as for requests.
        ca_file = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("SSL_CERT_FILE")
            or certifi.where()
        )
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            ssl=ssl.create_default_context(cafile=ca_file),
            ttl_dns_cache=300,
        )
        self._session = capped_session(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

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
        if urlsplit(url).path.startswith("/common/userrealm/"):
            return self._user_realm(url, headers)
        return self._send("GET", url, None, headers)

    def graph_get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        """GET a Microsoft Graph object or page (bridged), under the Graph answer cap."""
        return self._send("GET", url, None, headers, limit=self._max_graph_bytes)

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
            body = form_urlencode(data).encode("ascii")
            sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(data, str):
            body = data.encode("utf-8")
        else:
            body = data
        state = call_state()
        try:
            response = self._send("POST", url, body, sent_headers)
        except BaseException as err:
            # Only a connection never made proves the password stayed here; after a timeout
            # or a reset it may have reached the directory.
            if not isinstance(err, aiohttp.ClientConnectorError):
                state["posted"] = True
            raise
        state["posted"] = True
        state["status"] = response.status_code
        state["retry_after"] = response.headers.get("Retry-After")
        return response

    def close(self) -> None:
        """Msal may call this; the pool is closed by `aclose`."""

    async def aclose(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            await self._session.close()

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        *,
        limit: int = MAX_RESPONSE_BYTES,
    ) -> HttpResponse:
        if self._loopback_origin is not None:
            url = _with_origin(url, self._loopback_origin)
        self.upstream_requests += 1
        return await_only(self._request(method, url, body, _ascii_headers(headers), limit))

    async def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], limit: int
    ) -> HttpResponse:
        if self._session is None:
            raise RuntimeError("EntraHttpClient.start() was not awaited")
        async with self._session.request(
            method,
            url,
            data=body,
            headers=headers,
            proxy=self._proxy_for(url),
            allow_redirects=False,
        ) as raw:
            # UpstreamBodyError past the cap: `classify_exception` makes it `bad_response`.
            text = (await read_capped(raw, limit)).decode("utf-8", errors="replace")
            return HttpResponse(raw.status, text, raw.headers)

    def _proxy_for(self, url: str) -> str | None:
        """Honour HTTPS_PROXY / NO_PROXY as requests would, resolved once per host."""
        if self._loopback is not None:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in self._proxies:
            proxy = getproxies().get(parts.scheme)
            self._proxies[host] = None if not proxy or proxy_bypass(host) else proxy
        return self._proxies[host]

    def _user_realm(self, url: str, headers: Mapping[str, str] | None) -> HttpResponse:
        # msal formats the username into the URL unescaped ('#', '?', '/' would corrupt it).
        raw_username = url.split("/common/userrealm/", 1)[1].rsplit("?api-version=", 1)[0]
        domain = raw_username.rpartition("@")[2].lower() if "@" in raw_username else ""
        cached = self._realms.get(domain) if domain else None
        if cached is not None:
            if cached[0] > time.monotonic():
                return cached[1]
            del self._realms[domain]
        parts = urlsplit(url)
        safe_url = urlunsplit(
            (parts.scheme, parts.netloc, "/common/userrealm/" + quote(raw_username, safe="@"),
             "api-version=1.0", "")
        )  # fmt: skip
        response = self._send("GET", safe_url, None, headers)
        if domain and response.status_code == 200 and self._realm_seconds > 0:
            self._remember_realm(domain, response)
        return response

    def _remember_realm(self, domain: str, response: HttpResponse) -> None:
        """Cache a realm answer; when full, expired entries go first, then the oldest."""
        realms = self._realms
        now = time.monotonic()
        if domain not in realms and len(realms) >= self._realm_size:
            for key in [k for k, (expires, _) in realms.items() if expires <= now]:
                del realms[key]
            while len(realms) >= self._realm_size:
                del realms[next(iter(realms))]
        realms[domain] = (now + self._realm_seconds, response)


def _with_origin(url: str, origin: str) -> str:
    """`url` with its scheme and host replaced by `origin`, path and query kept, no fragment.

    The same result as `urlunsplit((scheme, netloc, path, query, ""))`, without its cost on
    every request (`urlsplit` itself is memoised by the standard library).
    """
    parts = urlsplit(url)
    path = parts.path
    if path and path[0] != "/":
        path = "/" + path
    return f"{origin}{path}?{parts.query}" if parts.query else origin + path


# Characters `quote_plus` never changes (urllib's always-safe set).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def _form_value(value: Any) -> str:
    if isinstance(value, bytes):
        return quote_plus(value)
    text = value if isinstance(value, str) else str(value)
    return text if _UNRESERVED(text) else quote_plus(text)


def form_urlencode(data: Mapping[str, Any]) -> str:
    """`urllib.parse.urlencode(data)` for a flat mapping, the same bytes, about twice as fast.

    Most fields msal sends (client id, grant type, client info, many passwords) need no
    quoting; the others go through `quote_plus`, exactly as `urlencode` sends them.
    """
    return "&".join(f"{_form_value(key)}={_form_value(value)}" for key, value in data.items())


def _ascii_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Drop header values that are not ASCII: msal copies the username into X-AnchorMailbox.

    HTTP headers cannot carry a non-ASCII username as-is; the header is only a routing hint for
    Entra, so leaving it out is safe.
    """
    if not headers:
        return {}
    return {k: v for k, v in headers.items() if not isinstance(v, str) or v.isascii()}
