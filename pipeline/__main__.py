"""Command line: ``python -m pipeline topics|init-topics|run|api|tail|train|models|backtest|optimise|schemas``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from dotenv import dotenv_values

from pipeline.bus import create_bus
from pipeline.config import ML_MODEL_NAMES, Config, load_config
from pipeline.errors import PipelineError
from pipeline.messages import json_schemas, trade_avro_schema
from pipeline.processes import PARENT_PID_ENV
from pipeline.topics import CATALOG

log = logging.getLogger("pipeline")


def _config() -> Config:
    env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
    return load_config(env)


def cmd_topics(args: argparse.Namespace) -> int:
    bus = create_bus(_config())
    try:
        states = bus.describe_topics()
    finally:
        bus.close()
    rows = [
        {
            "topic": s.name,
            "partitions": len(s.partitions),
            "end_offset": s.end_offset,
            "messages": s.messages,
            "cleanup.policy": s.config.get("cleanup.policy"),
            "retention.ms": s.config.get("retention.ms"),
            "in_catalog": s.name in CATALOG,
        }
        for s in states
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no topics yet: run `python -m pipeline init-topics`")
        return 0
    width = max(len(r["topic"]) for r in rows)
    print(f"{'TOPIC':<{width}}  PARTS  MESSAGES  END_OFFSET  CLEANUP  RETENTION_MS")
    for r in rows:
        print(
            f"{r['topic']:<{width}}  {r['partitions']:>5}  {r['messages']:>8}  {r['end_offset']:>10}  "
            f"{r['cleanup.policy'] or '-':<7}  {r['retention.ms'] or '-'}"
        )
    return 0


def cmd_init_topics(_args: argparse.Namespace) -> int:
    bus = create_bus(_config())
    try:
        created = bus.create_topics(CATALOG.values())
    finally:
        bus.close()
    for name, new in sorted(created.items()):
        print(f"{'created' if new else 'exists '}  {name}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.wiring import build_runtime

    config = _config()
    runtime = build_runtime(config, tuple(args.stage) if args.stage else None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    names = ", ".join(w.name for w in runtime.workers)
    print(f"running {names} on the {runtime.bus.name} bus; Ctrl-C stops", file=sys.stderr)
    # Started by a runtime (STAGE_PROCESSES): stop when that process is gone, however it ended.
    parent = int(os.environ.get(PARENT_PID_ENV) or 0)
    ticks = 0
    try:
        while not stop.wait(1.0):
            if parent and os.getppid() != parent:
                print(f"the process that started this one ({parent}) is gone; stopping", file=sys.stderr)
                break
            ticks += 1
            if ticks % 10 == 0:
                for h in runtime.health():
                    log.info(
                        "%s running=%s processed=%d produced=%d dead=%d errors=%d lag=%d",
                        h.name,
                        h.running,
                        h.processed,
                        h.produced,
                        h.dead_lettered,
                        h.errors,
                        h.lag,
                    )
    except KeyboardInterrupt:
        pass
    print("stopping...", file=sys.stderr)
    runtime.stop()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the trades API with the configured stages running in this process."""
    import dataclasses

    from pipeline.wiring import build_runtime

    config = _config()
    stages = (*(s for s in config.stages if s != "api"), "api")
    config = dataclasses.replace(
        config, api_host=args.host or config.api_host, api_port=args.port if args.port is not None else config.api_port
    )
    runtime = build_runtime(config, stages)
    api = next(w for w in runtime.workers if w.name == "api")
    if not api.wait_started(15.0):  # type: ignore[attr-defined]
        runtime.stop()
        raise PipelineError(
            api.health.snapshot().last_error or f"the trades API did not start on {config.api_host}:{config.api_port}"
        )
    print(
        f"trades API on http://{config.api_host}:{config.api_port} (docs at /docs) with "
        f"{', '.join(w.name for w in runtime.workers if w.name != 'api')} on the {runtime.bus.name} bus; "
        "Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0) and api.health.snapshot().running:
            pass
    except KeyboardInterrupt:
        pass
    runtime.stop()
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    bus = create_bus(_config())
    consumer = bus.consumer(
        f"tail-{uuid.uuid4().hex[:8]}", [args.topic], auto_offset_reset="earliest" if args.from_beginning else "latest"
    )
    shown = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while args.max_messages is None or shown < args.max_messages:
            if deadline is not None and time.monotonic() > deadline:
                break
            for r in consumer.poll(500, 0.5):
                key = r.key.decode("utf-8", "replace") if r.key is not None else ""
                value = r.value.decode("utf-8", "replace") if r.value is not None else "null"
                prefix = f"{r.partition}:{r.offset}\t{key}\t" if args.print_keys else ""
                print(prefix + value, flush=True)
                shown += 1
                if args.max_messages is not None and shown >= args.max_messages:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        bus.close()
    return 0


def _store(config: Config):  # noqa: ANN202 - (Database, Registry); imports stay lazy
    from pipeline.ml.registry import Registry
    from storage.db import Database

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.data_dir / "desk.db")
    return db, Registry(db, config.data_dir / "models")


