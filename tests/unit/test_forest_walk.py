"""A forest's compiled walk (numba: large batches, or every batch with ``walk="numba"``) gives the
numpy walk's bits: on many ordinary rows, on rows at, just under and just over the split thresholds,
on thresholds a float32 input can equal exactly, one row at a time as live ticks come; and a row
with a value that is not finite reaches neither walk (the caller uses the pipeline)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.ml import compiled as compiled_module
from pipeline.ml.compiled import ForestEvaluator, compile_pipeline

FEATURES = 10


@pytest.fixture(autouse=True)
def numpy_walk_at_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy walk walks every batch, however large (by default 20,000 rows go compiled)."""
    monkeypatch.setattr(compiled_module, "_JIT_ROWS", 10**12)


@pytest.fixture(scope="module")
def walks() -> tuple[ForestEvaluator, ForestEvaluator, Pipeline]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3_000, FEATURES))
    y = (X[:, 0] + 0.5 * X[:, 3] - X[:, 7] + rng.normal(scale=0.8, size=len(X)) > 0).astype(int)
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("model", RandomForestClassifier(n_estimators=40, max_depth=9, random_state=3))]
    )
    pipeline.fit(X, y)
    compiled = compile_pipeline(pipeline)
    assert isinstance(compiled, ForestEvaluator) and compiled.walk == "numba"  # the default
    numpy_walk = copy.copy(compiled)
    numpy_walk.walk = "numpy"
    return compiled, numpy_walk, pipeline


def at_thresholds(forest: ForestEvaluator, rng: np.random.Generator, n: int) -> np.ndarray:
    """Scaled rows whose every feature sits at some split's threshold of that feature: the float32
    nearest it, and the float32 just under and just over that one."""
    inner = np.isfinite(forest.threshold)
    rows = rng.normal(size=(n, FEATURES)).astype(np.float32)
    for f in range(FEATURES):
        near = forest.threshold[inner & (forest.feature == f)].astype(np.float32)
        if len(near):
            picks = rng.choice(near, size=n)
            step = rng.integers(-1, 2, size=n)
            picks = np.where(step < 0, np.nextafter(picks, np.float32(-np.inf)), picks)
            rows[:, f] = np.where(step > 0, np.nextafter(picks, np.float32(np.inf)), picks)
    return rows.astype(np.float64)


def test_the_compiled_walk_gives_the_numpy_walks_bits_on_many_rows_and_at_every_threshold(walks) -> None:
    compiled, numpy_walk, pipeline = walks
    rng = np.random.default_rng(11)
    ordinary = rng.normal(scale=1.5, size=(50_000, FEATURES))
    a, b = compiled._evaluate(ordinary), numpy_walk._evaluate(ordinary)
    assert a is not None and b is not None and np.array_equal(a, b)
    ties = at_thresholds(compiled, rng, 20_000)
    a, b = compiled._evaluate(ties), numpy_walk._evaluate(ties)
    assert a is not None and b is not None and np.array_equal(a, b)
    # and both are scikit-learn's, through the whole pipeline (unscaled rows)
    rows = ordinary[:2_000] * compiled.scale + compiled.mean
    assert np.allclose(compiled(rows), pipeline.predict_proba(rows)[:, 1], rtol=0, atol=1e-12)


def test_ties_on_thresholds_a_float32_can_equal_go_left_in_both_walks(walks) -> None:
    """With every threshold moved onto a float32 value, rows exactly on them compare equal: both
    walks send them left (``x <= threshold``), as scikit-learn does, and agree bit for bit."""
    compiled, _, _ = walks
    exact = copy.copy(compiled)
    exact.threshold = np.where(
        np.isfinite(compiled.threshold), compiled.threshold.astype(np.float32).astype(np.float64), np.inf
    )
    exact._packed = None
    numpy_walk = copy.copy(exact)
    numpy_walk.walk = "numpy"
    rows = at_thresholds(exact, np.random.default_rng(5), 20_000)
    a, b = exact._evaluate(rows), numpy_walk._evaluate(rows)
    assert a is not None and b is not None and np.array_equal(a, b)
    # a tie going right instead would change some outputs: the rows do sit on the splits
    nudged = np.nextafter(rows.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    assert not np.array_equal(numpy_walk._evaluate(nudged), b)


def test_one_row_at_a_time_as_live_ticks_come_gives_the_same_bits(walks) -> None:
    compiled, numpy_walk, _ = walks
    rows = np.random.default_rng(3).normal(size=(500, FEATURES))
    one_by_one = np.concatenate([compiled._evaluate(rows[i : i + 1]) for i in range(len(rows))])
    whole = numpy_walk._evaluate(rows)
    assert whole is not None and np.array_equal(one_by_one, whole)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_a_row_that_is_not_finite_in_float32_reaches_neither_walk(walks, bad: float) -> None:
    compiled, numpy_walk, _ = walks
    rows = np.random.default_rng(2).normal(size=(5, FEATURES))
    rows[3, 4] = bad
    assert compiled._evaluate(rows) is None and numpy_walk._evaluate(rows) is None
