"""MFE, MAE, R, the best exit and what the exit kept, on a built bar series with answers worked out
by hand; trades without bars say so instead of showing zeros."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.journal.excursions import Bars, RiskDefaults, compute, setup_risk_from_text, with_r

M = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % M  # a minute boundary
# start offset (min), open, high, low, close
BARS = [
    (-1, 95.0, 120.0, 90.0, 100.0),  # before the long's entry minute: not part of it
    (0, 100.0, 101.0, 99.5, 100.5),
    (1, 100.5, 103.0, 100.0, 102.0),
    (2, 102.0, 106.0, 101.0, 105.0),  # the highest high while both trades are open
    (3, 105.0, 105.5, 97.0, 99.0),  # the lowest low
    (4, 99.0, 104.5, 98.5, 104.0),
    (5, 104.0, 110.0, 103.0, 109.0),  # after the long's exit: not part of it
]
RISK = RiskDefaults(default_pct=1.0, per_setup=(("scalp", 0.5),))


def bars() -> dict[str, Bars]:
    frame = pd.DataFrame(BARS, columns=["m", "open", "high", "low", "close"]).assign(start=lambda f: T0 + f["m"] * M)
    return {"BTCUSDT": Bars.of(frame)}


def trade(trade_id: str, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "trade_id": trade_id,
        "user_id": "trader",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "entry_price": 100.0,
        "exit_price": 104.0,
        "quantity": 2.0,
        "entry_time": T0 + 30_000,
        "exit_time": T0 + 4 * M + 10_000,
        "pnl": 7.6,
        "fees": 0.4,
        "stop_loss": 98.0,
        "setup": None,
    }
    row.update(over)
    return row


def journal_row(trade_id: str, **over: object) -> dict[str, object]:
    """The journal store's row of the worked-out trade (the worker and the pages read these)."""
    row: dict[str, object] = {
        "trade_id": trade_id,
        "user_id": "trader",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "kind": "trade",
        "entry_price": 100.0,
        "exit_price": 104.0,
        "quantity": 2.0,
        "entry_time": T0 + 30_000,
        "exit_time": T0 + 4 * M + 10_000,
        "pnl": 7.6,
        "fees": 0.4,
        "stop_loss": 98.0,
        "tags": "[]",
        "fill_ids": "[]",
        "context": "{}",
        "source": "manual",
        "stored_at": T0,
    }
    row.update(over)
    return row


def results(*rows: dict[str, object]) -> pd.DataFrame:
    return compute(pd.DataFrame(list(rows)), bars(), RISK).set_index("trade_id")


def test_a_long_with_a_stop() -> None:
    r = results(trade("long")).loc["long"]
    assert r["status"] == "ok" and r["reason"] is None and r["bars"] == 5  # minutes 0..4
    assert r["risk_source"] == "stop" and r["risk_per_unit"] == 2.0
    assert r["r"] == pytest.approx(7.6 / (2.0 * 2.0))  # 1.9 R
    assert (r["mfe"], r["mae"]) == (6.0, 3.0)  # 106 - 100 and 100 - 97
    assert (r["mfe_pct"], r["mae_pct"]) == pytest.approx((6.0, 3.0))
    assert (r["mfe_r"], r["mae_r"]) == pytest.approx((3.0, 1.5))
    assert (r["best_exit_price"], r["best_exit_time"]) == (106.0, T0 + 2 * M)
    assert (r["worst_price"], r["worst_time"]) == (97.0, T0 + 3 * M)
    assert r["captured_pct"] == pytest.approx(4.0 / 6.0 * 100)  # kept 4 of the 6 on offer


def test_a_short_without_a_stop_takes_its_setups_default_risk() -> None:
    short = trade(
        "short",
        side="SELL",
        entry_price=102.0,
        exit_price=99.0,
        quantity=1.0,
        entry_time=T0 + M + 5_000,
        exit_time=T0 + 3 * M + 30_000,
        pnl=None,
        fees=None,
        stop_loss=None,
        setup="scalp",
    )
    r = results(short).loc["short"]
    assert r["bars"] == 3 and r["risk_source"] == "setup"
    assert r["risk_per_unit"] == pytest.approx(102.0 * 0.5 / 100)  # 0.51
    assert r["r"] == pytest.approx(3.0 / 0.51)  # a 3.00 gain from the prices, no fees
    assert (r["mfe"], r["mae"]) == (5.0, 4.0)  # 102 - 97 and 106 - 102
    assert r["mfe_pct"] == pytest.approx(5.0 / 102.0 * 100)
    assert (r["mfe_r"], r["mae_r"]) == pytest.approx((5.0 / 0.51, 4.0 / 0.51))
    assert (r["best_exit_price"], r["best_exit_time"]) == (97.0, T0 + 3 * M)
    assert (r["worst_price"], r["worst_time"]) == (106.0, T0 + 2 * M)
    assert r["captured_pct"] == pytest.approx(60.0)


def test_a_stop_on_the_wrong_side_is_no_stop() -> None:
    r = results(trade("odd", stop_loss=101.0)).loc["odd"]
    assert r["risk_source"] == "default" and r["risk_per_unit"] == pytest.approx(1.0)
    assert r["r"] == pytest.approx(7.6 / 2.0)


def test_trades_without_bars_say_so_instead_of_zeros() -> None:
    out = results(
        trade("eth", symbol="ETHUSDT"),
        trade("later", entry_time=T0 + 100 * M, exit_time=T0 + 110 * M),
        trade("gap", exit_time=T0 + 20 * M, exit_price=104.0),
    )
    assert out.loc["eth", "status"] == "no_bars" and out.loc["eth", "reason"] == "no ETHUSDT bars in the store"
    assert out.loc["later", "status"] == "no_bars" and "no BTCUSDT bar from" in out.loc["later", "reason"]
    assert out.loc["gap", "status"] == "gaps" and "stop short of the trade's exit" in out.loc["gap", "reason"]
    for tid in ("eth", "later", "gap"):
        assert all(math.isnan(out.loc[tid, c]) for c in ("mfe", "mae", "mfe_r", "captured_pct"))
        assert not math.isnan(out.loc[tid, "r"])  # R needs no bars


def test_with_r_and_the_setup_risk_setting() -> None:
    assert setup_risk_from_text("breakout=1.5, scalp = 0.25") == (("breakout", 1.5), ("scalp", 0.25))
    for bad in ("breakout", "=1", "x=0", "x=101", "x=lots"):
        with pytest.raises(ValueError, match="SETUP=PERCENT"):
            setup_risk_from_text(bad)
    frame = with_r(pd.DataFrame([trade("a"), trade("b", stop_loss=None, setup="none-set")]), RISK)
    assert frame["r"].tolist() == pytest.approx([1.9, 7.6 / 2.0]) and frame["risk_source"].tolist() == [
        "stop",
        "default",
    ]
    assert np.isfinite(frame["risk_per_unit"]).all()
