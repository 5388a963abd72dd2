"""Fitted scikit-learn pipelines turned into plain numpy arrays and evaluated directly.

A live batch is a few rows; scikit-learn spends milliseconds per call on input validation, joblib
dispatch over the forest's trees and the calibrated SVM's inner classifiers. ``compile_pipeline``
reads the fitted estimators' arrays once and returns an evaluator that repeats scikit-learn's
arithmetic (scikit-learn 1.9) in a handful of numpy operations over all rows at once:

- every model: ``StandardScaler`` as ``(X - mean_) / scale_``;
- ``random_forest``: rows cast to float32 as scikit-learn does before a tree walk, all trees walked
  together one level per step (``x[feature] <= threshold`` goes left, leaves point to
  themselves), then the leaves' class fractions summed tree by tree and divided by the count; large
  batches (or all, ``ForestEvaluator.walk``) as ``pipeline.ml.batch``'s compiled loop, bit for bit
  the same;
- ``svm``: the RBF kernel against the Nystroem components (``-2 x.c + |x|^2 + |c|^2``, clipped at
  0, times ``-gamma``, exponentiated) times ``normalization_``, each calibrated classifier's
  linear decision then its sigmoid ``expit(-(a d + b))``, averaged over the classifiers;
- ``logistic_regression``: ``expit(x.coef + intercept)``; ``linear_regression``: ``x.coef +
  intercept``; ``kmeans``: the first centre with the least ``|c|^2 - 2 x.c``.

Classifier evaluators return the probability of ``classes_[1]``, regressors the prediction,
clusters the label. An evaluator returns None for rows it cannot reproduce exactly (a NaN or
infinite value anywhere on the way, which scikit-learn rejects or treats as missing), and
``compile_pipeline`` returns None for a pipeline of another shape: the caller then uses the
pipeline itself. Results agree with the pipeline's to rounding (well within 1e-9).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

_CHUNK_ROWS = 1024  # rows per forest walk (numpy form)
_JIT_ROWS = 20_000  # from this many rows the forest walks as the compiled loop whatever ``walk`` says

Walk = Literal["numba", "numpy"]


class Evaluator:
    """The numpy form of a fitted pipeline: its scaler's arrays plus the model's."""

    def __init__(self, scaler: StandardScaler) -> None:
        self.mean = np.array(scaler.mean_, dtype=float) if scaler.with_mean else None
        self.scale = np.array(scaler.scale_, dtype=float) if scaler.with_std else None

    def _scaled(self, X: np.ndarray) -> np.ndarray | None:
        """Return ``X`` scaled as StandardScaler.transform does, or None when not all finite."""
        if self.mean is not None:
            X = X - self.mean
        if self.scale is not None:
            X = X / self.scale
        return X if np.isfinite(X).all() else None

    def __call__(self, X: np.ndarray) -> np.ndarray | None:
        """Return the model's output for the float64 rows ``X``, or None to use the pipeline."""
        Xs = self._scaled(X)
        return None if Xs is None else self._evaluate(Xs)

    def warm(self) -> None:
        """Load what the first call would (compiled code), so that call is not slow: a live stage
        calls this when it loads a model."""

    def _evaluate(self, Xs: np.ndarray) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError


