"""The interface every password source implements, and the config base its schema extends."""

from __future__ import annotations

import abc
import base64
import hmac
import ipaddress
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

from cachetools import TLRUCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict


class Result(StrEnum):
    """What a source said about a username/password pair."""

    VERIFIED = "verified"
    DENIED = "denied"  # the source answered: wrong password / unknown user
    UNAVAILABLE = (
        "unavailable"  # the source could not answer: timeout, outage, throttled, misconfigured
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """One source's answer, with a short machine reason (`aadsts_50126`, `timeout`, ...)."""

    result: Result
    source: str  # the configured source name; also the metric label
    reason: str
    # A denial because this source has no such user: a route may then ask its next source.
    unknown_user: bool = False
    # The directory is throttling this user or the whole source; back off for retry_after seconds.
    throttle: Literal["user", "source"] | None = None
    retry_after: float | None = None
    # False only when the password provably never reached the directory (connection refused
    # before anything carrying it was sent): the attempt is then given back to the user's limit.
    sent: bool = True

    @property
    def verified(self) -> bool:
        """True only for a definite yes."""
        return self.result is Result.VERIFIED

    @property
    def definitive(self) -> bool:
        """True when no other source should be asked: a yes, or a no about a user this source has."""
        return self.result is Result.VERIFIED or (
            self.result is Result.DENIED and not self.unknown_user
        )


# Reason codes that mean the directory is in trouble for everyone (see `Source.outage_reasons`).
OUTAGE_REASONS = frozenset({"timeout", "http_5xx", "http_429", "network"})


def xml_unsafe(text: str) -> bool:
    """True when `text` has characters that XML 1.0 (WS-Trust) cannot carry.

    C0 controls but tab/CR/LF, surrogates, U+FFFE/U+FFFF; also C1 controls and the other
    noncharacters, which no directory accepts in a password or a username.
    """
    return _XML_UNSAFE.search(text) is not None


_XML_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]"
)


def derive_key(secret: bytes, purpose: str, *parts: str) -> bytes:
    """HMAC-SHA256 over `purpose` and `parts`, NUL-separated: one derivation for every key.

    NUL cannot occur in the parts (the hook rejects it), so different tuples never collide.
    """
    message = "\x00".join((purpose, *parts)).encode("utf-8", "surrogatepass")
    # The digest's name, not `hashlib.sha256`: hmac then takes OpenSSL's one-shot path (about
    # half the time; four derivations per hook call).
    return hmac.digest(secret, message, "sha256")


class SharedStore(Protocol):
    """A key-value cache the gateway hands to sources (Redis-backed when configured)."""

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""


class MemoryCache:
    """A bounded in-process TTL cache: when full, the soonest-expiring entries go first.

    The gateway's cache when no Redis is configured (and its fallback), and what sources use
    outside the gateway (CLI, tests). Only for what may be forgotten: a miss costs an upstream
    call, never protection.
    """

    def __init__(
        self, max_entries: int = 10_000, on_evict: Callable[[], None] | None = None
    ) -> None:
        self._values = _EvictionAwareCache(max_entries, on_evict)

    def __len__(self) -> int:
        return len(self._values)

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        entry = self._values.get(key)
        return None if entry is None else entry[0]

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Read several keys at once."""
        values = self._values
        return [None if (e := values.get(key)) is None else e[0] for key in keys]

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds (short repeated values are interned)."""
        if ttl <= 0:
            return
        self._values[key] = (
            sys.intern(value) if len(value) < 40 else value,
            time.monotonic() + ttl,
        )


class _EvictionAwareCache(TLRUCache[str, tuple[str, float]]):
    """A TLRU cache that reports evicting a live entry (expired ones go first, unreported)."""

    def __init__(self, max_entries: int, on_evict: Callable[[], None] | None) -> None:
        super().__init__(maxsize=max_entries, ttu=lambda _k, v, _now: v[1], timer=time.monotonic)
        self._on_evict = on_evict

    def popitem(self) -> tuple[str, tuple[str, float]]:
        """Evict (cachetools calls this only when full after dropping expired entries)."""
        if self._on_evict is not None:
            self._on_evict()
        return super().popitem()


async def no_budget(_identity: str) -> bool:
    """Outside the gateway (CLI, tests) no per-user budget applies: always admitted."""
    return True


