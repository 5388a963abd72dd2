"""What-if replays on a built bar series, every answer worked out by hand from the four ticks a
replay makes of each candle; and one stop replayed by the virtual exchange itself, to the cent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.journal.whatif import Rule, Signals, replay
from pipeline.messages import Order, RiskManagement, TriggerSignal
from pipeline.trading.exchange import Exchange, ExchangeSettings
from tests.unit.test_excursions import BARS, T0, M, bars, trade

FREE = ExchangeSettings(fee_bps=0.0, slippage_bps=0.0)
PAPER = ExchangeSettings(fee_bps=10.0, slippage_bps=5.0)
# The long of test_excursions: in at 100 (T0+30 s), out at 104 (T0+4 min 10 s), stop 98 (1R = 2), 2 units,
# +7.60 net. The ticks after its entry: 100.5 | 100.5 100 103 102 | 102 101 106 105 | 105 105.5 97 99 | 99.
RULES = (
    Rule("target_r", 1),
    Rule("target_r", 2),
    Rule("planned_stop"),
    Rule("trailing_pct", 1.0),
    Rule("hold_bars", 2),
    Rule("hold_bars", 6),
    Rule("model_sell", "random_forest"),
)


def signals(*points: tuple[int, str]) -> dict[str, Signals]:
    times = np.array([T0 + ms for ms, _ in points], dtype=np.int64)
    return {"BTCUSDT/random_forest": Signals(times, np.array([s for _, s in points]))}


def by_rule(result) -> pd.DataFrame:
    return result.results.set_index("rule")


def test_each_rule_on_a_long_without_fees() -> None:
    out = replay(
        pd.DataFrame([trade("long")]),
        RULES,
        bars(),
        signals=signals((100_000, "HOLD"), (140_000, "SELL")),
        settings=FREE,
    )
    r = by_rule(out)
    expected = {  # rule: (exit price, exit time, exit by, P&L)
        "exit at 1R": (103.0, T0 + 90_000, "rule", 6.0),  # the first tick at or over 102
        "exit at 2R": (106.0, T0 + 150_000, "rule", 12.0),  # over 104
        "honour the planned stop": (97.0, T0 + 210_000, "rule", -6.0),  # the first tick at or under 98
        "trailing stop 1%": (101.0, T0 + 135_000, "rule", 2.0),  # 103 sets the stop at 101.97; 101 hits it
        "hold 2 bars": (105.0, T0 + 3 * M - 1, "rule", 10.0),  # the close of the second bar after the entry's
        "exit when random_forest says SELL": (106.0, T0 + 150_000, "rule", 12.0),  # the tick after the SELL
    }
    for rule, (price, time, by, pnl) in expected.items():
        row = r.loc[rule]
        assert (row["status"], row["exit_price"], row["exit_time"], row["exit_by"]) == ("ok", price, time, by), rule
        assert row["pnl"] == pytest.approx(pnl) and row["difference"] == pytest.approx(pnl - 7.6), rule
        assert row["r"] == pytest.approx(pnl / 4.0), rule  # 1R is 2 a unit on 2 units
    assert r.loc["hold 6 bars", "status"] == "skipped"
    assert r.loc["hold 6 bars", "reason"] == "no BTCUSDT bar 6 bars after the entry's"
    summary = out.summary.set_index("rule")
    assert summary.loc["exit at 1R", ["trades", "skipped", "changed"]].tolist() == [1, 0, 1]
    assert summary.loc["exit at 1R", "difference"] == pytest.approx(-1.6)
    assert out.actual_total == pytest.approx(7.6) and out.as_traded_total == pytest.approx(8.0)


def test_fees_and_slippage_are_the_paper_exchanges() -> None:
    out = replay(pd.DataFrame([trade("long")]), (Rule("target_r", 1),), bars(), settings=PAPER)
    row = out.results.iloc[0]
    fill = 103.0 * (1 - 0.0005)  # a sell pays the slippage
    assert row["exit_price"] == pytest.approx(fill)
    assert row["pnl"] == pytest.approx(2 * (fill - 100.0) - 2 * 100.0 * 0.001 - 2 * fill * 0.001)  # 5.491103
    assert out.as_traded_total == pytest.approx(2 * 4.0 - 0.2 - 2 * 104.0 * 0.001)


def test_a_short_and_the_trades_that_cannot_be_replayed_say_why() -> None:
    short = trade(
        "short",
        side="SELL",
        entry_price=102.0,
        exit_price=99.0,
        quantity=1.0,
        entry_time=T0 + 65_000,
        exit_time=T0 + 210_000,
        pnl=3.0,
        fees=0.0,
        stop_loss=104.0,
    )
    trades = pd.DataFrame([short, trade("eth", symbol="ETHUSDT"), trade("bare", stop_loss=None)])
    out = replay(trades, (Rule("target_r", 1), Rule("planned_stop"), Rule("model_sell", "svm")), bars(), settings=FREE)
    r = out.results.set_index(["trade_id", "rule"])
    assert r.loc[("short", "exit at 1R"), ["exit_price", "pnl"]].tolist() == [100.0, 2.0]  # 100 at T0+75 s
    assert r.loc[("short", "honour the planned stop"), ["exit_price", "exit_by"]].tolist() == [106.0, "rule"]
    assert r.loc[("eth", "exit at 1R"), "reason"] == "no ETHUSDT bars in the store"
    assert r.loc[("bare", "honour the planned stop"), "reason"] == "no planned stop on the losing side of the entry"
    assert r.loc[("bare", "exit at 1R"), "exit_price"] == 103.0  # 1R from the default risk: 1 % of 100
    assert r.loc[("short", "exit when svm says SELL"), "reason"] == "no stored signals of svm for BTCUSDT"
    assert out.summary.set_index("rule").loc["honour the planned stop", "skipped"] == 2


def test_a_model_that_never_disagrees_leaves_the_real_exit() -> None:
    out = replay(
        pd.DataFrame([trade("long")]),
        (Rule("model_sell", "random_forest"),),
        bars(),
        signals=signals((100_000, "BUY"), (200_000, "HOLD")),
        settings=FREE,
    )
    row = out.results.iloc[0]
    assert (row["exit_by"], row["exit_price"], row["pnl"]) == ("as traded", 104.0, pytest.approx(8.0))
    late = replay(
        pd.DataFrame([trade("long")]),
        (Rule("model_sell", "random_forest"),),
        bars(),
        signals=signals((400_000, "SELL")),
    )
    assert late.results.iloc[0]["reason"] == "no stored signals of random_forest during this trade"


def test_the_planned_stop_is_priced_as_the_virtual_exchange_fills_it() -> None:
    """The same candles as ticks through ``Exchange``: a market BUY with a stop of 98 fills at the first
    tick after its time and is stopped out; the what-if of that fill gives the same exit and P&L."""
    exchange = Exchange(PAPER)
    order = Order(
        order_id="o1",
        symbol="BTCUSDT",
        timestamp=T0 + 30_000,
        action="BUY",
        order_type="MARKET",
        quantity=2.0,
        price=100.0,
        total_value=200.0,
        status="PENDING",
        strategy="test",
        trigger_signal=TriggerSignal(model="m", confidence=0.9, expected_change_pct=1.0),
        risk_management=RiskManagement(stop_loss=98.0),
        metadata={},
    )
    exchange.submit(order)
    series = bars()["BTCUSDT"]
    for m, o, h, lo, c in BARS:
        start = T0 + m * M
        path = (o, lo, h, c) if c >= o else (o, h, lo, c)
        for offset, price in zip((0, M // 4, M // 2, M - 1), path):
            exchange.on_tick("BTCUSDT", start + offset, price)
    book = exchange.books["o1"]
    assert book.status == "CLOSED" and book.exit_reason == "stop_loss" and len(series.start) == len(BARS)
    filled = trade(
        "fill", entry_price=book.fill_price, entry_time=book.filled_at, exit_time=T0 + 5 * M, exit_price=109.0
    )
    row = replay(pd.DataFrame([filled]), (Rule("planned_stop"),), bars(), settings=PAPER).results.iloc[0]
    assert (row["exit_time"], row["exit_price"]) == (book.closed_at, pytest.approx(book.exit_price))
    assert row["pnl"] == pytest.approx(book.pnl)


def test_rules_check_their_values() -> None:
    for kind, value in (("target_r", 0), ("trailing_pct", 100), ("hold_bars", 1.5), ("model_sell", "")):
        with pytest.raises(ValueError, match=kind):
            Rule(kind, value)  # type: ignore[arg-type]
