"""The migration progress page on the admin listener: `/migration`, its JSON and stragglers CSV.

Read-only. Every number comes from `build_report` (the same report `migrate status` prints);
this module only lays it out. The page is one HTML document with no external assets and no
script: its stylesheet is inline and allowed by its hash in the Content-Security-Policy, its
charts are inline SVG with text labels and a table of the values, so they read without color.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any, Protocol

import jinja2
from aiohttp import web
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import GatewayConfig
from gateway.ledger import Ledger, LedgerError, LedgerUser
from gateway.migrate.csvsafe import safe_cell
from gateway.migrate.report import MigrationReport, SourceReport, build_report, iso

logger = logging.getLogger(__name__)

PAGE_PATH = "/migration"
JSON_PATH = "/migration.json"
STRAGGLERS_PATH = "/migration/stragglers.csv"
STRAGGLERS_HEADER = ("login", "okta_id", "source", "imported_at")
_CSV_PAGE = 1000
# A database that stops answering must not hold an admin request (and a browser tab) forever.
_QUERY_SECONDS = 15.0
_REFRESH_SECONDS = 60
_DATABASE_TROUBLE = (SQLAlchemyError, LedgerError, OSError, TimeoutError)

# Chart geometry, in SVG user units (the SVG scales to the page width).
_CHART_WIDTH = 720
_CHART_HEIGHT = 220
_PLOT_LEFT = 52
_PLOT_RIGHT = 12
_PLOT_TOP = 14
_PLOT_BOTTOM = 40
_Y_TICKS = 4


class LedgerHandle(Protocol):
    """What the page needs of `gateway serve`'s ledger handle (`ServeLedger`)."""

    @property
    def ledger(self) -> Ledger | None:
        """The open ledger, or None while it is opening."""


Clock = Callable[[], datetime]
ConfigOf = Callable[[], GatewayConfig]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def report_source_names(config: GatewayConfig) -> list[str]:
    """The sources the report always lists: those under `migration.sources` (being migrated).

    The same as `migrate status`, so the page's JSON and `status --json` agree; a source with
    users in the ledger is listed by the report whatever the config says.
    """
    return sorted(config.migration.sources)


def straggler_row(user: LedgerUser) -> list[str]:
    """One CSV row: login, okta_id, source, imported_at (each safe to open in a spreadsheet)."""
    # A login is directory data: `=...` would run as a formula where an admin opens the file.
    return [
        safe_cell(cell) for cell in (user.login, user.okta_id, user.source, iso(user.imported_at))
    ]


# The view: display strings and chart geometry, so the template only places them.


@dataclass(frozen=True, slots=True)
class Bar:
    """One day of the chart."""

    day: str  # ISO date, also the bar's data-day
    label: str  # "Mar 1"
    count: int
    shown: str  # "1,234"
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Tick:
    """A labelled line of an axis."""

    position: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Migrated users per day as an SVG bar chart."""

    width: int
    height: int
    plot_left: int
    plot_right: float
    plot_top: int
    plot_bottom: float
    bars: tuple[Bar, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    title: str
    description: str
    value_labels: bool  # each day's count above its bar, when every count fits its slot


@dataclass(frozen=True, slots=True)
class Stat:
    """One labelled number of a source's card."""

    key: str  # stable name, also data-stat in the page (tests read it)
    label: str
    value: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class SourceView:
    """Everything the page shows about one source."""

    index: int
    name: str
    percent: float
    percent_shown: str
    summary: str
    stats: tuple[Stat, ...]
    chart: Chart
    stragglers: int
    stragglers_shown: str
    ready_to_retire: bool
    retire_reason: str


