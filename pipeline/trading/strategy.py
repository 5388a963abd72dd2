"""Seed 001's ML signal strategy on backtrader, the same class live and in backtests.

Backtrader is the clock: each point of the strategy's data feed carries the market events of that
moment, in order: ticks (which the exchange fills and triggers on) and groups of signals (one per
model, made at a tick). Live, the feed is ``LiveEventFeed``, filled from the bus by the decision
stage, one point per signal group; in a backtest it is ``BarEventFeed``, one point per bar, whose
events are the four ticks a replay makes of the candle and the signals the models give at each.
Either way ``MLSignalStrategy.on_signals`` decides with the same risk code (``pipeline.trading.risk``)
on the same kind of portfolio (``pipeline.trading.exchange.Exchange``): the live replica of the
virtual exchange, or the backtest's own.

The rules: a signal of the trading model acts at high confidence, at medium confidence only when
another model agrees at medium or better at the same tick or the moving averages and RSI agree
(``indicator_confirms``), and never at low confidence (seed 001's levels, 0.8 and 0.6, unless the
risk settings name others). A BUY opens a long with seed 001's stop-loss
and take-profit when the symbol has no position and no pending order, sized by the risk settings; a
SELL closes the symbol's position. Orders are MARKET orders filled at the next tick.
"""

from __future__ import annotations

import collections
import collections.abc
import queue
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

if not hasattr(collections, "Iterable"):  # backtrader 1.9.78 still imports it from collections
    collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]

import backtrader as bt

from pipeline.messages import Order, RiskManagement, Side, TriggerSignal
from pipeline.trading.book import DEFAULT_ACCOUNT
from pipeline.trading.exchange import Exchange
from pipeline.trading.risk import (
    RiskSettings,
    actionable,
    brackets,
    confidence_level,
    indicator_confirms,
    size_entry,
)

STRATEGY_NAME = "ml_signal_strategy"

TICK, SIGNALS = 0, 1


@dataclass(frozen=True, slots=True)
class ModelSignal:
    model: str
    signal: str
    confidence: float
    expected_change_pct: float


@dataclass(frozen=True, slots=True)
class SignalGroup:
    """The signals the decision models gave at one tick of one symbol."""

    symbol: str
    timestamp: int
    price: float
    primary: ModelSignal
    others: tuple[ModelSignal, ...] = ()
    features: dict[str, float | None] = field(default_factory=dict)


# An event: (TICK, symbol, timestamp, price) or (SIGNALS, group).
Event = tuple[Any, ...]


@dataclass
class Desk:
    """What the strategy trades on and reports to. ``orders`` collects the orders it makes (the
    caller publishes them), ``statuses`` the exchange's status messages, ``skipped`` why signals
    made no order."""

    exchange: Exchange
    risk: RiskSettings
    model: str
    confirm_models: tuple[str, ...] = ()
    strategy: str = STRATEGY_NAME
    account: str = DEFAULT_ACCOUNT
    orders: list[Order] = field(default_factory=list)
    statuses: list[Order] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    keep_statuses: bool = True
    on_point: Callable[[Any], None] | None = None


def ms_to_num(ms: int) -> float:
    """Backtrader's date number of an epoch time in milliseconds (UTC)."""
    return bt.date2num(datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None))


