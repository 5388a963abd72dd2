"""Commands of paper trading: backtest."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from pipeline.cli.common import config_from_env, metric_text, open_store
from pipeline.config import ML_MODEL_NAMES
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")


def cmd_backtest(args: argparse.Namespace) -> int:
    """Backtest the decision strategy on history, as the Backtest page does."""
    import dataclasses

    from pipeline.jobs.backtests import BacktestRequest, run_request

    config = config_from_env()
    kind, *files = args.source
    if kind not in ("store", "simulator", "replay"):
        raise PipelineError(f"--source {kind!r}: use store, simulator or replay FILE")
    if kind == "replay" and len(files) != 1:
        raise PipelineError("--source replay needs exactly one FILE")
    symbol = args.symbol.upper() if args.symbol else None
    if symbol is None and kind == "replay":
        from pipeline.candles import symbol_from_name

        symbol = symbol_from_name(files[0])
    if symbol is None:
        raise PipelineError("pass --symbol (it could not be told from the file's name)")
    risk = dataclasses.replace(
        config.risk,
        **{
            k: v
            for k, v in (
                ("stop_loss_pct", args.stop_loss_pct),
                ("take_profit_pct", args.take_profit_pct),
                ("trailing_stop_pct", args.trailing_stop_pct),
                ("sizing", args.sizing),
                ("position_pct", args.position_pct),
                ("risk_pct", args.risk_pct),
            )
            if v is not None
        },
    )
    request = BacktestRequest(
        symbols=(symbol,),
        source="file" if kind == "replay" else kind,
        path=files[0] if files else None,
        any_path=True,  # the user's own shell: any file they name
        bars=args.bars,
        model=args.model or config.decision_model,
        confirm_models=tuple(args.confirm or config.decision_confirm_models),
        models_from=args.models_from,
        train_fraction=args.train_fraction,
        risk=risk,
        exchange=config.exchange,
        engine=args.engine,
    )
    db, _ = open_store(config)

    def progress(fraction: float, message: str) -> None:
        if not args.json:
            bar = "#" * int(fraction * 30)
            print(f"\r[{bar:<30}] {fraction:4.0%} {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    try:
        result = run_request(config, db, request, progress)
    finally:
        db.close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=float))
        return 0
    print(file=sys.stderr)
    _print_backtest(result)
    return 0


def _print_backtest(result) -> None:  # noqa: ANN001
    from pipeline.trading.metrics import why_none

    m, h = result.metrics, result.buy_and_hold
    models = result.settings.get("models", {})
    print(
        f"{', '.join(result.symbols)}: {result.model}, models {models.get('models_from')}, "
        f"{result.settings.get('engine')} engine"
        + ("  (IN-SAMPLE: the model saw these bars)" if models.get("in_sample") else "")
    )
    rows = (
        ("return", "return_pct", True),
        ("CAGR", "cagr_pct", True),
        ("Sharpe", "sharpe", False),
        ("Sortino", "sortino", False),
        ("max drawdown", "max_drawdown_pct", True),
    )
    print(f"{'':<16} {'strategy':>12} {'buy & hold':>12}")
    for label, key, pct in rows:
        print(f"{label:<16} {metric_text(m.get(key), pct):>12} {metric_text(h.get(key), pct):>12}")
    win_rate = "—" if m["win_rate_pct"] is None else f"{m['win_rate_pct']:.1f}%"
    print(
        f"trades {m['trades']} (open {m['open_trades']}), win rate {win_rate}, profit factor "
        f"{metric_text(m['profit_factor'])}, exposure {m['exposure_pct']:.1f}%, fees {m['fees_paid']:.2f} USDT"
    )
    for label, key in (
        *((label, key) for label, key, _ in rows),
        ("win rate", "win_rate_pct"),
        ("profit factor", "profit_factor"),
    ):
        reason = why_none(key, m, h)
        if reason:
            print(f"  {label}: — {reason}")
    for t in result.trades[-10:]:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t["entry_time"] / 1000))
        print(
            f"  {when} {t['symbol']} {t['quantity']:.8g} @ {t['entry_price']:.6g} -> {t['exit_price']:.6g} "
            f"{t['exit_reason']:<13} {t['pnl']:+.2f} USDT"
        )


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("backtest", help="backtest the decision strategy on history (metrics and trades)")
    p.add_argument("--symbol", default=None, help="default: told from the replay file's name")
    p.add_argument(
        "--source",
        nargs="+",
        default=["store"],
        metavar="KIND",
        help="replay FILE (a Binance kline or timestamp,open,high,low,close,volume CSV), store (the "
        "stored 1-minute bars; default) or simulator",
    )
    p.add_argument("--model", choices=ML_MODEL_NAMES, default=None, help="the trading model (default DECISION_MODEL)")
    p.add_argument("--confirm", nargs="+", choices=ML_MODEL_NAMES, help="models that confirm medium signals")
    p.add_argument(
        "--models-from",
        choices=("train", "registry"),
        default="train",
        help="train: fit on the first --train-fraction of the bars, test on the rest (default); "
        "registry: the active versions (flagged in-sample when they saw the tested bars)",
    )
    p.add_argument("--train-fraction", type=float, default=0.3)
    p.add_argument("--bars", type=int, default=None, help="use at most this many most recent bars")
    p.add_argument("--stop-loss-pct", type=float, default=None)
    p.add_argument("--take-profit-pct", type=float, default=None)
    p.add_argument("--trailing-stop-pct", type=float, default=None)
    p.add_argument("--sizing", choices=("fixed_fraction", "fixed_risk"), default=None)
    p.add_argument("--position-pct", type=float, default=None)
    p.add_argument("--risk-pct", type=float, default=None)
    p.add_argument(
        "--engine",
        choices=("fast", "backtrader"),
        default="fast",
        help="fast: the compiled engine (default); backtrader: the reference it is proven equal to",
    )
    p.add_argument("--json", action="store_true", help="print the metrics and every trade as one JSON object")
    p.set_defaults(fn=cmd_backtest)
