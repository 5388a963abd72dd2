"""The ml stage: ticks on crypto.market_data -> signals on crypto.ml_signals.

    python -m bench.signals --symbols 50 --rate R [--seconds S] [--backend embedded|kafka]
                            [--models random_forest svm logistic_regression] [--repeat K]
                            [--forest-walk numba|numpy|both] [--predict stacked|separate|both]
                            [--commit async|sync|both] [--hand-over batch|each|both]
                            [--offsets delivered|flushed|both]

Each symbol gets the configured models, fitted on simulator history and registered as the app
does; the store holds enough bars that every symbol is warm from the first tick. Two runs:

* ``paced``: ticks offered at R per symbol per second for S seconds (50 symbols at 10/s is 500
  ticks/s), once per ``--pacing``: ``burst`` offers every symbol's tick at the same instant (as the
  simulator publishes: the last of 50 waits for the stage to work through the 49 before it),
  ``spread`` offers them evenly apart (as independent exchange streams arrive).
  ``latency_ms_p50``/``_p99``/``_p999`` are from a tick's produce call (the clock read just
  before its group of ticks is built, encoded and handed over) to the moment the signal of that
  tick is received by a consumer of crypto.ml_signals, so they include both bus hops;
  ``from_timestamp_ms_*`` are the same from the tick's timestamp, as this bench measured before:
  whole milliseconds, so they add up to 1 ms (half a millisecond on average) that is no wait.
  Ticks are produced and signals read with the ``low`` latency profile, as the live market
  sources send and the decision stage reads them (on Kafka a ``batch`` producer would hold each
  tick up to 5 ms and a ``batch`` reader each signal up to 5 ms more); ``ticks_per_s`` is what the
  stage processed over the run. ``idle_cpu_pct``: the CPU this process (the stage, the reader, the bus) used over
  ``--idle-seconds`` with no tick offered, as a share of one core.
* ``max``: N ticks offered as fast as the producer takes them; ``ticks_per_s`` is N over the time
  from the first produce to the stage's last processed tick.

``--forest-walk``: how the random forest walks a live batch (``ForestEvaluator.walk``): ``numba``,
the desk's default compiled loop, or ``numpy``, its numpy operations;
``both`` runs them side by side, alternating within each repeat, numba first in even repeats and
numpy first in odd ones (a process's first run is not always the same walk's). Every line says
which (``forest_walk``) and its place in the process (``run``).

``--predict``: ``stacked``, the stage's default, predicts each model's rows of every symbol in one
compiled call (``pipeline.ml.stacked.Stack``); ``separate`` calls each symbol's model on its own
rows, as the stage did before; ``both`` alternates them as ``--forest-walk both`` does. Every line
says which (``predict``). ``--commit``: ``async``, the stage's default, sends each batch's offset
commit without waiting for it (``Stage.commit_async``); ``sync`` waits, as before; ``both``
alternates them (``commit``). ``--hand-over``: ``batch``, the runner's default, hands a batch's
signals to the producer together (``Producer.produce_many``: on the embedded bus one commit and
one wake-up of the reader); ``each`` calls ``produce`` once a signal, as before; ``both``
alternates them (``hand_over``). The burst's ticks are produced the same way: together, as the
simulator now publishes an instant's ticks, or one by one, as it did before.
``--offsets``: ``delivered``, the stage's default, polls the next batch at once and commits a
batch's offsets once its signals are acknowledged (``Stage.commit_on_delivery``); ``flushed``
waits for the acknowledgements (a flush) before the next poll, as before; ``both`` alternates
them (``offsets``).

Prints one JSON line per run (and per repeat) and one with the medians. The stage runs in this
process on its own thread, as in the app.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.bus import make_bus
from pipeline.config import SEED_MODELS, Config
from pipeline.messages import MarketData, encode
from pipeline.ml.compiled import ForestEvaluator, Walk
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset, walk_forward
from pipeline.ml.models import fit_predictor
from pipeline.ml.registry import Registry
from pipeline.runner import HandOver, StageRunner
from pipeline.stages.ml import MLStage
from pipeline.topics import CATALOG, MARKET_DATA, ML_SIGNALS
from pipeline.wiring import tune_gc, tune_switching
from storage.db import Database

HORIZON = 15


def symbols_for(n: int, salt: str) -> list[str]:
    """Return ``n`` distinct symbols matching seed 001's pattern (letters only, then USDT)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    base = "".join(letters[int(c, 16) % 26] for c in salt[:2])
    return [f"{base}{letters[i // 26]}{letters[i % 26]}USDT" for i in range(n)]


