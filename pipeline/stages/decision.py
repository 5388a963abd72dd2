"""decision: ``crypto.ml_signals`` + ``crypto.market_data`` (+ ``crypto.orders``) -> new orders on
``crypto.orders``, decided by the backtrader strategy running live.

A cerebro runs ``MLSignalStrategy`` on a ``LiveEventFeed`` on its own thread. This stage gathers
each symbol's signals of one tick into a group (complete once every decision model has spoken, or
when a later tick's signal comes), holds a group until market data of its symbol has reached the
group's time (a signal for a symbol without market data is never acted on blindly; one held longer
than ``hold_ms`` is dropped), then puts it on the feed and waits until the strategy
has handled it: the orders it made are this batch's outputs, flushed before the inputs are
committed.

The strategy sizes from a replica of the virtual exchange, fed the ticks the signals were made at
and the orders it makes, so it decides exactly as a backtest of the same history would. The replica
adopts the live exchange's status messages as they come, which corrects it when the two part
(ticks without signals, manual orders, a restart), and is rebuilt from ``crypto.orders`` on the
first batch.

A strategy that dies mid-batch restarts the stage from the last commit. What that commit already
covers but the strategy had not yet seen must survive: a signal held for its market data, a group
still forming, each symbol's market time, and the replica's last prices and kept ticks. The stage
notes them at the start of every batch (a copy of a few small dicts, O(symbols)) and a reset goes
back to that note, so the redelivered batch meets the state it met the first time; the orders come
from the topic. On the "low" Kafka profile a tick and its signal often come in different polls, so
this is what lets the stage run on it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipeline.bus.base import Bus, Latency, OffsetReset
from pipeline.messages import MarketData, Message, MLSignal, Order
from pipeline.runner import Stage
from pipeline.topics import MARKET_DATA, ML_SIGNALS, ORDERS
from pipeline.trading.book import DEFAULT_ACCOUNT, UPDATED_BY, ExchangeSettings, OrderRejected, account_of
from pipeline.trading.exchange import Exchange
from pipeline.trading.risk import RiskSettings
from pipeline.trading.strategy import (
    SIGNALS,
    TICK,
    Barrier,
    Desk,
    LiveEventFeed,
    MLSignalStrategy,
    ModelSignal,
    SignalGroup,
    bt,
)

log = logging.getLogger(__name__)


@dataclass
class _Forming:
    timestamp: int
    price: float
    signals: dict[str, MLSignal] = field(default_factory=dict)


@dataclass(frozen=True)
class _Noted:
    """What the stage held at the start of a batch, past the last commit: the state a restart from
    that commit must meet again. The replica's ticks are noted as each symbol's last tick time: its
    kept ticks only grow, so the ticks up to that time are the ones it had."""

    forming: dict[str, _Forming]
    held: dict[str, list[tuple[list[Any], float]]]
    market_ts: dict[str, int]
    last_tick: dict[str, int]


class DecisionStage(Stage):
    """Runs on its runner's thread; the strategy runs on the cerebro thread this stage starts."""

    name: ClassVar[str] = "decision"
    # A signal and its tick may come in different polls: a reset returns to the note taken at the
    # start of the failing batch (``_Noted``), so nothing the last commit covers is forgotten.
    latency: ClassVar[Latency] = "low"
    inputs: ClassVar[tuple[str, ...]] = (ML_SIGNALS, MARKET_DATA, ORDERS)
    offset_reset: ClassVar[OffsetReset] = "latest"
    isolates_failures: ClassVar[bool] = False  # its portfolio cannot take a batch twice

    def __init__(
        self,
        bus: Bus,
        *,
        model: str = "random_forest",
        confirm_models: tuple[str, ...] = (),
        risk: RiskSettings | None = None,
        exchange: ExchangeSettings | None = None,
        hold_ms: int = 120_000,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        self.bus = bus
        self.models = (model, *[m for m in confirm_models if m != model])
        self.desk = Desk(
            Exchange(exchange or ExchangeSettings()),
            risk or RiskSettings(),
            model,
            tuple(confirm_models),
            account=account,
            keep_statuses=False,
        )
        self.hold_ms = hold_ms
        self.forming: dict[str, _Forming] = {}
        # per symbol: (point, when it was held, monotonic s), oldest first
        self.held: dict[str, deque[tuple[list[Any], float]]] = {}
        self.market_ts: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self.rebuilt = False
        self.deferred: list[Order] = []
        self._noted: _Noted | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def exchange(self) -> Exchange:
        return self.desk.exchange

    @property
    def skipped(self) -> Counter[str]:
        """Why signals made no order (the strategy's reasons and this stage's)."""
        waiting = sum(len(h) for h in self.held.values())
        return self.desk.skipped + self.counts + Counter({"held: waiting for market data": waiting})

    def status(self) -> dict[str, Any]:
        """Why signals made no order, by reason."""
        for _ in range(3):  # the counters may change size under us (the cerebro thread): try again
            try:
                return {"skipped": dict(self.skipped)}
            except RuntimeError:
                continue
        return {}

    # -- the cerebro thread ---------------------------------------------------------------------

    def _start_cerebro(self) -> None:
        cerebro = bt.Cerebro(stdstats=False, exactbars=1, quicknotify=True)
        cerebro.adddata(LiveEventFeed(queue=self._queue, qcheck=0.5), name="bus")
        cerebro.addstrategy(MLSignalStrategy, desk=self.desk)

        def run() -> None:
            try:
                cerebro.run()
            except BaseException as exc:  # the stage raises it on its next batch
                log.exception("decision: the strategy stopped")
                self._failure = exc

        self._thread = threading.Thread(target=run, name="decision:cerebro", daemon=True)
        self._thread.start()

    def _handle(self, points: list[list[Any]]) -> list[Order]:
        """Put ``points`` on the feed, wait until the strategy handled them, return its orders."""
        if not points:
            return []
        if self._thread is None:
            self._start_cerebro()
        for p in points:
            self._queue.put(p)
        barrier = Barrier()
        self._queue.put(barrier)
        # No time limit: a retry would hand the strategy the same points twice. A dead strategy
        # thread ends the wait instead, and the runner restarts from the last commit.
        while not barrier.wait(1.0):
            if self._thread is None or not self._thread.is_alive():
                failure = self._failure
                self._reset()
                raise RuntimeError(
                    f"the decision strategy stopped ({failure!r}); starting again from the "
                    f"last commit with the portfolio rebuilt from {ORDERS}"
                )
        orders, self.desk.orders = self.desk.orders, []
        return orders

    def _note(self) -> None:
        """Note what a restart from the last commit must find again (see ``_Noted``)."""
        self._noted = _Noted(
            {s: _Forming(f.timestamp, f.price, dict(f.signals)) for s, f in self.forming.items()},
            {s: list(h) for s, h in self.held.items() if h},
            dict(self.market_ts),
            {s: t for s, (t, _) in self.exchange.last.items()},
        )

    def _reset(self) -> None:
        """Forget everything a dead strategy may have left half done and go back to the note taken
        at the start of the failing batch; the next batch rebuilds the orders from the topic."""
        old, noted = self.desk.exchange, self._noted
        self.desk.exchange = Exchange(old.settings)
        self.desk.orders = []
        self.forming.clear()
        self.held.clear()
        if noted is not None:
            self.forming.update(noted.forming)
            self.held.update({s: deque(h) for s, h in noted.held.items()})
            self.market_ts = dict(noted.market_ts)
            for symbol, until in noted.last_tick.items():
                self.desk.exchange.remember(symbol, [t for t in old.ticks.get(symbol, ()) if t[0] <= until])
        self.deferred = []
        self.rebuilt = False
        self._queue = queue.Queue()
        self._thread, self._failure = None, None

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(LiveEventFeed.STOP)
            self._thread.join(5.0)

    # -- inputs ---------------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Restore the replica from each order's last state on the topic (the live exchange's word)."""
        from pipeline.stages.virtual_exchange import account_orders

        self.exchange.restore(account_orders(self.bus, f"{self.name}-rebuild", self.desk.account))
        self.rebuilt = True

    def process_batch(self, messages: list[Any]) -> list[Message]:
        if not self.rebuilt:
            self.rebuild()
        self._note()
        out: list[Message] = []
        points: list[list[Any]] = []
        for message in messages:
            if isinstance(message, MLSignal):
                self._signal(message, points)
            elif isinstance(message, MarketData):
                ts = message.timestamp
                if ts > self.market_ts.get(message.symbol, 0):
                    self.market_ts[message.symbol] = ts
                    self._release(message.symbol, points)
            elif isinstance(message, Order):
                out.extend(self._handle(points))  # the replica takes the order between the points around it
                points = []
                self._order(message)
                self._adopt_due()
        out.extend(self._handle(points))
        self._adopt_due()
        return out

    def _adopt_due(self) -> None:
        """Adopt the exchange's messages about moments the replica has reached. One about a later
        moment waits: adopted now, it would show the strategy a fill or close from its future."""
        if not self.deferred:
            return
        later = []
        for order in self.deferred:
            last = self.exchange.last.get(order.symbol)
            if last is not None and _event_time(order) <= last[0]:
                self._receive(order)
            else:
                later.append(order)
        self.deferred = later

    def _receive(self, order: Order) -> None:
        # The live exchange dead-letters a rejected order and says it CANCELLED; the replica adopts that.
        with contextlib.suppress(OrderRejected):
            self.exchange.receive(order, authoritative=False)

    def _order(self, order: Order) -> None:
        if account_of(order) != self.desk.account:
            return
        if order.metadata.get("created_by") == "backtrader_engine" and order.status == "PENDING":
            return  # our own order coming back; the replica has it
        if order.metadata.get("updated_by") == UPDATED_BY:
            self.deferred.append(order)
        else:
            self._receive(order)  # the trader's: a manual order or a cancel request

    def _signal(self, signal: MLSignal, points: list[list[Any]]) -> None:
        if signal.model not in self.models:
            return
        symbol = signal.symbol
        forming = self.forming.get(symbol)
        if forming is not None and signal.timestamp < forming.timestamp:
            self.counts["signal out of order"] += 1
            return
        if forming is not None and signal.timestamp > forming.timestamp:
            self._complete(symbol, points)
            forming = None
        if forming is None:
            forming = self.forming[symbol] = _Forming(signal.timestamp, signal.current_price)
        forming.signals[signal.model] = signal
        if len(forming.signals) == len(self.models):
            self._complete(symbol, points)

    def _complete(self, symbol: str, points: list[list[Any]]) -> None:
        forming = self.forming.pop(symbol)
        tick = (TICK, symbol, forming.timestamp, forming.price)
        primary = forming.signals.get(self.desk.model)
        if primary is None:
            point: list[Any] = [tick]  # the replica still sees the price
        else:
            others = tuple(_model_signal(s) for m, s in forming.signals.items() if m != self.desk.model)
            group = SignalGroup(
                symbol, forming.timestamp, forming.price, _model_signal(primary), others, primary.features
            )
            point = [tick, (SIGNALS, group)]
        held = self.held.setdefault(symbol, deque())
        held.append((point, time.monotonic()))
        self._release(symbol, points)
        # Waiting is counted on the clock, not in market time: a replay runs market time fast, and
        # its market data may come a little after its signals.
        expired = time.monotonic() - self.hold_ms / 1000.0
        while held and held[0][1] < expired:
            held.popleft()
            self.counts["held without market data, expired"] += 1

    def _release(self, symbol: str, points: list[list[Any]]) -> None:
        held = self.held.get(symbol)
        market = self.market_ts.get(symbol, 0)
        while held and held[0][0][0][2] <= market:
            points.append(held.popleft()[0])


def _event_time(order: Order) -> int:
    """When what an exchange message says happened: the close, the fill or the cancel."""
    m = order.metadata
    return int(m.get("closed_at") or m.get("cancelled_at") or m.get("filled_at") or order.timestamp)


def _model_signal(s: MLSignal) -> ModelSignal:
    return ModelSignal(s.model, s.signal, s.confidence, s.expected_change_pct)
