"""The compiled (numpy) form of each model gives the scikit-learn pipeline's outputs to 1e-9, on
ordinary rows, rows far outside the training range and rows at the forest's split thresholds;
it survives pickling, and predictors pickled without it still predict."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from pipeline.ml.compiled import compile_pipeline
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.models import MODEL_NAMES, Predictor, fit_predictor

COMPILED = ("random_forest", "svm", "logistic_regression", "linear_regression", "kmeans")
TRAIN_ROWS = 3_000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """About 4,000 rows of features of the market simulator's random walk, horizon 5."""
    bars = bars_from_simulator("ETHUSDT", 4_000, seed=11, end_ms=1_800_000_000_000)
    X, y, _ = make_dataset(bars, 5)
    return X.to_numpy(), y


@pytest.fixture(scope="module")
def predictors(data: tuple[np.ndarray, np.ndarray]) -> dict[str, Predictor]:
    X, y = data
    return {name: fit_predictor(name, X[:TRAIN_ROWS], y[:TRAIN_ROWS], 5) for name in MODEL_NAMES}


def threshold_rows(
    forest_predictor: Predictor, X: np.ndarray, rng: np.random.Generator, count: int
) -> tuple[np.ndarray, int]:
    """Rows whose scaled value of a split's feature lands on or next to its threshold.

    Returns the rows and how many of them a float64 comparison would send the other way than
    scikit-learn's float32 one (so the ties are really exercised).
    """
    scaler = forest_predictor.pipeline.named_steps["scale"]
    forest = forest_predictor.pipeline.named_steps["model"]
    rows: list[np.ndarray] = []
    disagree = 0
    while len(rows) < count:
        tree = forest.estimators_[rng.integers(len(forest.estimators_))].tree_
        splits = np.flatnonzero(tree.children_left != -1)
        node = splits[rng.integers(len(splits))]
        f, t = int(tree.feature[node]), float(tree.threshold[node])
        near = np.float32(t)
        low = near if near <= t else np.nextafter(near, np.float32(-np.inf))
        below, above = float(low), float(np.nextafter(low, np.float32(np.inf)))  # float32 around t
        for scaled in (
            t,
            np.nextafter(t, -np.inf),
            np.nextafter(t, np.inf),
            below,
            above,
            (below + t) / 2,
            (t + above) / 2,
        ):
            row = X[rng.integers(len(X))].copy()
            row[f] = scaled * scaler.scale_[f] + scaler.mean_[f]
            s64 = (row[f] - scaler.mean_[f]) / scaler.scale_[f]
            disagree += bool((s64 <= t) != (np.float32(s64) <= t))
            rows.append(row)
    return np.array(rows[:count]), disagree


@pytest.fixture(scope="module")
def rows(data: tuple[np.ndarray, np.ndarray], predictors: dict[str, Predictor]) -> np.ndarray:
    """500 rows: 250 unseen, 125 far outside the training range, 125 at forest thresholds."""
    X, _ = data
    rng = np.random.default_rng(3)
    unseen = X[TRAIN_ROWS:][rng.integers(0, len(X) - TRAIN_ROWS, 250)]
    far = X[rng.integers(0, len(X), 125)] * rng.choice([-1e3, -20.0, 7.0, 50.0, 1e4], (125, 1))
    far[::5] += rng.normal(0, 1e3, (25, X.shape[1]))
    at, disagree = threshold_rows(predictors["random_forest"], X, rng, 125)
    assert disagree > 5  # float64 and float32 comparisons differ on some: the cast matters
    return np.vstack([unseen, far, at])


def sklearn_output(predictor: Predictor, X: np.ndarray) -> np.ndarray:
    pipeline = predictor.pipeline
    if predictor.kind == "classifier":
        return pipeline.predict_proba(X)[:, list(pipeline.classes_).index(1)]
    return pipeline.predict(X)


