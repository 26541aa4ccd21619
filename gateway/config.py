"""Load, expand and validate `config.yaml`, reporting every problem by its path."""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
)

from gateway.auth import HookAuthConfig
from gateway.hook_oauth import OktaHookAuthConfig
from gateway.migrate.settings import MigrationConfig, OktaApiConfig, migration_problems
from plugins.base import SourceConfig, SourceUse, is_loopback_http
from plugins.registry import MissingExtra, UnknownSourceType, available_types, source_class

# Keys ending like this hold secrets and may instead be given as `<key>_file: /run/secrets/...`.
SECRET_KEY_SUFFIXES = ("secret", "secrets", "password", "token")
_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ModelT = TypeVar("_ModelT", bound=BaseModel)


class ConfigError(Exception):
    """A configuration with one or more problems, each tied to a path like `sources[0].tenant_id`."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One human sentence per problem."""
        return [f"{path}: {message}" if path else message for path, message in self.problems]


def format_path(loc: Iterable[str | int]) -> str:
    """Render a location tuple as `sources[0].tenant_id`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Strict(BaseModel):
    """Config sections reject unknown keys, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    """Serve HTTPS directly (otherwise terminate TLS at the load balancer)."""

    cert_file: str
    key_file: str


class ServerConfig(_Strict):
    """Where the gateway listens."""

    host: str = "0.0.0.0"  # noqa: S104 - a container's service port
    port: StrictInt = Field(8080, ge=1, le=65535)
    max_body_bytes: StrictInt = Field(65536, ge=1024, le=16 * 1024 * 1024)
    shutdown_grace_seconds: StrictFloat = Field(5.0, ge=0, le=120)
    tls: TlsConfig | None = None
    # Where `serve` writes its pid, so `gateway reload` can signal it when there is no admin port.
    pid_file: str | None = None
    # A listener of its own for /metrics (on `host`), so a scraper never needs the hook port and a
    # NetworkPolicy can tell them apart; None keeps /metrics on `port`.
    metrics_port: StrictInt | None = Field(None, ge=1, le=65535)
    # Slow clients (gateway/connections.py): the request line and headers (and a TLS handshake)
    # must arrive within this; aiohttp itself has no such timeout.
    header_timeout_seconds: StrictFloat = Field(10.0, gt=0, le=300)
    # Open connections per listener; more are closed at once after accept. Well above Okta's
    # 75 (some orgs 150) concurrent calls per org.
    max_connections: StrictInt = Field(1000, ge=1, le=1_000_000)


class AdminConfig(_Strict):
    """The admin listener (reload, migration progress): a second port, off unless configured."""

    host: str = "127.0.0.1"
    port: StrictInt = Field(ge=1, le=65535)
    auth: HookAuthConfig


