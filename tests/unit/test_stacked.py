"""A stack of predictors (one per symbol) answers every row as that row's own predictor does: the
forests bit for bit, the others to rounding; rows and predictors the compiled loops cannot take
go to the predictor itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.models import Predictor, fit_predictor
from pipeline.ml.stacked import Stack

# Several fits of each kind (on different stretches, as different symbols' models are), and kinds
# with no compiled loop here: a regressor, a clusterer and the nearest-neighbours model.
KINDS = ["random_forest"] * 3 + ["svm"] * 2 + ["logistic_regression"] * 2 + ["linear_regression", "kmeans", "knn"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    bars = bars_from_simulator("SOLUSDT", 3_000, seed=4, end_ms=1_800_000_000_000)
    X, y, _ = make_dataset(bars, 5)
    return X.to_numpy(), y


@pytest.fixture(scope="module")
def predictors(data: tuple[np.ndarray, np.ndarray]) -> list[Predictor]:
    X, y = data
    fitted = [
        fit_predictor(name, X[i * 150 : i * 150 + 1200], y[i * 150 : i * 150 + 1200], 5) for i, name in enumerate(KINDS)
    ]
    # forests of other sizes in the same stack: fewer and shallower trees, and more and deeper ones
    small = fit_predictor("random_forest", X[:1200], y[:1200], 5, {"n_estimators": 7, "max_depth": 3})
    large = fit_predictor("random_forest", X[600:1800], y[600:1800], 5, {"n_estimators": 130, "max_depth": 11})
    return [*fitted, small, large]


def one_by_one(predictors: list[Predictor], X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [predictors[w].predict(X[i : i + 1]) for i, w in enumerate(which)]
    return np.array([e[0] for e, _ in pairs]), np.array([c[0] for _, c in pairs])


def test_a_stack_answers_each_row_as_its_own_predictor(
    data: tuple[np.ndarray, np.ndarray], predictors: list[Predictor]
) -> None:
    X, _ = data
    rng = np.random.default_rng(8)
    rows = X[rng.integers(0, len(X), 600)] * rng.choice([1.0, 1.0, -3.0, 40.0], (600, 1))
    which = rng.integers(0, len(predictors), 600)
    stack = Stack(predictors)
    stack.warm()
    # Batches of 12 rows over ten models go through the compiled loops; all 600 at once (60 rows
    # a model) through each model's own call: both answer as each row's predictor does.
    parts = [stack.predict(rows[i : i + 12], which[i : i + 12]) for i in range(0, 600, 12)]
    stacked = tuple(np.concatenate(p) for p in zip(*parts))
    want_e, want_c = one_by_one(predictors, rows, which)
    forest = np.isin(which, [i for i, p in enumerate(predictors) if p.name == "random_forest"])
    assert forest.sum() > 100
    for expected, confidence in (stacked, stack.predict(rows, which)):
        assert np.array_equal(expected[forest], want_e[forest]) and np.array_equal(confidence[forest], want_c[forest])
        np.testing.assert_allclose(expected, want_e, rtol=0, atol=1e-12)
        np.testing.assert_allclose(confidence, want_c, rtol=0, atol=1e-12)
    expected = stacked[0]
    assert len(set(expected.round(12))) > 50  # the rows really went to different models


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # sklearn's
def test_rows_a_loop_cannot_take_go_to_their_predictor(
    data: tuple[np.ndarray, np.ndarray], predictors: list[Predictor]
) -> None:
    X, _ = data
    forests = [p for p, k in zip(predictors, KINDS) if k == "random_forest"]
    rows = X[:6].copy()
    rows[2, 3] = rows[4, 0] = np.nan  # the forest's own walk takes NaN as missing
    which = np.array([0, 1, 2, 0, 1, 2])
    stack = Stack(forests)
    expected, confidence = stack.predict(rows, which)
    want = one_by_one(forests, rows, which)
    assert np.array_equal(expected, want[0]) and np.array_equal(confidence, want[1])
    too_large = rows[:1] * 0 + 1e60  # finite, but not for the forest's float32: refused as its predict does
    with pytest.raises(ValueError, match="too large"):
        forests[0].predict(too_large)
    with pytest.raises(ValueError, match="too large"):
        stack.predict(too_large, np.array([0]))
    svm = Stack([p for p, k in zip(predictors, KINDS) if k == "svm"])
    with pytest.raises(ValueError, match="NaN"):  # as the svm's own predict refuses it
        svm.predict(rows[4:5], np.array([0]))


def test_a_stack_takes_one_set_of_feature_columns(predictors: list[Predictor]) -> None:
    other = dataclasses.replace(predictors[0], features=predictors[0].features[:-1])
    with pytest.raises(ValueError, match="same feature columns"):
        Stack([predictors[0], other])
