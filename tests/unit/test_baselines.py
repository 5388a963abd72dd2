"""The baselines every model is compared with, by value: their calls on small series, their scores
through ``walk_forward`` on a series whose answers are worked out by hand, and proof that no
baseline's call at a row moves when the future (targets not yet known, later rows) changes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.ml.baselines import BASELINES, baseline_calls
from pipeline.ml.evaluate import walk_forward
from pipeline.ml.features import FEATURES


def features(n: int, rng: np.random.Generator, ma_up: np.ndarray | None = None) -> pd.DataFrame:
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=list(FEATURES))
    if ma_up is not None:  # price over average: a smaller gap to ma_7 means ma_7 is the higher average
        X["ma_7_gap"] = np.where(ma_up, 1.0, 1.2)
        X["ma_25_gap"] = 1.1
    return X


def test_calls_on_a_small_series_with_a_two_bar_horizon() -> None:
    y = np.array([0.01, -0.02, 0.03, 0.04, -0.01, 0.02, 0.0])
    X = pd.DataFrame(
        {"ma_7_gap": [0.99, 1.01, 1.0, 0.98, 1.02, 1.0, 0.97], "ma_25_gap": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]}
    )
    calls = baseline_calls(X, y, horizon=2)
    # persistence at row i is the sign of y[i - 2]; nothing is known in the first two rows; 0 is not up
    assert calls["persistence"].tolist() == [False, False, True, False, True, True, False]
    assert calls["always_up"].tolist() == [True] * 7
    assert calls["buy_and_hold"].tolist() == [True] * 7
    assert calls["ma_crossover"].tolist() == [True, False, False, True, False, False, True]
    assert set(calls) == set(BASELINES)


def test_calls_from_a_feature_matrix_use_the_feature_columns_by_name() -> None:
    X = pd.DataFrame(np.ones((3, len(FEATURES))), columns=list(FEATURES))
    X["ma_7_gap"] = [0.9, 1.1, 1.0]
    X["ma_25_gap"] = [1.0, 1.0, 1.0]
    from_frame = baseline_calls(X, np.zeros(3), horizon=1)["ma_crossover"]
    from_array = baseline_calls(X.to_numpy(), np.zeros(3), horizon=1)["ma_crossover"]
    assert from_frame.tolist() == from_array.tolist() == [True, False, False]


@pytest.mark.parametrize("horizon", [1, 3, 15])
def test_no_baseline_call_moves_when_the_future_changes(horizon: int) -> None:
    """At row k the targets known are y[:k - h + 1] (y[j] needs close[j + h]); change every later
    target and every later feature row, and no call at rows <= k may change."""
    rng = np.random.default_rng(horizon)
    n = 80
    y = rng.normal(0, 0.01, n)
    X = features(n, rng)
    calls = baseline_calls(X, y, horizon)
    for k in range(n):
        future_y = y.copy()
        first_unknown = max(k - horizon + 1, 0)
        future_y[first_unknown:] = -future_y[first_unknown:] + rng.normal(0, 0.01, n - first_unknown)
        future_X = X.copy()
        future_X.iloc[k + 1 :] = rng.normal(size=(n - k - 1, len(FEATURES)))
        changed = baseline_calls(future_X, future_y, horizon)
        for name in BASELINES:
            assert changed[name][: k + 1].tolist() == calls[name][: k + 1].tolist(), (name, k)
    # and the check can fail: a persistence that read its own row's target would be caught
    peeking = y > 0
    assert peeking.tolist() != calls["persistence"].tolist()


def test_walk_forward_scores_each_baseline_as_worked_out_by_hand() -> None:
    """66 rows, 1-bar horizon, two folds testing rows 22-43 and 44-65. Even rows go up 2 %, odd rows
    down 1 %; the averages say up at even rows. Fees 10 bps a side."""
    n, fee = 66, math.log(1 - 10 / 10_000)
    even = np.arange(n) % 2 == 0
    y = np.where(even, 0.02, -0.01)
    X = features(n, np.random.default_rng(0), ma_up=even)
    ev = walk_forward("logistic_regression", X, y, 1, n_splits=2, fee_bps=10.0)
    b = ev.baselines

    def pct(log_growth: float) -> float:
        return (math.exp(log_growth) - 1) * 100

    # persistence says up at odd rows (the row before went up): always wrong; long at each odd row,
    # eleven round trips a fold, each losing 1 % and two fees
    assert b["persistence"]["accuracy"] == 0.0
    assert b["persistence"]["trades"] == 22 and b["persistence"]["exposure"] == 0.5
    assert b["persistence"]["profit_pct"] == pytest.approx(pct(22 * -0.01 + 44 * fee), rel=1e-12)
    # always-up: right half the time; one entry and one exit a fold, holding 11 x 2 % - 11 x 1 %
    assert b["always_up"]["accuracy"] == 0.5
    assert b["always_up"]["trades"] == 2 and b["always_up"]["exposure"] == 1.0
    assert b["always_up"]["profit_pct"] == pytest.approx(pct(2 * 0.11 + 4 * fee), rel=1e-12)
    # the crossover is right every time: long at each even row only
    assert b["ma_crossover"]["accuracy"] == 1.0
    assert b["ma_crossover"]["precision_up"] == 1.0 and b["ma_crossover"]["recall_up"] == 1.0
    assert b["ma_crossover"]["trades"] == 22
    assert b["ma_crossover"]["profit_pct"] == pytest.approx(pct(22 * 0.02 + 44 * fee), rel=1e-12)
    # buy-and-hold trades as always-up and makes no direction call
    assert b["buy_and_hold"]["accuracy"] is None
    assert b["buy_and_hold"]["profit_pct"] == pytest.approx(b["always_up"]["profit_pct"], rel=1e-15)
    assert b["buy_and_hold"]["trades"] == 2
    assert ev.metrics["samples"] == 44 and ev.metrics["base_rate_up"] == 0.5


def test_walk_forward_persistence_on_a_longer_horizon() -> None:
    """A 3-bar horizon on a 6-row cycle of targets: up, up, up, down, down, down; folds test rows
    36-71 and 72-107. Persistence looks 3 rows back, always at the opposite sign: never right.
    Trading decides every 3rd row of a fold (12 a fold) and persistence is long at the 6 down ones."""
    n, h = 108, 3
    y = np.where(np.arange(n) % 6 < 3, 0.01, -0.01)
    X = features(n, np.random.default_rng(1))
    ev = walk_forward("logistic_regression", X, y, h, n_splits=2, fee_bps=0.0)
    persistence = ev.baselines["persistence"]
    assert persistence["accuracy"] == 0.0
    assert (persistence["trades"], persistence["exposure"]) == (12, 0.5)
    assert persistence["profit_pct"] == pytest.approx((math.exp(12 * -0.01) - 1) * 100, rel=1e-12)
    assert ev.baselines["always_up"]["accuracy"] == 0.5
    assert ev.baselines["always_up"]["profit_pct"] == pytest.approx(0.0, abs=1e-12)