class OktaConfig(_Strict):
    """The Okta side of the hook."""

    hook_path: str = "/okta/password-import"
    auth: OktaHookAuthConfig  # header (static secret), oauth2 (bearer token) or either
    # For `gateway migrate`: the org, the public URL Okta calls, and how to call Okta's API.
    org_url: str | None = None
    hook_url: str | None = None
    api: OktaApiConfig | None = None

    @field_validator("org_url", "hook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        origin = f"{parts.scheme}://{parts.netloc}"
        if not parts.netloc or (parts.scheme != "https" and not is_loopback_http(origin)):
            raise ValueError(
                "must be an https:// URL (plain http only for an emulator on loopback)"
            )
        return value.rstrip("/")

    @field_validator("hook_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise ValueError("must be an absolute URL path such as /okta/password-import")
        return value


class RouteMatch(_Strict):
    """Which usernames a route takes: by domain (case-insensitive) or by a regular expression."""

    domains: list[str] | None = None
    regex: str | None = None

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [d.strip().lower().lstrip("@") for d in value]

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a valid regular expression ({err})") from None
        return value


class UsernameRewrite(_Strict):
    """How a route turns what the user typed into what the source expects."""

    append_domain: str | None = None  # jdoe -> jdoe@contoso.com (only when no @ was typed)
    pattern: str | None = None  # re.sub(pattern, replacement, username, count=1)
    replacement: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a valid regular expression ({err})") from None
        return value


class ShadowConfig(_Strict):
    """Verify a sample of a route's calls against a second source too, off the hot path.

    Opt-in: it sends those users' passwords to that second system (gateway/shadow.py).
    """

    source: str
    sample: StrictFloat = Field(0.1, gt=0, le=1)
    queue_size: StrictInt = Field(1000, ge=1, le=100_000)


class RouteConfig(_Strict):
    """One routing rule; routes are tried in order, the first match wins."""

    name: str | None = None
    match: RouteMatch
    sources: list[str] = Field(min_length=1)
    rewrite: UsernameRewrite | None = None
    shadow: ShadowConfig | None = None


class LoggingConfig(_Strict):
    """Log format and what usernames look like in logs."""

    format: Literal["json", "text"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
    usernames: Literal["hash", "mask", "clear"] = "hash"
    library_debug: StrictBool = False


class CacheConfig(_Strict):
    """Where cached verdicts, counters and tokens live; Redis shares them between replicas."""

    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "gw"
    hmac_secret: SecretStr | None = None
    verified_ttl_seconds: StrictFloat = Field(300, ge=0)
    denied_ttl_seconds: StrictFloat = Field(60, ge=0)
    # Per process, for the memory store (and the Redis fallback): bounds memory whatever the
    # user count; raise it if more distinct sign-ins than this happen within a TTL.
    max_entries: StrictInt = Field(10_000, ge=100)
    redis_timeout_seconds: StrictFloat = Field(0.25, gt=0, le=5)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not re.match(r"rediss?://", value):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("hmac_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it keys every cached verdict)")
        return value


class FailureLimit(_Strict):
    """At most `failures` wrong-or-unknown attempts reach the directory in any sliding window."""

    failures: StrictInt = Field(ge=1)
    window_seconds: StrictFloat = Field(gt=0)


class SourceLimits(_Strict):
    """Protection for each source's directory (applied per source)."""

    max_concurrency: StrictInt = Field(200, ge=1)
    rate_per_second: StrictFloat | None = Field(None, gt=0)  # token bucket; no cap unless set
    burst: StrictInt | None = Field(None, ge=1)  # defaults to one second of rate


class CooldownConfig(_Strict):
    """Back-off when the directory throttles (429 Retry-After, AADSTS50196, AADSTS90055)."""

    source_seconds: StrictFloat = Field(30, gt=0)  # when the directory gives no Retry-After
    user_seconds: StrictFloat = Field(300, gt=0)  # loop detection is per user over 5 minutes
    max_seconds: StrictFloat = Field(300, gt=0)  # cap on any Retry-After


class CircuitBreakerConfig(_Strict):
    """Fail fast for `open_seconds` after `failures` consecutive outage answers.

    Only outage answers count (timeouts, 5xx, 429, network errors), and they must come from at
    least `distinct_users` different usernames, so no single client can open the breaker.
    """

    failures: StrictInt = Field(5, ge=1)
    distinct_users: StrictInt = Field(3, ge=1)
    open_seconds: StrictFloat = Field(10, gt=0)


class RateLimitsConfig(_Strict):
    """Limits that keep lockouts and floods away from the directory; `null` turns one off."""

    per_username: FailureLimit | None = FailureLimit(failures=5, window_seconds=900)
    per_ip: FailureLimit | None = FailureLimit(failures=30, window_seconds=300)
    per_source: SourceLimits = SourceLimits()
    cooldown: CooldownConfig = CooldownConfig()
    circuit_breaker: CircuitBreakerConfig | None = CircuitBreakerConfig()
    # Keys the per-process protection store can hold (usernames and IPs with attempts inside
    # their window). It never evicts one; when full, new users are refused (protection_full).
    # The default is sized in the README ("Sizing the protection store").
    max_tracked: StrictInt = Field(100_000, ge=10)
    # While Redis is away each replica allows `(failures - seen) // fallback_replicas` more, where
    # `seen` is the highest count Redis returned to it for that window (gateway.reservations).
    fallback_replicas: StrictInt = Field(2, ge=1)


class _TopLevel(_Strict):
    """The file's shape; sources are checked afterwards by their own type's schema."""

    server: ServerConfig = ServerConfig()
    okta: OktaConfig
    budget_seconds: StrictFloat = 2.5
    sources: list[dict[str, Any]] = Field(min_length=1)
    routes: list[RouteConfig] = Field(min_length=1)
    logging: LoggingConfig = LoggingConfig()
    cache: CacheConfig = CacheConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    admin: AdminConfig | None = None
    migration: MigrationConfig = MigrationConfig()

    @field_validator("budget_seconds")
    @classmethod
    def _below_okta_timeout(cls, value: float) -> float:
        if not 0 < value < 3:
            raise ValueError(
                "must be above 0 and below Okta's 3 s hook timeout (2.5 is a good value)"
            )
        return value


@dataclass(frozen=True)
class GatewayConfig:
    """The validated configuration the gateway runs on."""

    server: ServerConfig
    okta: OktaConfig
    budget_seconds: float
    sources: tuple[SourceConfig, ...]
    routes: tuple[RouteConfig, ...]
    logging: LoggingConfig
    cache: CacheConfig = field(default_factory=CacheConfig)
    rate_limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    admin: AdminConfig | None = None
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    # The first 12 hex digits of the SHA-256 of the YAML text (gateway_config_info{hash}).
    digest: str = ""


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> GatewayConfig:
    """Read a YAML file and validate it; raise ConfigError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([("", f"cannot read config file {path}: {err.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([("", f"config file {path} is not UTF-8 text")]) from None
    return parse_config(text, env=env)


def _metrics_port_problems(
    server: ServerConfig, admin: AdminConfig | None
) -> list[tuple[str, str]]:
    """The metrics listener shares its port with neither the hook nor the admin listener."""
    if server.metrics_port == server.port:
        return [
            ("server.metrics_port", "must differ from server.port: metrics leave the hook port")
        ]
    if admin is not None and server.metrics_port == admin.port:
        return [("server.metrics_port", "must differ from admin.port")]
    return []


def load_server_config(
    path: str | os.PathLike[str], env: dict[str, str] | None = None
) -> ServerConfig:
    """Only the `server:` section of a config file, validated (what `gateway healthcheck` needs).

    The rest is left alone on purpose: a probe of a running gateway must not fail because
    something it does not use (a source's secret file, a route) changed since the gateway started.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        raise ConfigError([("", f"cannot read config file {path} as YAML")]) from None
    section = raw.get("server") if isinstance(raw, dict) else None
    problems: list[tuple[str, str]] = []
    expanded = _expand(section or {}, ("server",), os.environ if env is None else env, problems)
    expansion = len(problems)
    try:
        server = _validate_model(ServerConfig, expanded)
    except ValidationError as err:
        problems.extend(_pydantic_problems(err, ("server",)))
    if problems:
        raise ConfigError(_without_follow_ons(problems, expansion))
    return server


def parse_config(text: str, env: dict[str, str] | None = None) -> GatewayConfig:
    """Validate YAML text (after `${VAR}` and `*_file` expansion)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([("", f"not valid YAML{where}")]) from None
    except RecursionError:
        # PyYAML recurses per nesting level: a few thousand `[` exhaust the stack.
        raise ConfigError([("", "not valid YAML: nested too deeply")]) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            [("", "the config must be a YAML mapping (server:, okta:, sources:, ...)")]
        )
    problems: list[tuple[str, str]] = []
    expanded = _expand(raw, (), os.environ if env is None else env, problems)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return _validate(expanded, problems, digest)


def _expand(
    node: Any, loc: tuple[str | int, ...], env: Any, problems: list[tuple[str, str]]
) -> Any:
    """Substitute `${VAR}` / `${VAR:-default}` in strings and read `<secret>_file` keys."""
    if isinstance(node, str):
        return _expand_env(node, loc, env, problems)
    if isinstance(node, list):
        return [_expand(item, (*loc, i), env, problems) for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[Any, Any] = {}
    for key, value in node.items():
        here = (*loc, str(key))
        reported = len(problems)
        expanded = _expand(value, here, env, problems)
        stem = key[: -len("_file")] if isinstance(key, str) and key.endswith("_file") else None
        if stem and stem.endswith(SECRET_KEY_SUFFIXES):
            if stem in node:
                problems.append((format_path(here), f"give either {stem} or {key}, not both"))
                continue
            if len(problems) > reported:  # the path itself is unusable, and that is said already
                continue
            out[stem] = _read_secret_file(stem, expanded, here, problems)
        else:
            out[key] = expanded
    return out


class EnvText(str):
    """Text that came from a `${VAR}` substitution.

    The environment only holds strings, so where the schema asks for a number or a boolean,
    such text is read as one (`port: ${PORT}`); the same text written in the file is refused.
    """


def _expand_env(
    text: str, loc: tuple[str | int, ...], env: Any, problems: list[tuple[str, str]]
) -> str:
    substituted = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal substituted
        if match.group(0) == "$$":
            return "$"
        substituted = True
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return str(default)
            problems.append((format_path(loc), f"environment variable {name} is not set"))
            return ""
        return str(value)

    expanded = _ENV_PATTERN.sub(substitute, text)
    return EnvText(expanded) if substituted else expanded


def _env_int(text: str) -> int | None:
    return int(text) if _INT_TEXT.fullmatch(text.strip()) else None


def _env_float(text: str) -> float | None:
    return float(text) if _FLOAT_TEXT.fullmatch(text.strip()) else None


def _env_bool(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text.strip().lower())


# Strict fields' error type -> how `${VAR}` text is read for them.
_ENV_SCALARS: dict[str, Callable[[str], int | float | bool | None]] = {
    "int_type": _env_int,
    "float_type": _env_float,
    "bool_type": _env_bool,
}


def _validate_model(
    model: type[_ModelT], raw: Any, context: dict[str, Any] | None = None
) -> _ModelT:
    """`model.model_validate(raw)`, reading `${VAR}` text as a number or boolean where asked for.

    Numbers and booleans are strict (`port: true` is not port 1, `"2.5"` is not a number); only
    text from the environment is converted, and only for the fields whose type wants it.
    """
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as err:
        retyped = _retype_env_text(raw, err)
        if retyped is None:
            raise
    return model.model_validate(retyped, context=context)


def _retype_env_text(raw: Any, err: ValidationError) -> Any:
    """A copy of `raw` with the `${VAR}` values the errors name converted, or None if none is."""
    out = copy.deepcopy(raw)
    changed = False
    for item in err.errors(include_url=False):
        text, parse = item.get("input"), _ENV_SCALARS.get(item["type"])
        if parse is None or not isinstance(text, EnvText):
            continue
        value = parse(text)
        if value is not None and _replace_at(out, item["loc"], text, value):
            changed = True
    return out if changed else None


def _replace_at(node: Any, loc: tuple[int | str, ...], old: str, new: Any) -> bool:
    """Set `new` at `loc` in nested dicts/lists if `old` is there; False if it is not."""
    if not loc:
        return False
    *parents, last = loc
    for part in parents:
        node = _child(node, part)
    if _child(node, last) != old:  # _ABSENT equals nothing
        return False
    node[last] = new
    return True


_ABSENT = object()


def _child(node: Any, key: int | str) -> Any:
    if isinstance(node, dict):
        return node.get(key, _ABSENT)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return _ABSENT


def _without_follow_ons(problems: list[tuple[str, str]], expansion: int) -> list[tuple[str, str]]:
    """Drop later problems that only repeat one of the first `expansion` ones.

    A missing variable or unreadable secret file is reported once; the empty or absent value it
    leaves behind would otherwise fail validation too, at its path, under it (a `*_file` key's
    value lands at the key without `_file`) or at the section holding it.
    """
    roots = set()
    for path, _ in problems[:expansion]:
        roots.add(path)
        roots.add(path.removesuffix("_file"))

    def follows(path: str) -> bool:
        return any(
            path == root
            or path.startswith((f"{root}.", f"{root}["))
            or (path != "" and root.startswith((f"{path}.", f"{path}[")))
            for root in roots
        )

    return problems[:expansion] + [p for p in problems[expansion:] if not follows(p[0])]


def _read_secret_file(
    stem: str, path: Any, loc: tuple[str | int, ...], problems: list[tuple[str, str]]
) -> Any:
    if not isinstance(path, str) or not path:
        problems.append((format_path(loc), "must be a file path"))
        return None
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        problems.append((format_path(loc), f"cannot read secret file {path}: {reason}"))
        return None
    if stem.endswith("secrets"):  # a list: one secret per line
        return [line.strip() for line in content.splitlines() if line.strip()]
    return content.rstrip("\r\n")


def _pydantic_problems(
    err: ValidationError, prefix: tuple[str | int, ...] = ()
) -> list[tuple[str, str]]:
    problems = []
    for item in err.errors(include_url=False):
        loc = (*prefix, *item["loc"])
        kind = item["type"]
        if kind == "missing":
            message = "missing"
        elif kind == "extra_forbidden":
            message = "unknown key"
        else:
            message = item["msg"].removeprefix("Value error, ")
        problems.append((format_path(loc), message))
    return problems


def _validate(raw: dict[str, Any], problems: list[tuple[str, str]], digest: str) -> GatewayConfig:
    expansion = len(problems)  # missing variables, unreadable secret files
    try:
        top = _validate_model(_TopLevel, raw)
    except ValidationError as err:
        problems.extend(_pydantic_problems(err))
        top = None
    sources = _validate_sources(raw.get("sources"), problems, _verifying_sources(raw))
    problems.extend(_cross_reference_problems(raw))
    if top is not None and top.cache.backend == "redis" and top.cache.hmac_secret is None:
        problems.append(
            (
                "cache.hmac_secret",
                "required with the redis backend, so replicas derive the same keys",
            )
        )
    if top is not None and top.admin is not None and top.admin.port == top.server.port:
        problems.append(
            ("admin.port", "must differ from server.port: admin is never the hook port")
        )
    if top is not None and top.server.metrics_port is not None:
        problems.extend(_metrics_port_problems(top.server, top.admin))
    if top is not None:
        # Sources reported above (a bad key, a missing extra) still exist for the cross-checks.
        types = {**_declared_types(raw.get("sources")), **{s.name: s.type for s in sources}}
        problems.extend(migration_problems(top.migration, types, top.okta.api))
        if top.migration.prepare_on or top.migration.sync_on_activate:
            # The event hook's follow-up actions (prepare, sync on activate) call Okta's API.
            for path, value in (("okta.org_url", top.okta.org_url), ("okta.api", top.okta.api)):
                if value is None:
                    problems.append(
                        (path, "needed by migration.prepare_on and migration.sync_on_activate")
                    )
    if problems or top is None:
        raise ConfigError(_without_follow_ons(problems, expansion))
    return GatewayConfig(
        server=top.server,
        okta=top.okta,
        budget_seconds=top.budget_seconds,
        sources=tuple(sources),
        routes=tuple(top.routes),
        logging=top.logging,
        cache=top.cache,
        rate_limits=top.rate_limits,
        admin=top.admin,
        migration=top.migration,
        digest=digest,
    )


def _cross_reference_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Checks across sections, on the raw data so they run even when a section has other errors."""
    problems = []
    raw_sources = raw.get("sources")
    names = [s.get("name") for s in _list(raw_sources) if isinstance(s, dict)]
    for i, name in enumerate(names):
        if name is not None and names.index(name) != i:
            problems.append((f"sources[{i}].name", f"duplicate source name {name!r}"))
    for r, route in enumerate(_list(raw.get("routes"))):
        if not isinstance(route, dict):
            continue
        route_sources = route.get("sources")
        for s, source in enumerate(_list(route_sources)):
            if isinstance(source, str) and source not in names:
                problems.append((f"routes[{r}].sources[{s}]", f"no source is named {source!r}"))
        match = route.get("match")
        if isinstance(match, dict) and ("domains" in match) == ("regex" in match):
            problems.append((f"routes[{r}].match", "give exactly one of domains or regex"))
        rewrite = route.get("rewrite")
        if isinstance(rewrite, dict) and ("pattern" in rewrite) != ("replacement" in rewrite):
            problems.append((f"routes[{r}].rewrite", "pattern and replacement go together"))
        shadow = route.get("shadow")
        shadow_source = shadow.get("source") if isinstance(shadow, dict) else None
        if isinstance(shadow_source, str):
            if shadow_source not in names:
                problems.append(
                    (f"routes[{r}].shadow.source", f"no source is named {shadow_source!r}")
                )
            elif shadow_source in _list(route_sources):
                problems.append(
                    (f"routes[{r}].shadow.source", "must not be one of the route's own sources")
                )
    return problems


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _declared_types(raw_sources: Any) -> dict[str, str]:
    """Name -> type of every source entry that gives both as strings, valid or not."""
    return {
        raw["name"]: raw["type"]
        for raw in _list(raw_sources)
        if isinstance(raw, dict) and isinstance(raw.get("name"), str)
        and isinstance(raw.get("type"), str)
    }  # fmt: skip


def _verifying_sources(raw: dict[str, Any]) -> set[str]:
    """Names of the sources some route sends sign-ins to, as its source or its shadow."""
    names: set[str] = set()
    for route in _list(raw.get("routes")):
        if not isinstance(route, dict):
            continue
        names.update(name for name in _list(route.get("sources")) if isinstance(name, str))
        shadow = route.get("shadow")
        if isinstance(shadow, dict) and isinstance(shadow.get("source"), str):
            names.add(shadow["source"])
    return names


def _validate_sources(
    raw_sources: Any, problems: list[tuple[str, str]], verifying: set[str]
) -> list[SourceConfig]:
    if not isinstance(raw_sources, list):
        return []
    out = []
    for i, raw in enumerate(raw_sources):
        if not isinstance(raw, dict):
            continue  # already reported by the top-level schema
        type_name = raw.get("type")
        if not isinstance(type_name, str):
            problems.append((f"sources[{i}].type", "missing"))
            continue
        try:
            cls = source_class(type_name)
        except UnknownSourceType:
            known = ", ".join(available_types())
            problems.append(
                (f"sources[{i}].type", f"unknown source type {type_name!r} (known: {known})")
            )
            continue
        except MissingExtra as err:
            problems.append((f"sources[{i}].type", str(err)))
            continue
        try:
            use = SourceUse(verifies=raw.get("name") in verifying)
            out.append(_validate_model(cls.config_class, raw, use.context()))
        except ValidationError as err:
            problems.extend(_pydantic_problems(err, ("sources", i)))
    return out


def config_warnings(config: GatewayConfig) -> list[tuple[str, str]]:
    """Valid settings that put a directory's accounts at risk; `check-config` prints them.

    An LDAP directory (Active Directory above all) locks an account after its own threshold of
    wrong passwords: the gateway's per-username limit is what keeps Okta sign-ins from doing it.
    """
    per_user = config.rate_limits.per_username
    warnings: list[tuple[str, str]] = []
    for i, source in enumerate(config.sources):
        if source.type != "ldap":
            continue
        from plugins.ldap import LdapConfig  # imported only when an ldap source is configured

        assert isinstance(source, LdapConfig)
        if per_user is None:
            warnings.append((
                "rate_limits.per_username",
                f"is off while sources[{i}] ({source.name!r}) is an ldap source: wrong "
                "passwords sent through the gateway can lock directory accounts; set a limit "
                "below the domain's lockout threshold",
            ))  # fmt: skip
        elif source.lockout_threshold is not None and per_user.failures >= source.lockout_threshold:
            warnings.append((
                "rate_limits.per_username.failures",
                f"{per_user.failures} is not below sources[{i}].lockout_threshold "
                f"({source.lockout_threshold}): the gateway alone can lock accounts out; "
                f"set it to {source.lockout_threshold - 1} or less",
            ))  # fmt: skip
    return warnings
