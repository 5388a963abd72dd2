"""The models: scikit-learn pipelines (scaler inside) wrapped as a picklable ``Predictor``.

Every model answers the same question the same way: for each row, the expected forward log
return over ``horizon`` bars and a confidence in [0, 1] (0.5 is a coin flip). Classifiers
predict direction (target 1 when the forward return is > 0), regressors predict the return,
``kmeans`` finds market regimes and predicts each regime's mean training return.

Sizes are chosen so a walk-forward over 100,000 bars stays well under a minute per model on two
cores: the forest subsamples rows per tree, the SVM uses a Nystroem kernel map with a linear
SVM instead of a quadratic RBF SVC, and k-nearest-neighbours keeps a bounded recent window.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from pipeline.errors import PipelineError
from pipeline.ml.compiled import Evaluator, compile_pipeline
from pipeline.ml.features import FEATURES

log = logging.getLogger(__name__)

Kind = Literal["classifier", "regressor", "cluster"]
PredictionType = Literal["direction", "return"]

MODEL_NAMES: tuple[str, ...] = ("random_forest", "svm", "logistic_regression", "linear_regression", "knn", "kmeans")
SEED_MODELS: tuple[str, ...] = ("random_forest", "svm", "logistic_regression")

KINDS: dict[str, Kind] = {
    "random_forest": "classifier",
    "svm": "classifier",
    "logistic_regression": "classifier",
    "linear_regression": "regressor",
    "knn": "regressor",
    "kmeans": "cluster",
}

# Defaults per model; ``fit_predictor(params=...)`` overrides any of these keys and no others.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "random_forest": {
        "n_estimators": 100,
        "max_depth": 8,
        "min_samples_leaf": 50,
        "max_samples": 10_000,
        "max_features": "sqrt",
        "n_jobs": 2,
        "random_state": 0,
    },
    "svm": {
        "n_components": 100,
        "gamma": 0.1,
        "C": 0.1,
        "calibration_folds": 3,
        "max_train_rows": 30_000,
        "random_state": 0,
    },
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "linear_regression": {"alpha": 1.0},
    "knn": {"n_neighbors": 50, "max_train_rows": 20_000},
    "kmeans": {"n_clusters": 6, "n_init": 3, "random_state": 0},
}


class TrainingError(PipelineError):
    """A model that cannot be fitted on the data given (an unknown name or parameter, one class
    only, too few rows): training of that model stops with this one-line reason."""


def _build(name: str, p: dict[str, Any], n_rows: int) -> Pipeline:
    """Return the unfitted scikit-learn pipeline for ``name`` with parameters ``p``."""
    model: BaseEstimator
    if name == "random_forest":
        max_samples = p["max_samples"]
        if isinstance(max_samples, int) and max_samples >= n_rows:
            max_samples = None  # a plain bootstrap when the data is smaller than the cap
        model = RandomForestClassifier(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_samples=max_samples,
            max_features=p["max_features"],
            n_jobs=p["n_jobs"],
            random_state=p["random_state"],
        )
        return Pipeline([("scale", StandardScaler()), ("model", model)])
    if name == "svm":
        svc = LinearSVC(C=p["C"], dual=False)
        folds = max(2, min(p["calibration_folds"], n_rows // 20))
        return Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "kernel",
                    Nystroem(
                        kernel="rbf",
                        gamma=p["gamma"],
                        n_components=min(p["n_components"], n_rows),
                        random_state=p["random_state"],
                    ),
                ),
                ("model", CalibratedClassifierCV(svc, method="sigmoid", cv=folds)),
            ]
        )
    if name == "logistic_regression":
        model = LogisticRegression(C=p["C"], max_iter=p["max_iter"])
    elif name == "linear_regression":
        model = Ridge(alpha=p["alpha"])
    elif name == "knn":
        # Brute force is BLAS matrix products: ~6x faster than a k-d tree on 10 dimensions.
        model = KNeighborsRegressor(n_neighbors=min(p["n_neighbors"], n_rows), algorithm="brute")
    elif name == "kmeans":
        model = KMeans(n_clusters=p["n_clusters"], n_init=p["n_init"], random_state=p["random_state"])
    else:  # pragma: no cover - guarded by fit_predictor
        raise TrainingError(f"unknown model {name!r}")
    return Pipeline([("scale", StandardScaler()), ("model", model)])


@dataclass
class Predictor:
    """A fitted model that turns feature rows into (expected forward log return, confidence).

    Picklable; the registry stores it with joblib. ``predict`` is called by one thread at a time
    (the ML stage's, or a training job's) with a batch of rows, and makes one evaluation: the
    numpy form of the pipeline (``pipeline.ml.compiled``, same results to rounding) when there
    is one, else one pipeline call. The numpy form is built by ``compile()`` after fitting and
    on unpickling, and is not pickled itself, so files written before it existed load alike.
    """

    name: str
    kind: Kind
    prediction_type: PredictionType
    horizon: int
    features: tuple[str, ...]
    params: dict[str, Any]
    pipeline: Pipeline
    n_train: int = 0
    mean_up: float = 0.0
    mean_down: float = 0.0
    sigma: float = 0.0
    cluster_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cluster_confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # The numpy form of ``pipeline`` (None: none, use the pipeline); built by ``compile()``.
    compiled: Evaluator | None = field(default=None, init=False, repr=False, compare=False)
    _compiled_from: Any = field(default=None, init=False, repr=False, compare=False)

    def compile(self) -> None:
        """Build the numpy form of the fitted pipeline; a pipeline it cannot take keeps none.

        Call again after refitting the pipeline in place (a different pipeline object is noticed
        by ``predict``).
        """
        self._compiled_from = self.pipeline
        self.compiled = None
        try:
            if self.kind != "classifier" or [int(c) for c in self.pipeline.classes_] == [0, 1]:
                self.compiled = compile_pipeline(self.pipeline)
        except Exception as exc:  # noqa: BLE001 - an unexpected estimator keeps the sklearn path
            log.warning(
                "%s: no compiled form (%s: %s); predicting with scikit-learn", self.name, type(exc).__name__, exc
            )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("compiled", None)
        state.pop("_compiled_from", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.compile()

    def warm(self) -> None:
        """Load the compiled form's code now (numba's, for a forest) instead of on the first tick."""
        if self._compiled_from is not self.pipeline:
            self.compile()
        if self.compiled is not None:
            self.compiled.warm()

    def _evaluate(self, X: np.ndarray) -> np.ndarray | None:
        """Return the compiled output for ``X``, or None to use the pipeline."""
        if self._compiled_from is not self.pipeline:
            self.compile()
        return None if self.compiled is None else self.compiled(X)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (expected forward log return, confidence in [0, 1]) for every row of ``X``."""
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.shape[1] != len(self.features):
            raise TrainingError(f"{self.name} expects {len(self.features)} features, got {X.shape[1]}")
        if len(X) == 0:
            return np.zeros(0), np.zeros(0)
        fast = self._evaluate(X)
        if self.kind == "classifier":
            if fast is not None:
                p_up = fast  # probability of classes_[1], which compile() checked is 1
            else:
                proba = self.pipeline.predict_proba(X)
                classes = list(self.pipeline.classes_)
                p_up = proba[:, classes.index(1)]
            expected = p_up * self.mean_up + (1.0 - p_up) * self.mean_down
            confidence = np.maximum(p_up, 1.0 - p_up)
        elif self.kind == "regressor":
            expected = fast if fast is not None else np.asarray(self.pipeline.predict(X), dtype=float)
            if self.sigma > 0:
                confidence = ndtr(np.abs(expected) / self.sigma)
            else:
                confidence = np.where(expected == 0, 0.5, 1.0)
        else:
            labels = fast if fast is not None else self.pipeline.predict(X)
            expected = self.cluster_mean[labels]
            confidence = self.cluster_confidence[labels]
        return expected.astype(float), np.clip(confidence, 0.0, 1.0).astype(float)

    def importances(self) -> dict[str, float] | None:
        """Return each feature's share of the model's weight, or None when the model has none."""
        model = self.pipeline.named_steps["model"]
        if self.name == "random_forest":
            weights = np.asarray(model.feature_importances_, dtype=float)
        elif self.name in ("logistic_regression", "linear_regression"):
            weights = np.abs(np.asarray(model.coef_, dtype=float)).ravel()
        else:
            return None
        total = float(weights.sum())
        if total <= 0 or not math.isfinite(total):
            return dict.fromkeys(self.features, 0.0)
        return {f: float(w / total) for f, w in zip(self.features, weights)}