class ForestEvaluator(Evaluator):
    """RandomForestClassifier.predict_proba[:, 1]: all trees packed in flat node arrays.

    Node ``i`` of the pack tests feature ``feature[i]`` against ``threshold[i]`` and goes to
    ``child[2 i]`` (left, ``<=``) or ``child[2 i + 1]``; a leaf tests +inf and points to itself,
    so ``depth`` steps bring every row to its leaf in every tree.

    ``walk``: with ``numba`` (the default) every batch walks as ``pipeline.ml.batch.forest_walk``'s
    compiled loop, a live tick's few rows too (one call on one row: about 21 µs against 96 µs);
    with ``numpy`` a batch under ``_JIT_ROWS`` rows walks with the numpy operations below, a
    larger one as the loop. The two give the same bits (a test holds them equal on many rows, ties
    on thresholds included); rows with a value that is not finite never reach either (the caller
    uses the pipeline). The first compiled walk of a process loads numba (about 1.3 s from the
    cache under ``__pycache__``, several seconds to compile without it): the ml stage does it when
    it loads a model (``warm``). Paired runs of ``bench.signals --forest-walk both`` had the ml
    stage faster flat out and a lower tick -> signal p99 with ``numba`` (docs/delivery.md#latency).
    """

    walk: Walk = "numba"

    def __init__(self, scaler: StandardScaler, forest: RandomForestClassifier) -> None:
        super().__init__(scaler)
        features, thresholds, children, values, roots = [], [], [], [], []
        offset = 0
        depth = 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            n = tree.node_count
            leaf = tree.children_left == -1
            own = np.arange(n)
            left = np.where(leaf, own, tree.children_left) + offset
            right = np.where(leaf, own, tree.children_right) + offset
            features.append(np.where(leaf, 0, tree.feature))
            thresholds.append(np.where(leaf, np.inf, tree.threshold))
            children.append(np.stack([left, right], axis=1).ravel())
            value = np.asarray(tree.value, dtype=float)[:, 0, :]
            total = value.sum(axis=1)
            # Fractions already in scikit-learn >= 1.4; counts (normalised at predict) before.
            if not np.allclose(total[leaf], 1.0, rtol=0, atol=1e-12):
                value = value / np.where(total == 0, 1.0, total)[:, None]
            values.append(value[:, 1])
            roots.append(offset)
            offset += n
            depth = max(depth, int(tree.max_depth))
        self.n_features = int(forest.n_features_in_)
        self.feature = np.concatenate(features).astype(np.intp)
        self.threshold = np.concatenate(thresholds).astype(float)
        self.child = np.concatenate(children).astype(np.intp)
        self.value = np.concatenate(values)
        self.roots = np.array(roots, dtype=np.intp)[:, None]
        self.depth = depth
        self._packed: tuple[np.ndarray, ...] | None = None  # the compiled walk's arrays, made on first use

    def _evaluate(self, Xs: np.ndarray) -> np.ndarray | None:
        with np.errstate(over="ignore"):
            X32 = Xs.astype(np.float32)  # the forest's own cast: ties are decided in float32
        if not np.isfinite(X32).all():
            return None  # scikit-learn refuses a value too large for float32
        if self.walk == "numba" or len(X32) >= _JIT_ROWS:
            return self._compiled_walk(X32)
        flat = X32.astype(float)
        if len(flat) <= _CHUNK_ROWS:
            return self._walk(flat)
        # (trees, rows) work arrays stay in cache: twice as fast on 20,000 rows as one pass.
        return np.concatenate([self._walk(flat[i : i + _CHUNK_ROWS]) for i in range(0, len(flat), _CHUNK_ROWS)])

    def _compiled_walk(self, X32: np.ndarray) -> np.ndarray:
        from pipeline.ml.batch import float32_floor, forest_walk  # numba loads on the first walk

        if self._packed is None:  # in the loop's dtypes once, so a call copies nothing
            self._packed = (
                np.ascontiguousarray(self.feature, dtype=np.int32),
                float32_floor(self.threshold),
                np.ascontiguousarray(self.child, dtype=np.int32),
                np.ascontiguousarray(self.value, dtype=np.float64),
                np.ascontiguousarray(self.roots, dtype=np.int32).ravel(),
            )
        feature, threshold32, child, value, roots = self._packed
        return forest_walk(X32, feature, threshold32, child, value, roots, self.depth)

    def warm(self) -> None:
        if self.walk == "numba":
            self._compiled_walk(np.zeros((1, self.n_features), dtype=np.float32))

    def _walk(self, rows: np.ndarray) -> np.ndarray:
        n = len(rows)
        flat = rows.ravel()
        base = np.arange(0, n * self.n_features, self.n_features, dtype=np.intp)
        node = np.repeat(self.roots, n, axis=1)  # (trees, rows)
        feature, threshold, child = self.feature, self.threshold, self.child
        for _ in range(self.depth):
            right = flat[feature[node] + base] > threshold[node]
            node = child[2 * node + right]
        # Added tree after tree in the forest's order, as scikit-learn accumulates (a cumulative
        # sum is sequential; ``sum`` may pair terms up differently).
        return np.cumsum(self.value[node], axis=0)[-1] / len(self.roots)


