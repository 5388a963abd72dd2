"""The journal in a real browser: a Binance CSV dragged onto the Import page's dropzone, checked,
imported, and then shown on the Journal page with the revenge trade it holds flagged.

The server runs the journal pipeline on the embedded bus (simulator, market store, normalizer,
enricher, behaviour, journal store), so the imported fills go through the same stages as in
production between the click on "Import" and the Journal page.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import Server, Tab, streamlit_server
from tests.e2e.test_browser import TABLE_JS, assert_healthy, open_app, table, wait_for

pytestmark = pytest.mark.timeout(180)

STAGES = "simulator,market-store,normalizer,enricher,behaviour,journal-store"
JOURNAL_WITHIN_S = 30.0  # the Journal page's live parts refresh every 3 s
# Binance spot trade history as the exchange exports it (a BOM, CRLF). Line 1 is the header; line 2
# buys 10 SOL at 200, line 3 sells them at 140 thirty minutes later (a -600.00 loss), line 4 buys
# twice the size six minutes after that loss on the same symbol (quick and same symbol: revenge),
# and line 5 is no trade at all (Side HOLD).
CSV_NAME = "binance-spot-trade-history.csv"
CSV = (
    "\ufeffDate(UTC),Pair,Side,Price,Executed,Amount,Fee\r\n"
    "2024-11-16 09:00:00,SOLUSDT,BUY,200,10.00000000SOL,2000.00000000USDT,0USDT\r\n"
    "2024-11-16 09:30:00,SOLUSDT,SELL,140,10.00000000SOL,1400.00000000USDT,0USDT\r\n"
    "2024-11-16 09:36:00,SOLUSDT,BUY,141,20.00000000SOL,2820.00000000USDT,0USDT\r\n"
    "2024-11-16 09:40:00,SOLUSDT,HOLD,141,1.00000000SOL,141.00000000USDT,0USDT\r\n"
).encode()
REVENGE_MESSAGE = "Entered SOLUSDT 6 min after a -600.00 loss on SOLUSDT"

DROPZONE = "[data-testid='stFileUploaderDropzone']"
# A File made in the page, in the DataTransfer that a drag from the desktop carries.
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
    """A server running every journal stage (no "api" stage: nothing here needs port 8000)."""
    with streamlit_server(tmp_path, {"STAGES": STAGES}) as s:
        yield s


def drop_file(page: Page, selector: str, name: str, data: bytes, mime: str = "text/csv") -> None:
    """Drag ``data`` as a file named ``name`` over ``selector`` and drop it there, as a user does."""
    transfer = page.evaluate_handle(DATA_TRANSFER_JS, [name, base64.b64encode(data).decode(), mime])
    try:
        zone = page.locator(selector)
        for event in ("dragenter", "dragover", "drop"):
            zone.dispatch_event(event, {"dataTransfer": transfer})
    finally:
        transfer.dispose()


def metrics_until(page: Page, server: Server, wanted: dict[str, str], timeout_s: float = 30.0) -> dict[str, str]:
    """The page's metrics (label -> value) once they include every item of ``wanted``: the metrics
    of that moment, not of a second look (a rerun may be redrawing the page by then)."""
    try:
        found = page.wait_for_function(
            f"(wanted) => {{ const m = ({METRICS_JS})(); "
            "return Object.entries(wanted).every(([k, v]) => m[k] === v) ? m : false; }",
            arg=wanted,
            timeout=timeout_s * 1000,
        )
    except PlaywrightTimeout:
        pytest.fail(
            f"metrics {page.evaluate(METRICS_JS)} never included {wanted} within {timeout_s:.0f} s; {server.describe()}"
        )
    return dict(found.json_value())


def rows_until(
    page: Page,
    server: Server,
    first_column: str,
    done: Callable[[list[dict[str, str]]], bool],
    what: str,
    timeout_s: float = JOURNAL_WITHIN_S,
) -> list[dict[str, str]]:
    """The rows of the st.dataframe whose first column is ``first_column``, once ``done(rows)``."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, str]] | None = None
    while True:
        rows = page.evaluate(TABLE_JS, first_column)
        if rows and done(rows):
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:.0f} s; the '{first_column}' table: {rows}; {server.describe()}")
        time.sleep(0.5)


