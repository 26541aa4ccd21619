"""`gateway migrate status -c CONFIG [--json] [--refresh] [--stragglers FILE.csv]`.

How far each source has come, from the ledger, with report.py's definitions (imported,
migrated incl. native, verified_unconfirmed, pending, finished, last 24 h, 7-day daily rate,
ETA, last verification, ready to retire). Human output is a table and a last line
`status: sources=N imported=N migrated=N verified_unconfirmed=N pending=N finished=N`; `--json`
prints one object, `{"generated_at": ..., "sources": {NAME: {...}}}`, and nothing else on stdout.

`--refresh` first reconciles the ledger with Okta (gateway/migrate/reconcile.py: the System
Log's missed `user.import.password` events, then every not-yet-migrated user's
`credentials.provider.type`), records a `refresh` run, and says what it did on stderr:
`refresh: checked=N migrated=N pending=N missing=N failed=N events=N`. Exit 1 when some
users could not be read (the table is still printed).

`--stragglers FILE.csv` writes the users still pending (never verified, not finished by
`migrate finish`), after any refresh: `login,okta_id,source,imported_at`, one row per user,
cells safe for spreadsheets.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.ledger import (
    Ledger,
    LedgerError,
    LedgerUrlError,
    RunCommand,
    configured_ledger_url,
    open_ledger,
)
from gateway.logs import configure_logging
from gateway.migrate.csvsafe import safe_cell
from gateway.migrate.reconcile import ReconcileOutcome, Reconciler
from gateway.migrate.report import MigrationReport, SourceReport, build_report, iso
from gateway.migrate.tally import last_line

REFRESH_COUNTS = ("checked", "migrated", "pending", "missing", "failed", "events")
STRAGGLERS_HEADER = ("login", "okta_id", "source", "imported_at")
TOTALS = ("imported", "migrated", "verified_unconfirmed", "pending", "finished")
_PAGE = 500


def _now() -> datetime:
    return datetime.now(UTC)


def main(args: argparse.Namespace) -> int:
    """`gateway migrate status`; 0 unless the ledger or a refresh failed."""
    from gateway.cli import load_or_report

    config = load_or_report(args.config)
    if config is None:
        return 1
    if args.refresh and (config.okta.org_url is None or config.okta.api is None):
        print("status: --refresh needs okta.org_url and okta.api (token or oauth)", file=sys.stderr)
        return 1
    configure_logging("warning", "text")
    return asyncio.run(run_status(config, args))


async def run_status(
    config: GatewayConfig, args: argparse.Namespace, *, clock: Callable[[], datetime] = _now
) -> int:
    """The body of `main`: refresh, report, stragglers."""
    url = configured_ledger_url(config.migration.ledger)
    try:
        ledger = await open_ledger(url)
    except (LedgerError, LedgerUrlError) as err:
        print(f"status: {err}", file=sys.stderr)
        return 1
    code = 0
    try:
        if args.refresh:
            outcome = await refresh(config, ledger)
            for error in outcome.errors[:10]:
                print(f"refresh: {error}", file=sys.stderr)
            print(last_line("refresh", outcome.counts, REFRESH_COUNTS), file=sys.stderr)
            code = 1 if outcome.counts["failed"] else 0
        report = await build_report(
            ledger,
            config.migration.sources,
            now=clock(),
            retire_after_days=config.migration.retire_after_days,
        )
        if args.stragglers is not None:
            written = await write_stragglers(ledger, list(report.sources), args.stragglers)
            print(f"stragglers: {written} users written to {args.stragglers}", file=sys.stderr)
    finally:
        await ledger.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render_table(report))
    return code


async def refresh(config: GatewayConfig, ledger: Ledger) -> ReconcileOutcome:
    """Reconcile every source with Okta inside one `refresh` run of the ledger."""
    from gateway.migrate.commands import okta_client

    api = config.okta.api
    assert api is not None
    progress = await ledger.progress()
    sources = sorted(set(config.migration.sources) | set(progress))
    run_id = await ledger.start_run(RunCommand.REFRESH)
    outcome = ReconcileOutcome()
    async with okta_client(config) as okta:
        reconciler = Reconciler(okta, ledger, concurrency=api.max_concurrency)
        await reconciler.backfill_events(outcome)
        for source in sources:
            await reconciler.reconcile_source(source, outcome)
    await ledger.finish_run(run_id, {name: outcome.counts[name] for name in REFRESH_COUNTS})
    return outcome


async def write_stragglers(ledger: Ledger, sources: list[str], path: Path) -> int:
    """The pending users of `sources` (not the finished ones) as CSV, page by page; how many."""
    written = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(STRAGGLERS_HEADER)
        for source in sources:
            after: str | None = None
            while True:
                page = await ledger.not_signed_in(source, limit=_PAGE, after=after)
                for user in page:
                    row = (user.login, user.okta_id, user.source, iso(user.imported_at))
                    writer.writerow([safe_cell(cell) for cell in row])
                written += len(page)
                if len(page) < _PAGE:
                    break
                after = page[-1].login
    return written


_COLUMNS: tuple[tuple[str, Callable[[SourceReport], str]], ...] = (
    ("SOURCE", lambda r: r.source),
    ("IMPORTED", lambda r: str(r.imported)),
    ("MIGRATED", lambda r: f"{r.migrated} ({r.percent_migrated:.0f}%)"),
    ("NATIVE", lambda r: str(r.native)),
    ("UNCONFIRMED", lambda r: str(r.verified_unconfirmed)),
    ("PENDING", lambda r: str(r.pending)),
    ("FINISHED", lambda r: str(r.finished)),
    ("LAST_24H", lambda r: str(r.last_24h)),
    ("PER_DAY_7D", lambda r: f"{r.daily_rate_7d:.1f}"),
    ("ETA_DAYS", lambda r: "-" if r.eta_days is None else f"{r.eta_days:.1f}"),
    ("LAST_VERIFIED", lambda r: iso(r.last_verified_at) or "never"),
    ("READY_TO_RETIRE", lambda r: "yes" if r.ready_to_retire else "no"),
)


def render_table(report: MigrationReport) -> str:
    """The human table: one row per source, then the totals line (a contract)."""
    rows = [[name for name, _ in _COLUMNS]]
    rows += [[cell(source) for _, cell in _COLUMNS] for source in report.sources.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(
            text.ljust(width) if i == 0 else text.rjust(width)
            for i, (text, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    if len(rows) == 1:
        lines.append("(no source has users in the ledger yet)")
    totals = {
        name: sum(source.as_json()[name] for source in report.sources.values()) for name in TOTALS
    }
    lines.append(f"as of {iso(report.generated_at)}")
    lines.append(
        last_line("status", {"sources": len(report.sources), **totals}, ("sources", *TOTALS))
    )
    return "\n".join(lines)
