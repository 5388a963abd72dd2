"""Walk-forward optimisation of the strategy's parameters, with Optuna on the fast engine.

The tested history (bars the models did not learn from) is cut into ``windows`` rolling pairs: an
in-sample stretch ``in_sample_ratio`` times as long as the out-of-sample stretch after it, each
pair one out-of-sample length later than the last, the last one ending at the end of the history.
In each in-sample stretch an Optuna study (TPE, seeded) runs ``trials`` backtests of parameter
sets drawn from the ``SearchSpace``, each from a fresh account, and keeps the best by the
objective (the annualised Sharpe ratio, or the return); that winner is then backtested on the
out-of-sample stretch that follows, which no trial saw. The out-of-sample stretches, chained, are
the walk-forward equity: what choosing parameters this way would have made, next to
buy-and-hold of the same bars. With ``final``, one more study on the last in-sample length of
history gives the parameters to trade next (``chosen``); it has no out-of-sample stretch.

What says how far to trust it (``pipeline.trading.overfitting``): the gap between the winners'
in-sample and out-of-sample figures, the deflated Sharpe ratio of each winner for its study's
number of trials, and the probability of backtest overfitting by CSCV over each study's trials
(their equity sampled ``SAMPLES`` times per in-sample stretch).

Signals are computed once for the whole history (features only ever read the past, so an
out-of-sample stretch sees what it would have live); a trial maps the models' predictions through
its thresholds and runs ``fast_engine.run_arrays``. Cost per trial: about 0.1 s for 150,000 bars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd

from pipeline.trading import fast_engine
from pipeline.trading.backtest import plan_events, prepare
from pipeline.trading.exchange import ExchangeSettings
from pipeline.trading.metrics import DAY_MS, curve_metrics
from pipeline.trading.overfitting import (
    Cscv,
    cscv,
    deflated_sharpe,
    dsr_reading,
    gap_reading,
    pbo_reading,
    sharpe,
)
from pipeline.trading.risk import RiskSettings
from pipeline.trading.search_space import OptimiseError, SearchSpace, params_to_settings

Objective = Literal["sharpe", "return"]
OBJECTIVES: tuple[Objective, ...] = ("sharpe", "return")
MIN_WINDOW_BARS = 200  # the shortest stretch, in- or out-of-sample, worth a backtest
SAMPLES = 1000  # equity points per in-sample stretch for CSCV and the deflated Sharpe ratio
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class WalkForward:
    """How to walk forward: trials per study, out-of-sample windows, the in-sample length in
    out-of-sample lengths, the objective, the sampler's seed, and whether to add the final study."""

    trials: int = 100
    windows: int = 4
    in_sample_ratio: float = 3.0
    objective: Objective = "sharpe"
    seed: int = 0
    final: bool = True

    def check(self) -> None:
        problems = []
        if not 1 <= self.trials <= 100_000:
            problems.append(f"trials: {self.trials} must be between 1 and 100,000")
        if not 1 <= self.windows <= 100:
            problems.append(f"windows: {self.windows} must be between 1 and 100")
        if not 0 < self.in_sample_ratio <= 100:
            problems.append(f"in_sample_ratio: {self.in_sample_ratio:g} must be > 0 and <= 100")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective: {self.objective!r} must be one of {', '.join(OBJECTIVES)}")
        if problems:
            raise OptimiseError("; ".join(problems))

    def lengths(self, bars: int) -> tuple[int, int]:
        """(in-sample, out-of-sample) bars of each window over ``bars`` of history."""
        oos = int(bars // (self.windows + self.in_sample_ratio))
        return int(self.in_sample_ratio * oos), oos

    def bars_needed(self) -> int:
        """The fewest bars of history these windows can be cut from."""
        oos = max(MIN_WINDOW_BARS, math.ceil(MIN_WINDOW_BARS / self.in_sample_ratio))
        return self.windows * oos + math.ceil(self.in_sample_ratio * oos) + self.windows + 1


@dataclass(frozen=True)
class Window:
    """Slot indices (end exclusive) of an in-sample stretch and the out-of-sample one after it
    (empty for the final study)."""

    index: int
    is_first: int
    is_end: int
    oos_first: int
    oos_end: int

    @property
    def final(self) -> bool:
        return self.oos_first == self.oos_end


def windows_of(bars: int, wf: WalkForward) -> list[Window]:
    """Cut ``bars`` slots into the walk-forward windows (and the final study's stretch); raise
    ``OptimiseError`` saying how much history is needed when there is too little."""
    is_len, oos_len = wf.lengths(bars)
    if oos_len < MIN_WINDOW_BARS or is_len < MIN_WINDOW_BARS:
        raise OptimiseError(
            f"{bars:,} bars of history are too few for {wf.windows} walk-forward windows of {wf.in_sample_ratio:g} "
            f"in-sample to 1 out-of-sample with at least {MIN_WINDOW_BARS} bars a stretch: they need at least "
            f"{wf.bars_needed():,} bars after the models' training (fewer windows or a shorter ratio need fewer)"
        )
    offset = bars - (wf.windows * oos_len + is_len)
    out = []
    for i in range(wf.windows):
        first = offset + i * oos_len
        out.append(Window(i, first, first + is_len, first + is_len, first + is_len + oos_len))
    if wf.final:
        out.append(Window(wf.windows, bars - is_len, bars, bars, bars))
    return out


@dataclass
class History:
    """One symbol's tested bars with every tick's inputs: each model's expected change (%) and
    confidence at each event, the indicator levels, and the events in run order."""

    symbol: str
    model: str
    starts: np.ndarray
    open: np.ndarray
    close: np.ndarray
    interval_ms: int
    events: fast_engine.Events
    change: dict[str, np.ndarray]
    confidence: dict[str, np.ndarray]
    levels: np.ndarray


def history_of(
    symbol: str,
    bars: pd.DataFrame,
    predictors: Mapping[tuple[str, str], Any],
    *,
    model: str,
    candidates: Sequence[str] = (),
    interval_ms: int = 60_000,
) -> History:
    """Compute the models' predictions at every tick of ``bars`` once (``backtest.prepare``)."""
    plan, _ = prepare(
        {symbol: bars},
        predictors,
        model=model,
        confirm_models=[m for m in candidates if m != model],
        buy_pct=0.0,
        sell_pct=0.0,
        interval_ms=interval_ms,
    )
    events, rows = plan_events(plan)
    ticks = plan.symbols[0]
    return History(
        symbol=symbol,
        model=model,
        starts=ticks.starts,
        open=bars["open"].to_numpy(dtype=float),
        close=bars["close"].to_numpy(dtype=float),
        interval_ms=interval_ms,
        events=events,
        change={m: s[2].reshape(-1)[rows] for m, s in ticks.signals.items()},
        confidence={m: s[1].reshape(-1)[rows] for m, s in ticks.signals.items()},
        levels=ticks.levels.reshape(-1, 3)[rows],
    )


@dataclass
class Outcome:
    """One backtest of a parameter set on a stretch: its metrics and its equity at every bar."""

    params: dict[str, Any]
    value: float
    metrics: dict[str, Any]
    equity: np.ndarray


class Evaluator:
    """Backtests parameter sets on stretches of one ``History`` (one thread at a time)."""

    def __init__(self, history: History, base: RiskSettings, exchange: ExchangeSettings, objective: Objective) -> None:
        self.h, self.base, self.exchange, self.objective = history, base, exchange, objective

    def run(self, params: dict[str, Any], first: int, end: int) -> Outcome:
        h = self.h
        buy, sell, risk, confirm = params_to_settings(params, self.base)
        a, b = h.events.span(first, end)

        def codes(model: str) -> tuple[np.ndarray, np.ndarray]:
            ch = h.change[model][a:b]
            return np.where(ch > buy, 1, np.where(ch < sell, 2, 0)).astype(np.int8), h.confidence[model][a:b]

        side, high, confirm_at = fast_engine.decisions(
            codes(h.model), [codes(m) for m in confirm if m != h.model], h.levels[a:b], risk
        )
        run = fast_engine.run_arrays(
            h.events.between(first, end), side, high, confirm_at, 1, fast_engine.settings_vector(risk, self.exchange)
        )
        metrics = curve_metrics(run.equity, h.starts[first:end], self.exchange.starting_balance, h.interval_ms)
        metrics["trades"] = len(run.trades())
        metrics["per_day_pct"] = metrics["return_pct"] / max((end - first) * h.interval_ms / DAY_MS, 1e-9)
        value = float(metrics["sharpe"] or 0.0) if self.objective == "sharpe" else float(metrics["return_pct"])
        return Outcome(params, value, metrics, run.equity)


def samples(equity: np.ndarray, start: float) -> np.ndarray:
    """Simple returns of ``equity`` sampled about ``SAMPLES`` times, from the starting balance."""
    step = max(1, len(equity) // SAMPLES)
    points = np.concatenate([[start], equity[step - 1 :: step]])
    return np.diff(points) / points[:-1]


@dataclass
class WindowResult:
    """A study: its stretches, every trial, the winner in- and out-of-sample, its DSR and PBO."""

    window: Window
    trials: list[dict[str, Any]]
    best: dict[str, Any]
    in_sample: dict[str, Any]
    out_of_sample: dict[str, Any] | None
    dsr: float | None
    pbo: float | None
    pbo_splits: int
    in_sample_span: tuple[int, int, int] = (0, 0, 0)  # first bar's start, last bar's start (ms), bars
    out_of_sample_span: tuple[int, int, int] | None = None
    oos_equity: np.ndarray | None = None


@dataclass
class WalkForwardResult:
    """A walk-forward optimisation: the studies, the stitched out-of-sample equity next to
    buy-and-hold, the parameters to trade next, and the overfitting figures with their readings."""

    symbol: str
    model: str
    settings: dict[str, Any]
    windows: list[WindowResult]
    final: WindowResult | None
    chosen: dict[str, Any]
    equity: pd.DataFrame  # start, equity, buy_and_hold over the out-of-sample stretches
    out_of_sample: dict[str, Any]
    buy_and_hold: dict[str, Any]
    figures: dict[str, Any]
    readings: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)


def walk_forward(
    history: History,
    space: SearchSpace,
    wf: WalkForward,
    *,
    base: RiskSettings,
    exchange: ExchangeSettings,
    progress: Progress | None = None,
) -> WalkForwardResult:
    """Run the walk-forward optimisation of ``space`` over ``history`` (see the module docstring)."""
    wf.check()
    space.check(tuple(history.change))
    started = time.perf_counter()
    windows = windows_of(len(history.starts), wf)
    evaluator = Evaluator(history, base, exchange, wf.objective)
    total = wf.trials * len(windows)
    done = 0
    results: list[WindowResult] = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for w in windows:
        label = "final study" if w.final else f"window {w.index + 1} of {wf.windows}"
        outcomes: list[Outcome] = []

        def objective(trial: optuna.Trial, w: Window = w, outcomes: list[Outcome] = outcomes) -> float:
            outcome = evaluator.run(space.sample(trial), w.is_first, w.is_end)
            outcomes.append(outcome)
            for key in ("return_pct", "sharpe", "max_drawdown_pct", "trades"):
                trial.set_user_attr(key, outcome.metrics[key])
            return outcome.value

        def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial, label: str = label) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(
                    done / total, f"{label}: trial {trial.number + 1} of {wf.trials}, best {study.best_value:+.3f}"
                )

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=wf.seed + w.index))
        study.optimize(objective, n_trials=wf.trials, callbacks=[tick])
        results.append(_window_result(w, study, outcomes, evaluator, exchange.starting_balance))
    walked = [r for r in results if not r.window.final]
    final = results[-1] if wf.final else None
    equity, oos, hold = _stitch(history, walked, exchange)
    figures, readings = _figures(walked, wf)
    chosen = (final or walked[-1]).best
    return WalkForwardResult(
        symbol=history.symbol,
        model=history.model,
        settings={
            "trials": wf.trials,
            "windows": wf.windows,
            "in_sample_ratio": wf.in_sample_ratio,
            "objective": wf.objective,
            "seed": wf.seed,
            "final": wf.final,
            "space": space.to_json(),
            "interval_ms": history.interval_ms,
        },
        windows=walked,
        final=final,
        chosen=chosen,
        equity=equity,
        out_of_sample=oos,
        buy_and_hold=hold,
        figures=figures,
        readings=readings,
        timings={"optimise": round(time.perf_counter() - started, 3)},
    )


