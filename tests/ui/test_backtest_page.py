"""The Backtest page through AppTest: run the strategy on simulator history from the form and read
its metrics next to buy-and-hold, the charts and the trades; a bad risk field starts nothing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import runtime
from tests.ui.test_pages import APP, PAGES, charts, no_exception, run_until, series

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def desk(built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("STAGES", "")  # a backtest needs no running stage
    monkeypatch.setenv("SIMULATOR_SEED", "11")
    monkeypatch.setenv("ML_HORIZON_BARS", "5")
    # thresholds a 5-bar random walk crosses, so the models give BUY and SELL signals to trade
    monkeypatch.setenv("ML_BUY_THRESHOLD_PCT", "0.05")
    monkeypatch.setenv("ML_SELL_THRESHOLD_PCT", "-0.05")
    return tmp_path


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGES["Backtest"]).run()
    no_exception(at)
    assert [t.value for t in at.title] == ["Backtest"]
    return at


def widget(widgets, label: str):
    return next(w for w in widgets if w.label.startswith(label))


def fill_form(at: AppTest) -> None:
    widget(at.multiselect, "Symbols").set_value(["BTCUSDT"])
    widget(at.radio, "Bars from").set_value("Simulator history")
    widget(at.number_input, "Most recent bars").set_value(3000)
    widget(at.selectbox, "Trading model").set_value("logistic_regression")


def submit(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Run backtest").click().run()


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    (frame,) = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def test_a_backtest_on_simulator_history_shows_metrics_beside_buy_and_hold_charts_and_trades(desk: Path) -> None:
    at = open_page()
    assert any(i.value.startswith("No backtest yet.") for i in at.info)
    fill_form(at)
    submit(at)
    no_exception(at)

    run_until(at, lambda a: any(m.label == "Return" for m in a.metric), "the backtest result", 120)
    job = runtime.get_runtime().backtesting
    assert job is not None
    state = job.snapshot()
    assert not state.running and state.error is None
    result = state.result
    assert job.request.symbols == ("BTCUSDT",) and job.request.source == "simulator" and job.request.bars == 3000
    assert job.request.model == "logistic_regression" and job.request.models_from == "train"
    assert job.request.train_fraction == pytest.approx(0.3)
    assert at.session_state["backtest_last"]["result"] is result
    assert result.settings["models"]["in_sample"] is False
    assert not at.warning  # no in-sample warning for models trained on the first 30 %

    assert [m.label for m in at.metric] == [
        "Return",
        "Win rate",
        "Profit factor",
        "Exposure",
        "Trades",
        "Fees paid (USDT)",
    ]
    assert widget(at.metric, "Return").value == f"{result.metrics['return_pct']:+.2f} %"
    assert (
        widget(at.metric, "Return").delta
        == f"{result.metrics['return_pct'] - result.buy_and_hold['return_pct']:+.2f} pp vs B&H"
    )
    assert widget(at.metric, "Trades").value.startswith(f"{result.metrics['trades']:,}")

    side_by_side = frame_with(at, "buy & hold").set_index("metric")
    assert list(side_by_side.index) == ["Return %", "CAGR %", "Sharpe", "Sortino", "Max drawdown %"]
    assert side_by_side.loc["Return %", "strategy"] == f"{result.metrics['return_pct']:+.2f}"
    assert side_by_side.loc["Return %", "buy & hold"] == f"{result.buy_and_hold['return_pct']:+.2f}"
    assert side_by_side.loc["Max drawdown %", "buy & hold"] == f"{result.buy_and_hold['max_drawdown_pct']:.2f}"
    assert side_by_side.loc["Sharpe", "buy & hold"] == f"{result.buy_and_hold['sharpe']:+.2f}"
    # about 1.4 days of bars tested: no yearly growth rate, a dash and the reason instead
    assert result.metrics["cagr_pct"] is None and result.buy_and_hold["cagr_pct"] is None
    assert list(side_by_side.loc["CAGR %", ["strategy", "buy & hold"]]) == ["—", "—"]
    assert re.fullmatch(
        r"only 1\.\d+ days tested; a yearly rate needs at least 30 days", side_by_side.loc["CAGR %", "note"]
    )
    assert side_by_side.loc["Return %", "note"] == ""

    trades = frame_with(at, "entry_price")
    assert len(trades) == len(result.trades) > 0
    assert set(trades["exit_reason"]) <= {"stop_loss", "trailing_stop", "take_profit", "signal", "open"}
    assert list(trades["order_id"]) == [t["order_id"] for t in result.trades]

    equity, drawdown, price = charts(at)
    assert equity["layout"]["title"]["text"] == "Equity vs buy-and-hold"
    assert [t["name"] for t in equity["data"]] == ["strategy", "buy & hold"]
    assert len(series(equity["data"][0]["y"])) == len(result.equity)
    assert drawdown["layout"]["title"]["text"] == "Drawdown"
    assert price["layout"]["title"]["text"] == "BTCUSDT: entries and exits"
    candles, entries, exits = price["data"]
    assert candles["type"] == "candlestick" and 0 < len(series(candles["close"])) <= 1500
    assert entries["marker"]["symbol"] == "triangle-up" and exits["marker"]["symbol"] == "triangle-down"
    assert len(entries["x"]) == len(result.trades)
    assert len(exits["x"]) == sum(t["exit_reason"] != "open" for t in result.trades)
    # the candles are the tested bars: every entry falls inside them, at a price inside its bar's range
    times = pd.to_datetime(pd.Series(candles["x"]), utc=True)
    first, last = result.settings["period"]["BTCUSDT"]
    assert (times.iloc[0], times.iloc[-1]) == (
        pd.Timestamp(first, unit="ms", tz="UTC"),
        pd.Timestamp(last, unit="ms", tz="UTC"),
    )
    lows, highs = series(candles["low"]), series(candles["high"])
    for t in result.trades:
        i = int(np.searchsorted(times, pd.Timestamp(t["entry_time"], unit="ms", tz="UTC"), side="right")) - 1
        assert lows[i] <= t["entry_price"] <= highs[i] * (1 + 5 / 10_000) + 1e-9  # a tick price plus slippage

    why = frame_with(at, "signals")
    assert set(why["reason"]) == {k for k, n in result.skipped.items() if n}

    # the result stays on the page across reruns, and the job is not started again
    at.run()
    no_exception(at)
    assert runtime.get_runtime().backtesting is job
    assert any(m.label == "Return" for m in at.metric)


def test_registry_models_trained_on_the_tested_bars_get_a_loud_in_sample_warning(desk: Path) -> None:
    at = open_page()
    rt = runtime.get_runtime()
    training = rt.train(("BTCUSDT",), ("logistic_regression",), source="simulator", bars=3000)
    run_until(at, lambda a: not training.running, "training to finish", 120)
    assert training.snapshot().trained == ["BTCUSDT logistic_regression v1"]

    fill_form(at)
    widget(at.radio, "Models from").set_value("The registry's active versions")
    submit(at)
    run_until(at, lambda a: any(m.label == "Return" for m in a.metric), "the backtest result", 120)
    assert rt.backtesting is not None
    result = rt.backtesting.snapshot().result
    assert result is not None
    assert result.settings["models"]["in_sample"] is True
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith(
        "**In-sample result, not a test.** The registry's BTCUSDT logistic_regression learned "
        "from bars inside the tested period"
    )


def test_a_bad_risk_field_is_named_with_its_rule_and_starts_nothing(desk: Path) -> None:
    at = open_page()
    fill_form(at)
    widget(at.number_input, "Stop-loss %").set_value(0.0)
    widget(at.number_input, "Max total exposure %").set_value(150.0)
    submit(at)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert "**Stop-loss %** (`stop_loss_pct`) = `0.0` breaks the rule: must be between 0 and 100" in errors
    assert (
        "**Max total exposure %** (`max_total_exposure_pct`) = `150.0` breaks the rule: must be > 0 and <= 100"
        in errors
    )
    assert errors[-1] == "Nothing was started: fix the fields above."
    assert runtime.get_runtime().backtesting is None
    assert not at.metric


def test_no_symbol_is_an_error_on_the_symbols_field(desk: Path) -> None:
    at = open_page()
    widget(at.multiselect, "Symbols").set_value([])
    submit(at)
    assert [e.value for e in at.error] == [
        "**Symbols** (`symbols`) breaks the rule: pick at least one symbol",
        "Nothing was started: fix the fields above.",
    ]
    assert runtime.get_runtime().backtesting is None
