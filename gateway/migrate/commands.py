"""The migration commands' work, imported only when a `gateway migrate` command runs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from tqdm import tqdm

from gateway.config import GatewayConfig
from gateway.ledger import Ledger, configured_ledger_url, open_ledger
from gateway.migrate.importer import Importer, ImportOutcome, write_report
from gateway.migrate.mapping import graph_attributes
from gateway.okta_api import OAuthServiceApp, OktaApiClient, SswsToken
from gateway.okta_api.operations import RequestObserver, RequestTally
from plugins.azure_ad import AzureAdSource
from plugins.base import SourceConfig
from plugins.entra_directory import DirectoryListError, iter_users
from plugins.registry import source_class


async def run_import(config: GatewayConfig, args: argparse.Namespace) -> int:
    """Import one source's users (the body of `gateway migrate import`)."""
    settings = config.migration.sources[args.source]
    (source_config,) = [s for s in config.sources if s.name == args.source]
    if source_config.type == "hashed_export":
        return await _import_file(config, args, source_config)
    async with contextlib.AsyncExitStack() as stack:
        source = await stack.enter_async_context(_started_source(config, args.source))
        okta = await stack.enter_async_context(okta_client(config))
        ledger = None if args.dry_run else await stack.enter_async_context(_ledger(config))
        progress = _Progress(sys.stderr)
        importer = Importer(
            config, args.source, okta, ledger, dry_run=args.dry_run, on_user=progress.tick
        )
        users = iter_users(
            source,
            graph_attributes(settings),
            group=settings.group,
            include_disabled=settings.include_disabled,
        )
        try:
            outcome = await importer.run(users, limit=args.limit)
        except ExceptionGroup as group:  # the users are listed inside the importer's TaskGroup
            listing = group.subgroup(DirectoryListError)
            if listing is None:
                raise
            progress.done()
            print(
                f"import: cannot list the source's users: {listing.exceptions[0]}", file=sys.stderr
            )
            return 1
        progress.done()
    return _finish(args, outcome)


async def _import_file(
    config: GatewayConfig, args: argparse.Namespace, source_config: SourceConfig
) -> int:
    """Import a `hashed_export` file: hashes Okta can check go as they are, the rest hooked."""
    # The hashes extra: imported only for such a source (the config check found it installed).
    from plugins.hashed_export import HashedExportConfig, export_rows, okta_password_hash

    assert isinstance(source_config, HashedExportConfig)
    export = source_config.export
    given = config.migration.sources[args.source]
    # Columns the config names must exist (a typo would import empty attributes); the defaults
    # (`username`, `email`, `firstName`, `lastName`) are used where the file has them.
    wanted = set(given.profile.values()) if "profile" in given.model_fields_set else set()
    if "email_fallback" in given.model_fields_set and given.email_fallback is not None:
        wanted.add(given.email_fallback)
    absent = sorted(column for column in wanted if column not in export.columns)
    if absent:
        print(
            f"import: migration.sources.{args.source}.profile: the file has no column "
            + ", ".join(repr(column) for column in absent),
            file=sys.stderr,
        )
        return 2

    async def rows() -> AsyncIterator[dict[str, Any]]:
        for row in export_rows(export):
            yield row

    async with contextlib.AsyncExitStack() as stack:
        okta = await stack.enter_async_context(okta_client(config))
        ledger = None if args.dry_run else await stack.enter_async_context(_ledger(config))
        progress = _Progress(sys.stderr)
        importer = Importer(
            config,
            args.source,
            okta,
            ledger,
            dry_run=args.dry_run,
            on_user=progress.tick,
            native_hash=okta_password_hash(export),
        )
        outcome = await importer.run(rows(), limit=args.limit)
        progress.done()
    return _finish(args, outcome)