class MLSignalStrategy(bt.Strategy):
    """Feeds each point's events to the exchange and the decision rules; see the module docstring."""

    params = (("desk", None),)

    def __init__(self) -> None:
        self.desk: Desk = self.p.desk

    def next(self) -> None:
        desk = self.desk
        exchange = desk.exchange
        for event in self.data.events():
            if event[0] == TICK:
                statuses = exchange.on_tick(event[1], event[2], event[3])
                if statuses and desk.keep_statuses:
                    desk.statuses.extend(statuses)
            else:
                self.on_signals(event[1])
        if desk.on_point is not None:
            desk.on_point(self)

    # -- the portfolio, as this strategy sees it (the bare backtrader run overrides these) --------

    def equity(self) -> float:
        return self.desk.exchange.equity()

    def cash(self) -> float:
        return self.desk.exchange.available_cash()

    def exposure(self, symbol: str | None = None) -> float:
        return self.desk.exchange.exposure(symbol)

    def open_quantities(self, symbol: str) -> list[tuple[str, float]]:
        """(order id, quantity) of the symbol's open positions."""
        return [(b.order_id, b.quantity) for b in self.desk.exchange.positions(symbol)]

    def has_pending(self, symbol: str) -> bool:
        return self.desk.exchange.has_pending(symbol)

    def cost_rate(self) -> float:
        return self.desk.exchange.cost_rate

    def submit(self, order: Order) -> None:
        statuses = self.desk.exchange.submit(order)
        self.desk.orders.append(order)
        if statuses and self.desk.keep_statuses:
            self.desk.statuses.extend(statuses)

    # -- the rules ----------------------------------------------------------------------------

    def confirmation(self, group: SignalGroup) -> str | None:
        """What confirms a medium-confidence signal: another model's name, "indicator", or None."""
        p = group.primary
        for other in group.others:
            if other.signal == p.signal and other.confidence >= self.desk.risk.medium_confidence:
                return other.model
        return "indicator" if indicator_confirms(p.signal, group.features) else None

    def on_signals(self, group: SignalGroup) -> Order | None:
        """Decide on one tick's signals; return the order made, if any."""
        desk, p = self.desk, group.primary
        risk = desk.risk
        if not actionable(p.signal, p.confidence, risk.medium_confidence):
            desk.skipped["hold" if p.signal == "HOLD" else "low confidence"] += 1
            return None
        level = confidence_level(p.confidence, risk.high_confidence, risk.medium_confidence)
        confirmed_by = None
        if level == "medium":
            confirmed_by = self.confirmation(group)
            if confirmed_by is None:
                desk.skipped["medium confidence, not confirmed"] += 1
                return None
        symbol = group.symbol
        if self.has_pending(symbol):
            desk.skipped["an order is pending"] += 1
            return None
        held = self.open_quantities(symbol)
        if p.signal == "SELL":
            if not held:
                desk.skipped["SELL without a position (long only)"] += 1
                return None
            order_id, quantity = held[0]
            order = self._order(group, "SELL", quantity, level, confirmed_by, closes=order_id)
        else:
            if held:
                desk.skipped["already in a position"] += 1
                return None
            stop, take = brackets(group.price, desk.risk)
            size = size_entry(
                group.price,
                stop,
                equity=self.equity(),
                cash=self.cash(),
                symbol_exposure=self.exposure(symbol),
                total_exposure=self.exposure(),
                settings=desk.risk,
                cost_rate=self.cost_rate(),
            )
            if not size.quantity:
                desk.skipped[f"no size: {size.capped_by or 'sizing'}"] += 1
                return None
            order = self._order(
                group, "BUY", size.quantity, level, confirmed_by, stop=stop, take=take, capped_by=size.capped_by
            )
        self.submit(order)
        return order

    def _order(
        self,
        group: SignalGroup,
        action: Side,
        quantity: float,
        level: str,
        confirmed_by: str | None,
        *,
        closes: str | None = None,
        stop: float | None = None,
        take: float | None = None,
        capped_by: str | None = None,
    ) -> Order:
        desk = self.desk
        return make_order(
            group.symbol,
            group.timestamp,
            group.price,
            group.primary,
            action,
            quantity,
            level,
            confirmed_by,
            equity=self.equity(),
            risk=desk.risk,
            strategy=desk.strategy,
            account=desk.account,
            closes=closes,
            stop=stop,
            take=take,
            capped_by=capped_by,
        )


