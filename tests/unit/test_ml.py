"""Models and walk-forward evaluation: chance on a random walk, skill on a planted signal,
scaling fitted on training rows only, the profit arithmetic, and batch prediction."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.ml.compiled import Evaluator
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import BASELINES, Evaluation, TradeResult, make_dataset, simulate_trades, walk_forward
from pipeline.ml.features import FEATURES, WARMUP_BARS
from pipeline.ml.models import MODEL_NAMES, SEED_MODELS, Predictor, TrainingError, fit_predictor

METRIC_KEYS = {
    "accuracy",
    "precision_up",
    "recall_up",
    "precision_down",
    "recall_down",
    "r2",
    "mae_pct",
    "profit_pct",
    "trades",
    "exposure",
    "samples",
    "base_rate_up",
}


@pytest.fixture(scope="module")
def random_walk() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """20,000 one-minute bars of the market simulator (a GARCH random walk), horizon 5."""
    bars = bars_from_simulator("ETHUSDT", 20_000, seed=42, end_ms=1_800_000_000_000)
    return make_dataset(bars, 5)


def planted_bars(n: int, seed: int) -> pd.DataFrame:
    """Bars whose one-bar returns follow AR(1) with coefficient 0.5: the next move is predictable."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    shocks = rng.normal(0, 0.001, n)
    for i in range(1, n):
        r[i] = 0.5 * r[i - 1] + shocks[i]
    close = 100 * np.exp(np.cumsum(r))
    return pd.DataFrame(
        {
            "start": np.arange(n, dtype=np.int64) * 60_000,
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": rng.lognormal(0, 0.5, n),
        }
    )


def edge_over_chance(evaluation: Evaluation) -> tuple[float, float]:
    """Return (accuracy minus the majority-direction rate, standard error of that accuracy).

    Always guessing the more common direction scores max(base, 1 - base) with no skill, so that
    is the rate to beat. Targets over h bars overlap, so only samples / h rows are independent.
    """
    m = evaluation.metrics
    base = m["base_rate_up"]
    se = math.sqrt(0.25 / (m["samples"] / evaluation.horizon))
    return m["accuracy"] - max(base, 1 - base), se


def test_dataset_rows_are_defined_and_targets_are_forward_returns() -> None:
    bars = planted_bars(200, seed=1)
    X, y, starts = make_dataset(bars, 5)
    assert list(X.columns) == list(FEATURES) and len(X) == len(y) == len(starts)
    assert len(X) == 200 - WARMUP_BARS - 5  # rows 26 .. 194: features defined, close[t+5] exists
    close = bars["close"].to_numpy()
    assert starts[0] == bars["start"][WARMUP_BARS]
    assert y[0] == pytest.approx(math.log(close[WARMUP_BARS + 5] / close[WARMUP_BARS]))
    assert y[-1] == pytest.approx(math.log(close[199] / close[194]))
    assert not X.isna().any().any()


