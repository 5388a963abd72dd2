"""The app in a real browser: a ``streamlit run`` server and Debian's Chromium (Playwright).

Checks what AppTest cannot: the websocket connects, plotly really draws candlesticks, the data
on screen is live (it moves while the page stays connected), and the sidebar navigation works.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import RESULTS, Server, Tab

pytestmark = pytest.mark.timeout(120)

CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"
# Plotly draws a candlestick trace through its box module: one <path class="box"> per candle.
CANDLES = "[data-testid='stPlotlyChart'] .js-plotly-plot g.trace.boxes path.box"
LIVE_WITHIN_S = 15.0
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")  # as the server fixture configures
SELECTED_SYMBOLS = "[data-testid='stMultiSelect'] [data-tag] span[title]"

CHARTS_JS = """() => [...document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot")].map(d => {
    const c = (d._fullData || []).find(t => t.type === "candlestick");
    const n = c ? c.close.length : 0;
    return {
        title: (d.layout && d.layout.title && d.layout.title.text) || "",
        candles: n,
        drawn: d.querySelectorAll("g.trace.boxes path.box").length,
        lastClose: n ? Number(c.close[n - 1]) : null,
        lastTime: n ? String(c.x[n - 1]) : null,
    };
})"""

# st.dataframe draws on a canvas; glide-data-grid keeps an accessible <table> copy in the DOM.
TABLE_JS = """(firstColumn) => {
    for (const df of document.querySelectorAll("[data-testid='stDataFrame']")) {
        const heads = [...df.querySelectorAll("th[role='columnheader']")].map(th => th.textContent.trim());
        if (heads[0] !== firstColumn) continue;
        const rows = [...df.querySelectorAll("tbody tr")].map(
            tr => [...tr.querySelectorAll("td")].map(td => td.textContent.trim()));
        return rows.map(r => Object.fromEntries(heads.map((h, i) => [h, r[i]])));
    }
    return null;
}"""

PAGES = [
    "Market",
    "Stocks",
    "Analysis",
    "Signals",
    "Portfolio",
    "Backtest",
    "Optimise",
    "Journal",
    "Compare",
    "What-if",
    "Import",
    "Pipeline",
    "Settings",
]


def wait_for(page: Page, server: Server, selector: str, what: str, timeout_s: float = 30.0) -> None:
    try:
        page.wait_for_selector(selector, state="attached", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"no {what} ({selector}) within {timeout_s:.0f} s; {server.describe()}")


def table(page: Page, server: Server, first_column: str, must_contain: str) -> list[dict[str, str]]:
    """The rows of the st.dataframe whose first column is ``first_column``, once one has
    ``must_contain``: the rows of that moment, not of a second look (a rerun may be redrawing)."""
    try:
        found = page.wait_for_function(
            f"(args) => {{ const rows = ({TABLE_JS})(args[0]); "
            f"return rows && rows.some(r => Object.values(r).includes(args[1])) ? rows : false; }}",
            arg=[first_column, must_contain],
            timeout=30_000,
        )
    except PlaywrightTimeout:
        pytest.fail(f"no '{first_column}' table with {must_contain!r} within 30 s; {server.describe()}")
    return list(found.json_value())


def open_app(tab: Tab, server: Server, path: str = "") -> Page:
    page = tab.page
    # The page pulls an icon from fonts.gstatic.com; do not wait for "load" on an offline machine.
    page.goto(f"{server.url}/{path}", wait_until="domcontentloaded")
    wait_for(page, server, CONNECTED, "websocket connection")
    return page


def assert_healthy(tab: Tab, server: Server) -> None:
    page = tab.page
    assert page.locator(CONNECTED).count() == 1, f"the page lost its connection; {server.describe()}"
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']"
    ).first.inner_text()
    assert not tab.js_errors, tab.js_errors
    assert "Traceback" not in server.output(tail=None), server.describe()


def metric(page: Page) -> tuple[str, float]:
    label = page.locator("[data-testid='stMetricLabel']").first.inner_text().strip()
    value = page.locator("[data-testid='stMetricValue']").first.inner_text().strip()
    return label, float(value.replace(",", ""))


def test_market_draws_candlesticks_and_the_data_is_live(tab: Tab, server: Server) -> None:
    started = time.monotonic()
    page = open_app(tab, server)
    wait_for(page, server, CANDLES, "drawn candlestick")
    try:  # both charts with backfilled history (not just live bars), every candle drawn; both metrics
        drawn = page.wait_for_function(
            f"() => {{ const charts = ({CHARTS_JS})(); return charts.length === 2 && "
            "charts.every(c => c.candles > 30 && c.drawn === c.candles) && "
            "document.querySelectorAll(\"[data-testid='stMetricValue']\").length === 2 && charts; }",
            timeout=30_000,
        )
    except PlaywrightTimeout:
        pytest.fail(f"charts not fully drawn: {page.evaluate(CHARTS_JS)}; {server.describe()}")

    charts = drawn.json_value()  # the charts that met the wait, not a second look a redraw could catch
    titles = [c["title"].replace("<b>", "").replace("</b>", "") for c in charts]
    # One chart and one metric per chosen symbol, in the same order.
    chosen = [t.strip() for t in page.locator(SELECTED_SYMBOLS).all_inner_texts()]
    assert titles == chosen and set(chosen) <= set(SYMBOLS), (titles, chosen)
    assert page.locator("[data-testid='stMetricLabel']").all_inner_texts() == titles
    label, price = metric(page)
    assert label == titles[0]
    first = (price, charts[0]["lastClose"])

    # Live: the simulator ticks every 500 ms and the fragment redraws every 2 s.
    deadline = time.monotonic() + LIVE_WITHIN_S
    while True:
        _, price = metric(page)
        now = page.evaluate(CHARTS_JS)[0]
        if price != first[0] and now["lastClose"] != first[1]:
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"price still {first[0]} and last close {first[1]} after {LIVE_WITHIN_S:.0f} s; {server.describe()}"
            )
        time.sleep(0.5)
    # The metric (last tick) and the chart (last bar's close) show the same market.
    assert abs(now["lastClose"] - price) / price < 0.01, (price, now)
    assert now["candles"] > 0 and now["drawn"] > 0, now

    assert_healthy(tab, server)
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "market.png"))
    assert time.monotonic() - started < 60


def test_sidebar_navigation_to_pipeline_and_settings(tab: Tab, server: Server) -> None:
    page = open_app(tab, server)
    wait_for(page, server, "h1:has-text('Market')", "Market title")
    links = page.locator("[data-testid='stSidebarNavLink']")
    assert [t.split("\n")[-1].strip() for t in links.all_inner_texts()] == PAGES

    links.filter(has_text="Pipeline").click()
    page.wait_for_url("**/pipeline")
    wait_for(page, server, "h1:has-text('Pipeline')", "Pipeline title")
    stages = {row["stage"]: row for row in table(page, server, "stage", "market-store")}
    assert set(stages) == {"simulator", "market-store"}
    assert all(row["running"] == "true" for row in stages.values()), stages
    assert "Bus: embedded" in page.locator("[data-testid='stSidebarUserContent']").inner_text()

    links.filter(has_text="Settings").click()
    page.wait_for_url("**/settings")
    wait_for(page, server, "h1:has-text('Settings')", "Settings title")
    topics = [row["topic"] for row in table(page, server, "topic", "crypto.market_data")]
    assert "crypto.market_data" in topics
    assert_healthy(tab, server)


def test_first_visit_by_deep_link_gets_the_whole_app(tab: Tab, fresh_server: Server) -> None:
    page = open_app(tab, fresh_server, "pipeline")
    wait_for(page, fresh_server, "h1:has-text('Pipeline')", "Pipeline title")
    links = page.locator("[data-testid='stSidebarNavLink']")
    assert [t.split("\n")[-1].strip() for t in links.all_inner_texts()] == PAGES
    assert page.title() == "Trader's Desk"
    assert "Bus: embedded" in page.locator("[data-testid='stSidebarUserContent']").inner_text()
    assert_healthy(tab, fresh_server)
