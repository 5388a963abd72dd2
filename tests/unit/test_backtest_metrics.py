"""Backtest metrics worked out by hand on small equity curves and trade lists
(``pipeline.trading.metrics``), and ``run_backtest`` reporting them on bars whose answers are known."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pandas as pd
import pytest

from pipeline.trading.backtest import run_backtest
from pipeline.trading.exchange import ExchangeSettings
from pipeline.trading.metrics import (
    MIN_RETURNS,
    bars_per_year,
    buy_and_hold_curve,
    curve_metrics,
    exposure_pct,
    trade_metrics,
)

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = 1_700_000_000_000


def starts(n: int, interval: int) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * interval


def compounded(start: float, returns: list[float]) -> np.ndarray:
    equity = [start]
    for r in returns:
        equity.append(equity[-1] * (1 + r))
    return np.array(equity)


# -- annualisation -------------------------------------------------------------------------------


def test_a_year_is_365_and_a_quarter_days_of_bars() -> None:
    assert bars_per_year(MINUTE) == pytest.approx(525_960)
    assert bars_per_year(HOUR) == pytest.approx(8_766)
    assert bars_per_year(DAY) == pytest.approx(365.25)


# +1 % then -0.5 %, twenty times: mean 0.25 %, every return 0.75 % off it
RETURNS = [0.01, -0.005] * 20
MEAN = 0.0025
SD = 0.0075 * math.sqrt(40 / 39)  # sample standard deviation (n - 1 = 39)
DOWNSIDE = math.sqrt(20 * 0.005**2 / 40)  # root mean square of min(r, 0) over all 40 returns


@pytest.mark.parametrize(("interval", "per_year"), [(MINUTE, 525_960), (HOUR, 8_766), (DAY, 365.25)])
def test_sharpe_and_sortino_are_annualised_from_the_bar_interval(interval: int, per_year: float) -> None:
    equity = compounded(1_000.0, RETURNS)
    m = curve_metrics(equity, starts(len(equity), interval), 1_000.0, interval)
    assert m["sharpe"] == pytest.approx(MEAN / SD * math.sqrt(per_year), rel=1e-9)
    assert m["sortino"] == pytest.approx(MEAN / DOWNSIDE * math.sqrt(per_year), rel=1e-9)
    assert "sharpe" not in m["why_none"] and "sortino" not in m["why_none"]


def test_sharpe_on_daily_bars_in_literal_numbers() -> None:
    # the same returns on daily bars: 0.0025 / 0.0075955 * sqrt(365.25) = 6.2904
    equity = compounded(1_000.0, RETURNS)
    m = curve_metrics(equity, starts(len(equity), DAY), 1_000.0, DAY)
    assert m["sharpe"] == pytest.approx(6.29037, rel=1e-5)
    assert m["sortino"] == pytest.approx(13.51388, rel=1e-5)


# -- return, CAGR, drawdown ----------------------------------------------------------------------


def test_return_and_max_drawdown_of_a_small_curve() -> None:
    equity = np.array([100.0, 120.0, 90.0, 130.0, 104.0])  # falls 25 % from 120, then 20 % from 130
    m = curve_metrics(equity, starts(5, DAY), 100.0, DAY)
    assert m["return_pct"] == pytest.approx(4.0)
    assert m["max_drawdown_pct"] == pytest.approx(25.0)
    rising = curve_metrics(np.array([100.0, 101.0, 102.0]), starts(3, DAY), 100.0, DAY)
    assert rising["max_drawdown_pct"] == 0.0


def test_the_return_is_against_the_starting_balance_not_the_first_close() -> None:
    # an entry fee makes the first close 99.9 of a 100 start
    m = curve_metrics(np.array([99.9, 110.0]), starts(2, DAY), 100.0, DAY)
    assert m["return_pct"] == pytest.approx(10.0)


def test_cagr_over_a_year_and_over_half_a_year() -> None:
    year = 365  # bars; the period ends with the last bar's end: 365 days
    equity = np.linspace(100.0, 121.0, year)
    m = curve_metrics(equity, starts(year, DAY), 100.0, DAY)
    assert m["cagr_pct"] == pytest.approx((1.21 ** (365.25 / 365) - 1) * 100, rel=1e-12)
    half = curve_metrics(np.linspace(100.0, 110.0, 183), starts(183, DAY), 100.0, DAY)
    assert half["cagr_pct"] == pytest.approx((1.1 ** (365.25 / 183) - 1) * 100, rel=1e-12)  # about 20.96 %
    assert half["cagr_pct"] == pytest.approx(20.96, abs=0.01)


def test_cagr_on_hourly_bars_counts_the_period_in_hours() -> None:
    hours = 24 * 60  # 60 days of hourly bars
    equity = np.linspace(100.0, 105.0, hours)
    m = curve_metrics(equity, starts(hours, HOUR), 100.0, HOUR)
    assert m["cagr_pct"] == pytest.approx((1.05 ** (365.25 / 60) - 1) * 100, rel=1e-12)


def test_no_cagr_under_a_month_however_large_the_arithmetic() -> None:
    # ten days of 1-minute bars that gained 50 %: the yearly rate would be 2.7e7 %
    n = 10 * 24 * 60
    equity = np.linspace(10_000.0, 15_000.0, n)
    m = curve_metrics(equity, starts(n, MINUTE), 10_000.0, MINUTE)
    assert m["cagr_pct"] is None
    assert m["why_none"]["cagr_pct"] == "only 10 days tested; a yearly rate needs at least 30 days"
    assert m["return_pct"] == pytest.approx(50.0)
    month = 30 * 24 * 60  # exactly 30 days: given
    assert curve_metrics(np.linspace(100.0, 101.0, month), starts(month, MINUTE), 100.0, MINUTE)[
        "cagr_pct"
    ] == pytest.approx((1.01 ** (365.25 / 30) - 1) * 100, rel=1e-9)


def test_too_few_returns_for_a_yearly_ratio_say_so() -> None:
    equity = compounded(1_000.0, RETURNS[: MIN_RETURNS - 1])
    m = curve_metrics(equity, starts(len(equity), DAY), 1_000.0, DAY)
    assert m["sharpe"] is None and m["sortino"] is None
    assert m["why_none"]["sharpe"] == f"{MIN_RETURNS - 1} bar returns; a yearly ratio needs at least {MIN_RETURNS}"


def test_a_flat_or_never_falling_curve_has_no_sharpe_or_no_sortino_and_says_why() -> None:
    flat = curve_metrics(np.full(50, 1_000.0), starts(50, MINUTE), 1_000.0, MINUTE)
    assert flat["sharpe"] is None and flat["why_none"]["sharpe"] == "the equity never moved"
    assert flat["sortino"] is None and flat["why_none"]["sortino"] == "no bar lost money"
    up = curve_metrics(compounded(1_000.0, [0.001, 0.002] * 20), starts(41, MINUTE), 1_000.0, MINUTE)
    assert up["sharpe"] is not None and up["sortino"] is None


# -- trades and exposure -------------------------------------------------------------------------


def test_win_rate_and_profit_factor_of_a_trade_list() -> None:
    m = trade_metrics([10.0, -5.0, 20.0, 0.0, -15.0])  # a trade at 0 is not a win
    assert m["trades"] == 5
    assert m["win_rate_pct"] == pytest.approx(40.0)
    assert m["profit_factor"] == pytest.approx(30.0 / 20.0)
    assert m["why_none"] == {}


def test_no_losing_trade_or_no_trade_at_all() -> None:
    only_wins = trade_metrics([3.0, 4.0])
    assert only_wins["win_rate_pct"] == 100.0 and only_wins["profit_factor"] is None
    assert only_wins["why_none"] == {"profit_factor": "no losing trade"}
    none = trade_metrics([])
    assert (none["trades"], none["win_rate_pct"], none["profit_factor"]) == (0, None, None)
    assert none["why_none"] == {"win_rate_pct": "no closed trade", "profit_factor": "no closed trade"}


def test_exposure_is_the_share_of_bars_with_a_position() -> None:
    assert exposure_pct(np.array([False, True, True, False])) == pytest.approx(50.0)
    assert exposure_pct(np.array([True, False, False, False, False])) == pytest.approx(20.0)
    assert exposure_pct(np.array([], dtype=bool)) == 0.0


# -- buy-and-hold --------------------------------------------------------------------------------


def test_buy_and_hold_splits_equally_and_pays_one_fee_in() -> None:
    slots = starts(2, MINUTE)
    bars = {
        "AAAUSDT": pd.DataFrame({"start": slots, "open": [100.0, 110.0], "close": [110.0, 121.0]}),
        "BBBUSDT": pd.DataFrame({"start": slots, "open": [50.0, 45.0], "close": [45.0, 40.0]}),
    }
    hold = buy_and_hold_curve(bars, slots, 10_000.0, fee_bps=10.0)
    # 4,995 USDT into each after the 0.1 % fee: A is worth 5,494.5 then 6,043.95; B 4,495.5 then 3,996
    assert hold == pytest.approx([9_990.0, 10_039.95], rel=1e-12)
    m = curve_metrics(hold, slots, 10_000.0, MINUTE)
    assert m["return_pct"] == pytest.approx(0.3995, rel=1e-9)
    no_fee = buy_and_hold_curve(bars, slots, 10_000.0, fee_bps=0.0)
    assert no_fee == pytest.approx([10_000.0, 10_050.0], rel=1e-12)


def test_a_symbol_without_a_bar_at_a_slot_keeps_its_last_close() -> None:
    slots = starts(3, MINUTE)
    bars = {
        "AAAUSDT": pd.DataFrame({"start": slots, "open": [10.0, 10.0, 10.0], "close": [10.0, 12.0, 14.0]}),
        "BBBUSDT": pd.DataFrame({"start": slots[[0, 2]], "open": [20.0, 20.0], "close": [20.0, 30.0]}),
    }
    hold = buy_and_hold_curve(bars, slots, 1_000.0, fee_bps=0.0)
    assert hold == pytest.approx([1_000.0, 1_100.0, 1_450.0])


# -- run_backtest reports them -------------------------------------------------------------------


class NoSignal:
    """A model that never expects a move: the strategy never trades."""

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(X)), np.full(len(X), 0.5)


def rising_bars(n: int, interval: int, first: float = 100.0, last: float = 110.0) -> pd.DataFrame:
    close = np.linspace(first, last, n)
    open_ = np.concatenate([[first], close[:-1]])
    return pd.DataFrame(
        {
            "start": starts(n, interval),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": np.full(n, 5.0),
        }
    )


def test_a_backtest_of_40_daily_bars_reports_buy_and_hold_with_its_fee_and_the_idle_strategy() -> None:
    bars = rising_bars(40, DAY, first=100.0, last=110.0)
    result = run_backtest(
        {"AAAUSDT": bars},
        {("AAAUSDT", "m"): NoSignal()},
        model="m",
        interval_ms=DAY,
        exchange=ExchangeSettings(fee_bps=10.0),
    )
    hold = result.buy_and_hold
    assert hold["return_pct"] == pytest.approx((0.999 * 1.1 - 1) * 100, rel=1e-9)  # 9.89 %
    assert hold["cagr_pct"] == pytest.approx(((0.999 * 1.1) ** (365.25 / 40) - 1) * 100, rel=1e-9)
    close = bars["close"].tolist()
    r = [b / a - 1 for a, b in itertools.pairwise(close)]
    assert hold["sharpe"] == pytest.approx(statistics.mean(r) / statistics.stdev(r) * math.sqrt(365.25), rel=1e-9)
    assert hold["sortino"] is None and hold["why_none"]["sortino"] == "no bar lost money"
    assert result.equity["buy_and_hold"].tolist() == pytest.approx([10_000 * 0.999 * c / 100.0 for c in close])

    m = result.metrics
    assert (m["return_pct"], m["max_drawdown_pct"], m["exposure_pct"], m["trades"], m["fees_paid"]) == (
        0.0,
        0.0,
        0.0,
        0,
        0.0,
    )
    assert m["cagr_pct"] == pytest.approx(0.0)
    assert m["win_rate_pct"] is None and m["profit_factor"] is None and m["sharpe"] is None
    assert m["why_none"] == {
        "sharpe": "the equity never moved",
        "sortino": "no bar lost money",
        "win_rate_pct": "no closed trade",
        "profit_factor": "no closed trade",
    }


def test_a_backtest_of_a_day_of_minute_bars_gives_no_cagr_and_says_why() -> None:
    bars = rising_bars(1440, MINUTE, first=100.0, last=120.0)
    result = run_backtest(
        {"AAAUSDT": bars}, {("AAAUSDT", "m"): NoSignal()}, model="m", exchange=ExchangeSettings(fee_bps=25.0)
    )
    assert result.buy_and_hold["return_pct"] == pytest.approx((0.9975 * 1.2 - 1) * 100, rel=1e-9)
    for m in (result.metrics, result.buy_and_hold):
        assert m["cagr_pct"] is None
        assert m["why_none"]["cagr_pct"] == "only 1 day tested; a yearly rate needs at least 30 days"
    assert result.to_json()["metrics"]["why_none"]["cagr_pct"].startswith("only 1 day tested")


def test_the_cli_prints_a_dash_and_the_reason_for_a_figure_the_period_cannot_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pipeline.cli.trading_commands import _print_backtest

    bars = rising_bars(1440, MINUTE, first=100.0, last=120.0)
    result = run_backtest({"AAAUSDT": bars}, {("AAAUSDT", "m"): NoSignal()}, model="m")
    _print_backtest(result)
    lines = capsys.readouterr().out.splitlines()
    cagr = next(line for line in lines if line.startswith("CAGR"))
    assert cagr.split() == ["CAGR", "—", "—"]
    assert next(line for line in lines if line.startswith("return")).split() == ["return", "+0.00%", "+19.88%"]
    assert "  CAGR: — only 1 day tested; a yearly rate needs at least 30 days" in lines
    assert "  Sharpe: — the equity never moved" in lines
    assert "  win rate: — no closed trade" in lines
    assert "win rate —, profit factor —" in next(line for line in lines if line.startswith("trades 0"))