def sklearn_predict(predictor: Predictor, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``predictor.predict`` through the scikit-learn pipeline."""
    plain = copy.copy(predictor)
    plain.compiled = None
    return plain.predict(X)


def assert_same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_output_equals_the_pipeline(name: str, predictors: dict[str, Predictor], rows: np.ndarray) -> None:
    predictor = predictors[name]
    assert predictor.compiled is not None
    got = predictor.compiled(rows)
    assert got is not None and got.shape == (len(rows),)
    want = sklearn_output(predictor, rows)
    if name == "kmeans":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    for n in (1, 2, 10):  # live batch sizes: one row or a few
        few = predictor.compiled(rows[:n])
        assert few is not None
        np.testing.assert_allclose(few, want[:n], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", COMPILED)
def test_predict_uses_the_compiled_form_and_agrees(
    name: str, predictors: dict[str, Predictor], rows: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = predictors[name]
    want = sklearn_predict(predictor, rows)
    single = sklearn_predict(predictor, rows[0])

    def refuse(self: Pipeline, *args: object, **kwargs: object) -> None:
        raise AssertionError("the pipeline was called")

    monkeypatch.setattr(Pipeline, "predict", refuse)
    monkeypatch.setattr(Pipeline, "predict_proba", refuse)
    assert_same(predictor.predict(rows), want)
    assert_same(predictor.predict(rows[0]), single)  # one row as a vector


def test_forest_over_many_rows_in_chunks(data: tuple[np.ndarray, np.ndarray], predictors: dict[str, Predictor]) -> None:
    X, _ = data
    predictor = predictors["random_forest"]
    many = np.vstack([X, X[:500] * 3])  # more rows than one walk takes
    assert predictor.compiled is not None
    got = predictor.compiled(many)
    assert got is not None
    np.testing.assert_allclose(got, sklearn_output(predictor, many), rtol=0, atol=1e-9)


def test_knn_keeps_the_pipeline(predictors: dict[str, Predictor], rows: np.ndarray) -> None:
    predictor = predictors["knn"]
    assert predictor.compiled is None
    expected, _ = predictor.predict(rows)
    np.testing.assert_allclose(expected, predictor.pipeline.predict(rows), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # sklearn's
@pytest.mark.parametrize("name", ["random_forest", "svm", "logistic_regression", "kmeans"])
def test_rows_the_compiled_form_cannot_take_go_to_the_pipeline(
    name: str, predictors: dict[str, Predictor], rows: np.ndarray
) -> None:
    predictor = predictors[name]
    odd = rows[:4].copy()
    odd[1, 2] = np.nan
    odd[3, 0] = 1e60  # finite, but too large for the forest's float32
    assert predictor.compiled is not None
    assert predictor.compiled(odd) is None
    try:
        want = sklearn_predict(predictor, odd)
    except ValueError as exc:  # scikit-learn refuses NaN / overflow: so does predict
        with pytest.raises(ValueError, match=str(exc).split("\n")[0][:30]):
            predictor.predict(odd)
    else:  # the forest treats NaN as missing and is told how far 1e60 is, as before
        assert_same(predictor.predict(odd), want)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_pickled_predictor_predicts_the_same(
    name: str, predictors: dict[str, Predictor], rows: np.ndarray, tmp_path: Path
) -> None:
    predictor = predictors[name]
    want = predictor.predict(rows)
    assert "compiled" not in predictor.__getstate__()  # the file holds the pipeline only
    loaded = pickle.loads(pickle.dumps(predictor))
    assert (loaded.compiled is None) == (name not in COMPILED)
    assert_same(loaded.predict(rows), want)
    joblib.dump({"predictor": predictor}, tmp_path / "v1.joblib")  # as the registry stores it
    from_file = joblib.load(tmp_path / "v1.joblib")["predictor"]
    assert_same(from_file.predict(rows), want)


@pytest.mark.parametrize("name", COMPILED)
def test_a_predictor_without_compiled_arrays_compiles_on_first_predict(
    name: str, predictors: dict[str, Predictor], rows: np.ndarray
) -> None:
    predictor = predictors[name]
    # What a file written before the compiled form existed unpickles to, __setstate__ bypassed.
    state = {k: v for k, v in predictor.__dict__.items() if k not in ("compiled", "_compiled_from")}
    old = object.__new__(Predictor)
    old.__dict__.update(state)
    assert old.compiled is None
    assert_same(old.predict(rows), sklearn_predict(predictor, rows))
    assert old.compiled is not None


def test_a_replaced_pipeline_is_compiled_again(
    data: tuple[np.ndarray, np.ndarray], predictors: dict[str, Predictor], rows: np.ndarray
) -> None:
    X, y = data
    predictor = copy.copy(predictors["logistic_regression"])
    other = fit_predictor("logistic_regression", X[-1_000:], y[-1_000:], 5)
    stale = predictor.predict(rows)
    predictor.pipeline = other.pipeline
    fresh = predictor.predict(rows)
    assert_same(fresh, sklearn_predict(predictor, rows))
    assert not np.allclose(fresh[0], stale[0], rtol=0, atol=1e-9)


def test_other_pipelines_are_not_compiled() -> None:
    X = np.random.default_rng(0).normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    assert compile_pipeline(Pipeline([("scale", MinMaxScaler()), ("model", LogisticRegression())]).fit(X, y)) is None
    three = np.repeat([0, 1, 2], 34)[:100]
    assert (
        compile_pipeline(Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(X, three)) is None
    )
