"""The interface every password source implements, and the config base its schema extends."""

from __future__ import annotations

import abc
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Literal

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
