"""Choose which sources verify a username, and what username they are given."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import RouteConfig, ShadowConfig


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route that took a username, and the username as its sources should see it."""

    route: str
    sources: tuple[str, ...]
    username: str
    shadow: ShadowConfig | None = None


class _CompiledRoute:
    """One route with its patterns compiled once."""

    def __init__(self, index: int, config: RouteConfig) -> None:
        self.name = config.name or f"routes[{index}]"
        self.sources = tuple(config.sources)
        self.shadow = config.shadow
        self.domains = frozenset(config.match.domains or ())
        self.regex = re.compile(config.match.regex, re.IGNORECASE) if config.match.regex else None
        rewrite = config.rewrite
        self.append_domain = rewrite.append_domain if rewrite else None
        self.pattern = re.compile(rewrite.pattern) if rewrite and rewrite.pattern else None
        self.replacement = rewrite.replacement if rewrite else None

    def matches(self, username: str) -> bool:
        if self.regex is not None:
            return self.regex.search(username) is not None
        _, at, domain = username.rpartition("@")
        return bool(at) and domain.lower() in self.domains

    def rewrite(self, username: str) -> str:
        if self.append_domain and "@" not in username:
            username = f"{username}@{self.append_domain}"
        if self.pattern is not None and self.replacement is not None:
            username = self.pattern.sub(self.replacement, username, count=1)
        return username


class Router:
    """Ordered routes: the first whose domain list or regex matches the typed username wins."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self._routes = [_CompiledRoute(i, r) for i, r in enumerate(routes)]

    def shadowed_routes(self) -> list[str]:
        """The names of the routes with a shadow source."""
        return [route.name for route in self._routes if route.shadow is not None]

    def route(self, username: str) -> RouteMatch | None:
        """Return the route for a username, or None when no route takes it."""
        typed = username.strip()
        for route in self._routes:
            if route.matches(typed):
                # Sources get what the person typed unless the route says how to rewrite it.
                return RouteMatch(route.name, route.sources, route.rewrite(username), route.shadow)
        return None
