"""LDAP source (`type: ldap`): Active Directory and any LDAPv3 directory, by a simple bind.

python-ldap (libldap, C) runs in a bounded thread pool of `pool_size` threads, each borrowing
pooled connections: measured against a local slapd over LDAPS it took about 0.1 ms of CPU per
bind, a quarter of ldap3's and a twentieth of bonsai's (which can only bind by opening a new TLS
connection); see README "type: ldap" and bench/ldap_libraries.py. libldap releases the GIL
while it waits, and enforces the connect and operation timeouts itself.

Two ways to find the user: `direct` binds with a name built from what was typed (the UPN on AD),
`search` looks the entry up with a service account first (RFC 4515-escaped filter, exactly one
match), so "no such user" is told apart from "wrong password" and a route can ask its next source.
On AD, the `data NNN` sub-code of a failed bind says why (reference/ldap-ad-testing.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

import ldap
import ldap.dn
import ldap.filter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from plugins.base import OUTAGE_REASONS, Result, Source, SourceConfig, Verdict, is_loopback_http
from plugins.ldap_identity import IDENTITY_ATTRIBUTES, account_identity

logger = logging.getLogger(__name__)

T = TypeVar("T")

# AD's `data NNN` sub-codes of a failed bind (result 49). The password was checked and wrong:
AD_WRONG_PASSWORD = "52e"  # noqa: S105 - a sub-code, not a password
AD_NO_SUCH_USER = "525"  # real AD only; Samba answers 52e for unknown users
# The account cannot sign in now, whatever the password: denied (logon hours, workstation,
# account expired, disabled, locked out). AD gives these only after a right password for
# 530/531/701/533, and for 775 even with a wrong one, so none of them says "verified".
AD_ACCOUNT_BLOCKED = frozenset({"530", "531", "701", "533", "775"})
# The password was right, but must be changed: the source's policy decides.
AD_PASSWORD_EXPIRED = "532"  # noqa: S105
AD_MUST_CHANGE = "773"
AD_SUBCODES = frozenset(
    {AD_WRONG_PASSWORD, AD_NO_SUCH_USER, AD_PASSWORD_EXPIRED, AD_MUST_CHANGE} | AD_ACCOUNT_BLOCKED
)
_AD_SUBCODE = re.compile(r"\bdata ([0-9a-f]{3,4})\b", re.IGNORECASE)

# Misconfiguration: nobody can be verified until an operator fixes the source's settings.
MISCONFIGURATION_REASONS = frozenset(
    {
        "ldap_strong_auth_required",  # result 8/13: the server wants TLS (or signing) we do not use
        "tls_error",  # certificate not trusted, name mismatch, no common protocol
        "service_bind_failed",  # the search account's DN or password is wrong
        "ldap_no_such_object",  # search base_dn does not exist
        "ldap_insufficient_access",  # the service account may not search there
        "ldap_filter_error",  # the configured filter is not valid LDAP
    }
)
# The directory is in trouble for everyone (feeds the circuit breaker).
LDAP_OUTAGE_REASONS = OUTAGE_REASONS | frozenset({"ldap_busy"})
# The start-up probe of the directory retries after 0.5 s, doubling up to this.
PROBE_RETRY_MAX_SECONDS = 30.0
# How long `start` waits for the probe's first attempt (a healthy directory takes milliseconds).
PROBE_START_WAIT_SECONDS = 1.0
# LDAP_OPT_CONNECT_ASYNC (ldap.h): python-ldap 3.4.8 lists it as optional and does not export it
# here, but passes the number through. With it libldap keeps the socket non-blocking through
# the TLS handshake (ldaps:// and StartTLS alike) and waits with OPT_NETWORK_TIMEOUT; without it
# a server that accepts and never answers the ClientHello holds the worker thread for good.
OPT_CONNECT_ASYNC = getattr(ldap, "OPT_CONNECT_ASYNC", 0x5010)
# Username characters no directory name holds and libldap's C strings cannot carry (NUL ends
# the DN early); lone surrogates cannot be encoded for the wire.
_UNSAFE_USERNAME = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_UNSAFE_PASSWORD = re.compile("[\x00\ud800-\udfff]")


class LdapPolicy(BaseModel):
    """What a right password that cannot be used as is (expired, must change) answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    password_expired: Literal["verified", "unverified"] = "unverified"  # noqa: S105
    password_must_change: Literal["verified", "unverified"] = "verified"  # noqa: S105