def prepare(folder: Path, symbols: list[str], models: tuple[str, ...]) -> tuple[Database, Registry]:
    """Fit each model once on simulator history, register it for every symbol, and seed warm-up bars."""
    db = Database(folder / "desk.db")
    registry = Registry(db, folder / "models")
    end = int(time.time() * 1000) // 60_000 * 60_000
    bars = bars_from_simulator("BTCUSDT", 3000, seed=1, end_ms=end)
    X, y, times = make_dataset(bars, HORIZON)
    for model in models:
        evaluation = walk_forward(model, X, y, HORIZON, n_splits=2)
        predictor = fit_predictor(model, X.to_numpy(), y, HORIZON)
        for symbol in symbols:
            registry.register(
                symbol,
                predictor,
                evaluation,
                interval_ms=60_000,
                train_start=int(times[0]),
                train_end=int(times[-1]),
                n_samples=len(y),
            )
    tail = bars.tail(60)
    rows = [(s, int(b.start), b.open, b.high, b.low, b.close, b.volume, 4) for s in symbols for b in tail.itertuples()]
    db.write(lambda d: d.conn.executemany("INSERT OR REPLACE INTO bars_1m VALUES (?,?,?,?,?,?,?,?)", rows))
    return db, registry


class _Signals(threading.Thread):
    """Reads crypto.ml_signals and records when each (symbol, tick time) first got a signal."""

    def __init__(self, bus, group: str, symbols: set[str]) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        # read as the decision stage reads signals (its "low" latency profile)
        self.consumer = bus.consumer(group, [ML_SIGNALS], auto_offset_reset="latest", latency="low")
        self.symbols = {s.encode() for s in symbols}
        self.first_seen: dict[tuple[bytes, int], float] = {}
        self.count = 0
        self.stop = threading.Event()
        self.assigned = threading.Event()

    def run(self) -> None:
        import orjson

        while not self.stop.is_set():
            records = self.consumer.poll(5000, 0.2)
            self.assigned.set()
            now = time.time() * 1000
            for r in records:
                if r.key in self.symbols:
                    ts = orjson.loads(r.value)["timestamp"]
                    self.first_seen.setdefault((r.key, ts), now)
                    self.count += 1
        self.consumer.close()


