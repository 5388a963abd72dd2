"""Commands of parameter search: optimise (walk-forward, with Optuna on the fast engine)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from pipeline.cli.common import config_from_env, figure, open_store
from pipeline.config import ML_MODEL_NAMES
from pipeline.errors import PipelineError

RANGE_PARAMS = (
    "buy_pct",
    "sell_pct",
    "medium_confidence",
    "high_confidence",
    "stop_loss_pct",
    "take_profit_pct",
    "trailing_stop_pct",
    "position_pct",
    "risk_pct",
)


def cmd_optimise(args: argparse.Namespace) -> int:
    """Optimise the strategy's parameters walk-forward, as the Optimise page does."""
    import dataclasses

    from pipeline.jobs.optimise import OptimiseRequest, check, run_optimisation, summary_of
    from pipeline.trading.search_space import Range, SearchSpace
    from pipeline.trading.walk_forward import WalkForward

    config = config_from_env()
    kind, *files = args.source
    if kind not in ("store", "simulator", "replay") or (kind == "replay") != (len(files) == 1):
        raise PipelineError(f"--source {' '.join(args.source)!r}: use store, simulator or replay FILE")
    symbol = args.symbol.upper() if args.symbol else None
    if symbol is None and kind == "replay":
        from pipeline.candles import symbol_from_name

        symbol = symbol_from_name(files[0])
    if symbol is None:
        raise PipelineError("pass --symbol (it could not be told from the file's name)")
    ranges: dict[str, Any] = {}
    for name in RANGE_PARAMS:
        values = getattr(args, name)
        if values is not None:
            if len(values) not in (1, 2):
                raise PipelineError(f"--{name.replace('_', '-')} takes LOW HIGH (or one value to fix it)")
            ranges[name] = Range(values[0], values[-1])
    if args.sizing:
        ranges["sizing"] = tuple(args.sizing)
    if args.confirm:
        ranges["confirm"] = tuple(args.confirm)
    request = OptimiseRequest(
        symbol=symbol,
        source="file" if kind == "replay" else kind,
        path=files[0] if files else None,
        any_path=True,  # the user's own shell: any file they name
        bars=args.bars,
        model=args.model or config.decision_model,
        models_from=args.models_from,
        train_fraction=args.train_fraction,
        walk=WalkForward(
            trials=args.trials,
            windows=args.windows,
            in_sample_ratio=args.in_sample_ratio,
            objective=args.objective,
            seed=args.seed,
            final=not args.no_final,
        ),
        space=dataclasses.replace(SearchSpace(), **ranges),
        risk=config.risk,
        exchange=config.exchange,
    )
    check(request, ML_MODEL_NAMES)  # refused before anything is read or opened
    db, _ = open_store(config)

    def progress(fraction: float, message: str) -> None:
        if not args.json:
            bar = "#" * int(fraction * 30)
            print(f"\r[{bar:<30}] {fraction:4.0%} {message[:70]:<70}", end="", file=sys.stderr, flush=True)

    try:
        run_id, result = run_optimisation(config, db, request, progress)
    finally:
        db.close()
    summary = summary_of(result)
    if args.json:
        print(json.dumps({"run_id": run_id, **summary}, indent=2, default=float))
        return 0
    print(file=sys.stderr)
    _print_optimisation(run_id, summary)
    return 0


def _print_optimisation(run_id: str, summary: dict[str, Any]) -> None:
    settings = summary["settings"]
    print(
        f"{summary['symbol']} {summary['model']}: {settings['windows']} walk-forward windows x {settings['trials']} "
        f"trials, objective {settings['objective']} (run {run_id})"
    )
    print(
        f"{'WINDOW':<7} {'IN-SAMPLE (UTC)':<33} {'IS':>8} {'OOS':>8} {'IS RET':>8} {'OOS RET':>8} {'DSR':>5} {'PBO':>5}"
    )
    for w in summary["windows"]:
        first, last, _ = w["in_sample"]
        span = f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(first / 1000))} - "
        span += time.strftime("%Y-%m-%d %H:%M", time.gmtime(last / 1000))
        ism, oos = w["in_sample_metrics"], w["out_of_sample_metrics"] or {}
        name = "final" if w["final"] else str(w["index"] + 1)
        print(
            f"{name:<7} {span:<33} {figure(ism['value']):>8} {figure(oos.get('value')):>8} "
            f"{figure(ism['return_pct'], True):>8} {figure(oos.get('return_pct'), True):>8} "
            f"{figure(w['dsr']):>5} {figure(w['pbo']):>5}"
        )
    m, h = summary["out_of_sample"], summary["buy_and_hold"]
    print(
        f"walk-forward (out-of-sample, chained): return {figure(m['return_pct'], True)}, Sharpe {figure(m['sharpe'])}, "
        f"max drawdown {m['max_drawdown_pct']:.2f}%; buy & hold {figure(h['return_pct'], True)}"
    )
    for key in ("gap", "dsr", "pbo"):
        print(f"  {summary['readings'][key]}")
    chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["chosen"].items())
    print(f"chosen (the {'final study' if settings['final'] else 'last window'}'s winner): {chosen}")


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("optimise", help="optimise the strategy's parameters walk-forward (Optuna, the fast engine)")
    p.add_argument("--symbol", default=None, help="default: told from the replay file's name")
    p.add_argument(
        "--source",
        nargs="+",
        default=["store"],
        metavar="KIND",
        help="replay FILE (a Binance kline or timestamp,open,high,low,close,volume CSV), store (default) or simulator",
    )
    p.add_argument("--trials", type=int, default=100, help="trials per study (one study per window)")
    p.add_argument("--windows", type=int, default=4, help="walk-forward windows (out-of-sample stretches)")
    p.add_argument("--in-sample-ratio", type=float, default=3.0, help="in-sample length in out-of-sample lengths")
    p.add_argument("--objective", choices=("sharpe", "return"), default="sharpe")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (same seed, same trials)")
    p.add_argument("--no-final", action="store_true", help="skip the final study on the latest stretch")
    p.add_argument("--model", choices=ML_MODEL_NAMES, default=None, help="the trading model (default DECISION_MODEL)")
    p.add_argument(
        "--confirm",
        nargs="+",
        metavar="CHOICE",
        help="confirming models to try: none, a model, or models joined by + (e.g. none svm svm+knn)",
    )
    p.add_argument("--models-from", choices=("train", "registry"), default="train")
    p.add_argument("--train-fraction", type=float, default=0.3)
    p.add_argument("--bars", type=int, default=None, help="use at most this many most recent bars")
    for name in RANGE_PARAMS:
        p.add_argument(f"--{name.replace('_', '-')}", type=float, nargs="+", metavar="LOW HIGH", default=None)
    p.add_argument("--sizing", nargs="+", choices=("fixed_fraction", "fixed_risk"), default=None)
    p.add_argument("--json", action="store_true", help="print the run (windows, figures, readings) as JSON")
    p.set_defaults(fn=cmd_optimise)