def make_order(
    symbol: str,
    timestamp: int,
    price: float,
    primary: ModelSignal,
    action: Side,
    quantity: float,
    level: str,
    confirmed_by: str | None,
    *,
    equity: float,
    risk: RiskSettings,
    strategy: str = STRATEGY_NAME,
    account: str = DEFAULT_ACCOUNT,
    created_by: str = "backtrader_engine",
    closes: str | None = None,
    stop: float | None = None,
    take: float | None = None,
    capped_by: str | None = None,
) -> Order:
    """The PENDING order the strategy makes of a decision (both backtest engines build theirs here)."""
    metadata: dict[str, Any] = {
        "portfolio_balance_usdt": round(equity, 8),
        "position_size_pct": quantity * price / equity * 100.0 if equity > 0 else 0.0,
        "created_by": created_by,
        "confidence_level": level,
        "confirmed_by": confirmed_by,
        "account": account,
    }
    if closes is not None:
        metadata.update(closes=closes, reason="signal")
        rm = RiskManagement()
    else:
        metadata["capped_by"] = capped_by
        if risk.trailing_stop_pct:
            metadata["trailing_stop_pct"] = risk.trailing_stop_pct
        rm = RiskManagement(
            stop_loss=stop,
            take_profit=take,
            stop_loss_pct=-risk.stop_loss_pct,
            take_profit_pct=risk.take_profit_pct,
        )
    return Order(
        order_id=order_id(symbol, timestamp, action),
        symbol=symbol,
        timestamp=timestamp,
        action=action,
        order_type="MARKET",
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status="PENDING",
        strategy=strategy,
        trigger_signal=TriggerSignal(
            model=primary.model, confidence=primary.confidence, expected_change_pct=primary.expected_change_pct
        ),
        risk_management=rm,
        metadata=metadata,
    )


def order_id(symbol: str, timestamp: int, action: str) -> str:
    """Seed 001's ``ORD-<date>-...`` id, made from what decided the order, so the same decision made
    again (a restart, a backtest of the same history) has the same id."""
    day = datetime.fromtimestamp(timestamp / 1000, UTC).strftime("%Y%m%d")
    return f"ORD-{day}-{symbol}-{timestamp}-{action[0]}"


# --------------------------------------------------------------------------- feeds


class LiveEventFeed(bt.feed.DataBase):
    """A live feed fed from another thread through ``queue``: ``put`` a list of events to make a
    point, a ``Barrier`` to learn when everything before it was handled, ``STOP`` to end the run."""

    params = (("queue", None), ("qcheck", 0.5))

    STOP = object()
    _events: Sequence[Event] = ()  # the current point's events; replaced, never changed in place

    def islive(self) -> bool:
        return True

    def events(self) -> Sequence[Event]:
        return self._events

    def _load(self) -> bool | None:
        q: queue.Queue[Any] = self.p.queue
        while True:
            try:
                item = q.get(timeout=self.p.qcheck)
            except queue.Empty:
                return None
            if item is self.STOP:
                return False
            if isinstance(item, Barrier):
                item.reached()  # the strategy has handled every point put before it
                continue
            self._events = item
            ts, price = _point_of(item)
            lines = self.lines
            lines.datetime[0] = ms_to_num(ts)
            lines.open[0] = lines.high[0] = lines.low[0] = lines.close[0] = price
            lines.volume[0] = 0.0
            lines.openinterest[0] = 0.0
            return True


def _point_of(events: list[Event]) -> tuple[int, float]:
    first = events[0]
    if first[0] == TICK:
        return first[2], first[3]
    group: SignalGroup = first[1]
    return group.timestamp, group.price


class Barrier:
    """Put on a ``LiveEventFeed``'s queue; ``wait`` returns once the strategy got past it."""

    def __init__(self) -> None:
        import threading

        self._done = threading.Event()

    def reached(self) -> None:
        self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class BarEventFeed(bt.feeds.PandasData):
    """A backtest's bars; ``plan`` gives each bar's events (see ``pipeline.trading.backtest``)."""

    params = (("plan", None),)

    def events(self) -> Iterator[Event]:
        return self.p.plan.events(len(self) - 1)
