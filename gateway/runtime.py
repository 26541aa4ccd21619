"""The configuration the gateway runs on, and changing it without a restart.

A `Generation` is everything built from one configuration: its sources, the service (routes,
limits, cache TTLs, source guards) and the username redactor. A hook request takes the current
generation once, at its start, and uses nothing else, so no request sees a mix of old and new
configuration. `Runtime.reload` validates the file completely, builds the next generation beside
the running one (unchanged sources are carried over with their clients, pools and breakers; new
or changed ones are started first), swaps it in with one assignment, and retires the old one:
sources that were removed or replaced finish their in-flight calls, then close.

Settings that shape a listener or the shared state cannot change under a running process; a
reload reports them as "needs a restart" and keeps the running values (never half-applies them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.hook_oauth import HookAuthenticator, KeySets
from gateway.logs import UsernameRedactor, apply_log_levels
from gateway.metrics import GatewayMetrics
from gateway.protection import KeyMaker, SingleFlight
from gateway.service import PasswordImportService, reserve_account
from gateway.shadow import ShadowRunner
from gateway.state import Namespace, SharedState
from plugins.base import Source, SourceConfig, SourceServices, derive_key
from plugins.registry import source_class

logger = logging.getLogger(__name__)

# Paths whose value a running process cannot change: its listeners and its shared state.
RESTART_ONLY = (
    "server.host",
    "server.port",
    "server.tls",
    "server.shutdown_grace_seconds",
    "server.pid_file",
    "server.metrics_port",
    "server.header_timeout_seconds",
    "server.max_connections",
    "admin",
    "okta.hook_path",
    # The event hook's route, the ledger it writes and the Okta client of its actions.
    "okta.org_url",
    "okta.api",
    "migration.ledger",
    "migration.event_hook",
    "logging.format",
    "cache.backend",
    "cache.url",
    "cache.key_prefix",
    "cache.hmac_secret",
    "cache.redis_timeout_seconds",
    "cache.max_entries",
    "rate_limits.max_tracked",
    "rate_limits.fallback_replicas",
)
# How long a reload waits for new sources to become ready before it swaps them in anyway (they
# then keep retrying in the background, as at start-up, and answer `not_ready` meanwhile).
READY_WAIT_SECONDS = 10.0
# How long retired sources get to finish in-flight calls (a hook call never outlives its budget).
DRAIN_SECONDS = 10.0


def source_fingerprint(config: SourceConfig) -> str:
    """A short digest of a source's settings (secrets masked), part of its verdict cache keys.

    A policy switch then takes effect at once: verdicts decided under the old settings are
    simply never looked up again.
    """
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


@dataclass(eq=False)
class Generation:
    """Everything built from one configuration; requests count themselves in and out."""

    config: GatewayConfig
    sources: dict[str, Source]
    service: PasswordImportService
    redact: UsernameRedactor
    auth: HookAuthenticator  # `okta.auth`: swapped with the rest; key sets outlive it
    active: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @contextlib.contextmanager
    def serving(self) -> Iterator[Generation]:
        """Count one request in for as long as it uses this generation."""
        self.active += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def drained(self) -> None:
        """Wait until no request uses this generation."""
        await self._idle.wait()


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did, for the log line, the admin endpoint and the CLI."""

    ok: bool
    digest: str
    problems: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The answer of `POST /admin/reload`."""
        return {"result": "success" if self.ok else "failure"} | {
            k: v for k, v in dataclasses.asdict(self).items() if k != "ok"
        }


class Runtime:
    """Holds the current generation; builds, swaps and retires generations."""

    def __init__(
        self,
        config: GatewayConfig,
        metrics: GatewayMetrics,
        state: SharedState,
        secret: bytes,
        sources: Mapping[str, Source] | None = None,
        config_path: str | None = None,
    ) -> None:
        self.metrics = metrics
        self.state = state
        self.config_path = config_path
        self._secret = secret
        self._keys = KeyMaker(secret)
        # Shared by every generation: a request retried by Okta during a swap still joins the
        # call in flight (keys differ whenever the source's settings do).
        self._single_flight = SingleFlight()
        # Shadow verifications outlive a reload like the single flight does (gateway/shadow.py).
        self._shadow = ShadowRunner(metrics)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retiring: list[Source] = []  # closed by `close` if shutdown comes first
        # Hook token signing keys by issuer: a reload that keeps the issuer keeps its keys.
        self.key_sets = KeySets()
        built = dict(sources) if sources is not None else {}
        for source_config in config.sources:
            if source_config.name not in built:
                built[source_config.name] = self._new_source(source_config)
        for source in built.values():
            self._bind(source)
        self.current = self._generation(config, built, previous=None)
        metrics.config_loaded(config.digest)

    def _new_source(self, config: SourceConfig) -> Source:
        return source_class(config.type)(config)

    def _bind(self, source: Source) -> None:
        name, metrics = source.name, self.metrics

        def counter(cache: str) -> Any:
            return lambda hit: metrics.cache_requests.labels(
                cache=cache, result="hit" if hit else "miss"
            ).inc()

        source.bind(
            SourceServices(
                token_cache=Namespace(self.state.cache, f"token:{name}", counter("token")),
                username_cache=Namespace(self.state.cache, f"username:{name}", counter("username")),
                # A key of its own, never the master secret: a (third-party) plugin can derive
                # and unseal only what is under its own name.
                hmac_secret=derive_key(self._secret, "source", name),
                reserve_account=reserve_account,
            )
        )
        metrics.declare_sources([name])
        metrics.declare_codes(name, source.known_reasons, source.misconfiguration_reasons)

    def _generation(
        self, config: GatewayConfig, sources: dict[str, Source], previous: Generation | None
    ) -> Generation:
        service = PasswordImportService(
            config,
            sources,
            self.metrics,
            self.state,
            self._keys,
            fingerprints={n: source_fingerprint(s.config) for n, s in sources.items()},
            single_flight=self._single_flight,
            previous=previous.service if previous else None,
            shadow=self._shadow,
        )
        for route in service.router.shadowed_routes():
            self._shadow.declare_route(route)
        return Generation(
            config,
            sources,
            service,
            UsernameRedactor(config.logging.usernames, self._secret),
            auth=HookAuthenticator(config.okta.auth, self.key_sets.get(config.okta.auth)),
        )

    async def start(self) -> None:
        """Start the first generation's sources (none blocks when its upstream is down)."""
        self.key_sets.start()  # hook token keys, fetched in the background like sources start
        for source in self.current.sources.values():
            await source.start()

    async def close(self) -> None:
        """Close every source, retiring ones included, and stop reloads in progress."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._shadow.close()
        await self.key_sets.close()
        for source in [*reversed(list(self.current.sources.values())), *self._retiring]:
            await source.close()
        self._retiring.clear()

    def reload_in_background(self) -> None:
        """Start a reload from the config file (SIGHUP); its result is logged."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self, path: str | None = None) -> ReloadResult:
        """Re-read the config file and every `*_file` secret; swap it in if it is valid."""
        async with self._lock:
            path = path or self.config_path
            running = self.current.config
            if path is None:
                return self._failed(running, ["no config file to reload from"])
            try:
                loaded = await asyncio.to_thread(load_config, path)
            except ConfigError as err:
                digest = _file_digest(path)
                return self._failed(running, err.lines(), digest)
            config, needs_restart = _keep_restart_only(running, loaded)
            try:
                result = await self._swap(config, needs_restart)
            except Exception as err:  # a plugin failing to build or start: keep what runs
                logger.exception("a new source could not be started")
                return self._failed(running, [f"a source could not start: {type(err).__name__}"])
            logger.info(
                "config reloaded",
                extra={"config": path, "hash": config.digest, **_lists(result)},
            )
            return result

    def _failed(
        self, running: GatewayConfig, problems: list[str], digest: str = ""
    ) -> ReloadResult:
        self.metrics.config_reloads.labels(result="failure").inc()
        self.metrics.config_last_reload_successful.set(0)
        # One line naming every problem by its path; the running configuration stays.
        logger.error(
            "config reload failed; still running the previous configuration",
            extra={"problems": problems, "running_hash": running.digest},
        )
        return ReloadResult(False, digest, tuple(problems))

    async def _swap(self, config: GatewayConfig, needs_restart: list[str]) -> ReloadResult:
        old = self.current
        kept: dict[str, Source] = {}
        started: dict[str, Source] = {}
        try:
            for source_config in config.sources:
                running = old.sources.get(source_config.name)
                if running is not None and running.config == source_config:
                    kept[source_config.name] = running
                else:
                    source = self._new_source(source_config)
                    started[source_config.name] = source
                    self._bind(source)
                    await source.start()
            await _wait_ready(started.values(), READY_WAIT_SECONDS)
        except BaseException:
            for source in started.values():
                await source.close()
            raise
        sources = {c.name: kept.get(c.name) or started[c.name] for c in config.sources}
        self.current = self._generation(config, sources, previous=old)  # the swap
        self.key_sets.start()  # a new issuer's keys (401 until they arrive, as at start-up)
        if config.logging != old.config.logging:  # only what the file changed
            apply_log_levels(config.logging.level, config.logging.library_debug)
        retired = [s for name, s in old.sources.items() if sources.get(name) is not s]
        self._retiring += retired
        removed = [name for name in old.sources if name not in sources]
        self.metrics.forget_sources(removed)
        task = asyncio.get_running_loop().create_task(self._retire(old, retired))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.metrics.config_reloads.labels(result="success").inc()
        self.metrics.config_loaded(config.digest, previous=old.config.digest)
        return ReloadResult(
            True,
            config.digest,
            needs_restart=tuple(needs_restart),
            added=tuple(n for n in started if n not in old.sources),
            removed=tuple(removed),
            replaced=tuple(n for n in started if n in old.sources),
        )

    async def _retire(self, old: Generation, sources: list[Source]) -> None:
        """Close what the new generation no longer uses once old requests are done with it."""
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await old.drained()
        except TimeoutError:
            logger.warning("closing retired sources with calls still in flight")
        await self.key_sets.keep_only(self.current.config.okta.auth)
        for source in sources:
            self._retiring.remove(source)
            await source.close()