@dataclass(frozen=True)
class SourceServices:
    """What the gateway lends a source: shared caches and keyed sealing for what goes in them.

    Stores may be Redis shared by replicas, so a source keeps nothing clear in them: `put_sealed`
    keys an entry by HMAC and encrypts its value (AES-GCM) under a key derived from the same
    parts, which only someone who knows those parts (e.g. the typed username) can rebuild.
    """

    token_cache: SharedStore
    username_cache: SharedStore
    hmac_secret: bytes
    # `await reserve_account(identity)`: spend the current sign-in's attempt also against the
    # account the source found (its directory id), so every name form of one account shares
    # one per-user budget; False means that budget is used up and nothing may be sent.
    reserve_account: Callable[[str], Awaitable[bool]] = no_budget

    @classmethod
    def local(cls) -> SourceServices:
        """Per-process services with a random secret."""
        return cls(MemoryCache(), MemoryCache(), secrets.token_bytes(32))

    def _derive(self, purpose: str, parts: tuple[str, ...]) -> bytes:
        return derive_key(self.hmac_secret, purpose, *parts)

    async def put_sealed(
        self, store: SharedStore, parts: tuple[str, ...], value: str, ttl: float
    ) -> None:
        """Store `value` encrypted, under a key derived from `parts`."""
        nonce = secrets.token_bytes(12)
        box = AESGCM(self._derive("seal", parts)).encrypt(nonce, value.encode(), None)
        await store.set(
            self._derive("lookup", parts).hex(), base64.b64encode(nonce + box).decode(), ttl
        )

    async def get_sealed(self, store: SharedStore, parts: tuple[str, ...]) -> str | None:
        """Read back what `put_sealed` stored for the same `parts` (None if absent or tampered)."""
        raw = await store.get(self._derive("lookup", parts).hex())
        if raw is None:
            return None
        try:
            blob = base64.b64decode(raw)
            return AESGCM(self._derive("seal", parts)).decrypt(blob[:12], blob[12:], None).decode()
        except (ValueError, InvalidTag):
            return None


class SourceConfig(BaseModel):
    """Keys every source has; each type extends this and forbids keys it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str


@dataclass(frozen=True, slots=True)
class SourceUse:
    """How the config uses a source, handed to its schema's validators as validation context."""

    # False when no route (nor shadow) names it: the gateway never checks its passwords, only
    # `gateway migrate` reads it (an import-only source).
    verifies: bool = True

    @classmethod
    def of(cls, context: Any) -> SourceUse:
        """The `SourceUse` in a pydantic validation context; a source validated alone verifies."""
        found = context.get("source_use") if isinstance(context, dict) else None
        return found if isinstance(found, SourceUse) else cls()

    def context(self) -> dict[str, Any]:
        """The validation context that carries it (`model_validate(raw, context=...)`)."""
        return {"source_use": self}


class Source(abc.ABC):
    """A directory that can say whether a username/password pair is right."""

    config_class: ClassVar[type[SourceConfig]] = SourceConfig
    # Reason codes this type can answer with, exported at 0 so alerts see them from the start.
    known_reasons: ClassVar[frozenset[str]] = frozenset()
    # Unavailable reasons that say the directory itself is in trouble, whoever asks: only these
    # feed the circuit breaker. Content-driven failures (`bad_response`, `other`) must not.
    outage_reasons: ClassVar[frozenset[str]] = OUTAGE_REASONS
    # Reasons that say the gateway's own settings for this source are wrong (a bad client
    # secret, a missing consent), not the user's password: every user of the source fails until
    # an admin fixes it. Counted in gateway_source_misconfigured_total{source,code}, which the
    # MisconfigurationCodesSeen alert watches whatever the source type.
    misconfiguration_reasons: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.services = SourceServices.local()

    def bind(self, services: SourceServices) -> None:
        """Use the gateway's shared caches (called before `start`)."""
        self.services = services

    @property
    def ready(self) -> bool:
        """True once the source can verify (clients built, upstream reachable at least once)."""
        return True

    @property
    def last_error(self) -> str | None:
        """A short machine description of the last start-up problem, for `/readyz`."""
        return None

    async def start(self) -> None:
        """Open clients, pools and executors; must not raise when the upstream is down."""

    async def close(self) -> None:
        """Release what `start` opened."""

    @abc.abstractmethod
    async def verify(self, username: str, password: str) -> Verdict:
        """Check the pair; never raise for upstream trouble, answer `unavailable` instead."""

    def unsupported_input(self, username: str, password: str) -> str | None:
        """A reason code when the protocol cannot carry this pair (refused before any I/O).

        The gateway answers such a pair as a denial that counts against the user and the IP,
        so content an attacker chooses can never look like a directory outage.
        """
        return None

    def verdict(
        self,
        result: Result,
        reason: str,
        *,
        unknown_user: bool = False,
        throttle: Literal["user", "source"] | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ) -> Verdict:
        """Build a verdict labelled with this source's name."""
        return Verdict(result, self.name, reason, unknown_user, throttle, retry_after, sent)


def is_loopback_http(url: str) -> bool:
    """Tell whether a URL is plain HTTP on loopback: an emulator, the only place plain HTTP is allowed."""
    match = re.fullmatch(r"http://(\[[^\]]+\]|[^/:\[\]]+)(:\d+)?/?", url)
    if not match:
        return False
    host = match.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
