"""The drift alarm's statistics on planted live rows, every band worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.ml.drift import assess, live_rows

METRICS = {"accuracy": 0.6, "profit_pct": 0.0, "samples": 1000}


def planted(hits: int, n: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` rows that all predict up; the first ``hits`` go up 0.1 %, the rest down 0.1 %."""
    realised = np.where(np.arange(n) < hits, 0.001, -0.001)
    return np.arange(n, dtype=np.int64), np.full(n, 0.001), realised


def judge(hits: int, n: int = 100, **over: object):
    starts, expected, realised = planted(hits, n)
    kwargs = dict(symbol="BTCUSDT", model="random_forest", version=3, metrics=METRICS, horizon=1, fee_bps=0.0)
    kwargs.update(over)
    return assess(starts=starts, expected=expected, realised=realised, window=(0, n), **kwargs)  # type: ignore[arg-type]


def test_a_planted_drift_falls_below_the_band() -> None:
    check = judge(40)  # a 40 % hit rate against a walk-forward 60 %
    half = 1.96 * math.sqrt(0.6 * 0.4 / 100)  # 0.09602
    assert (check.rows, check.periods, check.hit_rate) == (100, 100, 0.4)
    assert (check.hit_lo, check.hit_hi) == pytest.approx((0.6 - half, 0.6 + half))
    assert check.state == "below"
    assert check.message.startswith("BTCUSDT random_forest v3 drifted below its walk-forward figures: hit rate 40.0%")
    # Always long, no fees: the profit is the sum of the returns, against 0 +- 1.96 sd x sqrt(100).
    assert check.profit_pct == pytest.approx(math.expm1(40 * 0.001 - 60 * 0.001) * 100)
    spread = 1.96 * np.std(np.where(np.arange(100) < 40, 0.001, -0.001)) * 10
    assert (check.profit_lo, check.profit_hi) == pytest.approx((math.expm1(-spread) * 100, math.expm1(spread) * 100))
    assert check.wf_profit_pct == pytest.approx(0.0)


def test_inside_the_band_is_ok_and_over_it_is_above() -> None:
    ok = judge(55)
    assert ok.state == "ok"
    assert ok.message == "BTCUSDT random_forest v3: hit rate 55.0% within 50.4%-69.6% over 100 periods"
    assert judge(75).state == "above"


def test_few_periods_are_warming_up_and_overlap_shrinks_the_sample() -> None:
    assert judge(4, n=9).state == "warming"
    check = judge(40, n=150, horizon=15)  # 150 overlapping rows are 10 independent periods
    assert check.periods == 10
    assert check.hit_lo == pytest.approx(0.6 - 1.96 * math.sqrt(0.24 / 10))


def test_live_rows_pair_each_bars_signal_with_the_close_horizon_bars_later() -> None:
    m = 60_000
    bars = pd.DataFrame({"start": [i * m for i in range(6)], "close": [100.0, 101.0, 100.0, 102.0, 103.0, 101.0]})
    signals = pd.DataFrame({"bar": [i * m for i in range(6)], "expected_change_pct": [1.0, -1.0, 0.5, 0.2, 0.1, 0.3]})
    starts, expected, realised = live_rows(signals, bars, horizon=2)
    assert starts.tolist() == [0, m, 2 * m, 3 * m]  # bars 4 and 5 have no close two bars on yet
    assert realised == pytest.approx([0.0, math.log(102 / 101), math.log(103 / 100), math.log(101 / 102)])
    assert expected == pytest.approx(np.log1p(np.array([1.0, -1.0, 0.5, 0.2]) / 100))
