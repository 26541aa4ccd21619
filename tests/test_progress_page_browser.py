"""The progress page in a real browser: Debian's headless Chromium, driven by Playwright.

The page is loaded from the admin listener of a real `gateway serve` process, with the admin
secret sent as a browser would through a header-injecting proxy (`extra_http_headers`). The
browser applies the page's Content-Security-Policy, so a style the policy blocks, or any
script, shows up here as a console error. A screenshot is kept in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import ConsoleMessage, Dialog, async_playwright

from emulators.entra import RunningEmulator
from gateway.ledger import open_ledger
from tests.conftest import SecretScan
from tests.migration_ledger_data import ENTRA, HOSTILE, LEGACY, NORTHWIND, Expected, fill_ledger
from tests.redis_server import free_port
from tests.serve_process import ServeProcess
from tests.test_progress_page import ADMIN, config_yaml, expected_values

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
SCREENSHOT = "migration-page.png"
CARD_SCREENSHOT = "migration-entra-card.png"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium; `make test` installs it (Makefile SERVICES). Never downloaded."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make services` or `apt-get install -y chromium`",
            pytrace=False,
        )
    return CHROMIUM


async def _wait_for_ledger(url: str) -> None:
    """The ledger opens in the background after start-up: wait until the page has it."""
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        for _ in range(200):
            async with http.get(url) as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("the migration page never found the ledger open")


async def test_the_progress_page_in_chromium(
    entra: RunningEmulator, tmp_path: Path, chromium: Path, secret_scan: SecretScan
) -> None:
    port, admin_port = free_port(), free_port()
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = await open_ledger(url)
    try:
        expected = await fill_ledger(ledger, datetime.now(UTC))
    finally:
        await ledger.close()
    config = tmp_path / "gateway.yaml"
    config.write_text(config_yaml(entra.url, url, admin_port, port), encoding="utf-8")
    gateway = ServeProcess(config, f"http://127.0.0.1:{port}")
    await gateway.start()
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        await _wait_for_ledger(f"{admin}/migration.json")
        await _look_at_the_page(admin, expected, tmp_path, chromium)
    finally:
        gateway.send(signal.SIGTERM)
        assert await gateway.wait() == 0
        secret_scan.add_output(gateway.output())
    errors = [r["msg"] for r in gateway.records() if r.get("level") in ("error", "critical")]
    assert errors == []


async def _look_at_the_page(admin: str, expected: Expected, tmp_path: Path, chromium: Path) -> None:
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium))
        try:
            context = await browser.new_context(
                extra_http_headers=ADMIN,
                viewport={"width": 1180, "height": 900},
                accept_downloads=True,
                locale="en-US",
                color_scheme="light",
            )
            page = await context.new_page()

            def console(message: ConsoleMessage) -> None:
                if message.type in ("error", "warning"):
                    problems.append(f"console {message.type}: {message.text}")

            async def dialog(opened: Dialog) -> None:
                problems.append(f"a dialog opened: {opened.message}")
                await opened.dismiss()

            page.on("console", console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("dialog", dialog)
            response = await page.goto(f"{admin}/migration", wait_until="load")
            assert response is not None and response.status == 200

            # The numbers, as the browser shows them.
            card = page.locator(f'section[data-source="{ENTRA}"]')
            for key, value in expected_values(expected).items():
                assert (await card.locator(f'[data-value="{key}"]').inner_text()).strip() == value
            sections = page.locator("section[data-source]")
            names = [await s.get_attribute("data-source") for s in await sections.all()]
            assert names == sorted([ENTRA, NORTHWIND, LEGACY, HOSTILE])
            # The hostile source name is shown as text (and opened no dialog: checked below).
            hostile = page.locator("section[data-source] h2").filter(has_text="<script>")
            assert await hostile.inner_text() == HOSTILE

            # The chart: one bar per day, its count and a height in proportion.
            bars = card.locator("svg.daily rect.bar")
            assert await bars.count() == 30
            shown = [
                (
                    await bar.get_attribute("data-day"),
                    int(await bar.get_attribute("data-count") or -1),
                )
                for bar in await bars.all()
            ]
            assert shown == [(d.isoformat(), n) for d, n in expected.daily.items()]
            heights = [
                (await bar.bounding_box() or {"height": 0.0})["height"] for bar in await bars.all()
            ]
            peak = max(range(30), key=lambda n: shown[n][1])
            # Each bar, as drawn, reaches its value on the y axis's gridlines.
            y_labels = await card.locator("svg.daily .y-labels text").all_text_contents()
            grid = [await line.bounding_box() for line in await card.locator(".grid line").all()]
            assert y_labels[0] == "0" and int(y_labels[-1]) >= shown[peak][1]
            assert grid[0] is not None and grid[-1] is not None
            per_user = (grid[0]["y"] - grid[-1]["y"]) / int(y_labels[-1])
            assert heights[peak] > 40  # rendered, and tall
            for (_, count), height in zip(shown, heights, strict=True):
                assert height == pytest.approx(count * per_user, abs=2)
            # Each day's count is also written above its bar (readable without color).
            labels = await card.locator("svg.daily .value-labels text").all_text_contents()
            assert labels == [str(count) for _, count in shown if count]
            assert "migrated per day" in (
                await card.locator("svg.daily > title").text_content() or ""
            )

            # The progress bar's fill spans migrated / imported of its track.
            track = await card.locator(".meter-track").bounding_box()
            fill = await card.locator(".meter-fill").bounding_box()
            assert track is not None and fill is not None
            share = expected.migrated / expected.imported
            assert fill["width"] == pytest.approx(track["width"] * share, abs=2)

            # The inline stylesheet was allowed by the CSP (system fonts, colored bars).
            font = await page.evaluate("getComputedStyle(document.body).fontFamily")
            assert font.startswith("system-ui")
            bar_fill = await card.locator("rect.bar").first.evaluate(
                "e => getComputedStyle(e).fill"
            )
            assert bar_fill == "rgb(37, 99, 235)"

            await page.screenshot(path=str(tmp_path / SCREENSHOT), full_page=True)
            await card.screenshot(path=str(tmp_path / CARD_SCREENSHOT))
            ARTIFACTS.mkdir(exist_ok=True)
            for name in (SCREENSHOT, CARD_SCREENSHOT):
                shutil.copyfile(tmp_path / name, ARTIFACTS / name)

            # The stragglers CSV, downloaded through the link as a user would.
            async with page.expect_download() as waiting:
                await card.locator("a.download").click()
            download = await waiting.value
            assert download.suggested_filename == "stragglers-entra.csv"
            saved = tmp_path / "stragglers.csv"
            await download.save_as(saved)
            rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"))))
            assert rows[0] == ["login", "okta_id", "source", "imported_at"]
            assert [tuple(row) for row in rows[1:]] == expected.stragglers

            # Without the admin secret: nothing but the 401.
            bare = await browser.new_context()
            try:
                anonymous = await (await bare.new_page()).goto(f"{admin}/migration")
                assert anonymous is not None and anonymous.status == 401
            finally:
                await bare.close()
            await context.close()
        finally:
            await browser.close()
    assert problems == []
