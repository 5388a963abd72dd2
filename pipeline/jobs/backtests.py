"""Backtests for the CLI and the Backtest page: load bars, pick out-of-sample models, run.

A model must not be tested on the bars it learned from. By default (``models_from="train"``) each
symbol's model is fitted on the first ``train_fraction`` of its bars and the backtest runs on the
rest, after a gap of the model's horizon. With ``models_from="registry"`` the registry's active
versions are used, and the result says ``in_sample`` when a version's training window reaches
into the tested bars, so no page or report shows such a result as out-of-sample.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from pipeline.config import Config
from pipeline.jobs.base import Job, JobState
from pipeline.jobs.training import Source, load_bars
from pipeline.trading.backtest import BacktestError, BacktestResult, Engine, run_backtest
from pipeline.trading.exchange import ExchangeSettings
from pipeline.trading.risk import RiskSettings
from storage.db import Database

log = logging.getLogger(__name__)

ModelsFrom = Literal["train", "registry"]


@dataclass(frozen=True)
class BacktestRequest:
    """What to backtest; ``source`` is store, simulator or file (``path``)."""

    symbols: tuple[str, ...]
    source: Source = "store"
    path: str | None = None
    bars: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    model: str = "random_forest"
    confirm_models: tuple[str, ...] = ()
    models_from: ModelsFrom = "train"
    train_fraction: float = 0.3
    risk: RiskSettings = field(default_factory=RiskSettings)
    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)
    engine: Engine = "fast"  # backtrader: the reference the fast engine is proven against


def _period(frame: pd.DataFrame, start_ms: int | None, end_ms: int | None) -> pd.DataFrame:
    if start_ms is not None:
        frame = frame[frame["start"] >= start_ms]
    if end_ms is not None:
        frame = frame[frame["start"] < end_ms]
    return frame.reset_index(drop=True)


def models_for(
    config: Config, db: Database, request: BacktestRequest, bars: dict[str, pd.DataFrame], progress: Any = None
) -> tuple[dict[str, pd.DataFrame], dict[tuple[str, str], Any], dict[str, Any]]:
    """Return (the bars to test, the predictors, a note on the models) for ``request``."""
    from pipeline.ml.evaluate import make_dataset
    from pipeline.ml.features import WARMUP_BARS
    from pipeline.ml.models import fit_predictor
    from pipeline.ml.registry import ModelLoadError, Registry

    models = (request.model, *[m for m in request.confirm_models if m != request.model])
    predictors: dict[tuple[str, str], Any] = {}
    notes: dict[str, Any] = {"models_from": request.models_from, "models": {}}
    tested: dict[str, pd.DataFrame] = {}
    horizon = config.ml_horizon_bars
    if request.models_from == "registry":
        registry = Registry(db, config.data_dir / "models")
        for symbol, frame in bars.items():
            for model in models:
                records = registry.records(symbol=symbol, model=model, active_only=True)
                if not records:
                    raise BacktestError(
                        f"{symbol}: no active {model} in the registry; train one or use "
                        f"models from the backtest's own training split"
                    )
                try:
                    predictors[(symbol, model)] = registry.load(records[0])
                except ModelLoadError as exc:
                    raise BacktestError(f"{symbol} {model}: {exc}") from exc
                r = records[0]
                notes["models"][f"{symbol} {model}"] = {
                    "version": r.version,
                    "trained_from": r.train_start,
                    "trained_until": r.train_end,
                    "in_sample": bool(r.train_end >= int(frame["start"].iloc[0])),
                }
            tested[symbol] = frame
        notes["in_sample"] = any(m["in_sample"] for m in notes["models"].values())
        return tested, predictors, notes
    if not 0.05 <= request.train_fraction <= 0.9:
        raise BacktestError(f"train_fraction={request.train_fraction} must be between 0.05 and 0.9")
    for symbol, frame in bars.items():
        cut = int(len(frame) * request.train_fraction)
        if cut < WARMUP_BARS + horizon + 50 or len(frame) - cut - horizon < WARMUP_BARS + 10:
            raise BacktestError(
                f"{symbol}: {len(frame)} bars are too few to train on {request.train_fraction:.0%} and test on the rest"
            )
        train = frame.iloc[:cut].reset_index(drop=True)
        X, y, _ = make_dataset(train, horizon)
        for model in models:
            if progress:
                progress(0.0, f"{symbol}: fitting {model} on {cut:,} bars")
            predictors[(symbol, model)] = fit_predictor(model, X.to_numpy(), y, horizon)
        # the test starts a horizon after the training bars end: their targets reach that far
        tested[symbol] = frame.iloc[cut + horizon :].reset_index(drop=True)
        notes["models"][f"{symbol}"] = {
            "trained_from": int(train["start"].iloc[0]),
            "trained_until": int(train["start"].iloc[-1]),
            "train_bars": cut,
            "in_sample": False,
        }
    notes["in_sample"] = False
    return tested, predictors, notes


def run_request(config: Config, db: Database, request: BacktestRequest, progress: Any = None) -> BacktestResult:
    """Load the bars, pick the models and run the backtest; raise ``PipelineError`` with the reason."""
    if not request.symbols:
        raise BacktestError("pick at least one symbol")
    bars: dict[str, pd.DataFrame] = {}
    interval = 60_000
    for symbol in request.symbols:
        frame, interval = load_bars(
            config,
            db,
            symbol,
            request.source,
            bars=request.bars,
            path=request.path,
        )
        frame = _period(frame, request.start_ms, request.end_ms)
        if frame.empty:
            raise BacktestError(f"{symbol}: no bars in the chosen period")
        bars[symbol] = frame
    tested, predictors, notes = models_for(config, db, request, bars, progress)
    buy_pct, sell_pct = config.signal_pcts(request.source == "simulator")
    result = run_backtest(
        tested,
        predictors,
        model=request.model,
        confirm_models=request.confirm_models,
        risk=request.risk,
        exchange=request.exchange,
        buy_pct=buy_pct,
        sell_pct=sell_pct,
        interval_ms=interval,
        progress=progress,
        engine=request.engine,
    )
    result.settings["models"] = notes
    result.settings["period"] = {s: [int(f["start"].iloc[0]), int(f["start"].iloc[-1])] for s, f in tested.items()}
    return result


@dataclass
class BacktestState(JobState):
    """A backtest's state: its result once done."""

    result: BacktestResult | None = None


class BacktestJob(Job):
    """Runs one backtest on its own thread."""

    name = "backtest"

    def __init__(self, config: Config, db: Database, request: BacktestRequest) -> None:
        super().__init__(BacktestState())
        self.config, self.db, self.request = config, db, request

    def snapshot(self) -> BacktestState:
        state = super().snapshot()
        assert isinstance(state, BacktestState)
        return state

    def work(self) -> str:
        started = time.monotonic()
        result = run_request(self.config, self.db, self.request, self.progress)
        with self._lock:
            assert isinstance(self._state, BacktestState)
            self._state.result = result
        return f"done in {time.monotonic() - started:.1f} s"
