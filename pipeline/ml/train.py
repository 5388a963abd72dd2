"""Train a symbol's models: walk-forward evaluation, a final fit on all rows, registration."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.ml.evaluate import Progress, make_dataset, walk_forward
from pipeline.ml.features import WARMUP_BARS
from pipeline.ml.models import SEED_MODELS, fit_predictor, resolve_params
from pipeline.ml.registry import ModelRecord, Registry

log = logging.getLogger(__name__)

MIN_FOLD_ROWS = 50  # the smallest test fold (and first training fold) worth scoring


class NotEnoughDataError(PipelineError):
    """Too few bars to train and evaluate honestly: nothing is trained; the message says how
    many bars there are and how many are needed."""


def min_bars(horizon: int, n_splits: int) -> int:
    """Return the fewest bars ``train_symbol`` accepts for ``horizon`` and ``n_splits``."""
    return WARMUP_BARS + horizon + (n_splits + 1) * MIN_FOLD_ROWS + n_splits * horizon


def train_symbol(
    registry: Registry,
    bars: pd.DataFrame,
    symbol: str,
    models: Sequence[str] = SEED_MODELS,
    *,
    horizon: int = 15,
    interval_ms: int = 60_000,
    n_splits: int = 5,
    fee_bps: float = 10.0,
    max_train_rows: int | None = None,
    progress: Progress | None = None,
) -> list[ModelRecord]:
    """Evaluate, fit and register each of ``models`` on ``bars`` of ``symbol``; return the records.

    Per model: a walk-forward evaluation (out-of-sample metrics and baselines), then a final fit
    on every row (the most recent ``max_train_rows`` when set) whose importances go into the
    report, then registration as the new active version. ``progress(fraction, message)`` is
    called after every fold and every final fit.
    """
    for name in models:
        resolve_params(name, None)  # an unknown model name fails before any work
    needed = min_bars(horizon, n_splits)
    if len(bars) < needed:
        raise NotEnoughDataError(
            f"{symbol} has {len(bars)} bars; training needs at least {needed} (warm-up "
            f"{WARMUP_BARS} + horizon {horizon} + {n_splits + 1} blocks of {MIN_FOLD_ROWS} rows "
            f"for {n_splits} folds + {n_splits} gaps of {horizon})"
        )
    X, y, starts = make_dataset(bars, horizon)
    values = X.to_numpy(dtype=float)
    steps = len(models) * (n_splits + 1)
    records: list[ModelRecord] = []
    for i, name in enumerate(models):
        base = i * (n_splits + 1)

        def fold_done(fraction: float, message: str, base: int = base) -> None:
            if progress is not None:
                progress((base + fraction * n_splits) / steps, message)

        evaluation = walk_forward(
            name, X, y, horizon, n_splits=n_splits, fee_bps=fee_bps, max_train_rows=max_train_rows, progress=fold_done
        )
        rows = np.arange(len(values))
        if max_train_rows is not None:
            rows = rows[-max_train_rows:]
        predictor = fit_predictor(name, values[rows], y[rows], horizon)
        first = len(values) - predictor.n_train  # models with their own window keep the newest rows
        evaluation.report["importances"] = predictor.importances()
        evaluation.report["settings"] = {
            "n_splits": n_splits,
            "fee_bps": fee_bps,
            "max_train_rows": max_train_rows,
            "horizon": horizon,
        }
        record = registry.register(
            symbol,
            predictor,
            evaluation,
            interval_ms=interval_ms,
            train_start=int(starts[first]),
            train_end=int(starts[-1]),
            n_samples=predictor.n_train,
        )
        records.append(record)
        acc = evaluation.metrics["accuracy"]
        log.info(
            "%s: out-of-sample accuracy %.4f (base rate up %.4f) on %d rows",
            record.label,
            acc or 0.0,
            evaluation.metrics["base_rate_up"],
            evaluation.metrics["samples"],
        )
        if progress is not None:
            progress((base + n_splits + 1) / steps, f"{name}: registered v{record.version}")
    return records
