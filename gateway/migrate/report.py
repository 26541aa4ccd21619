"""How far the migration has come, per source, computed in one place from the ledger.

`migrate status`, the `/migration` page and the `gateway_migration_users` gauges all show these.

Definitions (a contract: `migrate status --json` prints them):

- `imported` = `migrated` + `verified_unconfirmed` + `pending` + `finished`: users of the source
  in Okta with the password hook, or created with a hash Okta stores (`native`, counted as
  migrated). Each imported user is in exactly one of the four.
- `migrated`: Okta holds the password (a `user.import.password` SUCCESS event, a
  reconciliation that read `credentials.provider.type: OKTA`, or a native hash), whatever
  `migrate finish` did to the user before.
- `verified_unconfirmed`: the hook answered VERIFIED, no event or reconciliation confirmed it
  (a user `migrate finish` acted on whom the hook verified later, e.g. after
  `expire_password`, is counted here).
- `pending`: never verified and not finished; who has not signed in yet (`--stragglers`).
- `finished`: never verified, and `migrate finish` reset, expired or deactivated them (the
  ledger's `reason` is one of `FINISH_REASONS`: `finish_<action>`; a `finish_<action>_failed`
  user stays `pending`). Nobody waits for them any more.
- `daily_rate_7d`: users migrated in the last 7 days / 7; `eta_days`: the users neither
  migrated nor finished (`verified_unconfirmed` + `pending`) at that rate (null when the rate
  is 0, 0 when nobody is left).
- `ready_to_retire`: nobody is pending (finished users do not count), or nobody was verified
  or migrated for `migration.retire_after_days` (the rest have to be chased: `migrate finish`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.ledger.models import SourceProgress

if TYPE_CHECKING:
    from gateway.ledger.store import Ledger

RATE_DAYS = 7
CHART_DAYS = 30


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, seconds precision, or None."""
    if moment is None:
        return None
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SourceReport:
    """One source's progress."""

    source: str
    migrated: int
    native: int
    verified_unconfirmed: int
    pending: int
    finished: int
    last_24h: int
    daily_rate_7d: float
    eta_days: float | None
    last_verified_at: datetime | None
    ready_to_retire: bool
    daily: tuple[tuple[date, int], ...]  # migrated per UTC day, the last CHART_DAYS days

    @property
    def imported(self) -> int:
        """Users in Okta from this source: migrated + verified_unconfirmed + pending + finished."""
        return self.migrated + self.verified_unconfirmed + self.pending + self.finished

    @property
    def percent_migrated(self) -> float:
        """Migrated as a share of imported, 0-100 (0 when nothing was imported)."""
        return 100.0 * self.migrated / self.imported if self.imported else 0.0

    def as_json(self) -> dict[str, Any]:
        """The `--json` object of this source."""
        return {
            "imported": self.imported,
            "migrated": self.migrated,
            "native": self.native,
            "verified_unconfirmed": self.verified_unconfirmed,
            "pending": self.pending,
            "finished": self.finished,
            "last_24h": self.last_24h,
            "daily_rate_7d": round(self.daily_rate_7d, 3),
            "eta_days": None if self.eta_days is None else round(self.eta_days, 1),
            "last_verified_at": iso(self.last_verified_at),
            "ready_to_retire": self.ready_to_retire,
        }


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """Every source's progress at one moment."""

    generated_at: datetime
    sources: dict[str, SourceReport]

    def as_json(self) -> dict[str, Any]:
        """`{"generated_at": ..., "sources": {NAME: {...}}}`."""
        return {
            "generated_at": iso(self.generated_at),
            "sources": {name: report.as_json() for name, report in self.sources.items()},
        }


async def build_report(
    ledger: Ledger,
    source_names: Iterable[str],
    *,
    now: datetime,
    retire_after_days: int,
) -> MigrationReport:
    """The report for `source_names` plus every source the ledger has users of."""
    progress = await ledger.progress()
    names = sorted(set(source_names) | set(progress))
    sources = {}
    for name in names:
        counts = progress.get(name) or SourceProgress(source=name)
        sources[name] = await _source_report(ledger, counts, now, retire_after_days)
    return MigrationReport(generated_at=now, sources=sources)


async def _source_report(
    ledger: Ledger, counts: SourceProgress, now: datetime, retire_after_days: int
) -> SourceReport:
    today = now.date()
    first_day = today - timedelta(days=CHART_DAYS - 1)
    per_day = dict(
        await ledger.daily_migrations(
            counts.source, datetime.combine(first_day, datetime.min.time(), now.tzinfo)
        )
    )
    daily = tuple(
        (day, per_day.get(day, 0))
        for day in (first_day + timedelta(days=n) for n in range(CHART_DAYS))
    )
    last_week = await ledger.migrated_since(counts.source, now - timedelta(days=RATE_DAYS))
    rate = last_week / RATE_DAYS
    remaining = counts.verified_unconfirmed + counts.pending  # finished users are not waited for
    eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
    quiet_since = max(
        (t for t in (counts.last_verified_at, counts.last_migrated_at) if t is not None),
        default=None,
    )
    ready = counts.pending == 0 or (
        quiet_since is not None and now - quiet_since >= timedelta(days=retire_after_days)
    )
    return SourceReport(
        source=counts.source,
        migrated=counts.migrated,
        native=counts.native,
        verified_unconfirmed=counts.verified_unconfirmed,
        pending=counts.pending,
        finished=counts.finished,
        last_24h=await ledger.migrated_since(counts.source, now - timedelta(hours=24)),
        daily_rate_7d=rate,
        eta_days=eta,
        last_verified_at=counts.last_verified_at,
        ready_to_retire=ready,
        daily=daily,
    )


def state_counts(progress: SourceProgress) -> dict[str, int]:
    """The `gateway_migration_users` states of one source, by the definitions above."""
    return {
        "imported": progress.imported,
        "migrated": progress.migrated,
        "verified_unconfirmed": progress.verified_unconfirmed,
        "pending": progress.pending,
        "finished": progress.finished,
    }


async def user_counts(ledger: Ledger, source_names: Iterable[str]) -> dict[str, dict[str, int]]:
    """`state_counts` of `source_names` and every source the ledger has users of (one query)."""
    progress = await ledger.progress()
    names = sorted(set(source_names) | set(progress))
    return {name: state_counts(progress.get(name) or SourceProgress(source=name)) for name in names}
