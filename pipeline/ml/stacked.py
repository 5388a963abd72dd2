"""One model kind across many symbols, predicted in one compiled call per batch.

The ml stage holds a model per symbol and kind: 50 symbols and three models are 150 fitted
pipelines. A burst of one tick per symbol (as the simulator publishes) asked each of them for one
row: 150 calls of 20-30 µs, almost all of it Python and numpy's per-call overhead, and the last
tick of the burst waited for all of them. ``Stack`` packs the compiled forms
(``pipeline.ml.compiled``) of the predictors of one kind once, when the stage loads them, and
evaluates a batch's rows together, each row with its own symbol's model (``which``), in one loop
compiled with numba:

- ``ForestEvaluator``: all forests' nodes in one flat pack (node indices offset per forest), a
  node's feature, threshold and children side by side in 16 bytes (one cache line read a step,
  not three arrays' lines); a row steps all the trees of its forest a level at a time (their
  loads go out together: a live burst, 100 ms after the last, finds the nodes out of cache, and
  walking one tree after another waited for each load in turn), then adds their leaves one by one
  from 0.0 in the trees' order and divides by its forest's count: the same IEEE operations in the
  same order as the forest's own walk, so the outputs are equal bit for bit (scaling too:
  ``(x - mean) / scale`` element by element).
- ``CalibratedSVMEvaluator``: the same formula per row (RBF kernel against the row's Nystroem
  components, then each calibrated classifier's decision and sigmoid, averaged in order), with
  ``normalization_`` and the classifiers' weights multiplied together once when packing (a row
  then costs components x classifiers, not components squared); the sums run in a different
  order than numpy's matrix products, so outputs agree to rounding (a test holds them within
  1e-12).
- ``LinearEvaluator`` with a logistic link: ``expit(x . coef + intercept)``, likewise to rounding.

A predictor of another shape (no compiled form, a regressor, clusters) and a row the compiled
form cannot take (a value that is not finite after scaling, or too large for float32 in a forest)
are predicted by the predictor itself, so ``Stack.predict`` answers exactly what
``Predictor.predict`` does for every row. Every predictor of a stack takes the same feature
columns (the caller groups by them).

A batch with several rows a model (``_SEPARATE_FROM`` or more on average: a backlog, a replay) is
predicted by each model's own call over its rows instead, which walks a forest's trees block by
block and multiplies matrices: cheaper than a row at a time there.

Cost: packing is a copy of the models' arrays (about 60 KB per forest); the numba code loads from
the cache under ``__pycache__`` on first use (``warm``). A burst of 50 rows of three kinds is
well under a millisecond (``python -m bench.inference`` prints it beside one call per model).
Nothing here keeps state between calls; a stack is read only after it is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from pipeline.ml.batch import float32_floor
from pipeline.ml.compiled import CalibratedSVMEvaluator, Evaluator, ForestEvaluator, LinearEvaluator


@njit(cache=True, boundscheck=False)
def _scale(X: np.ndarray, which: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # pragma: no cover - compiled
    n, m = X.shape
    Xs = np.empty((n, m))
    ok = np.ones(n, dtype=np.bool_)
    for r in range(n):
        w = which[r]
        for j in range(m):
            v = (X[r, j] - mean[w, j]) / scale[w, j]
            Xs[r, j] = v
            if not math.isfinite(v):
                ok[r] = False
        if not ok[r]:  # a row the loops cannot take goes to its predictor; the loops see zeros
            for j in range(m):
                Xs[r, j] = 0.0
    return Xs, ok


@njit(cache=True, boundscheck=False)
def _float32(Xs: np.ndarray, ok: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    # The forest's own cast (ties are decided in float32); clears ``ok`` of a row too large for
    # float32, and zeroes it, as ``_scale`` does a row that is not finite.
    n, m = Xs.shape
    X32 = np.empty((n, m), dtype=np.float32)
    for r in range(n):
        for j in range(m):
            v = np.float32(Xs[r, j])
            X32[r, j] = v
            if not math.isfinite(v):
                ok[r] = False
        if not ok[r]:
            for j in range(m):
                X32[r, j] = 0.0
    return X32


@njit(cache=True, boundscheck=False)
def _forests(
    X32: np.ndarray,
    which: np.ndarray,
    nodes: np.ndarray,
    thresholds: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    tree_start: np.ndarray,
    depth: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    # ``nodes``: 4 int32 a node (feature, threshold's bits, left, right); ``thresholds`` is the same
    # memory seen as float32, so a step reads one cache line. A row's trees step level by level
    # together: their loads do not wait for one another (a live burst finds the nodes out of cache).
    n = X32.shape[0]
    out = np.zeros(n)
    at = np.empty(np.max(tree_start[1:] - tree_start[:-1]) if len(tree_start) > 1 else 0, dtype=np.int32)
    for r in range(n):
        w = which[r]
        first, last = tree_start[w], tree_start[w + 1]
        trees = last - first
        for t in range(trees):
            at[t] = roots[first + t]
        for _ in range(depth[w]):
            for t in range(trees):
                q = 4 * at[t]
                x = X32[r, nodes[q]]
                at[t] = nodes[q + 2 + np.int32(x > thresholds[q + 1])]
        acc = 0.0
        for t in range(trees):  # the leaves added in the trees' order, as the forest's own walk does
            acc += value[at[t]]
        out[r] = acc / trees
    return out


@njit(cache=True, boundscheck=False)
def _svms(
    Xs: np.ndarray,
    which: np.ndarray,
    components: np.ndarray,
    comp_start: np.ndarray,
    components_norms: np.ndarray,
    gamma: np.ndarray,
    folded: np.ndarray,
    clf_start: np.ndarray,
    intercept: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    n, m = Xs.shape
    out = np.zeros(n)
    for r in range(n):
        w = which[r]
        c0 = comp_start[w]
        nc = comp_start[w + 1] - c0
        xx = 0.0
        for j in range(m):
            xx += Xs[r, j] * Xs[r, j]
        k = np.empty(nc)
        for c in range(nc):
            dot = 0.0
            for j in range(m):
                dot += Xs[r, j] * components[c0 + c, j]
            v = -2.0 * dot + xx + components_norms[c0 + c]
            k[c] = math.exp(max(v, 0.0) * -gamma[w])
        acc = 0.0
        for q in range(clf_start[w], clf_start[w + 1]):
            d = 0.0
            for c in range(nc):
                d += k[c] * folded[c0 + c, q - clf_start[w]]
            d += intercept[q]
            acc += 1.0 / (1.0 + math.exp(a[q] * d + b[q]))
        out[r] = acc / (clf_start[w + 1] - clf_start[w])
    return out


@njit(cache=True, boundscheck=False)
def _logistics(Xs: np.ndarray, which: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    # pragma: no cover - compiled
    n, m = Xs.shape
    out = np.empty(n)
    for r in range(n):
        w = which[r]
        z = 0.0
        for j in range(m):
            z += Xs[r, j] * coef[w, j]
        z += intercept[w]
        out[r] = 1.0 / (1.0 + math.exp(-z))
    return out


@njit(cache=True, boundscheck=False)
def _expected(
    p_up: np.ndarray, done: np.ndarray, which: np.ndarray, mean_up: np.ndarray, mean_down: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    # Predictor.predict's formulas, row by row: the same IEEE operations, so the same bits.
    n = p_up.shape[0]
    expected = np.empty(n)
    confidence = np.empty(n)
    for i in range(n):
        if done[i]:
            p = p_up[i]
            w = which[i]
            expected[i] = p * mean_up[w] + (1.0 - p) * mean_down[w]
            c = p if p >= 1.0 - p else 1.0 - p
            confidence[i] = 0.0 if c < 0.0 else 1.0 if c > 1.0 else c
    return expected, confidence


@njit(cache=True, boundscheck=False)
def _distinct(which: np.ndarray, size: int) -> int:  # pragma: no cover - compiled
    seen = np.zeros(size, dtype=np.bool_)
    count = 0
    for w in which:
        if not seen[w]:
            seen[w] = True
            count += 1
    return count


# From this many rows a model on average, ``Stack.predict`` calls each model on its rows instead:
# flat out (batches of 2,000 ticks, 40 a symbol) the stage ran 8,800 ticks/s stacked against
# 10,000 one call per model (bench.signals --predict both, max run).
_SEPARATE_FROM = 4


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


class _Pack:
    """The compiled forms of one evaluator class, packed; ``run`` gives the probability of up."""

    def __init__(self, evaluators: Sequence[Evaluator], n_features: int) -> None:
        rows = len(evaluators)
        self.mean = np.zeros((rows, n_features))
        self.scale = np.ones((rows, n_features))
        for i, e in enumerate(evaluators):
            if e.mean is not None:
                self.mean[i] = e.mean
            if e.scale is not None:
                self.scale[i] = e.scale

    def scaled(self, X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _scale(X, which, self.mean, self.scale)

    def run(self, X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


class _Forests(_Pack):
    def __init__(self, evaluators: Sequence[ForestEvaluator], n_features: int) -> None:
        super().__init__(evaluators, n_features)
        nodes = _offsets([len(e.feature) for e in evaluators])
        packed = np.empty((nodes[-1], 4), dtype=np.int32)
        packed[:, 0] = np.concatenate([e.feature for e in evaluators])
        packed[:, 1] = float32_floor(np.concatenate([e.threshold for e in evaluators])).view(np.int32)
        packed[:, 2:] = np.concatenate([e.child + nodes[i] for i, e in enumerate(evaluators)]).reshape(-1, 2)
        self.nodes = packed.ravel()
        self.thresholds = self.nodes.view(np.float32)
        self.value = np.concatenate([e.value for e in evaluators]).astype(np.float64)
        self.roots = np.concatenate([e.roots.ravel() + nodes[i] for i, e in enumerate(evaluators)]).astype(np.int32)
        self.tree_start = _offsets([len(e.roots) for e in evaluators])
        self.depth = np.array([e.depth for e in evaluators], dtype=np.int64)

    def run(self, X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xs, ok = self.scaled(X, which)
        X32 = _float32(Xs, ok)
        p = _forests(X32, which, self.nodes, self.thresholds, self.value, self.roots, self.tree_start, self.depth)
        return p, ok


class _SVMs(_Pack):
    def __init__(self, evaluators: Sequence[CalibratedSVMEvaluator], n_features: int) -> None:
        super().__init__(evaluators, n_features)
        self.components = np.concatenate([e.components for e in evaluators]).astype(np.float64)
        self.comp_start = _offsets([len(e.components) for e in evaluators])
        self.components_norms = np.concatenate([e.components_norms.ravel() for e in evaluators])
        self.gamma = np.array([e.gamma for e in evaluators], dtype=np.float64)
        # A classifier's decision is coef . (k . normalization_t): folded once into
        # normalization_t . coef^T, a row costs components x classifiers, not components^2.
        width = max(len(e.coef) for e in evaluators)
        self.folded = np.zeros((len(self.components), width))
        for i, e in enumerate(evaluators):
            self.folded[self.comp_start[i] : self.comp_start[i + 1], : len(e.coef)] = e.normalization_t @ e.coef.T
        self.clf_start = _offsets([len(e.coef) for e in evaluators])
        self.intercept = np.concatenate([e.intercept.ravel() for e in evaluators])
        self.a = np.concatenate([e.a.ravel() for e in evaluators])
        self.b = np.concatenate([e.b.ravel() for e in evaluators])

    def run(self, X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xs, ok = self.scaled(X, which)
        p = _svms(
            Xs,
            which,
            self.components,
            self.comp_start,
            self.components_norms,
            self.gamma,
            self.folded,
            self.clf_start,
            self.intercept,
            self.a,
            self.b,
        )
        return p, ok


class _Logistics(_Pack):
    def __init__(self, evaluators: Sequence[LinearEvaluator], n_features: int) -> None:
        super().__init__(evaluators, n_features)
        self.coef = np.array([e.coef for e in evaluators], dtype=np.float64)
        self.intercept = np.array([e.intercept for e in evaluators], dtype=np.float64)

    def run(self, X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xs, ok = self.scaled(X, which)
        return _logistics(Xs, which, self.coef, self.intercept), ok


def _pack_kind(evaluator: Evaluator | None) -> type[_Pack] | None:
    if type(evaluator) is ForestEvaluator:
        return _Forests
    if type(evaluator) is CalibratedSVMEvaluator:
        return _SVMs
    if type(evaluator) is LinearEvaluator and evaluator.logistic:
        return _Logistics
    return None


class Stack:
    """Predictors (``pipeline.ml.models.Predictor``) taking the same feature columns, one per
    symbol, predicted together: ``predict(X, which)`` answers row ``i`` with ``predictors[which[i]]``."""

    def __init__(self, predictors: Sequence[Any]) -> None:
        self.predictors = list(predictors)
        if len({tuple(p.features) for p in self.predictors}) > 1:
            raise ValueError("a stack's predictors take the same feature columns")
        n_features = len(self.predictors[0].features) if self.predictors else 0
        # Each predictor's place: (its pack, its index in the pack), or None (it predicts itself).
        self._place: list[tuple[int, int] | None] = []
        groups: dict[type[_Pack], list[Evaluator]] = {}
        for p in self.predictors:
            if p.kind == "classifier":
                p.warm()  # builds the compiled form when the predictor has none yet
            kind = _pack_kind(p.compiled) if p.kind == "classifier" else None
            if kind is None:
                self._place.append(None)
                continue
            members = groups.setdefault(kind, [])
            self._place.append((list(groups).index(kind), len(members)))
            members.append(p.compiled)
        self._packs: list[_Pack] = [kind(members, n_features) for kind, members in groups.items()]
        self._n_features = n_features
        self._separate = Separate(self.predictors)  # for batches of several rows a model
        self._pack_of = np.array([-1 if place is None else place[0] for place in self._place], dtype=np.int64)
        self._index_in = np.array([-1 if place is None else place[1] for place in self._place], dtype=np.int64)
        self._mean_up = np.array([p.mean_up for p in self.predictors], dtype=float)
        self._mean_down = np.array([p.mean_down for p in self.predictors], dtype=float)
        self._one_pack = len(self._packs) == 1 and bool((self._pack_of == 0).all())

    def warm(self) -> None:
        """Run every pack once, so its compiled code is loaded before the first live batch."""
        for pack in self._packs:
            pack.run(np.zeros((1, self._n_features)), np.zeros(1, dtype=np.int64))

    def predict(self, X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (expected forward log return, confidence in [0, 1]) for every row of ``X``, row
        ``i`` by predictor ``which[i]``: what that predictor's ``predict`` returns for the row."""
        X = np.ascontiguousarray(X, dtype=float)
        which = np.asarray(which, dtype=np.int64)
        n = len(X)
        if n >= _SEPARATE_FROM * _distinct(which, len(self.predictors)):
            # Several rows a model (a backlog, a replay): each model's own call over its rows walks
            # its trees block by block and multiplies matrices, cheaper than a row at a time.
            return self._separate.predict(X, which)
        if self._one_pack:
            # Every predictor in one pack (a model kind across symbols, as the ml stage holds them):
            # no rows to pick out and put back, each a numpy call that a live burst pays cold.
            p_up, done = self._packs[0].run(X, self._index_in[which])
        else:
            p_up = np.full(n, np.nan)
            done = np.zeros(n, dtype=bool)
            for k, pack in enumerate(self._packs):
                rows = np.flatnonzero(self._pack_of[which] == k)
                if not len(rows):
                    continue
                p, ok = pack.run(X[rows], self._index_in[which[rows]])
                p_up[rows[ok]] = p[ok]
                done[rows[ok]] = True
        expected, confidence = _expected(p_up, done, which, self._mean_up, self._mean_down)
        for i in np.flatnonzero(~done):
            e, c = self.predictors[which[i]].predict(X[i : i + 1])
            expected[i], confidence[i] = e[0], c[0]
        return expected, confidence


class Separate:
    """``Stack``'s interface with each predictor called on its own rows, one call per predictor:
    how the ml stage predicted before stacks (``MLStage.stacked = False``, for a benchmark's
    side-by-side run)."""

    def __init__(self, predictors: Sequence[Any]) -> None:
        self.predictors = list(predictors)

    def warm(self) -> None:
        """Nothing to load beyond what each predictor's ``warm`` loaded."""

    def predict(self, X: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        expected = np.empty(len(X))
        confidence = np.empty(len(X))
        which = np.asarray(which)
        for w in dict.fromkeys(which.tolist()):
            rows = np.flatnonzero(which == w)
            expected[rows], confidence[rows] = self.predictors[w].predict(X[rows])
        return expected, confidence
