"""Walk-forward evaluation: every figure out-of-sample, next to baselines on the same rows.

``make_dataset`` turns bars into feature rows and forward log returns; ``walk_forward`` fits on
each ``TimeSeriesSplit`` training fold (with a gap of ``horizon`` rows, so no training target
overlaps a test row), predicts the test fold, and reports direction metrics, the profit after
fees of trading the signal, a confusion matrix and a calibration table. The baselines
(persistence, always-up, moving-average crossover, buy-and-hold; ``pipeline.ml.baselines``) are
scored on the same test rows and trade under the same rules.

Trading rule, per test fold: decide at every ``horizon``-th row (non-overlapping holding
periods); be long for the next ``horizon`` bars when the signal says so, else flat; a position
kept across consecutive long periods is not re-entered; pay ``fee_bps`` on each entry and each
exit (an open position is closed at the end of the fold); compound.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import TimeSeriesSplit

from pipeline.ml.baselines import BASELINES, baseline_calls
from pipeline.ml.features import FEATURES, compute_features
from pipeline.ml.models import TrainingError, fit_predictor

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

CALIBRATION_EDGES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class Evaluation:
    """Out-of-sample results of one model; ``to_dict``/``to_json`` give plain JSON values."""

    model: str
    horizon: int
    n_splits: int
    fee_bps: float
    metrics: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the evaluation as a dict of JSON values."""
        return asdict(self)

    def to_json(self) -> str:
        """Return the evaluation as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        """Return the evaluation ``to_dict`` gave."""
        return cls(**data)


@dataclass(frozen=True)
class TradeResult:
    """The outcome of trading one signal on one stretch of rows."""

    log_growth: float
    trades: int
    periods: int
    long_periods: int

    def __add__(self, other: TradeResult) -> TradeResult:
        return TradeResult(
            self.log_growth + other.log_growth,
            self.trades + other.trades,
            self.periods + other.periods,
            self.long_periods + other.long_periods,
        )

    @property
    def profit_pct(self) -> float:
        """Return the compounded profit in percent."""
        return (math.exp(self.log_growth) - 1.0) * 100.0

    @property
    def exposure(self) -> float | None:
        """Return the share of holding periods spent long, or None without periods."""
        return self.long_periods / self.periods if self.periods else None


NO_TRADES = TradeResult(0.0, 0, 0, 0)


def make_dataset(bars: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Return (X, y, starts): feature rows, forward log returns and the bars' start times.

    Row t is kept when every feature is defined and ``close[t + horizon]`` exists;
    ``y = ln(close[t + horizon] / close[t])``. Rows are consecutive bars, oldest first.
    """
    if horizon < 1:
        raise TrainingError(f"horizon must be at least 1 bar, got {horizon}")
    feats = compute_features(bars)
    close = bars["close"].to_numpy(dtype=float)
    y = np.full(len(close), np.nan)
    if len(close) > horizon:
        y[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    keep = feats.loc[:, list(FEATURES)].notna().all(axis=1).to_numpy() & ~np.isnan(y)
    X = feats.loc[keep, list(FEATURES)].reset_index(drop=True)
    starts = bars["start"].to_numpy(dtype=np.int64)[keep]
    return X, y[keep], starts


def simulate_trades(long: np.ndarray, y: np.ndarray, horizon: int, fee_bps: float) -> TradeResult:
    """Trade ``long`` (one flag per row) on rows with forward returns ``y`` under the rule above.

    Decisions are taken at rows 0, h, 2h, ... while a whole holding period fits (row k + h at
    most ``len(y)``); a long period earns ``y[k]``; each entry and each exit costs ``fee_bps``.
    """
    fee = math.log1p(-fee_bps / 1e4)
    log_growth, trades, periods, held, in_position = 0.0, 0, 0, 0, False
    for k in range(0, len(y) - horizon + 1, horizon):
        periods += 1
        if long[k]:
            if not in_position:
                trades += 1
                log_growth += fee
                in_position = True
            log_growth += float(y[k])
            held += 1
        elif in_position:
            log_growth += fee
            in_position = False
    if in_position:
        log_growth += fee
    return TradeResult(log_growth, trades, periods, held)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def direction_metrics(up_pred: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Return accuracy and per-direction precision and recall of ``up_pred`` against ``y > 0``."""
    up_true = y > 0
    tp = int((up_pred & up_true).sum())
    tn = int((~up_pred & ~up_true).sum())
    fp = int((up_pred & ~up_true).sum())
    fn = int((~up_pred & up_true).sum())
    return {
        "accuracy": _ratio(tp + tn, len(y)),
        "precision_up": _ratio(tp, tp + fp),
        "recall_up": _ratio(tp, tp + fn),
        "precision_down": _ratio(tn, tn + fn),
        "recall_down": _ratio(tn, tn + fp),
    }


def _confusion(up_pred: np.ndarray, y: np.ndarray) -> list[list[int]]:
    up_true = y > 0
    return [
        [int((~up_pred & ~up_true).sum()), int((up_pred & ~up_true).sum())],
        [int((~up_pred & up_true).sum()), int((up_pred & up_true).sum())],
    ]


def _calibration(confidence: np.ndarray, hit: np.ndarray) -> list[dict[str, Any]]:
    bins = []
    edges = CALIBRATION_EDGES
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        mask = (confidence >= low) & ((confidence <= high) if last else (confidence < high))
        n = int(mask.sum())
        bins.append(
            {
                "low": low,
                "high": high,
                "count": n,
                "mean_confidence": float(confidence[mask].mean()) if n else None,
                "hit_rate": float(hit[mask].mean()) if n else None,
            }
        )
    return bins


def _scored(
    up: np.ndarray,
    y_folds: list[np.ndarray],
    up_folds: list[np.ndarray],
    horizon: int,
    fee_bps: float,
    direction: bool = True,
) -> dict[str, Any]:
    trades = sum((simulate_trades(u, yf, horizon, fee_bps) for u, yf in zip(up_folds, y_folds)), NO_TRADES)
    y = np.concatenate(y_folds) if y_folds else np.zeros(0)
    metrics: dict[str, Any] = (
        direction_metrics(up, y)
        if direction
        else dict.fromkeys(("accuracy", "precision_up", "recall_up", "precision_down", "recall_down"))
    )
    metrics.update(profit_pct=trades.profit_pct, trades=trades.trades, exposure=trades.exposure)
    return metrics


def walk_forward(
    name: str,
    X: pd.DataFrame | np.ndarray,
    y: np.ndarray,
    horizon: int,
    *,
    n_splits: int = 5,
    fee_bps: float = 10.0,
    max_train_rows: int | None = None,
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Evaluate model ``name`` out-of-sample on consecutive rows ``X`` with forward returns ``y``.

    Folds come from ``TimeSeriesSplit(n_splits, gap=horizon)``; each fits on its training rows
    (only the most recent ``max_train_rows`` when set) and predicts its test rows. ``progress``
    gets (fraction done, message) after each fold.
    """
    values = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(values) != len(y):
        raise TrainingError(f"X has {len(values)} rows but y has {len(y)}")
    splitter = TimeSeriesSplit(n_splits=n_splits, gap=horizon)
    try:
        splits = list(splitter.split(values))
    except ValueError as exc:
        raise TrainingError(f"{name}: {len(values)} rows cannot make {n_splits} folds: {exc}") from exc
    threshold = 2 * fee_bps / 1e4
    calls = baseline_calls(X, y, horizon)
    expected_f, confidence_f, y_f, idx_f, folds = [], [], [], [], []
    for k, (train, test) in enumerate(splits):
        if max_train_rows is not None:
            train = train[-max_train_rows:]
        predictor = fit_predictor(name, values[train], y[train], horizon, params)
        expected, confidence = predictor.predict(values[test])
        expected_f.append(expected)
        confidence_f.append(confidence)
        y_f.append(y[test])
        idx_f.append(test)
        fold_acc = direction_metrics(expected > 0, y[test])["accuracy"]
        folds.append(
            {
                "fold": k + 1,
                "train_rows": len(train),
                "test_rows": len(test),
                "train_first": int(train[0]),
                "test_first": int(test[0]),
                "accuracy": fold_acc,
                "base_rate_up": float((y[test] > 0).mean()),
            }
        )
        log.debug("%s fold %d/%d: accuracy %.4f", name, k + 1, n_splits, fold_acc or 0.0)
        if progress is not None:
            progress((k + 1) / n_splits, f"{name}: fold {k + 1}/{n_splits}")
    expected = np.concatenate(expected_f)
    confidence = np.concatenate(confidence_f)
    y_test = np.concatenate(y_f)
    up_pred = expected > 0
    model_scores = _scored(up_pred, y_f, [e > threshold for e in expected_f], horizon, fee_bps)
    metrics: dict[str, Any] = {
        key: model_scores[key] for key in ("accuracy", "precision_up", "recall_up", "precision_down", "recall_down")
    }
    if name in ("linear_regression", "knn", "kmeans"):
        ss_tot = float(((y_test - y_test.mean()) ** 2).sum())
        metrics["r2"] = 1.0 - float(((y_test - expected) ** 2).sum()) / ss_tot if ss_tot else None
        metrics["mae_pct"] = float(np.abs(y_test - expected).mean() * 100.0)
    else:
        metrics["r2"] = metrics["mae_pct"] = None
    metrics.update(
        profit_pct=model_scores["profit_pct"],
        trades=model_scores["trades"],
        exposure=model_scores["exposure"],
        samples=len(y_test),
        base_rate_up=float((y_test > 0).mean()),
    )
    signals = {b: [calls[b][i] for i in idx_f] for b in BASELINES}
    baselines = {
        b: _scored(np.concatenate(s), y_f, s, horizon, fee_bps, direction=b != "buy_and_hold")
        for b, s in signals.items()
    }
    report = {
        "confusion": _confusion(up_pred, y_test),
        "calibration": _calibration(confidence, up_pred == (y_test > 0)),
        "importances": None,
        "folds": folds,
    }
    return Evaluation(
        model=name,
        horizon=horizon,
        n_splits=n_splits,
        fee_bps=fee_bps,
        metrics=metrics,
        baselines=baselines,
        report=report,
    )
