"""The review pages through AppTest in the app's frame: the Journal's analytics in R, a trade on its
chart, Compare (trader against a model's paper account), What-if, the Signals page's drift band and
the Market page's first-run panel. The stores are written directly; no stage runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.jobs.excursions import refresh
from pipeline.journal.excursions import RiskDefaults
from storage import drift, market
from storage.db import Database
from tests.ui.test_journal_page import USER, seed, trade_row
from tests.ui.test_pages import APP, PAGES, no_exception
from tests.unit.test_excursions import BARS, T0, M

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def desk(built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("STAGES", "")
    monkeypatch.setenv("USER_ID", USER)
    return tmp_path


def write(path: Path, rows: list[dict[str, Any]], bars: bool = True) -> None:
    """Journal rows (``trade_row``'s columns), the built BTC bars, and the excursions of it all."""
    store = Database(path / "desk.db")

    def put(d) -> None:
        for row in rows:
            values = {k: json.dumps(v) if k in ("tags", "fill_ids", "context") else v for k, v in row.items()}
            d.conn.execute(
                f"INSERT INTO journal_trades ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})",
                values,
            )
        if bars:
            market.add_bars(d.conn, "BTCUSDT", [(T0 + m * M, o, h, lo, c, 1.0) for m, o, h, lo, c in BARS])

    store.write(put)
    refresh(store, RiskDefaults())
    store.close()


def built_long(**over: Any) -> dict[str, Any]:
    """The long of the built bar series (tests/unit/test_excursions.py): +7.60 net, 1.9 R, MFE 3 R."""
    row = trade_row(
        "long",
        entry_price=100.0,
        exit_price=104.0,
        quantity=2.0,
        entry_time=T0 + 30_000,
        exit_time=T0 + 4 * M + 10_000,
        pnl=7.6,
        fees=0.4,
        stop_loss=98.0,
        setup="breakout",
    )
    row.update(over)
    return row


def app_on(title: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(PAGES[title]).run()
    no_exception(at)
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_the_journal_shows_r_expectancy_distribution_scatter_and_breakdowns(desk: Path) -> None:
    seed(desk)
    store = Database(desk / "desk.db")
    refresh(store, RiskDefaults())  # what the excursions worker does
    store.close()
    at = app_on("Journal")
    shown = metrics(at)
    # R: t1 +100 over its stop's 10 = +10; without stops 1 % of the entry is 1R: t2 -50, t3 +30, t4 -80,
    # rt-1 +20 over 0.9 x 0.5 = +44.44. The mean: -9.11 R.
    assert shown["Expectancy (R)"] == "-9.11 R" and shown["Total R"] == "-45.6 R"
    assert shown["Risk from a stop"] == "1 of 5" and shown["Measured on bars"] == "0 of 5"
    titles = [c.get("layout", {}).get("title", {}).get("text") for c in specs(at)]
    assert "R distribution" in titles and "MFE against MAE (in R)" in titles
    assert len(specs(at)) == 2 + 5 + 2 + 5  # equity, calendar, five breakdowns; R: two charts, five breakdowns
    (unmeasured,) = [d.value for d in at.dataframe if "why" in d.value.columns]
    assert set(unmeasured["why"]) == {"no BTCUSDT bars in the store", "no ETHUSDT bars in the store"}
    (table,) = [d.value for d in at.dataframe if "trade_id" in d.value.columns]
    assert table.set_index("trade_id").loc["t1", "detail"] == "trade?id=t1"
    at.selectbox(key="j_day").set_value("2024-11-15").run()  # the calendar's day: its trades, linked
    (day,) = [d.value for d in at.dataframe if "detail" in d.value.columns and "trade_id" not in d.value.columns]
    assert sorted(day["detail"]) == ["trade?id=t1", "trade?id=t2"]
    links = [(p.proto.label, p.proto.page) for p in at.get("page_link")]
    assert [label for label, _ in links if label in ("t2", "t4")] == ["t2", "t4"]  # the alert's trades


def test_a_trade_on_its_chart_with_its_excursions(desk: Path) -> None:
    write(desk, [built_long()])
    at = app_on("Trade", id="long")
    assert [t.value for t in at.title] == ["Trade"]
    shown = metrics(at)
    assert (shown["P&L"], shown["R"]) == ("+7.60", "+1.90 R")
    assert (shown["MFE"], shown["MAE"]) == ("6.00% · 3.00 R", "3.00% · 1.50 R")
    assert (shown["Best exit in hindsight"], shown["Kept of the MFE"]) == ("106", "67%")
    (chart,) = specs(at)
    names = [t.get("name") for t in chart["data"]]
    assert names[0] == "BTCUSDT" and {"buy fills", "sell fills", "stop", "1R", "2R", "3R", "MFE", "MAE"} <= set(names)
    (stop,) = [t for t in chart["data"] if t.get("name") == "stop"]
    assert stop["y"] == [98.0, 98.0]
    assert any("No stored signals within 30 minutes" in c.value for c in at.caption)

    missing = app_on("Trade", id="nope")
    assert any("No trade with this id" in i.value for i in missing.info)


def test_a_trade_without_bars_says_so(desk: Path) -> None:
    write(desk, [built_long(symbol="ETHUSDT")])
    at = app_on("Trade", id="long")
    assert any("no ETHUSDT bars in the store" in w.value for w in at.warning)
    assert not specs(at) and "MFE" not in metrics(at)


def test_compare_puts_the_trader_next_to_each_models_paper_account(desk: Path) -> None:
    paper = [
        built_long(trade_id="p1", user_id="paper:random_forest", pnl=20.0, fees=1.0, exit_time=T0 + 5 * M),
        built_long(trade_id="p2", user_id="paper:random_forest", pnl=-5.0, fees=1.0, exit_time=T0 + 6 * M),
    ]
    write(desk, [built_long(), *paper])
    at = app_on("Compare")
    at.segmented_control(key="cmp_period").set_value("All").run()
    no_exception(at)
    (table,) = [d.value for d in at.dataframe if "account" in d.value.columns]
    rows = table.set_index("account")
    assert list(rows.index) == [USER, "paper:random_forest"]
    assert rows.loc[USER, ["trades", "net_pnl", "win_rate"]].tolist() == [1, 7.6, 1.0]
    assert rows.loc["paper:random_forest", ["trades", "net_pnl", "win_rate", "max_drawdown", "fees"]].tolist() == [
        2,
        15.0,
        0.5,
        5.0,
        2.0,
    ]
    assert rows.loc["paper:random_forest", "expectancy_r"] == pytest.approx((20 / 4 - 5 / 4) / 2)
    (agreed,) = [d.value for d in at.dataframe if "random_forest" in d.value.columns and "detail" in d.value.columns]
    assert agreed["random_forest"].tolist() == ["no signal"]


def test_what_if_replays_the_trades_and_lists_the_skipped(desk: Path) -> None:
    write(desk, [built_long(), built_long(trade_id="eth", symbol="ETHUSDT")])
    at = app_on("What-if")
    at.selectbox[0].set_value("All")
    at.multiselect[0].set_value([1.0])
    at.checkbox[0].set_value(False)
    at.number_input[0].set_value(0.0)
    at.number_input[1].set_value(0)
    at.selectbox[1].set_value("off")
    at.button[0].click().run()
    no_exception(at)
    (summary,) = [d.value for d in at.dataframe if "difference" in d.value.columns and "skipped" in d.value.columns]
    row = summary.set_index("rule").loc["exit at 1R"]
    fill = 103.0 * (1 - 0.0005)  # the exchange's default 5 bps slippage and 10 bps fee
    pnl = 2 * (fill - 100.0) - 0.001 * 2 * (100.0 + fill)
    assert (row["trades"], row["skipped"], row["changed"]) == (1, 1, 1)
    assert row["pnl"] == pytest.approx(pnl) and row["difference"] == pytest.approx(pnl - 7.6)
    (skipped,) = [d.value for d in at.dataframe if "reason" in d.value.columns]
    assert skipped.values.tolist() == [["eth", "exit at 1R", "no ETHUSDT bars in the store"]]
    assert metrics(at)["What really happened"] == "+15.20"


def test_the_signals_page_draws_each_models_drift_band(desk: Path) -> None:
    store = Database(desk / "desk.db")
    check = {
        "symbol": "BTCUSDT",
        "model": "random_forest",
        "version": 2,
        "window_start": T0,
        "window_end": T0 + 360 * M,
        "rows": 300,
        "periods": 20,
        "hit_rate": 0.35,
        "wf_accuracy": 0.52,
        "hit_lo": 0.30,
        "hit_hi": 0.74,
        "profit_pct": -1.0,
        "wf_profit_pct": 0.1,
        "profit_lo": -2.0,
        "profit_hi": 2.0,
        "state": "ok",
        "message": "fine",
    }
    store.write(lambda d: drift.store(d.conn, [check, {**check, "hit_rate": 0.25, "state": "below"}], T0 + 361 * M))
    store.close()
    at = app_on("Signals")
    (latest,) = [d.value for d in at.dataframe if "hit_lo" in d.value.columns]
    assert latest[["symbol", "model", "state", "hit_rate"]].values.tolist() == [
        ["BTCUSDT", "random_forest", "🔻 below", 0.25]
    ]
    (band,) = [c for c in specs(at) if c.get("layout", {}).get("title", {}).get("text") == "BTCUSDT random_forest"]
    assert [t["name"] for t in band["data"][1:]] == ["band", "walk-forward", "live hit rate"]


def test_the_market_page_welcomes_a_new_desk_and_points_onwards(desk: Path) -> None:
    at = app_on("Market")
    assert "**Welcome to your desk.**" in [m.value for m in at.markdown]
    assert any("No model is trained yet" in c.value for c in at.caption)
    labels = [p.proto.label for p in at.get("page_link")]
    assert {"Import your trades", "Connect an exchange", "Train on real candles"} <= set(labels)
    at.button(key="first_run_hide").click().run()
    assert "**Welcome to your desk.**" not in [m.value for m in at.markdown]
