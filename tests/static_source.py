"""A third-party-style source type for tests: registered only through the entry-point group."""

from __future__ import annotations

import hmac
from typing import ClassVar, Literal

from pydantic import SecretStr

from plugins.base import Result, Source, SourceConfig, Verdict


class StaticConfig(SourceConfig):
    """`type: static`: one username and password."""

    type: Literal["static"]
    username: str
    password: SecretStr


class StaticSource(Source):
    """Knows exactly one user."""

    config_class: ClassVar[type[SourceConfig]] = StaticConfig

    async def verify(self, username: str, password: str) -> Verdict:
        """Compare in constant time."""
        assert isinstance(self.config, StaticConfig)
        if username.casefold() != self.config.username.casefold():
            return self.verdict(Result.DENIED, "unknown_user", unknown_user=True)
        expected = self.config.password.get_secret_value().encode()
        if hmac.compare_digest(password.encode(), expected):
            return self.verdict(Result.VERIFIED, "ok")
        return self.verdict(Result.DENIED, "wrong_password")