def paced(
    how: str,
    bus: Any,
    producer: Any,
    runner: StageRunner,
    reader: _Signals,
    symbols: list[str],
    tick: Any,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """Offer ``rate`` ticks a second per symbol for ``seconds``: ``burst``, every symbol's tick at the
    same instant (as the simulator publishes); ``spread``, the symbols' ticks evenly apart (as
    independent exchange streams arrive). Latency is from a tick's produce call to its first signal
    reaching the reader; ``from_timestamp_ms_*`` from its timestamp (whole milliseconds), as before."""
    n_symbols = len(symbols)
    produced: list[tuple[bytes, int]] = []
    produced_at: list[float] = []  # each tick's produce call, ms (``produced``'s timestamp is it rounded down)
    processed0 = runner.health.snapshot().processed
    t0 = time.monotonic()
    step = 1.0 / rate if how == "burst" else 1.0 / (rate * n_symbols)
    i = 0
    while time.monotonic() - t0 < seconds:
        group = symbols if how == "burst" else [symbols[i % n_symbols]]
        at = time.time() * 1000
        ts = int(at)
        # handed over together, as the simulator publishes an instant's ticks (timed from ``at``, before
        # encoding); one by one with --hand-over each, as the simulator did before
        if StageRunner.hand_over == "batch":
            producer.produce_many([(MARKET_DATA, tick(s, ts, i), s.encode(), None) for s in group])
        else:
            for s in group:
                producer.produce(MARKET_DATA, tick(s, ts, i), key=s.encode())
        produced.extend((s.encode(), ts) for s in group)
        produced_at.extend(at for _ in group)
        i += 1
        time.sleep(max(0.0, t0 + i * step - time.monotonic()))
    producer.flush(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(k in reader.first_seen for k in produced[-n_symbols:]):
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    # From the produce call's time; and, as this bench measured before, from the tick's timestamp:
    # whole milliseconds, so up to 1 ms earlier than the call (half a millisecond on average).
    latencies = [reader.first_seen[k] - at for k, at in zip(produced, produced_at) if k in reader.first_seen]
    from_ts = [reader.first_seen[k] - k[1] for k in produced if k in reader.first_seen]
    q = np.percentile(latencies, [50, 99, 99.9]) if latencies else [float("nan")] * 3
    q_ts = np.percentile(from_ts, [50, 99, 99.9]) if from_ts else [float("nan")] * 3
    return {
        "bench": "signals",
        "mode": "paced",
        "pacing": how,
        "symbols": n_symbols,
        "rate_per_symbol": rate,
        "offered_ticks_per_s": rate * n_symbols,
        "ticks": len(produced),
        "answered": len(latencies),
        "ticks_per_s": round((runner.health.snapshot().processed - processed0) / elapsed, 1),
        "latency_ms_p50": round(float(q[0]), 2),
        "latency_ms_p99": round(float(q[1]), 2),
        "latency_ms_p999": round(float(q[2]), 2),
        "from_timestamp_ms_p50": round(float(q_ts[0]), 2),
        "from_timestamp_ms_p99": round(float(q_ts[1]), 2),
        "from_timestamp_ms_p999": round(float(q_ts[2]), 2),
    }


def run(
    backend: str,
    n_symbols: int,
    rate: float,
    seconds: float,
    max_ticks: int,
    models: tuple[str, ...],
    folder: Path,
    pacings: tuple[str, ...] = ("burst", "spread"),
    idle_seconds: float = 5.0,
) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    salt = uuid.uuid4().hex
    symbols = symbols_for(n_symbols, salt)
    bus = make_bus(backend, str(folder), run=salt[:8])
    bus.create_topics(CATALOG.values())
    db, registry = prepare(folder, symbols, models)
    price0 = {s: 100.0 + i for i, s in enumerate(symbols)}

    class Stage(MLStage):
        name: ClassVar[str] = f"ml-bench-{salt[:8]}"

    runner = StageRunner(Stage(db, registry, models=models), bus)
    reader = _Signals(bus, f"bench-signals-{salt[:8]}", set(symbols))
    producer = bus.producer("low")  # ticks sent as the live market sources send them
    tune_gc()
    tune_switching(Config().switch_interval_ms)  # as build_runtime does in a desk process
    runner.start()
    reader.start()

    def tick(symbol: str, ts: int, i: int) -> bytes:
        p = price0[symbol] * (1 + 0.001 * np.sin(i / 7))
        return encode(
            MarketData(
                symbol=symbol,
                timestamp=ts,
                price=p,
                open=p,
                high=p * 1.02,
                low=p * 0.98,
                volume=1e6,
                price_change_pct=0.1,
                tick_volume=1.0,
            )
        )

    # Warm up until the stage has joined, loaded every model and answered a tick of every symbol.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ts = int(time.time() * 1000)
        for s in symbols:
            producer.produce(MARKET_DATA, tick(s, ts, 0), key=s.encode())
        producer.flush(30)
        time.sleep(0.5)
        if len({k for k, _ in reader.first_seen}) == len(symbols):
            break
    else:
        raise SystemExit(f"the ml stage did not answer every symbol: {runner.health.snapshot()}")
    time.sleep(1.0)
    results: list[dict[str, Any]] = []

    # idle: the stage and the reader wait on quiet topics; the CPU this process uses meanwhile
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(idle_seconds)
    idle_cpu_pct = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)

    for how in pacings:
        results.append(paced(how, bus, producer, runner, reader, symbols, tick, rate, seconds))
        results[-1].update(backend=backend, models=list(models), idle_cpu_pct=round(idle_cpu_pct, 2))

    # max
    processed0 = runner.health.snapshot().processed
    t0 = time.monotonic()
    ts = int(time.time() * 1000)
    for j in range(max_ticks):
        s = symbols[j % n_symbols]
        while True:
            try:
                producer.produce(MARKET_DATA, tick(s, ts + 1 + j // n_symbols, j), key=s.encode())
                break
            except BufferError:
                producer.flush(1)
    producer.flush(60)
    deadline = time.monotonic() + 300
    while runner.health.snapshot().processed - processed0 < max_ticks and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    done = runner.health.snapshot().processed - processed0
    results.append(
        {
            "bench": "signals",
            "mode": "max",
            "backend": backend,
            "symbols": n_symbols,
            "models": list(models),
            "ticks": done,
            "seconds": round(elapsed, 3),
            "ticks_per_s": round(done / elapsed, 1),
            "signals_per_s": round(done * len(models) / elapsed, 1),
        }
    )
    reader.stop.set()
    runner.stop()
    reader.join(5)
    producer.close()
    db.close()
    bus.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.signals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="ticks per second per symbol (paced run)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the paced run")
    parser.add_argument("--max-ticks", type=int, default=50_000, help="ticks offered in the max run")
    parser.add_argument("--backend", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--models", nargs="+", default=list(SEED_MODELS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pacing", choices=("burst", "spread", "both"), default="both")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle wait whose CPU is reported")
    parser.add_argument("--forest-walk", choices=("numba", "numpy", "both"), default="numba")
    parser.add_argument("--predict", choices=("stacked", "separate", "both"), default="stacked")
    parser.add_argument("--commit", choices=("async", "sync", "both"), default="async")
    parser.add_argument("--hand-over", choices=("batch", "each", "both"), default="batch")
    parser.add_argument("--offsets", choices=("delivered", "flushed", "both"), default="delivered")
    args = parser.parse_args(argv)
    pacings = ("burst", "spread") if args.pacing == "both" else (args.pacing,)
    walks: tuple[Walk, ...] = ("numba", "numpy") if args.forest_walk == "both" else (args.forest_walk,)
    predicts = ("stacked", "separate") if args.predict == "both" else (args.predict,)
    commits = ("async", "sync") if args.commit == "both" else (args.commit,)
    hand_overs: tuple[HandOver, ...] = ("batch", "each") if args.hand_over == "both" else (args.hand_over,)
    offsets = ("delivered", "flushed") if args.offsets == "both" else (args.offsets,)
    variants = [(w, p, c, h, o) for w in walks for p in predicts for c in commits for h in hand_overs for o in offsets]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-signals-") as tmp:
        # The order flips every repeat: a process's first run is not always the same variant's.
        order = [(k, v) for k in range(args.repeat) for v in (variants if k % 2 == 0 else variants[::-1])]
        for n, (k, (walk, predict, commit, hand_over, offset)) in enumerate(order, start=1):
            ForestEvaluator.walk = walk
            MLStage.stacked = predict == "stacked"
            MLStage.commit_async = commit == "async"
            StageRunner.hand_over = hand_over
            MLStage.commit_on_delivery = offset == "delivered"
            for line in run(
                args.backend,
                args.symbols,
                args.rate,
                args.seconds,
                args.max_ticks,
                tuple(args.models),
                Path(tmp) / f"{k}-{walk}-{predict}-{commit}-{hand_over}-{offset}",
                pacings,
                args.idle_seconds,
            ):
                line["forest_walk"] = walk
                line["predict"] = predict
                line["commit"] = commit
                line["hand_over"] = hand_over
                line["offsets"] = offset
                line["run"] = n
                print(json.dumps(line), flush=True)
                runs.append(line)
    if args.repeat > 1:
        for (walk, predict, commit, hand_over, offset), (mode, pacing) in [
            (v, mp) for v in variants for mp in [("paced", p) for p in pacings] + [("max", None)]
        ]:
            of = [
                r
                for r in runs
                if r["mode"] == mode
                and r.get("pacing") == pacing
                and r["forest_walk"] == walk
                and r["predict"] == predict
                and r["commit"] == commit
                and r["hand_over"] == hand_over
                and r["offsets"] == offset
            ]
            summary = {
                "bench": "signals",
                "mode": mode,
                "forest_walk": walk,
                "predict": predict,
                "commit": commit,
                "hand_over": hand_over,
                "offsets": offset,
                "summary": "median",
                "backend": args.backend,
                "repeat": args.repeat,
                "ticks_per_s": statistics.median(r["ticks_per_s"] for r in of),
            }
            if mode == "paced":
                summary["pacing"] = pacing
                for key in (
                    "latency_ms_p50",
                    "latency_ms_p99",
                    "latency_ms_p999",
                    "from_timestamp_ms_p50",
                    "from_timestamp_ms_p99",
                    "from_timestamp_ms_p999",
                    "idle_cpu_pct",
                ):
                    summary[key] = statistics.median(r[key] for r in of)
            print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
