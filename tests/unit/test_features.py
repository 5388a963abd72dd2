"""Features: hand-computed values, incremental == vectorized, and no look-ahead."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from pipeline.ml.features import FEATURES, SEED_FEATURES, WARMUP_BARS, FeatureError, FeatureState, compute_features


def make_bars(
    close: list[float] | np.ndarray, volume: list[float] | np.ndarray | None = None, spread: float = 1.0
) -> pd.DataFrame:
    """Bars with the given closes; high/low are close +/- ``spread``; volume 10 unless given."""
    close = np.asarray(close, dtype=float)
    n = len(close)
    vol = np.full(n, 10.0) if volume is None else np.asarray(volume, dtype=float)
    return pd.DataFrame(
        {
            "start": np.arange(n, dtype=np.int64) * 60_000,
            "open": close,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": vol,
        }
    )


def zigzag() -> list[float]:
    """30 closes going up 2, down 1, up 2, ...: c[2k] = 100 + k, c[2k+1] = 102 + k."""
    return [100 + i // 2 + (2 if i % 2 else 0) for i in range(30)]


def random_walk_bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    bars = make_bars(close, rng.lognormal(0, 1, n))
    bars["high"] = close * (1 + rng.uniform(0, 0.002, n))
    bars["low"] = close * (1 - rng.uniform(0, 0.002, n))
    a, b = n // 6, n // 3
    bars.loc[a : a + 20, "volume"] = 0.0  # a stretch without trades: the mean-volume-is-zero rule
    bars.loc[b : b + 40, "close"] = bars.loc[b, "close"]  # a flat stretch: RSI 50, volatility 0
    return bars


def test_the_feature_contract() -> None:
    assert FEATURES == (
        "ret_1",
        "ret_5",
        "ret_15",
        "ma_7_gap",
        "ma_25_gap",
        "rsi_14",
        "volatility_7d",
        "volatility_25",
        "volume_change_pct",
        "range_pct",
    )
    assert SEED_FEATURES == ("ma_7", "ma_25", "rsi_14", "volatility_7d", "volume_change_pct")
    assert WARMUP_BARS == 26


def test_hand_computed_values_on_a_zigzag() -> None:
    c = zigzag()
    assert c[:6] == [100, 102, 101, 103, 102, 104] and c[28] == 114 and c[29] == 116
    volume = [10.0] * 30
    volume[21] = 17.0  # the 7 bars before the last closed one: 17 + 6 * 10 = 77, mean 11
    volume[28] = 25.0  # the last closed bar
    frame = compute_features(make_bars(c, volume))
    row = frame.iloc[29]  # p = c[29] = 116; closed bars 0..28

    expected = {
        "ret_1": math.log(116 / 114),  # c[28] = 114
        "ret_5": math.log(116 / 112),  # c[24] = 112
        "ret_15": math.log(116 / 107),  # c[14] = 107
        # c[23..29] = 113, 112, 114, 113, 115, 114, 116: sum 797
        "ma_7": 797 / 7,
        "ma_7_gap": 116 / (797 / 7) - 1,
        # c[5..29]: the even ones 103..114 sum to 1302, the odd ones 104..116 to 1430
        "ma_25": 2732 / 25,
        "ma_25_gap": 116 / (2732 / 25) - 1,
        # the last 14 differences: seven +2 and seven -1: mean gain 1, mean loss 0.5
        "rsi_14": 100 - 100 / (1 + 1 / 0.5),
        "volatility_7d": statistics.stdev(
            [
                math.log(113 / 111),
                math.log(112 / 113),
                math.log(114 / 112),
                math.log(113 / 114),
                math.log(115 / 113),
                math.log(114 / 115),
                math.log(116 / 114),
            ]
        ),
        "volatility_25": statistics.stdev([math.log(c[i] / c[i - 1]) for i in range(5, 30)]),
        "volume_change_pct": (25 / 11 - 1) * 100,
        "range_pct": (115 - 113) / 114 * 100,  # bar 28: close 114, high 115, low 113
    }
    assert expected["rsi_14"] == pytest.approx(66.6666666667)
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name

    state = FeatureState()
    for i in range(29):
        state.push(c[i], c[i] + 1, c[i] - 1, volume[i])
    live = state.features(116.0)
    assert live is not None
    for name, value in expected.items():
        assert live[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    assert state.vector(116.0) == [live[name] for name in FEATURES]


def test_rows_before_warm_up_are_nan_and_every_later_row_is_defined() -> None:
    frame = compute_features(make_bars(zigzag()))
    assert list(frame.columns) == [*FEATURES, "ma_7", "ma_25"]
    assert frame.iloc[:WARMUP_BARS].isna().all().all()
    assert frame.iloc[WARMUP_BARS:].notna().all().all()

    state = FeatureState()
    for c in zigzag()[:WARMUP_BARS]:
        assert not state.ready and state.features(c) is None and state.vector(c) is None
        state.push(c, c + 1, c - 1, 10.0)
    assert state.ready and state.features(120.0) is not None


def test_rsi_edges_all_up_is_100_and_flat_is_50() -> None:
    up = compute_features(make_bars([100 + i for i in range(40)]))
    assert (up["rsi_14"].iloc[WARMUP_BARS:] == 100.0).all()
    flat = compute_features(make_bars([100.0] * 40, volume=[0.0] * 40))
    assert (flat["rsi_14"].iloc[WARMUP_BARS:] == 50.0).all()
    assert (flat["volatility_7d"].iloc[WARMUP_BARS:] == 0.0).all()
    assert (flat["volume_change_pct"].iloc[WARMUP_BARS:] == 0.0).all()  # mean volume 0 -> 0.0

    state = FeatureState()
    for _ in range(30):
        state.push(100.0, 100.0, 100.0, 0.0)
    flat_live = state.features(100.0)
    assert flat_live is not None
    assert flat_live["rsi_14"] == 50.0 and flat_live["volatility_25"] == 0.0
    rose = state.features(100.5)
    assert rose is not None and rose["rsi_14"] == 100.0  # one gain, no loss
    fell = state.features(99.5)
    assert fell is not None and fell["rsi_14"] == 0.0  # one loss, no gain


def test_incremental_state_equals_vectorized_rows() -> None:
    bars = random_walk_bars(2_000, seed=7)
    frame = compute_features(bars)
    state = FeatureState()
    checked = 0
    for t, bar in enumerate(bars.itertuples(index=False)):
        live = state.features(bar.close)
        if live is None:
            assert t < WARMUP_BARS and frame.iloc[t].isna().all()
        else:
            row = frame.iloc[t]
            for name, value in live.items():
                assert abs(value - row[name]) <= 1e-9, (t, name, value, row[name])
            checked += 1
        state.push(bar.close, bar.high, bar.low, bar.volume)
    assert checked == 2_000 - WARMUP_BARS


def test_changing_the_future_never_changes_past_rows() -> None:
    bars = random_walk_bars(600, seed=3)
    before = compute_features(bars)
    rng = np.random.default_rng(11)
    for t in [*rng.integers(0, 598, size=8), WARMUP_BARS - 1, WARMUP_BARS]:
        future = bars.copy()
        later = future.index > t
        n = int(later.sum())
        for col in ("open", "high", "low", "close"):
            future.loc[later, col] = rng.uniform(1, 1000, n)
        future.loc[later, "volume"] = rng.uniform(0, 1e6, n)
        after = compute_features(future)
        pd.testing.assert_frame_equal(after.iloc[: t + 1], before.iloc[: t + 1])
        if t + 1 >= WARMUP_BARS + 1:
            assert not after.iloc[t + 1].equals(before.iloc[t + 1])  # the change is visible later


def test_bars_without_a_column_or_out_of_order_are_refused() -> None:
    bars = make_bars(zigzag())
    with pytest.raises(FeatureError, match="volume"):
        compute_features(bars.drop(columns=["volume"]))
    with pytest.raises(FeatureError, match="sorted"):
        compute_features(bars.iloc[::-1])
    extra = bars.assign(ticks=3, symbol="X")
    pd.testing.assert_frame_equal(compute_features(extra), compute_features(bars))