def _window_result(
    w: Window, study: optuna.Study, outcomes: list[Outcome], evaluator: Evaluator, start: float
) -> WindowResult:
    best_trial = study.best_trial
    best = outcomes[best_trial.number]
    trials = [
        {"number": t.number, "value": t.value, "params": outcomes[t.number].params, **t.user_attrs}
        for t in study.trials
    ]
    returns = np.stack([samples(o.equity, start) for o in outcomes], axis=1)
    sharpes = np.array([sharpe(returns[:, k]) for k in range(returns.shape[1])])
    overfit = cscv(returns)
    oos = None if w.final else evaluator.run(best.params, w.oos_first, w.oos_end)
    starts = evaluator.h.starts

    def span(first: int, end: int) -> tuple[int, int, int]:
        return int(starts[first]), int(starts[end - 1]), end - first

    return WindowResult(
        window=w,
        trials=trials,
        best=best.params,
        in_sample={**best.metrics, "value": best.value},
        out_of_sample=None if oos is None else {**oos.metrics, "value": oos.value},
        dsr=deflated_sharpe(returns[:, best_trial.number], sharpes),
        pbo=None if overfit is None else overfit.pbo,
        pbo_splits=0 if overfit is None else overfit.splits,
        in_sample_span=span(w.is_first, w.is_end),
        out_of_sample_span=None if w.final else span(w.oos_first, w.oos_end),
        oos_equity=None if oos is None else oos.equity,
    )