def visible(locator: Locator, server: Server, what: str, timeout_s: float = JOURNAL_WITHIN_S) -> Locator:
    try:
        locator.wait_for(state="visible", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"no visible {what} within {timeout_s:.0f} s; {server.describe()}")
    return locator


def test_dropping_a_binance_csv_on_import_shows_trades_and_a_revenge_alert_on_the_journal(
    tab: Tab, journal_server: Server
) -> None:
    server = journal_server
    page = open_app(tab, server, "imports")
    wait_for(page, server, "h1:has-text('Import')", "Import title")
    wait_for(page, server, DROPZONE, "file uploader dropzone")

    # Drop the export; the page checks every row before anything is published.
    drop_file(page, DROPZONE, CSV_NAME, CSV)
    wait_for(page, server, "h3:has-text('Before import')", "pre-import check")
    # Every metric asserted is in the wait: a rerun redraws the tiles one by one, so a snapshot can
    # hold some of them and not yet the others (a KeyError on 'Format' once in a full run).
    metrics_until(
        page,
        server,
        {"Format": "binance-spot", "New fills": "3", "Already in the journal": "0", "Rejected rows": "1"},
    )
    assert table(page, server, "line", "5") == [
        {"line": "5", "column": "Side", "value": "HOLD", "reason": "one of BUY, SELL"}
    ]

    page.get_by_role("button", name="Import 3 fills").click()
    visible(
        page.locator("[data-testid='stAlertContentSuccess']").filter(
            has_text="Published 3 new fills from 4 rows (0 already in the journal, 1 rejected)"
        ),
        server,
        "import success message",
    )
    # The page follows them into the journal: three fills make one round trip (the third stays open).
    stored = metrics_until(
        page, server, {"Fills published": "3", "Fills in the ledger": "3", "Round trips in the journal": "1"}
    )
    assert "New trades" not in stored, stored

    # The Journal page, through the sidebar: the round trip and the revenge entry, then the alert.
    page.locator("[data-testid='stSidebarNavLink']").filter(has_text="Journal").click()
    page.wait_for_url("**/journal")
    wait_for(page, server, "h1:has-text('Journal')", "Journal title")

    def both_trades(rows: list[dict[str, str]]) -> bool:
        kinds = {(r.get("kind"), r.get("qty")) for r in rows if r.get("symbol") == "SOLUSDT"}
        return {("round_trip", "10"), ("lot", "20")} <= kinds

    rows = rows_until(page, server, "entry (UTC)", both_trades, "SOLUSDT round trip and revenge lot")
    assert {r["symbol"] for r in rows} == {"SOLUSDT"}, rows
    round_trip = next(r for r in rows if r["kind"] == "round_trip")
    assert (round_trip["entry (UTC)"], round_trip["exit (UTC)"], round_trip["side"]) == (
        "2024-11-16 09:00:00+00:00",
        "2024-11-16 09:30:00+00:00",
        "BUY",
    ), round_trip
    # The accessible copy of the grid holds the raw value; the Net P&L tile below shows it formatted.
    assert (round_trip["entry"], round_trip["exit"], float(round_trip["P&L"])) == ("200", "140", -600.0), round_trip
    revenge = next(r for r in rows if r["kind"] == "lot" and r["qty"] == "20")
    assert (revenge["entry (UTC)"], revenge["side"], revenge["entry"], revenge["open qty"]) == (
        "2024-11-16 09:36:00+00:00",
        "BUY",
        "141",
        "20",
    ), revenge
    metrics_until(page, server, {"Net P&L": "-600.00", "Closed trades": "1", "Win rate": "0%"})

    page.get_by_role("tab", name="Alerts").click()
    alert = (
        page.locator("[data-testid='stVerticalBlock']")
        .filter(has=page.locator("strong", has_text=re.compile(r"^revenge trading$")))
        .filter(has=page.locator("[data-testid='stText']", has_text=REVENGE_MESSAGE))
        .last
    )
    visible(alert, server, f"revenge trading alert ({REVENGE_MESSAGE!r})")
    text = alert.inner_text()
    # Quick and same symbol (too few earlier entries for a size-up baseline): two conditions, medium.
    assert "medium" in text and "2024-11-16 09:36 UTC" in text, text
    assert re.search(r"Trades: rt-\w+, lot-\w+", text), text

    assert_healthy(tab, server)