def cmd_train(args: argparse.Namespace) -> int:
    """Train models per symbol with walk-forward evaluation and register them."""
    import dataclasses

    from pipeline.jobs.training import TrainingJob

    config = _config()
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
    db, registry = _store(config)
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


def _fmt(value: object, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}%" if pct else f"{value:.3f}" if isinstance(value, float) else str(value)


def _metric(value: object, pct: bool = False) -> str:
    """A backtest figure, or "—" when the period cannot give it (the reason is printed below the table)."""
    return "—" if value is None else _fmt(value, pct)


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
            f"{_fmt(r.metrics.get('accuracy')):>6} {_fmt(base):>6} {_fmt(r.metrics.get('profit_pct'), True):>8} "
            f"{_fmt(bh, True):>8}" + (f"  load error: {r.load_error}" if r.load_error else "")
        )


def cmd_models(args: argparse.Namespace) -> int:
    """List the model registry with out-of-sample metrics and the baselines' on the same folds."""
    db, registry = _store(_config())
    try:
        records = registry.records(symbol=args.symbol.upper() if args.symbol else None)
    finally:
        db.close()
    if args.json:
        print(json.dumps([_record_json(r) for r in records], indent=2))
    else:
        _print_models(records)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Backtest the decision strategy on history, as the Backtest page does."""
    import dataclasses

    from pipeline.jobs.backtests import BacktestRequest, run_request

    config = _config()
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
        bars=args.bars,
        model=args.model or config.decision_model,
        confirm_models=tuple(args.confirm or config.decision_confirm_models),
        models_from=args.models_from,
        train_fraction=args.train_fraction,
        risk=risk,
        exchange=config.exchange,
        engine=args.engine,
    )
    db, _ = _store(config)

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
        print(f"{label:<16} {_metric(m.get(key), pct):>12} {_metric(h.get(key), pct):>12}")
    win_rate = "—" if m["win_rate_pct"] is None else f"{m['win_rate_pct']:.1f}%"
    print(
        f"trades {m['trades']} (open {m['open_trades']}), win rate {win_rate}, profit factor "
        f"{_metric(m['profit_factor'])}, exposure {m['exposure_pct']:.1f}%, fees {m['fees_paid']:.2f} USDT"
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

    config = _config()
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
    db, _ = _store(config)

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
            f"{name:<7} {span:<33} {_fmt(ism['value']):>8} {_fmt(oos.get('value')):>8} "
            f"{_fmt(ism['return_pct'], True):>8} {_fmt(oos.get('return_pct'), True):>8} "
            f"{_fmt(w['dsr']):>5} {_fmt(w['pbo']):>5}"
        )
    m, h = summary["out_of_sample"], summary["buy_and_hold"]
    print(
        f"walk-forward (out-of-sample, chained): return {_fmt(m['return_pct'], True)}, Sharpe {_fmt(m['sharpe'])}, "
        f"max drawdown {m['max_drawdown_pct']:.2f}%; buy & hold {_fmt(h['return_pct'], True)}"
    )
    for key in ("gap", "dsr", "pbo"):
        print(f"  {summary['readings'][key]}")
    chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["chosen"].items())
    print(f"chosen (the {'final study' if settings['final'] else 'last window'}'s winner): {chosen}")


def cmd_schemas(args: argparse.Namespace) -> int:
    print(json.dumps(trade_avro_schema() if args.avro else json_schemas(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("topics", help="list topics as the bus sees them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_topics)
    sub.add_parser("init-topics", help="create the catalog's topics (idempotent)").set_defaults(fn=cmd_init_topics)
    p = sub.add_parser("run", help="run stages headless until Ctrl-C")
    p.add_argument("--stage", action="append", metavar="NAME", help="stage to run (repeatable)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("api", help="serve the trades API (and the configured stages) until Ctrl-C")
    p.add_argument("--host", default=None, help="interface to bind (default API_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default API_PORT or 8000)")
    p.set_defaults(fn=cmd_api)
    p = sub.add_parser("tail", help="print a topic's messages, like kafka-console-consumer")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--print-keys", action="store_true", help="prefix partition:offset and key")
    p.add_argument("--max-messages", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(fn=cmd_tail)
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
    p = sub.add_parser("schemas", help="print the JSON Schema of every topic (or --avro: the Trade record)")
    p.add_argument("--avro", action="store_true")
    p.set_defaults(fn=cmd_schemas)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "run" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.fn(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