def test_no_model_beats_chance_on_a_random_walk(random_walk: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    X, y, _ = random_walk
    for name in MODEL_NAMES:
        evaluation = walk_forward(name, X, y, 5, n_splits=5)
        edge, se = edge_over_chance(evaluation)
        assert edge < 3 * se, (
            f"{name}: accuracy {evaluation.metrics['accuracy']:.4f} beats chance by {edge / se:.1f} SE"
        )
        assert evaluation.metrics["samples"] > 15_000
        assert set(evaluation.metrics) == METRIC_KEYS
        assert set(evaluation.baselines) == set(BASELINES)
        json.loads(evaluation.to_json())  # plain JSON values all the way down
        if name == "random_forest":
            check_report_shape(evaluation)


def check_report_shape(evaluation: Evaluation) -> None:
    m, b, report = evaluation.metrics, evaluation.baselines, evaluation.report
    (tn, fp), (fn, tp) = report["confusion"]
    assert tn + fp + fn + tp == m["samples"]
    assert m["accuracy"] == pytest.approx((tn + tp) / m["samples"])
    assert m["r2"] is None and m["mae_pct"] is None  # a classifier
    bins = report["calibration"]
    assert [(x["low"], x["high"]) for x in bins] == [(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0)]
    assert sum(x["count"] for x in bins) == m["samples"]
    assert len(report["folds"]) == 5 and sum(f["test_rows"] for f in report["folds"]) == m["samples"]
    assert b["buy_and_hold"]["accuracy"] is None and b["buy_and_hold"]["trades"] == 5  # one per fold
    assert b["always_up"]["profit_pct"] == pytest.approx(b["buy_and_hold"]["profit_pct"])
    assert b["always_up"]["recall_up"] == 1.0 and b["always_up"]["accuracy"] == pytest.approx(m["base_rate_up"])
    assert Evaluation.from_dict(json.loads(evaluation.to_json())) == evaluation


@pytest.mark.parametrize("name", ["random_forest", "logistic_regression"])
def test_a_planted_signal_is_found(name: str) -> None:
    X, y, _ = make_dataset(planted_bars(4_000, seed=5), 1)
    evaluation = walk_forward(name, X, y, 1, n_splits=4, fee_bps=0.0)
    edge, se = edge_over_chance(evaluation)
    assert edge > 6 * se, f"{name}: accuracy {evaluation.metrics['accuracy']:.4f}, edge {edge / se:.1f} SE"
    assert evaluation.metrics["profit_pct"] > evaluation.baselines["buy_and_hold"]["profit_pct"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_scaling_is_fitted_on_training_rows_only(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, _ = make_dataset(planted_bars(1_500, seed=2), 5)
    values = X.to_numpy().copy()
    values[:, 0] = np.arange(len(values))  # column 0 now names each row
    seen: list[np.ndarray] = []
    original = StandardScaler.fit

    def spy(self: StandardScaler, data: np.ndarray, *args: object, **kwargs: object) -> StandardScaler:
        seen.append(np.asarray(data)[:, 0].astype(int))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(StandardScaler, "fit", spy)
    walk_forward(name, values, y, 5, n_splits=3, max_train_rows=600)
    splits = list(TimeSeriesSplit(n_splits=3, gap=5).split(values))
    assert len(seen) == len(splits)
    for rows, (train, test) in zip(seen, splits):
        np.testing.assert_array_equal(rows, train[-600:])
        assert rows.max() + 5 < test.min()  # the gap: no training target reaches a test row

    monkeypatch.undo()
    predictor = fit_predictor(name, values[:500], y[:500], 5)
    scaler = predictor.pipeline.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, values[:500].mean(axis=0))


def test_profit_arithmetic_on_one_trade() -> None:
    # Horizon 2 over 6 rows: decisions at rows 0, 2, 4. Long only at row 0 (row 3's flag is not a
    # decision row): earn y[0] = 2 %, pay 10 bps to enter and 10 bps to exit.
    y = np.array([0.02, 0.5, -0.01, 0.3, 0.004, 9.0])
    long = np.array([True, False, False, True, False, False])
    result = simulate_trades(long, y, 2, fee_bps=10.0)
    assert (result.trades, result.periods, result.long_periods) == (1, 3, 1)
    growth = math.exp(0.02) * (1 - 0.001) * (1 - 0.001)  # 1.0202013 * 0.998001 = 1.0181620
    assert result.profit_pct == pytest.approx((growth - 1) * 100)
    assert result.profit_pct == pytest.approx(1.81620, abs=1e-5)
    assert result.exposure == pytest.approx(1 / 3)

    # Long at rows 0 and 2: the position is kept, so still one entry and one exit.
    kept = simulate_trades(np.array([True, False, True, False, False, False]), y, 2, fee_bps=10.0)
    assert kept.trades == 1
    assert kept.profit_pct == pytest.approx((math.exp(0.02 - 0.01) * 0.999**2 - 1) * 100)
    assert simulate_trades(np.zeros(6, dtype=bool), y, 2, 10.0) == TradeResult(0.0, 0, 3, 0)


def test_walk_forward_trades_only_when_the_expected_return_beats_the_fees() -> None:
    X, y, _ = make_dataset(planted_bars(2_000, seed=4), 1)
    free = walk_forward("linear_regression", X, y, 1, n_splits=3, fee_bps=0.0)
    costly = walk_forward("linear_regression", X, y, 1, n_splits=3, fee_bps=1_000.0)
    assert free.metrics["trades"] > 0
    assert costly.metrics["trades"] == 0 and costly.metrics["profit_pct"] == 0.0
    assert costly.metrics["accuracy"] == free.metrics["accuracy"]  # direction ignores fees
    assert free.metrics["r2"] is not None and free.metrics["mae_pct"] > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_predict_is_one_batched_call_with_confidence_in_range(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, _ = make_dataset(planted_bars(1_200, seed=9), 5)
    values = X.to_numpy().copy()
    predictor = fit_predictor(name, values[:900], y[:900], 5)
    assert isinstance(predictor, Predictor) and predictor.features == FEATURES
    assert predictor.prediction_type == ("direction" if name in SEED_MODELS else "return")
    calls: list[int] = []
    # one call to the scikit-learn pipeline, or to its compiled numpy evaluator (pipeline/ml/compiled.py)
    for owner, method in ((Pipeline, "predict"), (Pipeline, "predict_proba"), (Evaluator, "__call__")):
        original = getattr(owner, method)

        def counting(self: object, rows: np.ndarray, *args: object, _original=original, **kwargs: object) -> np.ndarray:
            calls.append(len(rows))
            return _original(self, rows, *args, **kwargs)

        monkeypatch.setattr(owner, method, counting)
    expected, confidence = predictor.predict(values[900:])
    assert calls == [len(values) - 900]
    assert expected.shape == confidence.shape == (len(values) - 900,)
    assert np.isfinite(expected).all()
    assert ((confidence >= 0) & (confidence <= 1)).all()
    importances = predictor.importances()
    if name in ("random_forest", "logistic_regression", "linear_regression"):
        assert importances is not None and set(importances) == set(FEATURES)
        assert sum(importances.values()) == pytest.approx(1.0)
    else:
        assert importances is None


def test_classifier_expectation_and_regressor_confidence_follow_the_definitions() -> None:
    X, y, _ = make_dataset(planted_bars(1_200, seed=9), 1)
    values = X.to_numpy().copy()
    clf = fit_predictor("logistic_regression", values, y, 1)
    assert clf.mean_up == pytest.approx(y[y > 0].mean()) and clf.mean_down == pytest.approx(y[y <= 0].mean())
    p_up = clf.pipeline.predict_proba(values[:50])[:, 1]
    expected, confidence = clf.predict(values[:50])
    np.testing.assert_allclose(expected, p_up * clf.mean_up + (1 - p_up) * clf.mean_down)
    np.testing.assert_allclose(confidence, np.maximum(p_up, 1 - p_up))

    reg = fit_predictor("linear_regression", values, y, 1)
    expected, confidence = reg.predict(values[:50])
    np.testing.assert_allclose(expected, reg.pipeline.predict(values[:50]))
    assert reg.sigma == pytest.approx(np.std(y - reg.pipeline.predict(values)))
    z = np.abs(expected) / reg.sigma
    np.testing.assert_allclose(confidence, [0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z])

    km = fit_predictor("kmeans", values, y, 1)
    labels = km.pipeline.predict(values)
    expected, confidence = km.predict(values)
    for c in set(labels):
        ys = y[labels == c]
        assert expected[labels == c][0] == pytest.approx(ys.mean())
        assert confidence[labels == c][0] == pytest.approx((np.sign(ys) == np.sign(ys.mean())).mean())


def test_unfit_inputs_are_refused_with_a_reason() -> None:
    X, y, _ = make_dataset(planted_bars(300, seed=1), 1)
    with pytest.raises(TrainingError, match="unknown model"):
        fit_predictor("gpt", X.to_numpy(), y, 1)
    with pytest.raises(TrainingError, match="no parameters"):
        fit_predictor("knn", X.to_numpy(), y, 1, params={"trees": 3})
    with pytest.raises(TrainingError, match="same way"):
        fit_predictor("logistic_regression", X.to_numpy(), np.abs(y) + 1e-6, 1)
    with pytest.raises(TrainingError, match="folds"):
        walk_forward("logistic_regression", X.iloc[:4], y[:4], 1, n_splits=5)
