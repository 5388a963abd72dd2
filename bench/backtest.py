"""Backtests and the trading stages: the fast engine next to backtrader, a floor and bare backtrader,
orders through the virtual exchange, and the decision stage's signal-to-order latency.

    python -m bench.backtest [--bars N] [--repeat R] [--backend embedded|kafka] [--orders M]
                             [--signals K] [--rate S] [--year] [--parts backtest exchange decision]

Three measurements, each printed as JSON lines:

* ``backtest``: the fast engine and five backtrader runs on the same N simulator bars and the same
  random-forest model's signals (computed before any of them). For backtrader only
  ``cerebro.run()`` is timed, each after ``gc.collect()``; building the cerebro and the data is
  not. Each repeat starts with another run, in turn:

  - ``fast``: ``run_backtest``'s fast engine (``pipeline.trading.fast_engine``) on the same plan,
    timed whole: ordering the ticks, the rules' inputs, the compiled loop, and the ``Order`` and
    book objects the result holds (``backtest.simulate``). It runs once untimed first, so numba's
    compilation (cached on disk after the first run ever) is not counted. It must make the orders
    and trades of a ``run_backtest`` on backtrader, with the same final equity, else the line has
    an ``error``;
  - ``floor_bars``: a strategy that does nothing on the N bars (backtrader's own cost per bar);
  - ``ours``: ``run_backtest``'s cerebro (the live path's four ticks a bar through the desk's
    paper exchange, every actionable signal through the strategy's rules, the equity each bar);
    a run of ``run_backtest`` itself must make the same orders and trades, else the line has an
    ``error``;
  - ``bare_close``: the same rules on backtrader's own broker with bracket orders, one signal a bar
    (the one at the close): less work than ours;
  - ``bare_ticks``: the same workload as ours on bare backtrader: the four ticks of every bar as
    4N backtrader bars, the signal at every tick, backtrader's broker and bracket orders;
  - ``floor_ticks``: a strategy that does nothing on those 4N ticks.

  Per run ``<run>_s`` and ``<run>_bars_per_s`` (N bars over its seconds, also for the tick runs);
  ``signals_s`` times computing every tick's features and signals (``prepare``, also after
  ``gc.collect()``) and ``ours_total_bars_per_s`` counts it with ours. ``ours_minus_floor_bars_s``
  is what the desk's work adds to backtrader stepping through the bars; ``ours_vs_bare_ticks_pct``
  and ``ours_vs_bare_close_pct`` are ours' time over the bare run's, minus one, in % (negative:
  ours is faster; against ``bare_close`` it is not an overhead, as bare does less).
  ``fast_vs_ours_x`` and ``fast_vs_bare_ticks_x`` are how many times faster the fast engine is
  than backtrader doing the same work (targets: ``fast_bars_per_s`` >= 100,000, and 7 times
  ours). Trades and orders per run say how comparable the work was. One line per repeat, then the
  medians (``"summary": true``). ``--year`` adds one run of ``run_backtest`` on a year of
  1-minute bars (525,600) on the fast engine, timed whole (every tick's features and the
  forest's predictions, the engine, metrics), after ``gc.collect()`` (target: 5 s), and with
  ``--year-backtrader`` the same year on backtrader too.
* ``virtual_exchange``: M PENDING BUY orders of one fresh account over a few symbols, with ticks
  that fill them, published onto the bus; ``orders_per_s`` is M over the time from the first
  publish until the stage has produced the FILLED status of every order.
* ``decision_latency``: K signals (high confidence, BUY and SELL alternating per symbol, each after
  a tick of its symbol at the same time) offered at S per second; per order made, the time from
  the signal's produce call to the moment a consumer of crypto.orders receives the order.

The stages run in this process on their own threads, as in the app, with group ids of their own
(``offset_reset`` is "latest": each is warmed up with ticks until it has processed some first).
The bus is the embedded SQLite log under a temporary folder, or Kafka with ``--backend kafka`` and
KAFKA_BOOTSTRAP_SERVERS, where the catalog's topics get names of the run's own (``bench.bus.BenchBus``,
deleted at the end). The exchange's SQLite writes go to a temporary ``desk.db``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pandas as pd

from bench.bus import make_bus
from pipeline.messages import MarketData, MLSignal, Order, RiskManagement, Signal, TriggerSignal, encode
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.models import fit_predictor
from pipeline.runner import StageRunner
from pipeline.stages.decision import DecisionStage
from pipeline.stages.virtual_exchange import VirtualExchangeStage
from pipeline.topics import CATALOG, MARKET_DATA, ML_SIGNALS, ORDERS
from pipeline.trading.backtest import SIGNAL_CODES, model_signals, prepare, run_backtest, simulate, tick_features
from pipeline.trading.exchange import Exchange, ExchangeSettings
from pipeline.trading.risk import MEDIUM_CONFIDENCE, RiskSettings
from pipeline.trading.strategy import BarEventFeed, Desk, MLSignalStrategy, ModelSignal, SignalGroup, bt
from pipeline.wiring import tune_gc
from storage.db import Database

SYMBOL = "BTCUSDT"
MODEL = "random_forest"
HORIZON = 15
BUY_PCT, SELL_PCT = 0.05, -0.05
YEAR_BARS = 525_600
YEAR_TARGET_S = 5.0
FAST_TARGET_BARS_PER_S = 100_000
FAST_TARGET_X = 7.0
START_CASH = 10_000.0
COMMISSION = 0.001


# --------------------------------------------------------------------------- 1. backtest


class BareSignals:
    """Signals computed before the run, one per backtrader bar: at each bar's close (``ticks=3``,
    one a bar) or at every tick (``ticks=None``: the four ticks of every bar, each a backtrader bar)."""

    def __init__(
        self,
        symbol: str,
        times: np.ndarray,
        prices: np.ndarray,
        code: np.ndarray,
        conf: np.ndarray,
        change: np.ndarray,
        levels: np.ndarray,
        ticks: int | None = 3,
    ) -> None:
        def pick(a: np.ndarray) -> np.ndarray:
            return a[:, ticks] if ticks is not None else a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])

        self.symbol = symbol
        self.times = pick(times).tolist()
        self.prices = pick(prices).tolist()
        self.code = pick(code).tolist()
        self.conf = pick(conf).tolist()
        self.change = pick(change).tolist()
        self.levels = pick(levels).tolist()
        self.act = ((pick(code) != 0) & (pick(conf) >= MEDIUM_CONFIDENCE)).tolist()

    def group(self, i: int) -> SignalGroup:
        ma7, ma25, rsi = self.levels[i]
        return SignalGroup(
            self.symbol,
            self.times[i],
            self.prices[i],
            ModelSignal(MODEL, SIGNAL_CODES[self.code[i]], self.conf[i], self.change[i]),
            (),
            {"ma_7": ma7, "ma_25": ma25, "rsi_14": rsi},
        )


class BareStrategy(MLSignalStrategy):
    """``MLSignalStrategy``'s rules on backtrader's own broker: a BUY is a market bracket order
    (stop-loss and take-profit children), a SELL cancels the brackets and closes the position."""

    params = (("signals", None),)

    def __init__(self) -> None:
        super().__init__()
        self.signals: BareSignals = self.p.signals
        self.pending: set[int] = set()  # refs of entry and close orders not done yet
        self.children: list[Any] = []  # the open position's stop and take-profit orders
        self.entry_id = ""
        self.closed_trades = 0

    def next(self) -> None:
        i = len(self.data) - 1
        if self.signals.act[i]:
            self.on_signals(self.signals.group(i))

    def notify_order(self, order: Any) -> None:
        if order.status not in (order.Submitted, order.Accepted):
            self.pending.discard(order.ref)

    def notify_trade(self, trade: Any) -> None:
        if trade.isclosed:
            self.closed_trades += 1

    def equity(self) -> float:
        return self.broker.getvalue()

    def cash(self) -> float:
        return self.broker.getcash()

    def exposure(self, symbol: str | None = None) -> float:
        size = self.getposition(self.data).size
        return size * self.data.close[0] if size > 0 else 0.0

    def open_quantities(self, symbol: str) -> list[tuple[str, float]]:
        size = self.getposition(self.data).size
        return [(self.entry_id, size)] if size > 0 else []

    def has_pending(self, symbol: str) -> bool:
        return bool(self.pending)

    def cost_rate(self) -> float:
        return COMMISSION

    def submit(self, order: Order) -> None:
        self.desk.orders.append(order)
        if order.action == "BUY":
            rm = order.risk_management
            main, stop, limit = self.buy_bracket(
                size=order.quantity, stopprice=rm.stop_loss, limitprice=rm.take_profit, exectype=bt.Order.Market
            )
            self.pending.add(main.ref)
            self.children = [stop, limit]
            self.entry_id = order.order_id
        else:
            for child in self.children:
                self.cancel(child)
            self.children = []
            close = self.close()
            if close is not None:
                self.pending.add(close.ref)


class Floor(bt.Strategy):
    """Does nothing: what backtrader costs to step through the data at all."""

    def next(self) -> None:
        pass


# A run: a cerebro built (untimed), then run (timed); the function returns (trades, orders) after it.
Run = tuple[Any, Any]


def _frame(
    index_ms: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0},
        index=pd.to_datetime(index_ms, unit="ms"),
    )


def build_floor(frame: pd.DataFrame) -> Run:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(Floor)
    return cerebro, lambda strategy: (0, 0)


def build_bare(frame: pd.DataFrame, signals: BareSignals) -> Run:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.broker.setcash(START_CASH)
    cerebro.broker.setcommission(commission=COMMISSION)
    desk = Desk(Exchange(), RiskSettings(), MODEL)
    cerebro.addstrategy(BareStrategy, desk=desk, signals=signals)
    return cerebro, lambda strategy: (strategy.closed_trades, len(desk.orders))


def build_ours(plan: Any, clock: pd.DataFrame) -> Run:
    """``run_backtest``'s cerebro on a plan computed beforehand: the bar's four ticks and every
    actionable signal through the desk's paper exchange and rules, the equity recorded each bar."""
    desk = Desk(Exchange(ExchangeSettings()), RiskSettings(), MODEL, ())
    equity = np.empty(len(clock))
    exposed = np.zeros(len(clock), dtype=bool)

    def on_point(strategy: MLSignalStrategy) -> None:
        i = len(strategy.data) - 1
        ex = desk.exchange
        equity[i] = ex.equity()
        exposed[i] = bool(ex.open) and any(ex.open.values())

    desk.on_point = on_point
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(BarEventFeed(dataname=clock, plan=plan))
    cerebro.addstrategy(MLSignalStrategy, desk=desk)

    def counts(strategy: Any) -> tuple[int, int]:
        books = desk.exchange.books.values()
        return sum(1 for b in books if b.order.action == "BUY" and b.status == "CLOSED"), len(desk.orders)

    return cerebro, counts


