"""Signals for a whole history in one pass: the features at every tick equal the incremental
``FeatureState``'s on random series (to 1e-9, the contract; here to the bit), the backtest's tick
plan is the replay's four ticks a candle, and the forest's compiled walk over a large batch gives
its numpy form's and scikit-learn's probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.candles import candle_prices, candle_spans, candle_times
from pipeline.ml.batch import tick_features as batch_features
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.features import FEATURES, FeatureState
from pipeline.ml.models import fit_predictor
from pipeline.trading.backtest import tick_features


def random_bars(n: int, seed: int) -> pd.DataFrame:
    """A random walk with jumps, flat stretches (RSI 50, zero volatility) and volume-less bars."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, rng.choice([0.0005, 0.003, 0.02]), n)
    steps[rng.integers(0, n, 3)] += rng.choice([-0.1, 0.1], 3)
    close = 100.0 * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    volume = rng.lognormal(0, 1, n)
    if n >= 100:
        a = int(rng.integers(30, n - 60))
        close[a : a + 40] = open_[a : a + 40] = high[a : a + 40] = low[a : a + 40] = close[a]
        open_[a + 40] = close[a]
        high[a + 40], low[a + 40] = max(high[a + 40], close[a]), min(low[a + 40], close[a])
        volume[a - 20 : a] = 0.0
    start = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    return pd.DataFrame({"start": start, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


def incremental(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """What the ml stage computes tick by tick: FeatureState at each of the replay's four ticks."""
    n = len(bars)
    X = np.full((n, 4, len(FEATURES)), np.nan)
    levels = np.full((n, 4, 3), np.nan)
    state = FeatureState()
    for i, b in enumerate(bars.itertuples()):
        if state.ready:
            for k, p in enumerate(candle_prices(b.open, b.high, b.low, b.close)):
                f = state.features(p)
                assert f is not None
                X[i, k] = [f[name] for name in FEATURES]
                levels[i, k] = (f["ma_7"], f["ma_25"], f["rsi_14"])
        state.push(b.close, b.high, b.low, b.volume)
    return X, levels


@pytest.mark.parametrize("seed", range(6))
def test_the_features_at_every_tick_are_the_incremental_states(seed: int) -> None:
    bars = random_bars(400, seed)
    want_X, want_levels = incremental(bars)
    _, _, X, levels = tick_features(bars, 60_000)
    assert np.array_equal(np.isnan(X), np.isnan(want_X)) and np.isnan(X[:26]).all() and not np.isnan(X[26:]).any()
    assert np.allclose(X, want_X, rtol=0, atol=1e-9, equal_nan=True)
    assert np.allclose(levels, want_levels, rtol=0, atol=1e-9, equal_nan=True)
    # the same operations in the same order: not just close, the same bits
    assert np.array_equal(X, want_X, equal_nan=True) and np.array_equal(levels, want_levels, equal_nan=True)


def test_the_ticks_are_the_replays_four_a_candle() -> None:
    bars = random_bars(60, 9)
    bars.loc[10:, "start"] += 30_000  # a short bar before a gap: its ticks squeeze into its span
    times, prices, _, _ = tick_features(bars, 60_000)
    spans = candle_spans(bars["start"].to_numpy(), 60_000)
    for i, b in enumerate(bars.itertuples()):
        assert tuple(prices[i]) == candle_prices(b.open, b.high, b.low, b.close)
        assert tuple(times[i]) == candle_times(int(b.start), int(spans[i]))


def test_short_histories_have_no_features_and_inputs_are_checked() -> None:
    bars = random_bars(60, 1).iloc[:20]
    _, _, X, levels = tick_features(bars.reset_index(drop=True), 60_000)
    assert np.isnan(X).all() and np.isnan(levels).all()
    with pytest.raises(ValueError, match="one row per bar"):
        batch_features(np.ones(5), np.ones(5), np.ones(4), np.ones(5), np.ones((5, 4)))


def test_the_forest_walks_a_large_batch_as_its_numpy_form_and_scikit_learn_do() -> None:
    train = bars_from_simulator("ETHUSDT", 3_000, seed=4, end_ms=1_800_000_000_000)
    X, y, _ = make_dataset(train, 5)
    predictor = fit_predictor("random_forest", X.to_numpy(), y, 5, params={"n_estimators": 30})
    forest = predictor.compiled
    assert forest is not None
    _, _, ticks, _ = tick_features(bars_from_simulator("ETHUSDT", 8_000, seed=5), 60_000)
    rows = ticks.reshape(-1, len(FEATURES))
    rows = rows[~np.isnan(rows).any(axis=1)]
    assert len(rows) >= 20_000  # the compiled walk's size
    compiled = forest(rows)
    numpy_form = np.concatenate([forest(rows[i : i + 5_000]) for i in range(0, len(rows), 5_000)])
    assert compiled is not None and np.array_equal(compiled, numpy_form)
    proba = predictor.pipeline.predict_proba(rows)[:, 1]
    assert np.allclose(compiled, proba, rtol=0, atol=1e-9)