class LdapTimeouts(BaseModel):
    """libldap's own limits, per connection attempt and per operation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_seconds: StrictFloat = Field(1.5, gt=0, le=30)
    operation_seconds: StrictFloat = Field(2.5, gt=0, le=30)


class DirectBind(BaseModel):
    """Bind as a name built from the username: `{username}` (UPN, AD) or a DN template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["direct"]
    template: str = "{username}"

    @field_validator("template")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        if value.count("{username}") != 1:
            raise ValueError(
                "must contain {username} exactly once, e.g. '{username}' or "
                "'uid={username},ou=people,dc=example,dc=com'"
            )
        return value

    @property
    def is_dn(self) -> bool:
        """True for a DN template, whose username part is escaped per RFC 4514."""
        return "=" in self.template

    def name_for(self, username: str) -> str:
        """The bind name for a username (escaped when it goes into a DN)."""
        part = ldap.dn.escape_dn_chars(username) if self.is_dn else username
        return self.template.replace("{username}", part)


class SearchBind(BaseModel):
    """Find the user's DN with a service account, then bind as that DN."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["search"]
    service_dn: str
    service_password: SecretStr
    base_dn: str
    filter: str = "(|(userPrincipalName={username})(mail={username}))"

    @field_validator("filter")
    @classmethod
    def _filter_shape(cls, value: str) -> str:
        if "{username}" not in value:
            raise ValueError("must contain {username}, e.g. '(uid={username})'")
        if not (value.startswith("(") and value.endswith(")")) or not _balanced(value):
            raise ValueError("must be one parenthesised LDAP filter, e.g. '(uid={username})'")
        return value

    @field_validator("service_dn", "base_dn")
    @classmethod
    def _is_dn(cls, value: str) -> str:
        if not ldap.dn.is_dn(value) or not value.strip():
            raise ValueError("must be a distinguished name such as 'dc=example,dc=com'")
        return value

    @field_validator("service_password")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            # An empty simple bind is an anonymous bind that "succeeds" (RFC 4513 §5.1.2).
            raise ValueError("must not be empty (an empty password binds anonymously)")
        return value

    def filter_for(self, username: str) -> str:
        """The search filter with the username escaped (RFC 4515): `*)(uid=*` stays literal."""
        return self.filter.replace("{username}", ldap.filter.escape_filter_chars(username))


def _balanced(text: str) -> bool:
    depth = 0
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


class LdapConfig(SourceConfig):
    """`type: ldap`."""

    type: Literal["ldap"]
    url: str
    start_tls: StrictBool = False
    ca_file: str | None = None
    bind: Annotated[DirectBind | SearchBind, Field(discriminator="mode")]
    active_directory: StrictBool = False
    timeouts: LdapTimeouts = LdapTimeouts()
    pool_size: StrictInt = Field(16, ge=1, le=256)
    # Pooled connections idle longer than this are closed, not reused: AD drops idle ones after
    # MaxConnIdleTime (900 s by default), and a bind on a dead one answers `network` (a bind is
    # never retried, since the directory may have counted it).
    idle_seconds: StrictFloat = Field(300.0, gt=0, le=900)
    policy: LdapPolicy = LdapPolicy()
    # The domain's account lockout threshold, when known: check-config warns unless the
    # gateway's per-username limit stays below it.
    lockout_threshold: StrictInt | None = Field(None, ge=1)

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            parts.scheme not in {"ldap", "ldaps"}
            or not parts.hostname
            or port == -1
            or parts.path not in {"", "/"}
            or parts.query
            or parts.fragment
        ):
            raise ValueError("must be ldaps://host[:port] (or ldap://host[:port] with start_tls)")
        return value.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"cannot read {value}: give the PEM file of the directory's CA")
        return value

    @model_validator(mode="after")
    def _encrypted(self) -> LdapConfig:
        scheme = urlsplit(self.url).scheme
        if scheme == "ldaps" and self.start_tls:
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
        if scheme == "ldap" and not self.start_tls and not self.loopback:
            raise ValueError(
                "plain ldap:// would send passwords unencrypted: use ldaps:// or "
                "start_tls: true (plain ldap only on 127.0.0.1/localhost)"
            )
        return self

    @property
    def loopback(self) -> bool:
        """True when the directory is on this machine."""
        parts = urlsplit(self.url)
        return is_loopback_http(f"http://{parts.netloc}")

    @property
    def encrypted(self) -> bool:
        """True unless this is plain ldap:// on loopback."""
        return self.url.startswith("ldaps://") or self.start_tls