def timed(run: Run) -> tuple[float, int, int]:
    """Collect garbage, then time ``cerebro.run()`` alone; return (seconds, closed trades, orders)."""
    cerebro, counts = run
    gc.collect()
    started = time.perf_counter()
    (strategy,) = cerebro.run()
    seconds = time.perf_counter() - started
    return (seconds, *counts(strategy))


def train_model() -> Any:
    """Fit the random forest once, on simulator bars other than the backtest's."""
    train = bars_from_simulator(SYMBOL, 5_000, seed=1)
    X, y, _ = make_dataset(train, HORIZON)
    return fit_predictor(MODEL, X.to_numpy(), y, HORIZON)


RUNS = ("fast", "floor_bars", "ours", "bare_close", "bare_ticks", "floor_ticks")


def build_fast(plan: Any, clock: pd.DataFrame) -> Callable[[], tuple[float, int, int, float]]:
    """The fast engine on a plan computed beforehand: (seconds, closed trades, orders, final equity)."""

    def run() -> tuple[float, int, int, float]:
        gc.collect()
        started = time.perf_counter()
        desk, equity, _ = simulate(plan, clock, engine="fast", risk=RiskSettings(), exchange=ExchangeSettings())
        seconds = time.perf_counter() - started
        books = desk.exchange.books.values()
        closed = sum(1 for b in books if b.order.action == "BUY" and b.status == "CLOSED")
        return seconds, closed, len(desk.orders), float(equity[-1])

    return run


