"""The Analysis page in Chromium on a store holding one stock's analysis: the price chart with the
alert's marker, the score over time, the news with their sentiment and the alert feed render, and
the page raises no JavaScript error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Tab, streamlit_server
from tests.ui.seed_analysis import seed_analysis

pytestmark = pytest.mark.timeout(180)

CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"


def test_the_analysis_page_in_a_browser(tmp_path: Path, tab: Tab) -> None:
    (tmp_path / "data").mkdir()
    seed_analysis(str(tmp_path / "data" / "desk.db"))
    with streamlit_server(tmp_path, {"STAGES": "", "SUBSCRIBED_SYMBOLS": "AAPL,MSFT"}) as server:
        page = tab.page
        page.goto(f"{server.url}/analysis")
        page.wait_for_selector(CONNECTED, timeout=60_000)
        page.get_by_role("heading", name="Analysis").first.wait_for(timeout=30_000)
        page.wait_for_selector("[data-testid='stPlotlyChart'] .js-plotly-plot g.trace.boxes path.box", timeout=60_000)
        page.wait_for_selector(
            "[data-testid='stPlotlyChart'] .js-plotly-plot g.scatterlayer path.point", timeout=30_000
        )
        assert page.locator("[data-testid='stPlotlyChart']").count() == 2
        page.get_by_text("Technical components").first.wait_for(timeout=30_000)
        page.get_by_text("LLM not used").first.wait_for(timeout=30_000)
        assert page.locator("[data-testid='stMetricValue']", has_text="HOLD").count() == 1
        assert page.locator("[data-testid='stDataFrame']").count() == 3
        assert not tab.js_errors, tab.js_errors
