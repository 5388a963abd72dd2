"""Walk-forward optimisation over a year of 1-minute bars: how long N trials a study take.

    python -m bench.optimise [--bars N] [--trials T] [--windows W] [--ratio R] [--seed S]

One run of ``pipeline.trading.walk_forward.walk_forward`` on N simulator bars (default a year,
525,600) with a random forest trading and a logistic regression that may confirm (both fitted
first, on 5,000 other simulator bars, untimed). Timed whole, after ``gc.collect()``:

- ``history_s``: both models' predictions and the indicator levels at every tick (four a bar),
  once for the whole history (``history_of``);
- ``optimise_s``: W walk-forward windows (in-sample R times the out-of-sample length) plus the
  final study, T trials each (Optuna's TPE), every trial a fast-engine backtest of its in-sample
  stretch, then each winner on its out-of-sample stretch, CSCV and the deflated Sharpe ratio.

``seconds`` is the two together (target: 600 s for 200 trials a study). Progress goes to stderr
every few seconds; one JSON line at the end has the timings, the trial count, the time per
trial and the figures the run gave (a random walk: no skill to find, so a DSR under 0.95 and a
PBO near one half are the expected answers). The search space thresholds are around the
bench's signal scale (BUY above 0 to 0.2 %, SELL under 0 to -0.2 %), so trials trade.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.models import fit_predictor
from pipeline.trading.exchange import ExchangeSettings
from pipeline.trading.risk import RiskSettings
from pipeline.trading.search_space import Range, SearchSpace
from pipeline.trading.walk_forward import WalkForward, history_of, walk_forward

SYMBOL = "BTCUSDT"
MODEL, CONFIRM = "random_forest", "logistic_regression"
HORIZON = 15
YEAR_BARS = 525_600
TARGET_S = 600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.optimise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=YEAR_BARS, help="bars of history (default a year of minutes)")
    parser.add_argument("--trials", type=int, default=200, help="trials per study")
    parser.add_argument("--windows", type=int, default=4, help="walk-forward windows (plus the final study)")
    parser.add_argument("--ratio", type=float, default=3.0, help="in-sample length in out-of-sample lengths")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train = bars_from_simulator(SYMBOL, 5_000, seed=1)
    X, y, _ = make_dataset(train, HORIZON)
    predictors = {(SYMBOL, m): fit_predictor(m, X.to_numpy(), y, HORIZON) for m in (MODEL, CONFIRM)}
    bars = bars_from_simulator(SYMBOL, args.bars, seed=3)
    space = SearchSpace(buy_pct=Range(0.0, 0.2), sell_pct=Range(-0.2, 0.0), confirm=("none", CONFIRM))
    wf = WalkForward(trials=args.trials, windows=args.windows, in_sample_ratio=args.ratio, seed=args.seed)
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.perf_counter()
        if now - last[0] >= 5.0 or fraction >= 1.0:
            last[0] = now
            print(f"{now - started:7.1f} s {fraction:6.1%} {message}", file=sys.stderr, flush=True)

    gc.collect()
    started = time.perf_counter()
    history = history_of(SYMBOL, bars, predictors, model=MODEL, candidates=(CONFIRM,))
    history_s = time.perf_counter() - started
    result = walk_forward(history, space, wf, base=RiskSettings(), exchange=ExchangeSettings(), progress=progress)
    seconds = time.perf_counter() - started
    studies = args.windows + 1
    line: dict[str, Any] = {
        "bench": "optimise",
        "bars": args.bars,
        "trials_per_study": args.trials,
        "studies": studies,
        "trials": args.trials * studies,
        "seconds": round(seconds, 1),
        "target_s": TARGET_S,
        "within_target": seconds <= TARGET_S,
        "history_s": round(history_s, 2),
        "optimise_s": round(seconds - history_s, 1),
        "ms_per_trial": round((seconds - history_s) / (args.trials * studies) * 1000, 1),
        "in_sample_bars": result.windows[0].in_sample_span[2],
        "out_of_sample_bars": result.windows[0].out_of_sample_span[2] if result.windows[0].out_of_sample_span else 0,
        "walk_forward_return_pct": round(result.out_of_sample["return_pct"], 2),
        "buy_and_hold_return_pct": round(result.buy_and_hold["return_pct"], 2),
        "dsr": result.figures["dsr"],
        "pbo": result.figures["pbo"],
        "gap": result.figures["gap"],
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