def _finish(args: argparse.Namespace, outcome: ImportOutcome) -> int:
    """The report, the run id and the last line; non-zero when a user failed."""
    write_report(args.report, outcome.report)
    if outcome.run_id is not None:
        print(f"run {outcome.run_id} (undo with: gateway migrate rollback --run {outcome.run_id})")
    print(outcome.last_line(args.dry_run))
    return 0 if outcome.counts["failed"] == 0 else 1


def import_problem(config: GatewayConfig, source: str) -> str | None:
    """Why this config cannot import this source, or None."""
    if source not in config.migration.sources:
        return f"migration.sources has no entry for {source!r}: add one (see the README)"
    if config.okta.org_url is None or config.okta.api is None:
        return "okta.org_url and okta.api (token or oauth) are needed to call Okta"
    return None


@contextlib.asynccontextmanager
async def _started_source(config: GatewayConfig, name: str) -> AsyncIterator[AzureAdSource]:
    (source_config,) = [s for s in config.sources if s.name == name]
    source = source_class(source_config.type)(source_config)
    if not isinstance(source, AzureAdSource):
        raise SystemExit(f"source {name!r} cannot list its users")
    await source.start()
    try:
        yield source
    finally:
        await source.close()


@contextlib.asynccontextmanager
async def okta_client(
    config: GatewayConfig, *, on_request: RequestObserver | None = None
) -> AsyncIterator[OktaApiClient]:
    """The Okta API client the config describes (SSWS token or OAuth service app).

    `on_request(operation, status)` is told of every request: `gateway serve` passes
    `GatewayMetrics.count_okta_request` (gateway_okta_api_requests_total). Without one (the
    one-shot commands, which exit before anything could scrape them) the counts are printed on
    stderr when the client closes: `okta api requests: list_users 2xx=5; ...`.
    """
    tally = RequestTally() if on_request is None else None
    client = build_okta_client(config, on_request=on_request or tally)
    try:
        async with client:
            yield client
    finally:
        if tally is not None and tally.counts:
            print(tally.summary(), file=sys.stderr)


def build_okta_client(
    config: GatewayConfig,
    *,
    on_request: RequestObserver | None = None,
    max_retries: int = 4,
) -> OktaApiClient:
    """The one place an Okta API client is built from `okta.org_url` and `okta.api`."""
    api, org_url = config.okta.api, config.okta.org_url
    assert api is not None and org_url is not None
    credentials: SswsToken | OAuthServiceApp
    if api.token is not None:
        credentials = SswsToken(api.token.get_secret_value())
    else:
        assert api.oauth is not None
        oauth = api.oauth
        credentials = OAuthServiceApp(
            oauth.client_id, oauth.private_key_file, oauth.scopes, key_id=oauth.key_id
        )
    return OktaApiClient(
        org_url,
        credentials,
        max_concurrency=api.max_concurrency,
        timeout_seconds=api.timeout_seconds,
        max_response_bytes=api.max_response_bytes,
        on_request=on_request,
        max_retries=max_retries,
    )


@contextlib.asynccontextmanager
async def _ledger(config: GatewayConfig) -> AsyncIterator[Ledger]:
    url = configured_ledger_url(config.migration.ledger)
    ledger = await open_ledger(url)
    try:
        yield ledger
    finally:
        await ledger.close()


class _Progress:
    """A tqdm bar at a terminal (users done, rate, results); a line every 1,000 users otherwise."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.count = 0
        self.results: Counter[str] = Counter()
        self.bar: tqdm[Any] | None = None
        if bool(getattr(stream, "isatty", lambda: False)()):
            self.bar = tqdm(file=stream, unit=" users", desc="import", dynamic_ncols=True)

    def tick(self, result: str) -> None:
        """One more user done, with its result."""
        self.count += 1
        self.results[result] += 1
        if self.bar is not None:
            self.bar.update()
            self.bar.set_postfix(self.results, refresh=False)
        elif self.count % 1000 == 0:
            self.stream.write(f"progress: {self.count} users\n")

    def done(self) -> None:
        """Close the bar (the last line is printed after it)."""
        if self.bar is not None:
            self.bar.close()