def _stitch(
    h: History, walked: list[WindowResult], exchange: ExchangeSettings
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Chain the out-of-sample equity curves; buy-and-hold over the same bars, one fee in."""
    start = exchange.starting_balance
    parts, level = [], start
    for r in walked:
        assert r.oos_equity is not None
        parts.append(r.oos_equity * (level / start))
        level = float(parts[-1][-1])
    first, end = walked[0].window.oos_first, walked[-1].window.oos_end
    equity = np.concatenate(parts)
    hold = start * (1.0 - exchange.fee_bps / 10_000.0) * h.close[first:end] / h.open[first]
    starts = h.starts[first:end]
    frame = pd.DataFrame({"start": starts, "equity": equity, "buy_and_hold": hold})
    return (
        frame,
        curve_metrics(equity, starts, start, h.interval_ms),
        curve_metrics(hold, starts, start, h.interval_ms),
    )


def _figures(walked: list[WindowResult], wf: WalkForward) -> tuple[dict[str, Any], dict[str, str]]:
    # the objective's own terms: a Sharpe ratio (0 for a flat equity, as trials score it), or the
    # return per day, as the in-sample stretches are longer than the out-of-sample ones
    key, what = ("value", "Sharpe") if wf.objective == "sharpe" else ("per_day_pct", "return % a day")

    def mean(values: list[float | None]) -> float | None:
        given = [v for v in values if v is not None]
        return float(np.mean(given)) if given else None

    is_value = mean([r.in_sample.get(key) for r in walked])
    oos_value = mean([r.out_of_sample.get(key) if r.out_of_sample else None for r in walked])
    dsr = mean([r.dsr for r in walked])
    pbo = mean([r.pbo for r in walked])
    splits = sum(r.pbo_splits for r in walked)
    figures = {
        "gap": {
            "what": what,
            "in_sample": is_value,
            "out_of_sample": oos_value,
            "gap": None if is_value is None or oos_value is None else is_value - oos_value,
        },
        "dsr": dsr,
        "pbo": pbo,
        "pbo_splits": splits,
    }
    readings = {
        "gap": gap_reading(is_value, oos_value, what),
        "dsr": _of_windows(dsr_reading(dsr, wf.trials), dsr, len(walked)),
        "pbo": _of_windows(pbo_reading(None if pbo is None else Cscv(pbo, splits, 0, np.zeros(0))), pbo, len(walked)),
    }
    return figures, readings


def _of_windows(line: str, value: float | None, windows: int) -> str:
    return line if value is None or windows == 1 else line.rstrip(".") + f" (the mean over {windows} windows)."
