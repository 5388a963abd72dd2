"""The review pages in a real browser: a trade reached from the journal's alerts and drawn on its
chart, the trader against a model's paper account on Compare, and the entry form's pre-trade check
with the cooldown refusing the paper entry. The store is written before the server starts; the
server runs no stage, so what the pages show is exactly what was written."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from pipeline.jobs.excursions import refresh
from pipeline.journal.excursions import RiskDefaults
from storage import behaviour, market
from storage.db import Database
from tests.e2e.conftest import Server, Tab, streamlit_server
from tests.e2e.test_browser import assert_healthy, open_app, table, wait_for
from tests.unit.test_excursions import BARS, T0, M, journal_row

pytestmark = pytest.mark.timeout(180)
MIN = 60_000
TRACES_JS = """() => [...document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot")]
    .map(d => (d.data || []).map(t => t.name))"""
METRICS_JS = """() => Object.fromEntries([...document.querySelectorAll("[data-testid='stMetric']")].map(m => [
    (m.querySelector("[data-testid='stMetricLabel']")?.innerText || "").trim(),
    (m.querySelector("[data-testid='stMetricValue']")?.innerText || "").trim()]))"""


def seed(data_dir: Path) -> None:
    """The built long (+1.9 R, MFE 3 R) with an alert naming it, two trades of paper:random_forest,
    a -600 loss five minutes ago in the behaviour rows, and BTCUSDT's last tick at 100."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(data_dir / "desk.db")
    now = int(time.time() * 1000)
    rows = [
        journal_row("long"),
        journal_row("p1", user_id="paper:random_forest", pnl=20.0, fees=1.0, exit_time=T0 + 5 * M),
        journal_row("p2", user_id="paper:random_forest", pnl=-5.0, fees=1.0, exit_time=T0 + 6 * M),
    ]
    loss = (
        "trader",
        "t-loss",
        "trade",
        "BTCUSDT",
        "BUY",
        "t-loss",
        now - 65 * MIN,
        now - 5 * MIN,
        20_000.0,
        -600.0,
        -3.0,
    )
    alert = ("a1", "trader", "loss_streak", "medium", T0 + 5 * M, json.dumps(["long"]), "three losses", "{}", T0)

    def write(d: sqlite_utils.Database) -> None:
        for row in rows:
            d.conn.execute(
                f"INSERT INTO journal_trades ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        d.conn.execute("INSERT INTO journal_alerts VALUES (?,?,?,?,?,?,?,?,?)", alert)
        market.add_bars(d.conn, "BTCUSDT", [(T0 + m * M, o, h, lo, c, 1.0) for m, o, h, lo, c in BARS])
        market.store_ticks(d.conn, [("BTCUSDT", now - 1000, 100.0, None, None, None, None, None, None)])
        behaviour.store(d.conn, [loss], [])

    db.write(write)
    refresh(db, RiskDefaults())
    db.close()


@pytest.fixture(scope="module")
def review_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("review")
    seed(work / "data")
    with streamlit_server(work, {"STAGES": "", "USER_ID": "trader", "PRETRADE_COOLDOWN_MINUTES": "30"}) as s:
        yield s


def metrics_until(page: Page, server: Server, wanted: dict[str, str]) -> None:
    """Wait until the page's metric tiles show every item of ``wanted`` at one moment (a rerun
    redraws the tiles one by one: a second look could catch some of them missing)."""
    try:
        page.wait_for_function(
            f"(w) => {{ const m = ({METRICS_JS})(); return Object.entries(w).every(([k, v]) => m[k] === v); }}",
            arg=wanted,
            timeout=30_000,
        )
    except PlaywrightTimeout:
        pytest.fail(f"metrics {page.evaluate(METRICS_JS)} never had {wanted}; {server.describe()}")


def test_an_alert_leads_to_the_trade_on_its_chart(tab: Tab, review_server: Server) -> None:
    server = review_server
    page = open_app(tab, server, "journal")
    wait_for(page, server, "h1:has-text('Journal')", "Journal title")
    # The journal's table shows the trade (its last column links it; tests/ui checks the link's target).
    assert table(page, server, "entry (UTC)", "BTCUSDT")[0]["symbol"] == "BTCUSDT"
    page.get_by_role("tab", name="Alerts").click()
    page.locator("[data-testid='stPageLink'] a").filter(has_text="long").first.click()
    page.wait_for_url("**/trade?id=long")
    wait_for(page, server, "h1:has-text('Trade')", "Trade title")
    metrics_until(
        page,
        server,
        {"MFE": "6.00% · 3.00 R", "MAE": "3.00% · 1.50 R", "R": "+1.90 R", "Best exit in hindsight": "106"},
    )
    page.wait_for_function(f"() => ({TRACES_JS})().length === 1", timeout=30_000)
    (names,) = page.evaluate(TRACES_JS)
    assert names[0] == "BTCUSDT" and {"buy fills", "sell fills", "stop", "MFE", "MAE"} <= set(names)
    assert_healthy(tab, server)


def test_compare_shows_the_trader_next_to_the_models_paper_account(tab: Tab, review_server: Server) -> None:
    server = review_server
    page = open_app(tab, server, "compare")
    wait_for(page, server, "h1:has-text('Compare')", "Compare title")
    page.locator("[data-testid='stButtonGroup'] button").filter(has_text="All").click()
    rows = {r["account"]: r for r in table(page, server, "account", "paper:random_forest")}
    assert set(rows) == {"trader", "paper:random_forest"}
    assert (rows["paper:random_forest"]["trades"], rows["paper:random_forest"]["net P&L"]) == ("2", "15")
    assert (rows["trader"]["trades"], rows["trader"]["net P&L"]) == ("1", "7.6")
    assert_healthy(tab, server)


def test_the_pre_trade_check_names_the_rules_and_the_cooldown_refuses(tab: Tab, review_server: Server) -> None:
    server = review_server
    page = open_app(tab, server, "journal")
    wait_for(page, server, "h1:has-text('Journal')", "Journal title")
    page.locator(".st-key-je_symbol input").fill("BTCUSDT")
    page.locator(".st-key-je_quantity input").fill("2")
    page.locator(".st-key-je_stop_loss input").fill("98")
    page.get_by_role("button", name="Check before placing").click()
    result = page.locator(".st-key-pretrade_result")
    try:
        result.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeout:
        pytest.fail(f"no pre-trade answer; {server.describe()}")
    text = result.inner_text()
    assert "BUY 2 BTCUSDT at 100 (last tick)" in text and "1R = 4.00 (2.00% of the price)" in text
    assert "revenge" in text and "min after a -600.00 loss on BTCUSDT" in text  # five minutes ago at the seed
    assert "Cooldown on (30 min): the paper account refuses this entry." in text  # a rule trips, cooldown on
    assert page.get_by_role("button", name="Place it on the paper account").count() == 0
    assert_healthy(tab, server)