def _count(value: int) -> str:
    return f"{value:,}"


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def _moment(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    ago = now - value
    hours = ago.total_seconds() / 3600
    if hours < 1:
        relative = f"{max(int(ago.total_seconds() // 60), 0)} min ago"
    elif hours < 48:
        relative = f"{int(hours)} h ago"
    else:
        relative = f"{int(hours // 24)} days ago"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({relative})"


def _eta(report: SourceReport) -> str:
    if report.eta_days is None:
        return "—"  # nobody migrated in the last 7 days: no estimate
    if report.eta_days == 0:
        return "done"
    return f"{report.eta_days:,.1f} days"


def _axis_top(peak: int) -> tuple[int, int]:
    """The y axis's top and step: `_Y_TICKS` equal whole steps of 1, 2 or 5 times a power of 10."""
    rough = max(peak, 1) / _Y_TICKS
    magnitude = 10 ** max(math.floor(math.log10(rough)), 0) if rough >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    return step * _Y_TICKS, step


def build_chart(name: str, daily: Sequence[tuple[date, int]]) -> Chart:
    """Geometry of the daily chart: one bar per day (zero-height on days without migrations)."""
    plot_right = _CHART_WIDTH - _PLOT_RIGHT
    plot_bottom = _CHART_HEIGHT - _PLOT_BOTTOM
    plot_width = plot_right - _PLOT_LEFT
    plot_height = plot_bottom - _PLOT_TOP
    top, step = _axis_top(max((count for _, count in daily), default=0))
    slot = plot_width / max(len(daily), 1)
    bars = []
    for n, (day, count) in enumerate(daily):
        height = plot_height * count / top
        if count:
            height = max(height, 1.5)  # one user still shows
        bars.append(
            Bar(
                day=day.isoformat(),
                label=_day_label(day),
                count=count,
                shown=_count(count),
                x=round(_PLOT_LEFT + n * slot + slot * 0.15, 2),
                y=round(plot_bottom - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
            )
        )
    y_ticks = tuple(
        Tick(round(plot_bottom - plot_height * value / top, 2), _count(value))
        for value in range(0, top + 1, step)
    )
    # Every 7th day back from today, so the newest bar is always labelled.
    x_ticks = tuple(
        Tick(round(bar.x + bar.width / 2, 2), bar.label)
        for n, bar in enumerate(bars)
        if (len(bars) - 1 - n) % 7 == 0
    )
    total = sum(count for _, count in daily)
    if daily:
        first, last = daily[0][0], daily[-1][0]
        busiest_day, busiest = max(daily, key=lambda item: (item[1], item[0]))
        description = (
            f"{_count(total)} users migrated from {_day_label(first)} to {_day_label(last)}"
            + (f"; most on {_day_label(busiest_day)} ({_count(busiest)})" if busiest else "")
            + f"; {_count(daily[-1][1])} today."
        )
    else:
        description = "No days to show."
    return Chart(
        width=_CHART_WIDTH,
        height=_CHART_HEIGHT,
        plot_left=_PLOT_LEFT,
        plot_right=plot_right,
        plot_top=_PLOT_TOP,
        plot_bottom=plot_bottom,
        bars=tuple(bars),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        title=f"Users of {name} migrated per day, last {len(daily)} days",
        description=description,
        # Three digits fit a day's slot at the chart's font size; beyond, the table has them.
        value_labels=all(count < 1000 for _, count in daily),
    )


def source_view(
    index: int, report: SourceReport, now: datetime, retire_after_days: int
) -> SourceView:
    """The display form of one source's report."""
    percent = report.percent_migrated
    if report.ready_to_retire:
        finished = (
            f"; {_count(report.finished)} who never signed in were finished "
            "(gateway migrate finish)"
            if report.finished
            else ""
        )
        retire_reason = (
            f"Nobody is pending{finished}."
            if report.pending == 0
            else f"Nobody signed in for {retire_after_days} days; chase the rest "
            "(gateway migrate finish)."
        )
    else:
        waiting = (
            f"{_count(report.pending)} user{' has' if report.pending == 1 else 's have'} "
            "not signed in yet"
        )
        if report.last_verified_at is None and report.migrated == 0:
            retire_reason = f"{waiting}, and nobody has so far."
        else:
            retire_reason = f"{waiting}; others did within the last {retire_after_days} days."
    stats = (
        Stat("imported", "Imported", _count(report.imported), "users of this source in Okta"),
        Stat(
            "migrated", "Migrated", _count(report.migrated), "Okta holds the password; incl. native"
        ),
        Stat("native", "Native hash", _count(report.native), "created with a hash Okta stores"),
        Stat(
            "verified_unconfirmed",
            "Verified, unconfirmed",
            _count(report.verified_unconfirmed),
            "hook said VERIFIED; no event yet",
        ),
        Stat("pending", "Pending", _count(report.pending), "never signed in"),
        Stat("finished", "Finished", _count(report.finished), "acted on by migrate finish"),
        # Before the rate and the ETA: this double-width card then never leaves a hole in the
        # grid, whatever the number of columns (2 to 6).
        Stat("last_verified_at", "Last verification", _moment(report.last_verified_at, now)),
        Stat("last_24h", "Last 24 h", _count(report.last_24h), "migrated"),
        Stat("daily_rate_7d", "Daily rate (7 days)", f"{report.daily_rate_7d:,.1f}", "users/day"),
        Stat("eta", "ETA", _eta(report), "at the 7-day rate"),
    )
    return SourceView(
        index=index,
        name=report.source,
        percent=round(percent, 1),
        percent_shown=f"{percent:.1f} %",
        summary=f"{_count(report.migrated)} of {_count(report.imported)} imported users migrated",
        stats=stats,
        chart=build_chart(report.source, report.daily),
        stragglers=report.pending,
        stragglers_shown=_count(report.pending),
        ready_to_retire=report.ready_to_retire,
        retire_reason=retire_reason,
    )


# The HTTP side.


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gateway", "templates"),
        autoescape=True,  # every value is escaped unless a template says otherwise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _stylesheet() -> str:
    return resources.files("gateway").joinpath("templates/migration.css").read_text("utf-8")


def _content_security_policy(stylesheet: str) -> str:
    # The one inline <style> is allowed by its hash, which is stricter than 'unsafe-inline'
    # and needs no second (authenticated) request for a stylesheet. No script at all.
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _filename(source: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("._") or "source"
    return f"stragglers-{safe[:64]}.csv"


class ProgressPage:
    """The three read-only endpoints, reading the ledger and the running config per request."""

    def __init__(self, handle: LedgerHandle | None, config_of: ConfigOf, clock: Clock) -> None:
        self._handle = handle
        self._config_of = config_of
        self._clock = clock
        self._templates = _templates()
        self._stylesheet = _stylesheet()
        self._headers = {
            "Content-Security-Policy": _content_security_policy(self._stylesheet),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        }

    def _ledger(self) -> tuple[Ledger | None, str]:
        """The open ledger, or None and why not (a sentence for the operator)."""
        if self._handle is None:
            return None, (
                "This gateway does not use the migration ledger. Set migration.ledger (or "
                "migration.event_hook) in config.yaml and restart it to follow the migration here."
            )
        ledger = self._handle.ledger
        if ledger is None:
            return None, (
                "The migration ledger is not open yet: the gateway is still connecting to its "
                "database (the gateway's log says why if this lasts). Try again in a moment."
            )
        return ledger, ""

    async def _report(self, ledger: Ledger) -> tuple[MigrationReport, int]:
        config = self._config_of()
        retire_after_days = config.migration.retire_after_days
        async with asyncio.timeout(_QUERY_SECONDS):
            report = await build_report(
                ledger,
                report_source_names(config),
                now=self._clock(),
                retire_after_days=retire_after_days,
            )
        return report, retire_after_days

    def _html(self, template: str, status: int = 200, **values: Any) -> web.Response:
        body = self._templates.get_template(template).render(
            # Our packaged stylesheet, not input; its hash is in the CSP.
            stylesheet=Markup(self._stylesheet),  # noqa: S704
            refresh_seconds=_REFRESH_SECONDS,
            **values,
        )
        headers = dict(self._headers)
        if status == 503:
            headers["Retry-After"] = "10"
        return web.Response(
            text=body, status=status, content_type="text/html", charset="utf-8", headers=headers
        )

    def _unavailable_page(self, message: str) -> web.Response:
        return self._html("migration_unavailable.html", status=503, message=message)

    def _unavailable_json(self, message: str) -> web.Response:
        return web.json_response(
            {"error": {"errorSummary": message}}, status=503, headers=self._headers
        )

    async def page(self, request: web.Request) -> web.Response:
        """GET /migration: the progress of every source."""
        ledger, why = self._ledger()
        if ledger is None:
            return self._unavailable_page(why)
        try:
            report, retire_after_days = await self._report(ledger)
        except _DATABASE_TROUBLE as err:
            logger.warning(
                "migration page: ledger query failed", extra={"error": type(err).__name__}
            )
            return self._unavailable_page(
                "The migration ledger did not answer. Try again in a moment; the gateway's log "
                "names the error."
            )
        now = report.generated_at
        sources = [
            source_view(n, source, now, retire_after_days)
            for n, source in enumerate(report.sources.values())
        ]
        total_imported = sum(s.imported for s in report.sources.values())
        total_migrated = sum(s.migrated for s in report.sources.values())
        return self._html(
            "migration.html",
            sources=sources,
            generated_at=f"{now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
            generated_iso=iso(now),
            totals=(
                f"{_count(total_migrated)} of {_count(total_imported)} imported users migrated "
                f"across {len(sources)} source{'s' if len(sources) != 1 else ''}"
            ),
            retire_after_days=retire_after_days,
            stragglers_path=STRAGGLERS_PATH,
            json_path=JSON_PATH,
        )

    async def json(self, request: web.Request) -> web.Response:
        """GET /migration.json: `MigrationReport.as_json()`."""
        ledger, why = self._ledger()
        if ledger is None:
            return self._unavailable_json(why)
        try:
            report, _ = await self._report(ledger)
        except _DATABASE_TROUBLE as err:
            logger.warning(
                "migration json: ledger query failed", extra={"error": type(err).__name__}
            )
            return self._unavailable_json("the migration ledger did not answer; try again")
        return web.json_response(report.as_json(), headers=self._headers)

    async def stragglers(self, request: web.Request) -> web.StreamResponse:
        """GET /migration/stragglers.csv?source=NAME: who has not signed in, streamed by page."""
        source = request.query.get("source", "")
        if not source:
            return web.json_response(
                {"error": {"errorSummary": "give the source: ?source=NAME"}},
                status=400,
                headers=self._headers,
            )
        ledger, why = self._ledger()
        if ledger is None:
            return self._unavailable_json(why)
        # The first page before the 200: a database that is down gets a 503, not an empty file.
        try:
            async with asyncio.timeout(_QUERY_SECONDS):
                page = await ledger.not_signed_in(source, limit=_CSV_PAGE)
        except _DATABASE_TROUBLE as err:
            logger.warning("stragglers: ledger query failed", extra={"error": type(err).__name__})
            return self._unavailable_json("the migration ledger did not answer; try again")
        response = web.StreamResponse(
            headers={
                **self._headers,
                "Content-Type": "text/csv; charset=utf-8; header=present",
                "Content-Disposition": f'attachment; filename="{_filename(source)}"',
            }
        )
        await response.prepare(request)
        await response.write(_csv_lines([list(STRAGGLERS_HEADER)]))
        # Keyset pages, one short read transaction each: memory stays flat for any number of
        # users, and a failure part-way aborts the download rather than ending it as if complete.
        while page:
            await response.write(_csv_lines(straggler_row(user) for user in page))
            if len(page) < _CSV_PAGE:
                break
            async with asyncio.timeout(_QUERY_SECONDS):
                page = await ledger.not_signed_in(source, limit=_CSV_PAGE, after=page[-1].login)
        await response.write_eof()
        return response


def _csv_lines(rows: Iterable[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)  # RFC 4180 line ends
    return buffer.getvalue().encode("utf-8")


def add_progress_routes(
    app: web.Application,
    handle: LedgerHandle | None,
    config_of: ConfigOf,
    *,
    clock: Clock = _utcnow,
) -> None:
    """Serve the progress page, its JSON and the stragglers CSV on `app` (the admin app)."""
    page = ProgressPage(handle, config_of, clock)
    app.router.add_get(PAGE_PATH, page.page)
    app.router.add_get(JSON_PATH, page.json)
    app.router.add_get(STRAGGLERS_PATH, page.stragglers)
