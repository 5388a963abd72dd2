"""Journal analytics against values computed by hand."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pandas as pd
import pytest

from pipeline.journal import analytics

DAY_MS = 86_400_000
# Monday 2024-11-11 00:00 UTC.
MONDAY = int(datetime(2024, 11, 11, tzinfo=UTC).timestamp() * 1000)


def trade(i: int, pnl: float | None, **over: object) -> dict:
    """A closed trade entered at 10:00 UTC on day ``i`` after MONDAY, closed two hours later."""
    row = {
        "trade_id": f"t{i}",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "entry_price": 100.0,
        "exit_price": 110.0,
        "quantity": 1.0,
        "entry_time": MONDAY + i * DAY_MS + 10 * 3_600_000,
        "exit_time": MONDAY + i * DAY_MS + 12 * 3_600_000,
        "pnl": pnl,
        "fees": 1.0,
        "stop_loss": None,
        "tags": [],
        "setup": None,
    }
    row.update(over)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=analytics.COLUMNS)


@pytest.fixture
def five() -> pd.DataFrame:
    """pnl 100, -50, 30, -80, 20 on Mon..Fri; equity 100, 50, 80, 0, 20."""
    return frame(
        trade(0, 100.0, symbol="BTCUSDT", tags=["breakout", "trend"], setup="breakout", stop_loss=90.0),
        trade(1, -50.0, symbol="ETHUSDT", tags=["fomo"], setup="reversal", stop_loss=75.0),
        trade(2, 30.0, symbol="BTCUSDT", tags=["trend"], setup="breakout"),
        trade(3, -80.0, symbol="ETHUSDT", tags=[], setup=None),
        trade(4, 20.0, symbol="SOLUSDT", tags=["trend"], setup="breakout", entry_time=MONDAY + 4 * DAY_MS + 3_600_000),
    )


def test_summary_of_five_trades(five: pd.DataFrame) -> None:
    s = analytics.summary(five)
    assert s["trades"] == 5 and s["wins"] == 3 and s["losses"] == 2
    assert s["net_pnl"] == pytest.approx(20.0)
    assert s["fees"] == pytest.approx(5.0)
    assert s["win_rate"] == pytest.approx(0.6)
    assert s["profit_factor"] == pytest.approx(150 / 130)
    assert s["expectancy"] == pytest.approx(4.0)
    assert s["avg_win"] == pytest.approx(50.0)
    assert s["avg_loss"] == pytest.approx(-65.0)
    # Risk: |100-90|*1 = 10 -> 100/10 = 10 R; |100-75|*1 = 25 -> -50/25 = -2 R; mean 4 R.
    assert s["avg_r"] == pytest.approx(4.0)
    assert s["trades_with_stop"] == 2
    # Peak 100 (after trade 1), trough 0 (after trade 4).
    assert s["max_drawdown"] == pytest.approx(100.0)
    assert (s["best_trade"], s["best_trade_id"]) == (100.0, "t0")
    assert (s["worst_trade"], s["worst_trade_id"]) == (-80.0, "t3")
    json.dumps(s, allow_nan=False)  # JSON-ready
    assert all(type(v) in (int, float, str, type(None)) for v in s.values())


def test_summary_without_trades_is_zero_or_none() -> None:
    for empty in (frame(), pd.DataFrame()):
        s = analytics.summary(empty)
        assert s["trades"] == 0 and s["net_pnl"] == 0.0 and s["fees"] == 0.0 and s["max_drawdown"] == 0.0
        for key in (
            "win_rate",
            "profit_factor",
            "expectancy",
            "avg_win",
            "avg_loss",
            "avg_r",
            "best_trade",
            "worst_trade",
        ):
            assert s[key] is None, key
        json.dumps(s, allow_nan=False)


def test_all_winners_have_no_profit_factor_and_no_drawdown() -> None:
    s = analytics.summary(frame(trade(0, 10.0), trade(1, 5.0), trade(2, 0.0)))
    assert s["win_rate"] == pytest.approx(2 / 3)  # a flat trade is not a win
    assert s["profit_factor"] is None
    assert s["avg_loss"] is None
    assert s["max_drawdown"] == 0.0
    assert s["avg_r"] is None  # no stops


def test_a_first_loss_is_a_drawdown_from_zero() -> None:
    s = analytics.summary(frame(trade(0, -30.0), trade(1, 10.0), trade(2, -5.0)))
    assert s["max_drawdown"] == pytest.approx(30.0)
    assert s["profit_factor"] == pytest.approx(10 / 35)


def test_missing_pnl_comes_from_prices_less_fees() -> None:
    rows = frame(
        trade(0, None, entry_price=100.0, exit_price=110.0, quantity=2.0, fees=1.5),
        trade(1, None, side="SELL", entry_price=100.0, exit_price=110.0, quantity=1.0, fees=None),
    )
    s = analytics.summary(rows)
    assert s["net_pnl"] == pytest.approx(18.5 - 10.0)
    assert s["fees"] == pytest.approx(1.5)


def test_trades_are_ordered_by_exit_time_not_row_order(five: pd.DataFrame) -> None:
    curve = analytics.equity_curve(five.iloc[::-1])
    assert list(curve.columns) == ["time", "equity", "drawdown"]
    assert curve["equity"].tolist() == pytest.approx([100, 50, 80, 0, 20])
    assert curve["drawdown"].tolist() == pytest.approx([0, -50, -20, -100, -80])
    assert curve["time"].is_monotonic_increasing
    assert str(curve["time"].dt.tz) == "UTC"
    assert analytics.summary(five.iloc[::-1])["max_drawdown"] == pytest.approx(100.0)


def test_equity_curve_accepts_datetimes(five: pd.DataFrame) -> None:
    as_dates = five.assign(
        entry_time=pd.to_datetime(five["entry_time"], unit="ms", utc=True),
        exit_time=pd.to_datetime(five["exit_time"], unit="ms", utc=True),
    )
    pd.testing.assert_frame_equal(analytics.equity_curve(as_dates), analytics.equity_curve(five))
    assert analytics.equity_curve(frame()).empty


def test_daily_pnl_groups_by_utc_exit_day() -> None:
    late = MONDAY + 23 * 3_600_000 + 30 * 60_000  # Monday 23:30 UTC
    rows = frame(
        trade(0, 10.0, entry_time=late - 60_000, exit_time=late),
        trade(1, -4.0, entry_time=late, exit_time=late + 3_600_000),  # Tuesday 00:30
        trade(1, 6.0, trade_id="t9"),
    )  # Tuesday 12:00
    days = analytics.daily_pnl(rows)
    assert days["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-11-11", "2024-11-12"]
    assert days["pnl"].tolist() == pytest.approx([10.0, 2.0])
    assert days["trades"].tolist() == [1, 2]
    assert list(analytics.daily_pnl(frame()).columns) == ["date", "pnl", "trades"]


def test_breakdown_by_symbol(five: pd.DataFrame) -> None:
    by = analytics.breakdown(five, "symbol").set_index("key")
    assert list(by.index) == ["BTCUSDT", "SOLUSDT", "ETHUSDT"]  # best net P&L first
    assert by.loc["BTCUSDT"].to_dict() == pytest.approx(
        {"trades": 2, "net_pnl": 130.0, "win_rate": 1.0, "expectancy": 65.0}
    )
    assert by.loc["ETHUSDT"].to_dict() == pytest.approx(
        {"trades": 2, "net_pnl": -130.0, "win_rate": 0.0, "expectancy": -65.0}
    )


def test_breakdown_by_tag_counts_a_trade_in_each_of_its_tags(five: pd.DataFrame) -> None:
    by = analytics.breakdown(five, "tag").set_index("key")
    assert by["trades"].to_dict() == {"trend": 3, "breakout": 1, "fomo": 1, analytics.NO_TAG: 1}
    assert by.loc["trend", "net_pnl"] == pytest.approx(150.0)
    assert by.loc["trend", "win_rate"] == pytest.approx(1.0)
    assert by["trades"].sum() == 6  # one trade has two tags


def test_breakdown_by_setup(five: pd.DataFrame) -> None:
    by = analytics.breakdown(five, "setup").set_index("key")
    assert by["trades"].to_dict() == {"breakout": 3, "reversal": 1, analytics.NO_SETUP: 1}
    assert by.loc["breakout", "expectancy"] == pytest.approx(50.0)


def test_breakdown_by_weekday_and_hour_of_entry(five: pd.DataFrame) -> None:
    by_day = analytics.breakdown(five, "weekday")
    assert by_day["key"].tolist() == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert by_day["net_pnl"].tolist() == pytest.approx([100, -50, 30, -80, 20])
    shuffled = analytics.breakdown(five.sample(frac=1.0, random_state=3), "weekday")
    assert shuffled["key"].tolist() == ["Mon", "Tue", "Wed", "Thu", "Fri"]

    by_hour = analytics.breakdown(five, "hour")
    assert by_hour["key"].tolist() == [1, 10]  # the Friday trade was entered at 01:00 UTC
    assert by_hour["trades"].tolist() == [1, 4]
    assert by_hour["net_pnl"].tolist() == pytest.approx([20.0, 0.0])


def test_breakdown_of_nothing_and_of_an_unknown_key(five: pd.DataFrame) -> None:
    for by in ("symbol", "tag", "setup", "weekday", "hour"):
        empty = analytics.breakdown(frame(), by)
        assert empty.empty and list(empty.columns) == analytics.BREAKDOWN_COLUMNS
    with pytest.raises(ValueError, match="unknown breakdown"):
        analytics.breakdown(five, "month")  # type: ignore[arg-type]  # an unknown key on purpose


def test_zero_risk_stop_is_ignored_for_r() -> None:
    s = analytics.summary(frame(trade(0, 10.0, stop_loss=100.0), trade(1, 20.0, stop_loss=95.0)))
    assert s["avg_r"] == pytest.approx(4.0)  # only the second: 20 / 5
    assert s["trades_with_stop"] == 1
    assert not math.isnan(s["net_pnl"])
