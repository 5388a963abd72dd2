"""The journal in a real browser: a Binance CSV dragged onto the Import page's dropzone, checked,
imported, and then shown on the Journal page with the revenge trade it holds flagged.

The server runs the whole journal pipeline on the embedded bus (simulator, market store,
normalizer, enricher, behaviour, journal store), so the trades go through the same stages as in
production between the click on "Import" and the Journal page.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import Server, Tab, streamlit_server
from tests.e2e.test_browser import assert_healthy, open_app, table, wait_for

pytestmark = pytest.mark.timeout(180)

STAGES = "simulator,market-store,normalizer,enricher,behaviour,journal-store"
JOURNAL_WITHIN_S = 30.0
# Binance spot trade history, as the exchange exports it (with a BOM). Line 1 is the header:
# line 2 buys 10 SOL at 200, line 3 sells them at 140 thirty minutes later (a -600.00 loss), line 4
# buys twice the size six minutes after that loss on the same symbol (quick + same symbol: revenge),
# and line 5 is not a trade at all (Side HOLD).
CSV_NAME = "binance-spot-history.csv"
CSV = ("\ufeffDate(UTC),Pair,Side,Price,Executed,Amount,Fee\r\n"
       "2024-11-16 09:00:00,SOLUSDT,BUY,200,10.00000000SOL,2000.00000000USDT,0USDT\r\n"
       "2024-11-16 09:30:00,SOLUSDT,SELL,140,10.00000000SOL,1400.00000000USDT,0USDT\r\n"
       "2024-11-16 09:36:00,SOLUSDT,BUY,141,20.00000000SOL,2820.00000000USDT,0USDT\r\n"
       "2024-11-16 09:40:00,SOLUSDT,HOLD,141,1.00000000SOL,141.00000000USDT,0USDT\r\n").encode()

DROPZONE = "[data-testid='stFileUploaderDropzone']"
# A File in the page, wrapped in the DataTransfer a drag from the desktop carries.
DATA_TRANSFER_JS = """([name, b64, type]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type, lastModified: Date.now()}));
    return transfer;
}"""
METRICS_JS = """() => Object.fromEntries([...document.querySelectorAll("[data-testid='stMetric']")].map(m => [
    (m.querySelector("[data-testid='stMetricLabel']")?.innerText || "").trim(),
    (m.querySelector("[data-testid='stMetricValue']")?.innerText || "").trim()]))"""


@pytest.fixture
def journal_server(tmp_path: Path) -> Iterator[Server]:
    """A server running every journal stage (no API: nothing here needs port 8000)."""
    with streamlit_server(tmp_path, {"STAGES": STAGES}) as s:
        yield s


def drop_file(page: Page, selector: str, name: str, data: bytes, mime: str = "text/csv") -> None:
    """Drag ``data`` as a file named ``name`` onto ``selector`` and drop it, as a user does."""
    transfer = page.evaluate_handle(DATA_TRANSFER_JS, [name, base64.b64encode(data).decode(), mime])
    try:
        zone = page.locator(selector)
        for event in ("dragenter", "dragover", "drop"):
            zone.dispatch_event(event, {"dataTransfer": transfer})
    finally:
        transfer.dispose()


def metrics(page: Page) -> dict[str, str]:
    return page.evaluate(METRICS_JS)


def test_dropping_a_binance_csv_on_import_shows_trades_and_a_revenge_alert_on_the_journal(
        tab: Tab, journal_server: Server) -> None:
    server = journal_server
    page = open_app(tab, server, "imports")
    wait_for(page, server, "h1:has-text('Import')", "Import title")
    wait_for(page, server, DROPZONE, "file uploader dropzone")

    drop_file(page, DROPZONE, CSV_NAME, CSV)
    wait_for(page, server, "h3:has-text('Before import')", "pre-import check")
    print(metrics(page))
    print(table(page, server, "line", "5"))
    page.get_by_role("button", name="Import 3 trades").click()
    page.get_by_text("Published 3 new trades from 4 rows").wait_for()
    print(page.locator("[data-testid='stAlertContentSuccess']").inner_text())
    page.locator("[data-testid='stSidebarNavLink']").filter(has_text="Journal").click()
    page.wait_for_url("**/journal")
    time.sleep(12)
    page.screenshot(path="/tmp/j1.png", full_page=True)
    print(page.evaluate("() => document.body.innerText"))
    print(page.evaluate("() => [...document.querySelectorAll(\"[data-testid='stDataFrame']\")].map(d => d.querySelector('table')?.outerHTML.slice(0, 5000))"))
    page.get_by_role("tab", name="Alerts").click()
    time.sleep(5)
    page.screenshot(path="/tmp/j2.png", full_page=True)
    print(page.evaluate("() => document.body.innerText"))