def bench_backtest(n_bars: int, repeat: int, predictor: Any) -> list[dict[str, Any]]:
    bars = bars_from_simulator(SYMBOL, n_bars, seed=2)
    predictors = {(SYMBOL, MODEL): predictor}
    # The bare runs' signals, with the functions run_backtest uses, outside any timing.
    times, prices, X, levels = tick_features(bars, 60_000)
    code, conf, change = model_signals(predictor, X, BUY_PCT, SELL_PCT)
    del X
    close_signals = BareSignals(SYMBOL, times, prices, code, conf, change, levels, ticks=3)
    tick_signals = BareSignals(SYMBOL, times, prices, code, conf, change, levels, ticks=None)
    start = bars["start"].to_numpy()
    bar_frame = _frame(start, *(bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close")))
    flat = prices.reshape(-1)
    tick_frame = _frame(times.reshape(-1), flat, flat, flat, flat)
    reference = run_backtest(
        {SYMBOL: bars}, predictors, model=MODEL, buy_pct=BUY_PCT, sell_pct=SELL_PCT, engine="backtrader"
    )
    want = (reference.metrics["trades"], reference.metrics["orders"])
    runs = []
    for r in range(repeat):
        gc.collect()
        started = time.perf_counter()
        plan, clock = prepare({SYMBOL: bars}, predictors, model=MODEL, buy_pct=BUY_PCT, sell_pct=SELL_PCT)
        signals_s = time.perf_counter() - started
        fast = build_fast(plan, clock)
        if r == 0:
            fast()  # numba compiles (or loads its cache) on first use: not timed
        builders: dict[str, Callable[[], Run]] = {
            "floor_bars": functools.partial(build_floor, bar_frame),
            "ours": functools.partial(build_ours, plan, clock),
            "bare_close": functools.partial(build_bare, bar_frame, close_signals),
            "bare_ticks": functools.partial(build_bare, tick_frame, tick_signals),
            "floor_ticks": functools.partial(build_floor, tick_frame),
        }
        order = RUNS[r % len(RUNS) :] + RUNS[: r % len(RUNS)]  # each repeat starts with another run
        got: dict[str, tuple[float, ...]] = {}
        for name in order:
            got[name] = fast() if name == "fast" else timed(builders[name]())
        sec = {name: got[name][0] for name in RUNS}
        line: dict[str, Any] = {"bench": "backtest", "bars": n_bars, "round": r + 1, "order": list(order)}
        for name in RUNS:
            line[f"{name}_s"] = round(sec[name], 3)
            line[f"{name}_bars_per_s"] = round(n_bars / sec[name])
        line.update(
            {
                "signals_s": round(signals_s, 3),
                "ours_total_bars_per_s": round(n_bars / (signals_s + sec["ours"])),
                "fast_total_bars_per_s": round(n_bars / (signals_s + sec["fast"])),
                "fast_vs_ours_x": round(sec["ours"] / sec["fast"], 1),
                "fast_vs_bare_ticks_x": round(sec["bare_ticks"] / sec["fast"], 1),
                "ours_minus_floor_bars_s": round(sec["ours"] - sec["floor_bars"], 3),
                "ours_vs_bare_ticks_pct": round((sec["ours"] / sec["bare_ticks"] - 1) * 100, 1),
                "ours_vs_bare_close_pct": round((sec["ours"] / sec["bare_close"] - 1) * 100, 1),
            }
        )
        for name in ("fast", "ours", "bare_close", "bare_ticks"):
            line[f"{name}_trades"], line[f"{name}_orders"] = int(got[name][1]), int(got[name][2])
        errors = [
            f"the timed {name} run made {got[name][2]} orders, {got[name][1]} trades; run_backtest on backtrader "
            f"made {want[1]}, {want[0]}"
            for name in ("fast", "ours")
            if (got[name][1], got[name][2]) != want
        ]
        if got["fast"][3] != reference.metrics["final_equity"]:
            errors.append(
                f"the fast run ended at {got['fast'][3]!r}, backtrader at {reference.metrics['final_equity']!r}"
            )
        if errors:
            line["error"] = "; ".join(errors)
        print(json.dumps(line), flush=True)
        runs.append(line)
    summary: dict[str, Any] = {"bench": "backtest", "summary": True, "stat": "median", "bars": n_bars, "repeat": repeat}
    for key, value in runs[0].items():
        if key not in summary and key not in ("round", "order", "error") and isinstance(value, (int, float)):
            summary[key] = round(statistics.median(r[key] for r in runs), 3)
    print(json.dumps(summary), flush=True)
    return runs


def bench_year(predictor: Any, engines: tuple[str, ...] = ("fast",)) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    bars = bars_from_simulator(SYMBOL, YEAR_BARS, seed=3)
    simulate_s = time.perf_counter() - t0
    # numba compiles (or loads its cache) on first use: warm it on a few bars, untimed
    run_backtest(
        {SYMBOL: bars.iloc[:500]}, {(SYMBOL, MODEL): predictor}, model=MODEL, buy_pct=BUY_PCT, sell_pct=SELL_PCT
    )
    lines = []
    for engine in engines:
        gc.collect()
        started = time.perf_counter()
        result = run_backtest(
            {SYMBOL: bars},
            {(SYMBOL, MODEL): predictor},
            model=MODEL,
            buy_pct=BUY_PCT,
            sell_pct=SELL_PCT,
            engine=engine,  # type: ignore[arg-type]
        )
        seconds = time.perf_counter() - started
        line = {
            "bench": "backtest",
            "year": True,
            "engine": engine,
            "bars": YEAR_BARS,
            "seconds": round(seconds, 2),
            "target_s": YEAR_TARGET_S,
            "within_target": seconds <= YEAR_TARGET_S,
            "signals_s": result.timings["signals"],
            f"{engine}_s": result.timings[engine],
            "trades": result.metrics["trades"],
            "orders": result.metrics["orders"],
            "final_equity": round(result.metrics["final_equity"], 2),
            "simulate_s": round(simulate_s, 2),
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    return lines


# --------------------------------------------------------------------------- bus helpers


def symbols_for(n: int, salt: str) -> list[str]:
    """``n`` distinct symbols of this run (letters only, then USDT)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    base = "".join(letters[int(c, 16) % 26] for c in salt[:3])
    return [f"{base}{letters[i // 26]}{letters[i % 26]}USDT" for i in range(n)]


def tick(symbol: str, ts: int, price: float) -> bytes:
    return encode(
        MarketData(
            symbol=symbol,
            timestamp=ts,
            price=price,
            open=price,
            high=price * 1.02,
            low=price * 0.98,
            volume=1e6,
            price_change_pct=0.1,
            tick_volume=1.0,
        )
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def warm_up(
    runner: StageRunner,
    producer: Any,
    symbols: list[str],
    price: dict[str, float],
    extra: threading.Event | None = None,
    timeout: float = 120.0,
) -> None:
    """Publish ticks until the stage has processed some (it joined and found the topics' ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ts = now_ms()
        for s in symbols:
            producer.produce(MARKET_DATA, tick(s, ts, price[s]), key=s.encode())
        producer.flush(30)
        time.sleep(0.2)
        if runner.health.snapshot().processed > 0 and (extra is None or extra.is_set()):
            time.sleep(1.0)  # let the partitions of the other inputs find their ends too
            return
    raise SystemExit(f"{runner.name} did not start processing: {runner.health.snapshot()}")


# --------------------------------------------------------------------------- 2. virtual exchange


def _bus_run(backend: str, folder: Path, n_symbols: int) -> tuple[str, str, list[str], dict[str, float], Any]:
    """A run's own salt, paper account, symbols with their starting prices, and bus with the topics."""
    folder.mkdir(parents=True, exist_ok=True)
    salt = uuid.uuid4().hex[:8]
    symbols = symbols_for(n_symbols, salt)
    bus = make_bus(backend, str(folder), run=salt)
    bus.create_topics(CATALOG.values())
    return salt, f"bench-{salt}", symbols, {s: 100.0 + 10 * i for i, s in enumerate(symbols)}, bus


def bench_exchange(backend: str, n_orders: int, folder: Path, n_symbols: int = 4) -> dict[str, Any]:
    salt, account, symbols, price, bus = _bus_run(backend, folder, n_symbols)
    db = Database(folder / "desk.db")

    class Stage(VirtualExchangeStage):
        name: ClassVar[str] = f"virtual-exchange-bench-{salt}"

    stage = Stage(bus, db, ExchangeSettings(starting_balance=1e12), account=account)
    runner = StageRunner(stage, bus)
    producer = bus.producer()
    runner.start()
    warm_up(runner, producer, symbols, price)

    base = now_ms()
    orders = []
    for i in range(n_orders):
        s = symbols[i % n_symbols]
        p = price[s]
        order = Order(
            order_id=f"ORD-BENCH-{salt}-{i:07d}-B",
            symbol=s,
            timestamp=base,
            action="BUY",
            order_type="MARKET",
            quantity=1.0,
            price=p,
            total_value=p,
            status="PENDING",
            strategy="bench",
            trigger_signal=TriggerSignal(model=MODEL, confidence=0.9, expected_change_pct=1.0),
            risk_management=RiskManagement(
                stop_loss=p * 0.98, take_profit=p * 1.05, stop_loss_pct=-2.0, take_profit_pct=5.0
            ),
            metadata={"account": account, "created_by": "bench"},
        )
        orders.append((order.key(), encode(order)))
    produced0 = runner.health.snapshot().produced
    last_ts = base

    def ticks() -> None:
        nonlocal last_ts
        last_ts = max(now_ms(), last_ts + 1)
        for s in symbols:
            producer.produce(MARKET_DATA, tick(s, last_ts, price[s]), key=s.encode())

    t0 = time.perf_counter()
    for i, (key, value) in enumerate(orders):
        producer.produce(ORDERS, value, key=key)
        if i % 500 == 499:
            ticks()
    ticks()
    producer.flush(120)
    deadline = time.monotonic() + max(120.0, n_orders / 100)
    done = 0
    while time.monotonic() < deadline:
        done = runner.health.snapshot().produced - produced0
        if done >= n_orders:
            break
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    runner.stop()
    health = runner.health.snapshot()
    books = [b for b in stage.exchange.books.values() if b.order.metadata.get("account") == account]
    fills = sum(1 for b in books if b.status == "FILLED")
    cancelled = sum(1 for b in books if b.status == "CANCELLED")
    producer.close()
    db.close()
    bus.close()
    line = {
        "bench": "virtual_exchange",
        "backend": backend,
        "orders": n_orders,
        "symbols": n_symbols,
        "seconds": round(elapsed, 3),
        "orders_per_s": round(done / elapsed, 1),
        "fills": fills,
        "cancelled": cancelled,
        "rejected": stage.rejected,
        "dead_lettered": health.dead_lettered,
    }
    if done < n_orders:
        line["error"] = f"only {done} of {n_orders} statuses produced"
    print(json.dumps(line), flush=True)
    return line


# --------------------------------------------------------------------------- 3. decision latency


class _Orders(threading.Thread):
    """Reads crypto.orders and records when each (symbol, timestamp) of this run's orders arrived."""

    def __init__(self, bus: Any, group: str, symbols: set[str]) -> None:
        super().__init__(daemon=True)
        self.consumer = bus.consumer(group, [ORDERS], auto_offset_reset="latest")
        self.symbols = {s.encode() for s in symbols}
        self.seen: dict[tuple[bytes, int], float] = {}
        self.stop = threading.Event()
        self.assigned = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            records = self.consumer.poll(5000, 0.1)
            if not self.assigned.is_set() and self.consumer.assignment():
                self.assigned.set()
            now = time.time() * 1000
            for r in records:
                parts = (r.key or b"").split(b"-")  # ORD-<yyyymmdd>-<symbol>-<ts>-B|S
                pending = len(parts) == 5 and parts[2] in self.symbols
                if pending and orjson.loads(r.value or b"{}").get("status") == "PENDING":
                    self.seen.setdefault((parts[2], int(parts[3])), now)
        self.consumer.close()


def bench_decision(backend: str, n_signals: int, rate: float, folder: Path, n_symbols: int = 4) -> dict[str, Any]:
    salt, account, symbols, price, bus = _bus_run(backend, folder, n_symbols)

    class Stage(DecisionStage):
        name: ClassVar[str] = f"decision-bench-{salt}"

    stage = Stage(bus, model=MODEL, account=account)
    runner = StageRunner(stage, bus)
    reader = _Orders(bus, f"bench-orders-{salt}", set(symbols))
    producer = bus.producer()
    runner.start()
    reader.start()
    warm_up(runner, producer, symbols, price, extra=reader.assigned)

    sent: dict[tuple[bytes, int], float] = {}
    last = dict.fromkeys(symbols, 0)
    side = dict.fromkeys(symbols, 0)
    t0 = time.monotonic()
    for i in range(n_signals):
        due = t0 + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        s = symbols[i % n_symbols]
        ts = last[s] = max(now_ms(), last[s] + 1)
        p = price[s] * (1 + 0.001 * np.sin(i / 7))
        signal: Signal = "BUY" if side[s] % 2 == 0 else "SELL"
        side[s] += 1
        change = 1.0 if signal == "BUY" else -1.0
        message = MLSignal(
            symbol=s,
            timestamp=ts,
            model=MODEL,
            prediction_type="price",
            predicted_value=p * (1 + change / 100),
            current_price=p,
            expected_change_pct=change,
            confidence=0.9,
            signal=signal,
            features={"ma_7": p, "ma_25": p, "rsi_14": 50.0},
            metadata={"bench": salt},
        )
        value = encode(message)
        producer.produce(MARKET_DATA, tick(s, ts, p), key=s.encode())
        sent[(s.encode(), ts)] = time.time() * 1000
        producer.produce(ML_SIGNALS, value, key=s.encode())
    producer.flush(60)
    offered_s = time.monotonic() - t0
    # Wait until orders stop coming (at most 30 s after the last signal).
    deadline = time.monotonic() + 30
    count, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(reader.seen)
        if n != count:
            count, quiet_since = n, time.monotonic()
        elif time.monotonic() - quiet_since > 2.0:
            break
        time.sleep(0.05)
    reader.stop.set()
    reader.join(5)
    runner.stop()
    health = runner.health.snapshot()
    latencies = sorted(seen - sent[k] for k, seen in reader.seen.items() if k in sent)
    q = np.percentile(latencies, [50, 99]) if latencies else [float("nan")] * 2
    producer.close()
    bus.close()
    line = {
        "bench": "decision_latency",
        "backend": backend,
        "signals": n_signals,
        "symbols": n_symbols,
        "rate_per_s": rate,
        "offered_s": round(offered_s, 2),
        "orders": len(latencies),
        "latency_ms_p50": round(float(q[0]), 2),
        "latency_ms_p99": round(float(q[1]), 2),
        "latency_ms_max": round(latencies[-1], 2) if latencies else None,
        "skipped": dict(stage.skipped),
        "dead_lettered": health.dead_lettered,
    }
    print(json.dumps(line), flush=True)
    return line


# --------------------------------------------------------------------------- main

PARTS = ("backtest", "exchange", "decision")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=50_000, help="bars of each side-by-side backtest")
    parser.add_argument("--repeat", type=int, default=3, help="side-by-side backtest repeats")
    parser.add_argument(
        "--backend", choices=("embedded", "kafka"), default="embedded", help="kafka needs KAFKA_BOOTSTRAP_SERVERS"
    )
    parser.add_argument("--orders", type=int, default=20_000, help="orders through the virtual exchange")
    parser.add_argument("--signals", type=int, default=2_000, help="signals offered to the decision stage")
    parser.add_argument("--rate", type=float, default=200.0, help="signals per second offered")
    parser.add_argument("--year", action="store_true", help=f"also backtest {YEAR_BARS:,} bars once (wall time)")
    parser.add_argument("--year-backtrader", action="store_true", help="with --year: the year on backtrader too")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args(argv)
    if "backtest" in args.parts or args.year:
        predictor = train_model()
        if "backtest" in args.parts:
            bench_backtest(args.bars, args.repeat, predictor)
        if args.year:
            bench_year(predictor, ("fast", "backtrader") if args.year_backtrader else ("fast",))
    if "exchange" in args.parts or "decision" in args.parts:
        tune_gc()  # as build_runtime does for the app's stages
        with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
            os.environ["DATA_DIR"] = tmp  # nothing of this run lands in the desk's own data folder
            if "exchange" in args.parts:
                bench_exchange(args.backend, args.orders, Path(tmp) / "exchange")
            if "decision" in args.parts:
                bench_decision(args.backend, args.signals, args.rate, Path(tmp) / "decision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
