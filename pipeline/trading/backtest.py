"""Backtests: ``MLSignalStrategy`` on history, with the live path's ticks, signals and exchange.

Each candle becomes the four ticks the replay source makes of it (``candle_prices``/``candle_times``).
At each tick the models see what the ml stage would give them: the features of the bar being
formed as if it closed at the tick's price, over closed bars (``FeatureState``), predicted in one
batch per model. Backtrader steps through the bars (``BarEventFeed``) and the strategy hands each
bar's ticks to a virtual ``Exchange`` and each actionable signal group to its rules, so a backtest
makes the orders the live decision stage makes on a replay of the same candles.

Metrics (``pipeline.trading.metrics``) are computed on the equity at every bar's close and compared
with buy-and-hold of the same symbols (an equal split at the first bar's open, one fee in).

The module is about 450 lines: the tick plan, both engines' entry points (backtrader and
``fast_engine``) and the result they share belong together, and split apart each part would
reach into the others' private pieces.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.candles import candle_spans
from pipeline.errors import PipelineError
from pipeline.messages import Order
from pipeline.ml.batch import tick_features as batch_features
from pipeline.trading import fast_engine
from pipeline.trading.exchange import Book, Exchange, ExchangeSettings
from pipeline.trading.metrics import buy_and_hold_curve, curve_metrics, exposure_pct, merge_reasons, trade_metrics
from pipeline.trading.risk import MEDIUM_CONFIDENCE, RiskSettings
from pipeline.trading.strategy import (
    SIGNALS,
    TICK,
    BarEventFeed,
    Desk,
    Event,
    MLSignalStrategy,
    ModelSignal,
    SignalGroup,
    bt,
)

SIGNAL_CODES = ("HOLD", "BUY", "SELL")
Engine = Literal["fast", "backtrader"]
ENGINES: tuple[str, ...] = ("fast", "backtrader")
PREDICT_BATCH = 262_144  # rows per predict call: large enough to amortise it, small enough for the SVM's kernel
Progress = Callable[[float, str], None]


class BacktestError(PipelineError):
    """A backtest that cannot run (no bars, no model, bad settings); the message says why."""


@dataclass
class _SymbolTicks:
    """One symbol's ticks (bars x 4) and the signals of each decision model at each."""

    symbol: str
    starts: np.ndarray
    times: np.ndarray
    prices: np.ndarray
    signals: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # model -> (code, confidence, change %)
    levels: np.ndarray  # (bars, 4, 3): ma_7, ma_25, rsi_14
    act: np.ndarray  # (bars, 4): the trading model's signal can act


