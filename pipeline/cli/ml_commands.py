"""Commands of the models: train, models."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any

from pipeline.cli.common import config_from_env, figure, open_store
from pipeline.config import ML_MODEL_NAMES
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")


def cmd_train(args: argparse.Namespace) -> int:
    """Train models per symbol with walk-forward evaluation and register them."""
    import dataclasses

    from pipeline.jobs.training import TrainingJob

    config = config_from_env()
    if args.horizon:
        config = dataclasses.replace(config, ml_horizon_bars=args.horizon)
    kind, *files = args.source
    if kind not in ("store", "simulator", "replay"):
        raise PipelineError(f"--source {kind!r}: use store, simulator or replay FILE")
    if kind == "replay" and len(files) != 1:
        raise PipelineError("--source replay needs exactly one FILE")
    symbols = tuple(s.upper() for s in args.symbols) if args.symbols else None
    if kind == "replay" and symbols is None:
        from pipeline.candles import symbol_from_name

        named = symbol_from_name(files[0])
        if named is None:
            raise PipelineError(f"cannot tell the symbol from {files[0]!r}; pass --symbols")
        symbols = (named,)
    db, registry = open_store(config)
    try:
        job = TrainingJob(
            config,
            db,
            registry,
            symbols or config.symbols,
            tuple(args.models or config.ml_models),
            source="file" if kind == "replay" else kind,
            bars=args.bars,
            path=files[0] if files else None,
            any_path=True,  # the user's own shell: any file they name
        )
        thread = threading.Thread(target=job.run, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
            state = job.snapshot()
            if not args.json:
                bar = "#" * int(state.progress * 30)
                print(
                    f"\r[{bar:<30}] {state.progress:4.0%} {state.message[:60]:<60}", end="", file=sys.stderr, flush=True
                )
        state = job.snapshot()
        if args.json:
            print(json.dumps({"trained": [_record_json(r) for r in job.records], "errors": state.errors}, indent=2))
        else:
            print(file=sys.stderr)
            _print_models(job.records)
            for error in state.errors:
                print(f"error: {error}", file=sys.stderr)
        return 0 if job.records and not state.errors else 2
    finally:
        db.close()


def _record_json(r) -> dict:  # noqa: ANN001
    return {
        "symbol": r.symbol,
        "model": r.model,
        "version": r.version,
        "active": bool(r.active),
        "interval_ms": r.interval_ms,
        "horizon_bars": r.horizon,
        "train_start": r.train_start,
        "train_end": r.train_end,
        "samples": r.n_samples,
        "features": list(r.features),
        "out_of_sample": r.metrics,
        "baselines": r.baselines,
        "load_error": r.load_error,
    }


def _print_models(records: list) -> None:
    if not records:
        print("no models yet: run `python -m pipeline train`")
        return
    print(
        f"{'SYMBOL':<10} {'MODEL':<20} {'VER':>3} {'ACT':>3}  {'WINDOW (UTC)':<33} {'ACC':>6} {'BASE':>6} "
        f"{'PROFIT':>8} {'B&H':>8}"
    )
    for r in records:
        window = (
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.train_start / 1000))
            + " - "
            + time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.train_end / 1000))
        )
        base = max((b.get("accuracy") or 0.0 for b in r.baselines.values()), default=None)
        bh = r.baselines.get("buy_and_hold", {}).get("profit_pct")
        print(
            f"{r.symbol:<10} {r.model:<20} {r.version:>3} {'*' if r.active else '':>3}  {window:<33} "
            f"{figure(r.metrics.get('accuracy')):>6} {figure(base):>6} {figure(r.metrics.get('profit_pct'), True):>8} "
            f"{figure(bh, True):>8}" + (f"  load error: {r.load_error}" if r.load_error else "")
        )


def cmd_models(args: argparse.Namespace) -> int:
    """List the model registry with out-of-sample metrics and the baselines' on the same folds."""
    db, registry = open_store(config_from_env())
    try:
        records = registry.records(symbol=args.symbol.upper() if args.symbol else None)
    finally:
        db.close()
    if args.json:
        print(json.dumps([_record_json(r) for r in records], indent=2))
    else:
        _print_models(records)
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("train", help="train models per symbol (walk-forward evaluated) and register them")
    p.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="default: SYMBOLS (or the replay file's symbol)")
    p.add_argument(
        "--source",
        nargs="+",
        default=["store"],
        metavar="KIND",
        help="store (the stored 1-minute bars; default), simulator (synthetic history), "
        "or replay FILE (a Binance kline or timestamp,open,high,low,close,volume CSV)",
    )
    p.add_argument("--models", nargs="+", choices=ML_MODEL_NAMES, help="default: ML_MODELS")
    p.add_argument("--bars", type=int, default=None, help="use at most this many most recent bars")
    p.add_argument("--horizon", type=int, default=None, help="bars ahead to predict (default ML_HORIZON_BARS)")
    p.add_argument("--json", action="store_true", help="print the registered versions as JSON")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("models", help="list the model registry with out-of-sample metrics and baselines")
    p.add_argument("--symbol", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_models)
