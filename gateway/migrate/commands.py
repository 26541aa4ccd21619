"""The migration commands' work, imported only when a `gateway migrate` command runs."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.config import GatewayConfig
from gateway.ledger import Ledger, default_ledger_url, open_ledger
from gateway.migrate.importer import Importer, write_report
from gateway.migrate.mapping import graph_attributes
from gateway.okta_api import OAuthServiceApp, OktaApiClient, SswsToken
from plugins.azure_ad import AzureAdSource
from plugins.entra_directory import DirectoryListError, iter_users
from plugins.registry import source_class


async def run_import(config: GatewayConfig, args: argparse.Namespace) -> int:
    """Import one source's users (the body of `gateway migrate import`)."""
    settings = config.migration.sources[args.source]
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
async def okta_client(config: GatewayConfig) -> AsyncIterator[OktaApiClient]:
    """The Okta API client the config describes (SSWS token or OAuth service app)."""
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
    client = OktaApiClient(
        org_url,
        credentials,
        max_concurrency=api.max_concurrency,
        timeout_seconds=api.timeout_seconds,
    )
    async with client:
        yield client


@contextlib.asynccontextmanager
async def _ledger(config: GatewayConfig) -> AsyncIterator[Ledger]:
    url = config.migration.ledger or default_ledger_url(os.environ, Path.cwd())
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