def tick_features(bars: pd.DataFrame, interval_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (times, prices, X, levels) of a symbol's bars: four ticks a bar, the model inputs at each
    tick (NaN rows before warm-up) and ma_7/ma_25/rsi_14 there, as ``FeatureState`` gives them
    (computed for the whole history at once by ``pipeline.ml.batch.tick_features``)."""
    start = bars["start"].to_numpy(dtype=np.int64)
    o, h, lo, c, v = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume"))
    span = candle_spans(start, interval_ms) if len(start) else start
    up = (c >= o)[:, None]
    # candle_prices and candle_times for every candle at once
    prices = np.where(up, np.stack([o, lo, h, c], axis=1), np.stack([o, h, lo, c], axis=1))
    times = np.stack([start, start + span // 4, start + span // 2, start + span - 1], axis=1)
    X, levels = batch_features(c, h, lo, v, prices)
    return times, prices, X, levels


def model_signals(
    predictor: Any, X: np.ndarray, buy_pct: float, sell_pct: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code, confidence, expected change %) per tick, as the ml stage maps a prediction; code 0 is
    HOLD (also before warm-up), 1 BUY, 2 SELL."""
    shape = X.shape[:2]
    flat = X.reshape(-1, X.shape[-1])
    ok = ~np.isnan(flat).any(axis=1)
    code = np.zeros(len(flat), dtype=np.int8)
    confidence = np.zeros(len(flat))
    change = np.zeros(len(flat))
    rows = np.flatnonzero(ok)
    for first in range(0, len(rows), PREDICT_BATCH):
        at = rows[first : first + PREDICT_BATCH]
        expected, conf = predictor.predict(flat[at])
        ch = np.expm1(expected) * 100.0
        change[at], confidence[at] = ch, np.clip(conf, 0.0, 1.0)
        code[at] = np.where(ch > buy_pct, 1, np.where(ch < sell_pct, 2, 0))
    return code.reshape(shape), confidence.reshape(shape), change.reshape(shape)


class TickPlan:
    """The events of each backtest bar (slot): every symbol's ticks of that bar in time order, each
    followed by its signal group when the trading model's signal can act."""

    def __init__(
        self, symbols: list[_SymbolTicks], slots: np.ndarray, model: str, confirm_models: Sequence[str]
    ) -> None:
        self.symbols = symbols
        self.slots = slots
        self.model = model
        self.confirm = [m for m in confirm_models if m != model]
        # per slot, the bar index of each symbol (-1: no bar then)
        self.index = [np.searchsorted(s.starts, slots) for s in symbols]
        for k, s in enumerate(symbols):
            hit = self.index[k] < len(s.starts)
            hit[hit] = s.starts[self.index[k][hit]] == slots[hit]
            self.index[k] = np.where(hit, self.index[k], -1)
        self._single = len(symbols) == 1 and bool((self.index[0] >= 0).all())

    def events(self, slot: int) -> Iterator[Event]:
        if self._single:
            yield from self._ticks(self.symbols[0], slot)
            return
        present = [(s, int(ix[slot])) for s, ix in zip(self.symbols, self.index) if ix[slot] >= 0]
        for k in range(4):
            for s, j in sorted(present, key=lambda p: p[0].times[p[1], k]):
                yield from self._tick(s, j, k)

    def _ticks(self, s: _SymbolTicks, j: int) -> Iterator[Event]:
        for k in range(4):
            yield from self._tick(s, j, k)

    def _tick(self, s: _SymbolTicks, j: int, k: int) -> Iterator[Event]:
        ts, price = int(s.times[j, k]), float(s.prices[j, k])
        yield (TICK, s.symbol, ts, price)
        if s.act[j, k]:
            yield (SIGNALS, self.group(s, j, k))

    def group(self, s: _SymbolTicks, j: int, k: int) -> SignalGroup:
        def one(model: str) -> ModelSignal:
            code, conf, change = s.signals[model]
            return ModelSignal(model, SIGNAL_CODES[code[j, k]], float(conf[j, k]), float(change[j, k]))

        ma7, ma25, rsi = s.levels[j, k].tolist()
        return SignalGroup(
            s.symbol,
            int(s.times[j, k]),
            float(s.prices[j, k]),
            one(self.model),
            tuple(one(m) for m in self.confirm),
            {"ma_7": ma7, "ma_25": ma25, "rsi_14": rsi},
        )


@dataclass
class BacktestResult:
    """What a backtest made: metrics next to buy-and-hold, trades, orders, the equity curve."""

    symbols: list[str]
    model: str
    metrics: dict[str, Any]
    buy_and_hold: dict[str, Any]
    trades: list[dict[str, Any]]
    orders: list[Order]
    statuses: list[Order]
    equity: pd.DataFrame  # start, equity, buy_and_hold, drawdown_pct
    skipped: dict[str, int]
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The metrics and every trade as one JSON-ready object (the CLI's ``--json``)."""
        return {
            "symbols": self.symbols,
            "model": self.model,
            "settings": self.settings,
            "metrics": self.metrics,
            "buy_and_hold": self.buy_and_hold,
            "trades": self.trades,
            "skipped": self.skipped,
            "orders": len(self.orders),
            "timings_s": self.timings,
        }


def prepare(
    bars: Mapping[str, pd.DataFrame],
    predictors: Mapping[tuple[str, str], Any],
    *,
    model: str,
    confirm_models: Sequence[str] = (),
    buy_pct: float = 1.5,
    sell_pct: float = -1.5,
    interval_ms: int = 60_000,
    medium_confidence: float = MEDIUM_CONFIDENCE,
) -> tuple[TickPlan, pd.DataFrame]:
    """Compute every tick's signals; return the plan and the clock frame backtrader steps through."""
    models = [model, *[m for m in confirm_models if m != model]]
    symbols: list[_SymbolTicks] = []
    for symbol, frame in bars.items():
        if frame.empty:
            raise BacktestError(f"{symbol}: no bars to backtest")
        missing = [m for m in models if (symbol, m) not in predictors]
        if missing:
            raise BacktestError(f"{symbol}: no {', '.join(missing)} model; train one first")
        times, prices, X, levels = tick_features(frame, interval_ms)
        signals = {m: model_signals(predictors[(symbol, m)], X, buy_pct, sell_pct) for m in models}
        code, conf, _ = signals[model]
        act = (code != 0) & (conf >= medium_confidence)
        symbols.append(
            _SymbolTicks(symbol, frame["start"].to_numpy(dtype=np.int64), times, prices, signals, levels, act)
        )
    every = np.sort(np.concatenate([s.starts for s in symbols]))  # np.unique hashes: 10x slower here
    slots = every[np.concatenate([[True], every[1:] != every[:-1]])]
    first = next(iter(bars.values())).set_index("start").reindex(slots).ffill().bfill()
    clock = pd.DataFrame(
        {k: first[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume")},
        index=pd.to_datetime(slots, unit="ms"),
    )
    return TickPlan(symbols, slots, model, confirm_models), clock


def run_backtest(
    bars: Mapping[str, pd.DataFrame],
    predictors: Mapping[tuple[str, str], Any],
    *,
    model: str = "random_forest",
    confirm_models: Sequence[str] = (),
    risk: RiskSettings | None = None,
    exchange: ExchangeSettings | None = None,
    buy_pct: float = 1.5,
    sell_pct: float = -1.5,
    interval_ms: int = 60_000,
    progress: Progress | None = None,
    engine: Engine = "fast",
) -> BacktestResult:
    """Backtest ``MLSignalStrategy`` on ``bars`` (symbol -> start, open, high, low, close, volume) with
    ``predictors`` ((symbol, model) -> Predictor), on the fast engine or on backtrader."""
    if engine not in ENGINES:
        raise BacktestError(f"engine={engine!r}: use {' or '.join(ENGINES)}")
    risk = risk or RiskSettings()
    exchange_settings = exchange or ExchangeSettings()
    started = time.perf_counter()
    if progress:
        progress(0.0, "computing the models' signals at every tick")
    plan, clock = prepare(
        bars,
        predictors,
        model=model,
        confirm_models=confirm_models,
        buy_pct=buy_pct,
        sell_pct=sell_pct,
        interval_ms=interval_ms,
        medium_confidence=risk.medium_confidence,
    )
    signals_s = time.perf_counter() - started
    run_started = time.perf_counter()
    desk, equity, exposed = simulate(
        plan, clock, engine=engine, risk=risk, exchange=exchange_settings, progress=progress
    )
    run_s = time.perf_counter() - run_started
    if progress:
        progress(1.0, "done")
    result = _result(plan, clock, desk, equity, exposed, bars, exchange_settings, interval_ms)
    result.settings = {
        "model": model,
        "confirm_models": list(confirm_models),
        "risk": vars(risk),
        "exchange": vars(exchange_settings),
        "buy_pct": buy_pct,
        "sell_pct": sell_pct,
        "interval_ms": interval_ms,
        "engine": engine,
    }
    result.timings = {
        "signals": round(signals_s, 3),
        engine: round(run_s, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    return result


def simulate(
    plan: TickPlan,
    clock: pd.DataFrame,
    *,
    engine: Engine,
    risk: RiskSettings,
    exchange: ExchangeSettings,
    progress: Progress | None = None,
) -> tuple[Desk, np.ndarray, np.ndarray]:
    """Run the strategy over ``plan`` on ``engine``; return the desk as the run left it and the
    equity and exposure at every slot's end."""
    if engine == "fast":
        return _run_fast(plan, risk, exchange, progress)
    n = len(clock)
    equity = np.empty(n)
    exposed = np.zeros(n, dtype=bool)
    step = max(1, n // 100)
    desk = Desk(Exchange(exchange), risk, plan.model, tuple(plan.confirm))

    def on_point(strategy: MLSignalStrategy) -> None:
        i = len(strategy.data) - 1
        ex = desk.exchange
        equity[i] = ex.equity()
        exposed[i] = bool(ex.open) and any(ex.open.values())
        if progress and i % step == 0:
            progress(i / n, f"bar {i:,} of {n:,}")

    desk.on_point = on_point
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(BarEventFeed(dataname=clock, plan=plan))
    cerebro.addstrategy(MLSignalStrategy, desk=desk)
    cerebro.run()
    return desk, equity, exposed


def plan_events(plan: TickPlan) -> tuple[fast_engine.Events, np.ndarray]:
    """The plan's ticks in run order (``fast_engine.events_of``) and, for each, its row in the
    symbols' per-tick arrays laid end to end (``_flat``)."""
    events = fast_engine.events_of([(s.starts, s.times, s.prices) for s in plan.symbols], plan.slots)
    offsets = np.concatenate([[0], np.cumsum([4 * len(s.starts) for s in plan.symbols])])
    return events, offsets[events.symbol] + events.bar * 4 + events.tick


def _flat(plan: TickPlan, values: Callable[[_SymbolTicks], np.ndarray], width: int = 0) -> np.ndarray:
    parts = [values(s).reshape(-1, width) if width else values(s).reshape(-1) for s in plan.symbols]
    return np.concatenate(parts)


def _run_fast(
    plan: TickPlan, risk: RiskSettings, exchange: ExchangeSettings, progress: Progress | None
) -> tuple[Desk, np.ndarray, np.ndarray]:
    events, rows = plan_events(plan)

    def model_arrays(model: str) -> tuple[np.ndarray, np.ndarray]:
        return _flat(plan, lambda s: s.signals[model][0])[rows], _flat(plan, lambda s: s.signals[model][1])[rows]

    side, high, confirm = fast_engine.decisions(
        model_arrays(plan.model),
        [model_arrays(m) for m in plan.confirm],
        _flat(plan, lambda s: s.levels, 3)[rows],
        risk,
    )
    run = fast_engine.run_arrays(
        events, side, high, confirm, len(plan.symbols), fast_engine.settings_vector(risk, exchange), progress
    )

    def signal_at(e: int) -> ModelSignal:
        s = plan.symbols[int(events.symbol[e])]
        j, k = int(events.bar[e]), int(events.tick[e])
        code, conf, change = s.signals[plan.model]
        return ModelSignal(plan.model, SIGNAL_CODES[code[j, k]], float(conf[j, k]), float(change[j, k]))

    desk = fast_engine.to_desk(
        run,
        events,
        [s.symbol for s in plan.symbols],
        signal_at,
        plan.confirm,
        model=plan.model,
        risk=risk,
        exchange=exchange,
    )
    return desk, run.equity, run.exposed


def _result(
    plan: TickPlan,
    clock: pd.DataFrame,
    desk: Desk,
    equity: np.ndarray,
    exposed: np.ndarray,
    bars: Mapping[str, pd.DataFrame],
    settings: ExchangeSettings,
    interval_ms: int,
) -> BacktestResult:
    ex = desk.exchange
    starts = plan.slots
    start_balance = settings.starting_balance
    hold = buy_and_hold_curve(bars, starts, start_balance, settings.fee_bps)
    trades = [_trade(b, ex) for b in ex.books.values() if b.order.action == "BUY" and b.status in ("FILLED", "CLOSED")]
    trades.sort(key=lambda t: t["entry_time"])
    closed = [t for t in trades if t["exit_reason"] != "open"]
    metrics = curve_metrics(equity, starts, start_balance, interval_ms)
    by_trade = trade_metrics(t["pnl"] for t in closed)
    metrics.update(
        {
            **by_trade,
            "why_none": merge_reasons(metrics, by_trade),
            "open_trades": len(trades) - len(closed),
            "exposure_pct": exposure_pct(exposed),
            "fees_paid": ex.fees_paid,
            "final_equity": float(equity[-1]) if len(equity) else start_balance,
            "orders": len(desk.orders),
            "cancelled": sum(1 for b in ex.books.values() if b.status == "CANCELLED"),
        }
    )
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    curve = pd.DataFrame(
        {
            "start": starts,
            "equity": equity,
            "buy_and_hold": hold,
            "drawdown_pct": (equity / peak - 1.0) * 100.0 if len(equity) else equity,
        }
    )
    skipped = Counter(desk.skipped)
    for s in plan.symbols:
        code, conf, _ = s.signals[plan.model]
        ready = ~np.isnan(s.levels[..., 0])
        skipped["hold"] += int(((code == 0) & ready).sum())
        skipped["low confidence"] += int(((code != 0) & (conf < desk.risk.medium_confidence)).sum())
    return BacktestResult(
        symbols=[s.symbol for s in plan.symbols],
        model=plan.model,
        metrics=metrics,
        buy_and_hold=curve_metrics(hold, starts, start_balance, interval_ms),
        trades=trades,
        orders=list(desk.orders),
        statuses=list(desk.statuses),
        equity=curve,
        skipped=dict(skipped),
        settings={},
    )


def _trade(book: Book, ex: Exchange) -> dict[str, Any]:
    is_open = book.status == "FILLED"
    price = ex.price(book.symbol) or book.fill_price
    exit_price = price if is_open else book.exit_price
    pnl = book.unrealized(price) if is_open else book.pnl
    cost = book.quantity * book.fill_price + book.fill_fee
    return {
        "order_id": book.order_id,
        "symbol": book.symbol,
        "entry_time": book.filled_at,
        "entry_price": book.fill_price,
        "exit_time": None if is_open else book.closed_at,
        "exit_price": exit_price,
        "quantity": book.quantity,
        "fees": book.fill_fee + book.exit_fee,
        "pnl": pnl,
        "pnl_pct": pnl / cost * 100.0 if cost else 0.0,
        "exit_reason": "open" if is_open else book.exit_reason,
        "model": book.order.trigger_signal.model,
        "confidence": book.order.trigger_signal.confidence,
    }