def resolve_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Return the defaults of ``name`` updated with ``params``; raise TrainingError on unknowns."""
    if name not in DEFAULT_PARAMS:
        raise TrainingError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    merged = dict(DEFAULT_PARAMS[name])
    unknown = sorted(set(params or {}) - set(merged))
    if unknown:
        raise TrainingError(f"{name} has no parameters {unknown}; known: {sorted(merged)}")
    merged.update(params or {})
    return merged


def fit_predictor(
    name: str, X: np.ndarray, y: np.ndarray, horizon: int, params: dict[str, Any] | None = None
) -> Predictor:
    """Fit model ``name`` on rows ``X`` (FEATURES order) and forward log returns ``y``.

    Models with a ``max_train_rows`` parameter (svm, knn) keep only that many most recent rows.
    """
    p = resolve_params(name, params)
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or len(X) != len(y):
        raise TrainingError(f"{name}: X has shape {X.shape} but y has {len(y)} rows")
    cap = p.get("max_train_rows")
    if cap is not None and len(X) > cap:
        X, y = X[-cap:], y[-cap:]
    if not np.isfinite(X).all() or not np.isfinite(y).all():
        raise TrainingError(f"{name}: training rows contain NaN or infinite values")
    kind = KINDS[name]
    minimum = max(20, p.get("n_clusters", 0) * 2)
    if len(X) < minimum:
        raise TrainingError(f"{name}: {len(X)} training rows; needs at least {minimum}")
    up = y > 0
    if kind == "classifier" and (up.all() or not up.any()):
        raise TrainingError(f"{name}: every training row goes the same way; nothing to learn")
    pipeline = _build(name, p, len(X))
    predictor = Predictor(
        name=name,
        kind=kind,
        prediction_type="direction" if kind == "classifier" else "return",
        horizon=horizon,
        features=FEATURES,
        params=p,
        pipeline=pipeline,
        n_train=len(X),
        mean_up=float(y[up].mean()) if up.any() else 0.0,
        mean_down=float(y[~up].mean()) if (~up).any() else 0.0,
    )
    if kind == "classifier":
        pipeline.fit(X, up.astype(int))
        if name == "random_forest":
            # Threads help fitting; predicting a few live rows is ~5x faster without the pool.
            pipeline.named_steps["model"].set_params(n_jobs=1)
    elif kind == "regressor":
        pipeline.fit(X, y)
        predictor.sigma = float(np.std(y - pipeline.predict(X)))
    else:
        labels = pipeline.fit_predict(X)
        k = p["n_clusters"]
        means = np.zeros(k)
        confidence = np.full(k, 0.5)
        for c in range(k):
            ys = y[labels == c]
            if len(ys):
                means[c] = ys.mean()
                sign = np.sign(means[c])
                confidence[c] = float((np.sign(ys) == sign).mean()) if sign != 0 else 0.5
        predictor.cluster_mean, predictor.cluster_confidence = means, confidence
    predictor.compile()
    log.debug("fitted %s on %d rows", name, len(X))
    return predictor