class CalibratedSVMEvaluator(Evaluator):
    """Nystroem(rbf) + CalibratedClassifierCV(LinearSVC, sigmoid).predict_proba[:, 1]."""

    def __init__(self, scaler: StandardScaler, kernel: Nystroem, model: CalibratedClassifierCV) -> None:
        super().__init__(scaler)
        self.components = np.asarray(kernel.components_, dtype=float)
        self.components_norms = np.einsum("ij,ij->i", self.components, self.components)[None, :]
        gamma = kernel.gamma
        self.gamma = 1.0 / self.components.shape[1] if gamma is None else float(gamma)
        self.normalization_t = np.ascontiguousarray(np.asarray(kernel.normalization_, dtype=float).T)
        coefs, intercepts, a, b = [], [], [], []
        for calibrated in model.calibrated_classifiers_:
            estimator = calibrated.estimator
            (calibrator,) = calibrated.calibrators
            coefs.append(np.asarray(estimator.coef_, dtype=float).ravel())
            intercepts.append(float(np.asarray(estimator.intercept_).ravel()[0]))
            a.append(float(calibrator.a_))
            b.append(float(calibrator.b_))
        self.coef = np.array(coefs)  # (classifiers, components)
        self.intercept = np.array(intercepts)[:, None]
        self.a = np.array(a)[:, None]
        self.b = np.array(b)[:, None]

    def _evaluate(self, Xs: np.ndarray) -> np.ndarray | None:
        # rbf_kernel(X, components) as euclidean_distances(squared=True) computes it for float64.
        k = -2 * (Xs @ self.components.T)
        k += np.einsum("ij,ij->i", Xs, Xs)[:, None]
        k += self.components_norms
        np.maximum(k, 0, out=k)
        k *= -self.gamma
        np.exp(k, out=k)
        embedded = k @ self.normalization_t
        decision = self.coef @ embedded.T + self.intercept  # (classifiers, rows)
        proba = expit(-(self.a * decision + self.b))
        return np.cumsum(proba, axis=0)[-1] / len(proba)  # in order, as scikit-learn adds


class LinearEvaluator(Evaluator):
    """LogisticRegression.predict_proba[:, 1] (``logistic``) or Ridge.predict, single output."""

    def __init__(self, scaler: StandardScaler, model: Any, logistic: bool) -> None:
        super().__init__(scaler)
        self.coef = np.asarray(model.coef_, dtype=float).ravel()
        self.intercept = float(np.asarray(model.intercept_, dtype=float).ravel()[0])
        self.logistic = logistic

    def _evaluate(self, Xs: np.ndarray) -> np.ndarray | None:
        out = Xs @ self.coef + self.intercept
        return expit(out) if self.logistic else out


class KMeansEvaluator(Evaluator):
    """KMeans.predict: argmin of ``|c|^2 - 2 x.c``, the first centre on ties."""

    def __init__(self, scaler: StandardScaler, model: KMeans) -> None:
        super().__init__(scaler)
        self.centers_t = np.ascontiguousarray(np.asarray(model.cluster_centers_, dtype=float).T)
        self.norms = np.einsum("ij,ij->j", self.centers_t, self.centers_t)[None, :]

    def _evaluate(self, Xs: np.ndarray) -> np.ndarray | None:
        distances = self.norms + -2.0 * (Xs @ self.centers_t)
        return np.argmin(distances, axis=1)


def _binary(model: Any) -> bool:
    return len(getattr(model, "classes_", ())) == 2


def compile_pipeline(pipeline: Pipeline) -> Evaluator | None:
    """Return the evaluator of a fitted ``pipeline``, or None when its shape is not one above.

    Only exact types are accepted (a subclass may compute differently), with the options
    ``models._build`` uses; anything else keeps the scikit-learn path.
    """
    steps = [step for _, step in pipeline.steps]
    if len(steps) < 2 or type(steps[0]) is not StandardScaler:
        return None
    scaler, model = steps[0], steps[-1]
    if not hasattr(scaler, "scale_") and scaler.with_std:
        return None
    if len(steps) == 2:
        if type(model) is RandomForestClassifier and _binary(model) and model.n_outputs_ == 1:
            return ForestEvaluator(scaler, model)
        if type(model) is LogisticRegression and _binary(model) and model.coef_.shape[0] == 1:
            return LinearEvaluator(scaler, model, logistic=True)
        if type(model) is Ridge and np.ndim(model.coef_) == 1:
            return LinearEvaluator(scaler, model, logistic=False)
        if type(model) is KMeans:
            return KMeansEvaluator(scaler, model)
        return None
    if len(steps) == 3 and type(steps[1]) is Nystroem and type(model) is CalibratedClassifierCV:
        kernel = steps[1]
        if kernel.kernel != "rbf" or kernel.kernel_params or not _binary(model):
            return None
        for calibrated in model.calibrated_classifiers_:
            estimator = calibrated.estimator
            if (
                calibrated.method != "sigmoid"
                or type(estimator) is not LinearSVC
                or not _binary(estimator)
                or len(calibrated.calibrators) != 1
                or list(estimator.classes_) != list(model.classes_)
            ):
                return None
        return CalibratedSVMEvaluator(scaler, kernel, model)
    return None