async def _wait_ready(sources: Any, seconds: float) -> None:
    """Give new sources up to `seconds` to become ready; the slow ones keep retrying."""
    deadline = time.monotonic() + seconds
    pending = [s for s in sources if not s.ready]
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        pending = [s for s in pending if not s.ready]
    if pending:
        logger.warning(
            "new sources not ready yet; they answer not_ready until they are",
            extra={"sources": {s.name: s.last_error for s in pending}},
        )


def _keep_restart_only(
    running: GatewayConfig, loaded: GatewayConfig
) -> tuple[GatewayConfig, list[str]]:
    """The loaded config with every restart-only value set back to the running one."""
    config, changed = loaded, []
    for path in RESTART_ONLY:
        if _get(loaded, path) != _get(running, path):
            changed.append(path)
            config = _set(config, path, _get(running, path))
    if changed:
        logger.warning(
            "config changes that need a restart were left as they were",
            extra={"needs_restart": changed},
        )
    return config, changed


def _get(node: Any, path: str) -> Any:
    for part in path.split("."):
        node = getattr(node, part)
    return node


def _set(node: Any, path: str, value: Any) -> Any:
    """A copy of `node` (a dataclass or pydantic model tree) with `path` set to `value`."""
    head, _, rest = path.partition(".")
    new_value = _set(getattr(node, head), rest, value) if rest else value
    if isinstance(node, BaseModel):
        return node.model_copy(update={head: new_value})
    return dataclasses.replace(node, **{head: new_value})


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return ""


def _lists(result: ReloadResult) -> dict[str, list[str]]:
    return {
        k: list(v)
        for k, v in (
            ("added", result.added),
            ("removed", result.removed),
            ("replaced", result.replaced),
            ("needs_restart", result.needs_restart),
        )
        if v
    }


RUNTIME = web.AppKey("runtime", Runtime)


async def reload_on_sighup(app: web.Application) -> None:
    """`serve` reloads its configuration on SIGHUP instead of dying (the default action)."""
    runtime = app[RUNTIME]
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.reload_in_background)
