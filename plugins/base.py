"""The interface every password source implements, and the config base its schema extends."""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Literal, Protocol

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


def derive_key(secret: bytes, purpose: str, *parts: str) -> bytes:
    """HMAC-SHA256 over `purpose` and `parts`, NUL-separated: one derivation for every key.

    NUL cannot occur in the parts (the hook rejects it), so different tuples never collide.
    """
    message = "\x00".join((purpose, *parts)).encode("utf-8", "surrogatepass")
    return hmac.digest(secret, message, hashlib.sha256)


class SharedStore(Protocol):
    """A key-value cache the gateway hands to sources (Redis-backed when configured)."""

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""


class LocalStore:
    """A bounded in-process SharedStore, for sources used outside the gateway (CLI, tests)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._values: TLRUCache[str, tuple[str, float]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _k, v, _now: v[1], timer=time.monotonic
        )

    async def get(self, key: str) -> str | None:
        """Return a value, or None when absent or expired."""
        entry = self._values.get(key)
        return None if entry is None else entry[0]

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store a value for `ttl` seconds."""
        self._values[key] = (value, time.monotonic() + ttl)


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

    @classmethod
    def local(cls) -> SourceServices:
        """Per-process services with a random secret."""
        return cls(LocalStore(), LocalStore(), secrets.token_bytes(32))

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


class Source(abc.ABC):
    """A directory that can say whether a username/password pair is right."""

    config_class: ClassVar[type[SourceConfig]] = SourceConfig
    # Reason codes this type can answer with, exported at 0 so alerts see them from the start.
    known_reasons: ClassVar[frozenset[str]] = frozenset()

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

    def verdict(
        self,
        result: Result,
        reason: str,
        *,
        unknown_user: bool = False,
        throttle: Literal["user", "source"] | None = None,
        retry_after: float | None = None,
    ) -> Verdict:
        """Build a verdict labelled with this source's name."""
        return Verdict(result, self.name, reason, unknown_user, throttle, retry_after)


def is_loopback_http(url: str) -> bool:
    """Tell whether a URL is plain HTTP on this machine (an emulator), the only place plain HTTP is allowed. on this machine (an emulator), the only place it is allowed."""
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
