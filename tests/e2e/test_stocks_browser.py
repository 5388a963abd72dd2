"""The Stocks page in Chromium: a trade the feed delivers (a local server speaking Alpaca's v2
stock stream) appears in the ticker, timed from the frame leaving the feed to the price on screen;
and the page on the stock simulator without keys shows the market's state, candles and the feed.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from pipeline.stocks.hours import market_hours
from tests.e2e.conftest import Tab, streamlit_server
from tests.fakes.alpaca_stocks import FakeAlpacaStocksWs, stock_trade

pytestmark = pytest.mark.timeout(240)

CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"
KEY, SECRET = "AKE2E0000EXAMPLEKEY", "e2eSecretValue0123456789abcdefXYZ"
ON_SCREEN_WITHIN_S = 5.0  # a generous bound for a loaded machine; the figures are printed


def test_a_trade_from_the_feed_reaches_the_ticker(tmp_path: Path, tab: Tab, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeAlpacaStocksWs(KEY, SECRET) as feed:
        env = {
            "STAGES": "alpaca-stocks,stock-trades-store,stock-bars-store",
            "ALPACA_API_KEY": KEY,
            "ALPACA_API_SECRET": SECRET,
            "ALPACA_STOCK_WS_URL": feed.url,
            "STOCK_BACKFILL_DAYS": "0",
            "SUBSCRIBED_SYMBOLS": "AAPL,MSFT",
        }
        with streamlit_server(tmp_path, env) as server:
            page = tab.page
            page.goto(f"{server.url}/stocks")
            page.wait_for_selector(CONNECTED, timeout=60_000)
            page.get_by_text("Fast path (in process)").first.wait_for(timeout=60_000)
            feed.wait_live(60)
            delays = []
            for k in range(5):
                price = 321.11 + k
                feed.send([stock_trade("AAPL", price, 7, ts=int(time.time() * 1000), trade_id=100 + k)])
                sent = time.monotonic()
                try:
                    page.get_by_text(f"{price:,.2f}", exact=True).first.wait_for(timeout=ON_SCREEN_WITHIN_S * 1000)
                except PlaywrightTimeout:
                    pytest.fail(f"trade at {price} not on the page within {ON_SCREEN_WITHIN_S} s; {server.describe()}")
                delays.append(time.monotonic() - sent)
                time.sleep(0.3)
            assert page.get_by_text("7 shares at").first.is_visible()
            assert not tab.js_errors
    with capsys.disabled():
        print(
            f"\nStocks page: feed -> ticker median {statistics.median(delays) * 1000:.0f} ms, "
            f"max {max(delays) * 1000:.0f} ms over {len(delays)} trades"
        )


def test_the_stocks_page_on_the_simulator_without_keys(tmp_path: Path, tab: Tab) -> None:
    env = {"STAGES": "stock-simulator,stock-trades-store,stock-bars-store", "SIMULATOR_HISTORY_MINUTES": "90"}
    with streamlit_server(tmp_path, env) as server:
        page = tab.page
        page.goto(f"{server.url}/stocks")
        page.wait_for_selector(CONNECTED, timeout=60_000)
        expected = market_hours().status().label.split(",")[0]  # "market open" or "market closed"
        page.get_by_text(expected).first.wait_for(timeout=30_000)
        page.wait_for_selector("[data-testid='stPlotlyChart'] .js-plotly-plot g.trace.boxes path.box", timeout=60_000)
        for symbol in ("AAPL", "MSFT", "GOOGL"):
            assert page.locator("[data-testid='stMetricLabel']", has_text=symbol).count() == 1
        page.get_by_text("stock-simulator").first.wait_for(state="attached", timeout=30_000)  # the grid's DOM copy
        assert not tab.js_errors, tab.js_errors
