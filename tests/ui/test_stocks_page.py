"""The Stocks page through AppTest, on the stock simulator with no keys: the market badge says what
the NYSE calendar says now, the ticker shows each subscribed symbol (a live trade when the market
is open, else the market-closed line), the candlesticks come from the stored bars, the timeframe
picker changes them, and the feeds table shows the simulator's state."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.stocks.hours import market_hours  # noqa: E402

APP = str(ROOT / "app.py")
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stocks_desk(built_runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMULATOR_SEED", "11")
    monkeypatch.setenv("SIMULATOR_TICK_MS", "200")
    monkeypatch.setenv("SIMULATOR_HISTORY_MINUTES", "120")
    monkeypatch.setenv("SUBSCRIBED_SYMBOLS", "AAPL,MSFT")
    monkeypatch.setenv("STAGES", "stock-simulator,stock-trades-store,stock-bars-store")


def _run_until(at: AppTest, done, what: str, deadline_s: float = 40.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        if done(at):
            return
        if time.monotonic() > end:
            pytest.fail(f"no {what} after {deadline_s:.0f} s")
        time.sleep(0.3)


def _bars_on_chart(at: AppTest) -> int:
    charts = at.get("plotly_chart")
    if len(charts) != 1:
        return 0
    return len(json.loads(charts[0].proto.spec)["data"][0]["x"])


def test_stocks_page_on_the_simulator_without_keys(stocks_desk) -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page("views/stocks.py")
    # The bars store writes the history in batches: the chart appears with the first of them.
    _run_until(at, lambda a: _bars_on_chart(a) > 50, "candlestick chart of the history")
    text = " ".join(m.value for m in at.markdown)
    expected = market_hours().status().label.split(",")[0]  # "market open" or "market closed"
    assert expected in text
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"AAPL", "MSFT"}
    if market_hours().status().open:
        _run_until(at, lambda a: all(m.value != "—" for m in a.metric), "live trades in the ticker")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["type"] == "candlestick" and len(spec["data"][0]["x"]) > 50
    assert "AAPL · 1Min" in spec["layout"]["title"]["text"]
    at.button_group(key="stocks_timeframe").set_value("1Hour").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "1Hour" in spec["layout"]["title"]["text"] and 0 < len(spec["data"][0]["x"]) <= 10
    feeds = at.dataframe[0].value
    row = feeds[feeds["feed"] == "stock-simulator"].iloc[0]
    assert row["state"] == ("ok" if market_hours().status().open else "closed")