class _Failure(Exception):
    """An LDAP step failed; `reason` is a reason code, `sent` whether the password went out."""

    def __init__(self, result: Result, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason
        self.sent = sent


class _Pool:
    """Idle connections of one kind; at most one per worker thread is ever out or idle."""

    def __init__(
        self,
        open_connection: Callable[[], Any],
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_connection
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._idle: list[tuple[Any, float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> tuple[Any, bool]:
        """An idle connection still open (and True), or a newly opened one (and False)."""
        while (conn := self._pop_recent()) is not None:
            if _still_open(conn):
                return conn, True
            _unbind(conn)
        return self._open(), False

    def _pop_recent(self) -> Any | None:
        """The idle connection used last; those idle longer than `idle_seconds` are closed."""
        now = self._clock()
        stale = []
        conn = None
        with self._lock:
            while self._idle:
                candidate, since = self._idle.pop()
                if now - since <= self._idle_seconds:
                    conn = candidate
                    break
                stale.append(candidate)
        for old in stale:
            _unbind(old)
        return conn

    def give(self, conn: Any) -> None:
        """Return a healthy connection for reuse."""
        with self._lock:
            if not self._closed:
                self._idle.append((conn, self._clock()))
                return
        _unbind(conn)

    def close(self) -> None:
        """Unbind every idle connection; connections given back later are closed too."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _unbind(conn)


def _still_open(conn: Any) -> bool:
    """False when an idle connection's socket is readable, or has none.

    An idle LDAP connection is owed nothing, so anything to read is the server's close (EOF)
    or its notice of disconnection: caught here, before a bind is sent on a dead connection.
    """
    try:
        fd = conn.get_option(ldap.OPT_DESC)
    except ldap.LDAPError:
        return False
    if not isinstance(fd, int) or fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def _unbind(conn: Any) -> None:
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_ext_s()


class LdapSource(Source):
    """Verifies passwords with an LDAP simple bind (Active Directory or any LDAPv3 server)."""

    config_class: ClassVar[type[SourceConfig]] = LdapConfig
    known_reasons: ClassVar[frozenset[str]] = (
        frozenset(f"ad_{code}" for code in AD_SUBCODES)
        | MISCONFIGURATION_REASONS
        | frozenset({
            "invalid_credentials", "unknown_user", "ambiguous_username", "empty_password",
            "empty_username", "unsupported_characters", "ldap_unwilling", "ldap_busy",
            "rate_limited_username",
        })
    )  # fmt: skip
    outage_reasons: ClassVar[frozenset[str]] = LDAP_OUTAGE_REASONS
    misconfiguration_reasons: ClassVar[frozenset[str]] = MISCONFIGURATION_REASONS

    def __init__(
        self, config: SourceConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(config, LdapConfig):
            raise TypeError("LdapSource needs an LdapConfig")
        super().__init__(config)
        self.settings = config
        self._executor: ThreadPoolExecutor | None = None
        idle = float(config.idle_seconds)
        self._binders = _Pool(self._open_connection, idle, clock)
        self._searchers = _Pool(self._open_service_connection, idle, clock)
        self._reached = False
        self._last_error: str | None = "not_started"
        self._probe: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """True once the directory answered: a connection opened (in search mode, bound)."""
        return self._executor is not None and self._reached

    @property
    def last_error(self) -> str | None:
        """Why the directory has not answered yet: a reason code (`network`, `tls_error`, ...)."""
        return None if self.ready else self._last_error

    async def start(self) -> None:
        """Start the worker threads, and probe the directory in the background until it answers.

        Like every source, it answers `not_ready` until then: start-up waits up to
        `PROBE_START_WAIT_SECONDS` for the first attempt, so a healthy directory is ready before
        the first sign-in, and one that is down or hung delays nothing longer.
        """
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.pool_size, thread_name_prefix=f"ldap-{self.name}"
        )
        attempted = asyncio.Event()
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_reached(attempted))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(attempted.wait(), PROBE_START_WAIT_SECONDS)

    async def _probe_until_reached(self, attempted: asyncio.Event) -> None:
        delay = 0.5
        while (executor := self._executor) is not None:
            try:
                problem = await asyncio.get_running_loop().run_in_executor(
                    executor, self._probe_blocking
                )
            except RuntimeError:  # the executor was shut down (close)
                return
            except Exception:  # noqa: BLE001 - a surprise is "not reached yet", never a dead probe
                problem = "other"
            attempted.set()
            if problem is None:
                self._reached = True
                logger.info("source ready", extra={"source": self.name})
                return
            self._last_error = problem
            logger.warning(
                "source not ready, will retry", extra={"source": self.name, "reason": problem}
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, PROBE_RETRY_MAX_SECONDS)

    def _probe_blocking(self) -> str | None:
        """Open one connection as a sign-in would (search mode: bound as the service account).

        It then goes to the pool, where the first sign-in finds it open.
        """
        pool = self._searchers if isinstance(self.settings.bind, SearchBind) else self._binders
        try:
            conn, _ = pool.take()
        except _Failure as failure:
            return failure.reason
        pool.give(conn)
        return None

    async def close(self) -> None:
        """Close pooled connections and stop the worker threads."""
        probe, self._probe = self._probe, None
        executor, self._executor = self._executor, None
        if probe is not None:
            probe.cancel()  # a bind it started in a worker ends within its libldap timeouts
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        self._binders.close()
        self._searchers.close()
        if executor is not None:
            # Queued binds are dropped; running ones end within their libldap timeouts, and
            # the connections they give back are closed by the pool. Not waited for: a close
            # (shutdown, reload) must never hang on a directory.
            executor.shutdown(wait=False, cancel_futures=True)

    def unsupported_input(self, username: str, password: str) -> str | None:
        """Control characters and NUL no directory name holds; an empty username."""
        if not username.strip():
            return "empty_username"
        if _UNSAFE_USERNAME.search(username) or _UNSAFE_PASSWORD.search(password):
            return "unsupported_characters"
        return None

    async def verify(self, username: str, password: str) -> Verdict:
        """Find the user (search mode), reserve the account, bind; errors become verdicts.

        The blocking steps run in worker threads; the account reservation runs on the event
        loop between them, after the search said which account it is and before the password
        goes out.
        """
        if not password:
            # Never reaches a bind: an empty simple bind is anonymous and succeeds (RFC 4513).
            return self.verdict(Result.DENIED, "empty_password", sent=False)
        refused = self.unsupported_input(username, password)
        if refused is not None:
            return self.verdict(Result.DENIED, refused, sent=False)
        bind = self.settings.bind
        if isinstance(bind, SearchBind):
            found = await self._in_worker(self._find, bind, username)
            if isinstance(found, Verdict):
                return found
            name, identity = found
            # UPN, mail and DOMAIN\user reach one account: it shares one per-user budget.
            if not await self.services.reserve_account(identity):
                return self.verdict(Result.DENIED, "rate_limited_username", sent=False)
        else:
            name = bind.name_for(username)
        return await self._in_worker(self._bind_as, name, password)

    async def _in_worker(self, step: Callable[..., T], *args: Any) -> T | Verdict:
        """Run one blocking step in a worker thread; never one the caller has given up on."""
        executor = self._executor
        if executor is None:
            return self.verdict(Result.UNAVAILABLE, "not_ready", sent=False)
        abandoned = threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                executor, self._run_step, abandoned, step, *args
            )
        except asyncio.CancelledError:
            # The hook's deadline passed: a worker that has not sent the bind yet must not.
            abandoned.set()
            raise
        except RuntimeError:  # the executor was shut down (close() during a reload)
            return self.verdict(Result.UNAVAILABLE, "not_ready", sent=False)

    def _run_step(
        self, abandoned: threading.Event, step: Callable[..., T], *args: Any
    ) -> T | Verdict:
        """The step unless abandoned while queued; a `_Failure` becomes its verdict."""
        if abandoned.is_set():
            return self.verdict(Result.UNAVAILABLE, "timeout", sent=False)
        try:
            return step(*args)
        except _Failure as failure:
            if failure.reason in MISCONFIGURATION_REASONS:
                logger.error(
                    "the directory rejects the source's own settings; fix them",
                    extra={"source": self.name, "reason": failure.reason},
                )
            return self.verdict(failure.result, failure.reason, sent=failure.sent)

    def _find(self, bind: SearchBind, username: str) -> tuple[str, str] | Verdict:
        """The DN and directory identity of the one entry the filter matches, or a verdict."""
        flt = bind.filter_for(username)
        for attempt in (1, 2):
            conn, reused = self._searchers.take()
            try:
                results = conn.search_ext_s(
                    bind.base_dn, ldap.SCOPE_SUBTREE, flt, list(IDENTITY_ATTRIBUTES), sizelimit=2
                )
            except ldap.SIZELIMIT_EXCEEDED:
                self._searchers.give(conn)
                return self._ambiguous()
            except ldap.LDAPError as err:
                _unbind(conn)
                if reused and attempt == 1 and isinstance(err, ldap.SERVER_DOWN):
                    # A pooled connection the server had closed: once more, fresh. Safe for a
                    # search, which carries the username, never the password.
                    continue
                raise self._failure(err, sent=False) from None
            self._searchers.give(conn)
            # AD adds search references (dn None) for other partitions: not entries.
            entries = [(dn, attrs) for dn, attrs in results if dn is not None]
            if not entries:
                return self.verdict(Result.DENIED, "unknown_user", unknown_user=True, sent=False)
            if len(entries) > 1:
                return self._ambiguous()
            dn, attrs = entries[0]
            return str(dn), account_identity(str(dn), attrs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _ambiguous(self) -> Verdict:
        logger.warning("username matches several directory entries", extra={"source": self.name})
        return self.verdict(Result.DENIED, "ambiguous_username", sent=False)

    def _bind_as(self, name: str, password: str) -> Verdict:
        """One simple bind on a pooled connection, never retried.

        When a connection fails under a bind, whether the directory read it (and counted a
        wrong password towards its lockout) cannot be known: a retry could count it twice.
        `idle_seconds` keeps dead pooled connections rare instead.
        """
        conn, _ = self._binders.take()
        try:
            conn.simple_bind_s(name, password)
        except ldap.INVALID_CREDENTIALS as err:
            self._binders.give(conn)
            return self._invalid_credentials(err)
        except ldap.LDAPError as err:
            _unbind(conn)
            raise self._failure(err, sent=True) from None
        self._binders.give(conn)
        return self.verdict(Result.VERIFIED, "ok")

    def _invalid_credentials(self, err: ldap.LDAPError) -> Verdict:
        """Result 49: plain LDAP says only "no"; AD says why in `data NNN`."""
        code = _ad_subcode(err) if self.settings.active_directory else None
        if code is None or code not in AD_SUBCODES:
            return self.verdict(Result.DENIED, "invalid_credentials")
        reason = f"ad_{code}"
        policy = self.settings.policy
        if code == AD_PASSWORD_EXPIRED:
            return self.verdict(_by_policy(policy.password_expired), reason)
        if code == AD_MUST_CHANGE:
            return self.verdict(_by_policy(policy.password_must_change), reason)
        return self.verdict(Result.DENIED, reason, unknown_user=code == AD_NO_SUCH_USER)

    def _failure(self, err: ldap.LDAPError, *, sent: bool) -> _Failure:
        """Map an LDAP error other than result 49 to an unavailable failure."""
        return _Failure(Result.UNAVAILABLE, classify(err), sent=sent)

    def _new_connection(self) -> Any:
        """An initialised, encrypted, open connection (not yet bound); raises `_Failure`."""
        settings = self.settings
        problem = self._handshake_problem()
        if problem is not None:
            raise _Failure(Result.UNAVAILABLE, problem, sent=False)
        conn = ldap.initialize(settings.url)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        # Never chase referrals: that would bind (with the user's password) to another server.
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, settings.timeouts.connect_seconds)
        # Bounds the TLS handshake (ldaps:// and StartTLS) by connect_seconds (see the constant).
        conn.set_option(OPT_CONNECT_ASYNC, ldap.OPT_ON)
        conn.set_option(ldap.OPT_TIMEOUT, settings.timeouts.operation_seconds)
        conn.timeout = settings.timeouts.operation_seconds  # python-ldap's *_s calls
        if settings.encrypted:
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            conn.set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, ldap.OPT_X_TLS_PROTOCOL_TLS1_2)
            if settings.ca_file is not None:
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, settings.ca_file)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # last: builds the TLS context
        try:
            if settings.start_tls:
                conn.start_tls_s()
            else:
                # Open the connection (and the TLS session) before any password is sent, so a
                # directory that cannot be reached provably never saw it. The root DSE is
                # readable anonymously on AD and OpenLDAP.
                conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
        except ldap.LDAPError as err:
            _unbind(conn)
            raise _Failure(Result.UNAVAILABLE, classify(err), sent=False) from None
        return conn

    def _handshake_problem(self) -> str | None:
        """Connect (and for ldaps, shake hands) once in Python, with timeouts, before libldap.

        libldap reports an untrusted certificate as "can't contact", which an operator could
        not act on. This costs one extra handshake per new pooled connection, and tells
        `timeout`, `network` and `tls_error` apart. libldap's own handshake right after is
        bounded too (`OPT_CONNECT_ASYNC`): a server can freeze between the two.
        """
        settings = self.settings
        parts = urlsplit(settings.url)
        ldaps = parts.scheme == "ldaps"
        host = parts.hostname or ""
        port = parts.port or (636 if ldaps else 389)
        try:
            with socket.create_connection((host, port), settings.timeouts.connect_seconds) as sock:
                if ldaps:
                    context = ssl.create_default_context(cafile=settings.ca_file)
                    context.minimum_version = ssl.TLSVersion.TLSv1_2
                    sock.settimeout(settings.timeouts.operation_seconds)
                    with context.wrap_socket(sock, server_hostname=host.strip("[]")):
                        pass
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            # Closed mid-handshake: a server going down or restarting, not a misconfiguration.
            return "network"
        except ssl.SSLError:  # SSLCertVerificationError included
            return "tls_error"
        except TimeoutError:
            return "timeout"
        except OSError:
            return "network"
        return None

    def _open_connection(self) -> Any:
        return self._new_connection()

    def _open_service_connection(self) -> Any:
        """A connection bound as the search account."""
        bind = self.settings.bind
        assert isinstance(bind, SearchBind)
        conn = self._new_connection()
        try:
            conn.simple_bind_s(bind.service_dn, bind.service_password.get_secret_value())
        except ldap.INVALID_CREDENTIALS:
            _unbind(conn)
            raise _Failure(Result.UNAVAILABLE, "service_bind_failed", sent=False) from None
        except ldap.LDAPError as err:
            _unbind(conn)
            raise _Failure(Result.UNAVAILABLE, classify(err), sent=False) from None
        return conn


def _by_policy(setting: str) -> Result:
    return Result.VERIFIED if setting == "verified" else Result.DENIED


def _details(err: ldap.LDAPError) -> dict[str, Any]:
    detail = err.args[0] if err.args else None
    return detail if isinstance(detail, dict) else {}


def _ad_subcode(err: ldap.LDAPError) -> str | None:
    """The `data NNN` of AD's diagnostic message (it carries no user input)."""
    info = _details(err).get("info")
    match = _AD_SUBCODE.search(info) if isinstance(info, str) else None
    return match.group(1).lower() if match else None


def classify(err: ldap.LDAPError) -> str:
    """A reason code for an LDAP error other than invalid credentials.

    The server's message text is read only to tell TLS failures apart; it is never logged or
    returned.
    """
    if isinstance(err, ldap.TIMEOUT):
        return "timeout"
    if isinstance(err, ldap.CONNECT_ERROR):  # StartTLS refused or its handshake failed
        return "tls_error"
    if isinstance(err, ldap.SERVER_DOWN):
        # A TLS handshake that ran out of OPT_NETWORK_TIMEOUT is reported as "can't contact".
        return "timeout" if _details(err).get("errno") == errno.ETIMEDOUT else "network"
    if isinstance(err, ldap.STRONG_AUTH_REQUIRED | ldap.CONFIDENTIALITY_REQUIRED):
        return "ldap_strong_auth_required"
    if isinstance(err, ldap.UNWILLING_TO_PERFORM):
        return "ldap_unwilling"
    if isinstance(err, ldap.BUSY | ldap.UNAVAILABLE | ldap.ADMINLIMIT_EXCEEDED):
        return "ldap_busy"
    if isinstance(err, ldap.NO_SUCH_OBJECT):
        return "ldap_no_such_object"
    if isinstance(err, ldap.INSUFFICIENT_ACCESS):
        return "ldap_insufficient_access"
    if isinstance(err, ldap.FILTER_ERROR):
        return "ldap_filter_error"
    return "other"
