"""Walk-forward optimisations for the CLI and the Optimise page: load bars, fit the models on the
first part, optimise walk-forward on the rest, store the run.

Models must not be tested on the bars they learned from: as a backtest does by default
(``pipeline.jobs.backtests.models_for``), each model is fitted on the first ``train_fraction`` of
the bars and the walk-forward runs on the rest, after a gap of the model's horizon; with
``models_from="registry"`` the active versions are used and the run says ``in_sample`` when one
learned from the tested bars. The models searched as confirmations are those the search space's
``confirm`` choices name.

A finished run is stored through ``storage.optimise`` (its request, figures, readings, windows,
out-of-sample equity and every trial) and gets a ``run_id``; the job's state holds it and the
result.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Config
from pipeline.jobs.backtests import BacktestRequest, ModelsFrom, models_for
from pipeline.jobs.base import Job, JobState
from pipeline.jobs.training import Source, load_bars
from pipeline.trading.exchange import ExchangeSettings
from pipeline.trading.risk import RiskSettings
from pipeline.trading.search_space import OptimiseError, SearchSpace, confirm_models
from pipeline.trading.walk_forward import (
    MIN_WINDOW_BARS,
    WalkForward,
    WalkForwardResult,
    WindowResult,
    history_of,
    walk_forward,
)
from storage import optimise as door
from storage.db import Database

CURVE_POINTS = 2_000  # out-of-sample equity points kept per run


@dataclass(frozen=True)
class OptimiseRequest:
    """What to optimise; ``source`` is store, simulator or file (``path``)."""

    symbol: str
    source: Source = "store"
    path: str | None = None
    # Read ``path`` wherever it is (the command line) instead of in the candle folder (pages).
    any_path: bool = False
    bars: int | None = None
    model: str = "random_forest"
    models_from: ModelsFrom = "train"
    train_fraction: float = 0.3
    walk: WalkForward = field(default_factory=WalkForward)
    space: SearchSpace = field(default_factory=SearchSpace)
    risk: RiskSettings = field(default_factory=RiskSettings)  # what is not searched
    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)

    def confirm_candidates(self) -> tuple[str, ...]:
        """Every model a ``confirm`` choice names, once, the trading model left out."""
        seen: dict[str, None] = {}
        for choice in self.space.confirm:
            for m in confirm_models(choice):
                if m != self.model:
                    seen[m] = None
        return tuple(seen)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["space"] = self.space.to_json()
        out.pop("any_path")  # how the file was allowed, not what was optimised
        return out


def check(request: OptimiseRequest, known_models: tuple[str, ...]) -> None:
    """Refuse a request that cannot run, naming what is wrong, before any bar is read."""
    request.walk.check()
    request.space.check(known_models)
    if request.model not in known_models:
        raise OptimiseError(f"model: {request.model!r} is not one of {', '.join(known_models)}")


def _enough(request: OptimiseRequest, bars: int, horizon: int) -> None:
    """Say how much history the windows need when ``bars`` are too few."""
    wf = request.walk
    need = wf.bars_needed()
    if request.models_from == "train":
        total = math.ceil((need + horizon) / (1.0 - request.train_fraction))
        where = f"with {request.train_fraction:.0%} of them to train the models on, {total:,} bars in all"
    else:
        total, where = need, "with the registry's models"
    if bars < total:
        raise OptimiseError(
            f"{request.symbol}: {bars:,} bars are too few for {wf.windows} walk-forward windows of "
            f"{wf.in_sample_ratio:g}:1 in-sample to out-of-sample (at least {MIN_WINDOW_BARS} bars a stretch): "
            f"they need {need:,} bars to walk forward on, {where} (about {total / 1440:.1f} days of 1-minute bars)"
        )


def run_optimisation(
    config: Config, db: Database, request: OptimiseRequest, progress: Any = None
) -> tuple[str, WalkForwardResult]:
    """Load the bars, fit or pick the models, optimise walk-forward, store the run; return its id
    and the result. Raise ``PipelineError`` with the reason when it cannot run."""
    from pipeline.config import ML_MODEL_NAMES

    check(request, ML_MODEL_NAMES)
    started = time.perf_counter()
    frame, interval = load_bars(
        config, db, request.symbol, request.source, bars=request.bars, path=request.path, any_path=request.any_path
    )
    _enough(request, len(frame), config.ml_horizon_bars)
    candidates = request.confirm_candidates()
    as_backtest = BacktestRequest(
        symbols=(request.symbol,),
        source=request.source,
        path=request.path,
        any_path=request.any_path,
        bars=request.bars,
        model=request.model,
        confirm_models=candidates,
        models_from=request.models_from,
        train_fraction=request.train_fraction,
    )
    tested, predictors, notes = models_for(config, db, as_backtest, {request.symbol: frame}, progress)
    bars = tested[request.symbol]
    if progress:
        progress(0.0, f"computing the models' predictions at {4 * len(bars):,} ticks")
    history = history_of(
        request.symbol, bars, predictors, model=request.model, candidates=candidates, interval_ms=interval
    )
    result = walk_forward(
        history, request.space, request.walk, base=request.risk, exchange=request.exchange, progress=progress
    )
    result.settings["models"] = notes
    result.timings["total"] = round(time.perf_counter() - started, 3)
    run_id = uuid.uuid4().hex[:12]
    door.save(db, stored_run(run_id, request, result), stored_trials(result))
    return run_id, result


def window_summary(r: WindowResult) -> dict[str, Any]:
    """One study, JSON-ready: its stretches (first and last bar's start in ms, bars), the winner
    in- and out-of-sample, its DSR and PBO."""
    return {
        "index": r.window.index,
        "final": r.window.final,
        "in_sample": list(r.in_sample_span),
        "out_of_sample": None if r.out_of_sample_span is None else list(r.out_of_sample_span),
        "best": r.best,
        "in_sample_metrics": _plain(r.in_sample),
        "out_of_sample_metrics": _plain(r.out_of_sample) if r.out_of_sample else None,
        "dsr": r.dsr,
        "pbo": r.pbo,
        "pbo_splits": r.pbo_splits,
    }


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "why_none"}


def summary_of(result: WalkForwardResult) -> dict[str, Any]:
    """What a run says, JSON-ready (``--json``, the stored summary, the page)."""
    studies = [*result.windows, *([result.final] if result.final else [])]
    return {
        "symbol": result.symbol,
        "model": result.model,
        "settings": result.settings,
        "chosen": result.chosen,
        "figures": result.figures,
        "readings": result.readings,
        "out_of_sample": _plain(result.out_of_sample),
        "buy_and_hold": _plain(result.buy_and_hold),
        "windows": [window_summary(r) for r in studies],
        "timings_s": result.timings,
    }


def stored_run(run_id: str, request: OptimiseRequest, result: WalkForwardResult) -> dict[str, Any]:
    """The run as ``storage.optimise.save`` takes it, the equity thinned to ``CURVE_POINTS``."""
    curve = result.equity
    keep = sorted({*range(0, len(curve), max(1, math.ceil(len(curve) / CURVE_POINTS))), len(curve) - 1})
    kept = curve.iloc[[i for i in keep if i >= 0]]
    return {
        "run_id": run_id,
        "created_at": int(time.time() * 1000),
        "symbol": result.symbol,
        "model": result.model,
        "request": request.to_json(),
        "summary": summary_of(result),
        "curve": {k: kept[k].tolist() for k in ("start", "equity", "buy_and_hold")},
    }


def stored_trials(result: WalkForwardResult) -> list[dict[str, Any]]:
    studies = [*result.windows, *([result.final] if result.final else [])]
    return [
        {
            "window": r.window.index,
            "number": t["number"],
            "value": t["value"],
            "params": t["params"],
            "metrics": {k: v for k, v in t.items() if k not in ("number", "value", "params")},
        }
        for r in studies
        for t in r.trials
    ]


@dataclass
class OptimiseState(JobState):
    """An optimisation's state: the stored run's id and the result once done."""

    run_id: str | None = None
    result: WalkForwardResult | None = None


class OptimiseJob(Job):
    """Runs one walk-forward optimisation on its own thread."""

    name = "optimise"

    def __init__(self, config: Config, db: Database, request: OptimiseRequest) -> None:
        super().__init__(OptimiseState())
        self.config, self.db, self.request = config, db, request

    def snapshot(self) -> OptimiseState:
        state = super().snapshot()
        assert isinstance(state, OptimiseState)
        return state

    def work(self) -> str:
        started = time.monotonic()
        run_id, result = run_optimisation(self.config, self.db, self.request, self.progress)
        with self._lock:
            assert isinstance(self._state, OptimiseState)
            self._state.run_id, self._state.result = run_id, result
        trials = result.settings["trials"] * (len(result.windows) + (1 if result.final else 0))
        return f"{trials:,} trials in {time.monotonic() - started:.1f} s"
