"""The trading stages on both buses: the virtual exchange's status flow and dead letters, the
decision stage's rules on live signals, and a crash of both stages mid-stream after which the
decision stage's replica and the virtual exchange still agree."""

from __future__ import annotations

import json
import random
import string
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipeline.bus.base import Bus, Record
from pipeline.errors import BadMessageError
from pipeline.messages import (
    DeadLetter,
    MarketData,
    Message,
    MLSignal,
    Order,
    OrderType,
    RiskManagement,
    Side,
    Signal,
    TriggerSignal,
    decode,
    encode,
)
from pipeline.runner import StageRunner
from pipeline.stages.decision import DecisionStage
from pipeline.stages.virtual_exchange import VirtualExchangeStage
from pipeline.topics import CATALOG, ORDERS, dlq_name
from pipeline.trading.exchange import Exchange
from pipeline.trading.strategy import order_id as decision_order_id
from storage.db import Database

MODEL = "random_forest"


def _symbol() -> str:
    return "Q" + "".join(random.choices(string.ascii_uppercase, k=4)) + "USDT"


def _now() -> int:
    return int(time.time() * 1000)


def _tick(symbol: str, ts: int, price: float) -> MarketData:
    return MarketData(
        symbol=symbol, timestamp=ts, price=price, open=price, high=price, low=price, volume=1.0, price_change_pct=0.0
    )


def _signal(
    symbol: str,
    ts: int,
    price: float,
    signal: Signal,
    confidence: float,
    features: dict[str, float | None] | None = None,
) -> MLSignal:
    change = {"BUY": 2.0, "SELL": -2.0, "HOLD": 0.0}[signal]
    return MLSignal(
        symbol=symbol,
        timestamp=ts,
        model=MODEL,
        prediction_type="direction",
        predicted_value=price * (1 + change / 100),
        current_price=price,
        expected_change_pct=change,
        confidence=confidence,
        signal=signal,
        features=features if features is not None else {"ma_7": price, "ma_25": price, "rsi_14": 50.0},
        metadata={"model_version": "1"},
    )


def _order(
    oid: str,
    symbol: str,
    ts: int,
    price: float,
    quantity: float,
    account: str,
    *,
    action: Side = "BUY",
    stop: float | None = None,
    take: float | None = None,
    order_type: OrderType = "MARKET",
    strategy: str = "manual",
    **meta: Any,
) -> Order:
    return Order(
        order_id=oid,
        symbol=symbol,
        timestamp=ts,
        action=action,
        order_type=order_type,
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status="PENDING",
        strategy=strategy,
        trigger_signal=TriggerSignal(model=MODEL, confidence=0.9, expected_change_pct=2.0),
        risk_management=RiskManagement(stop_loss=stop, take_profit=take),
        metadata={"account": account, **meta},
    )


def _send(producer: Any, *messages: Message) -> None:
    for m in messages:
        producer.produce(m.topic, encode(m), key=m.key())
    assert producer.flush(10) == 0


class Reader:
    """Reads a topic from its start with its own group, keeping the records that mention ``needle``."""

    def __init__(self, bus: Bus, group: str, topic: str = ORDERS, needle: str | None = None) -> None:
        self.consumer = bus.consumer(group, [topic], auto_offset_reset="earliest")
        self.needle = needle.encode() if needle else None
        self.records: list[Record] = []

    def read(self, until: Callable[[Reader], bool] = lambda r: False, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            for r in self.consumer.poll(5000, 0.2):
                if self.needle is None or (r.value is not None and self.needle in r.value):
                    self.records.append(r)
            if until(self):
                return True
            if time.monotonic() > deadline:
                return False

    def orders(self) -> list[Order]:
        out = []
        for r in self.records:
            try:
                order = decode(ORDERS, r.value or b"")
            except BadMessageError:
                continue
            assert isinstance(order, Order)
            out.append(order)
        return out

    def statuses(self, oid: str) -> list[str]:
        return [o.status for o in self.orders() if o.order_id == oid]

    def of(self, oid: str) -> list[Order]:
        return [o for o in self.orders() if o.order_id == oid]

    def close(self) -> None:
        self.consumer.close()


def _warm(producer: Any, runners: Sequence[StageRunner], timeout: float = 60.0) -> None:
    """Stages start at their topics' end: tick another symbol until every runner has processed."""
    other = _symbol()
    start = {id(r): r.health.snapshot().processed for r in runners}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r.health.snapshot().processed > start[id(r)] for r in runners):
            return
        _send(producer, _tick(other, _now(), 1.0))
        time.sleep(0.25)
    raise AssertionError(f"stages did not join: {[r.health.snapshot() for r in runners]}")


def _wait(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "", *, fail: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except RuntimeError:  # a dict changed size while a stage's thread worked on it
            pass
        time.sleep(0.1)
    if fail:
        raise AssertionError(f"timed out waiting for {what or predicate}")
    return False


def _venue_class(suffix: str) -> type[VirtualExchangeStage]:
    class Venue(VirtualExchangeStage):
        name: ClassVar[str] = f"virtual-exchange-{suffix}"

    return Venue


def _decision_class(suffix: str) -> type[DecisionStage]:
    class Decision(DecisionStage):
        name: ClassVar[str] = f"decision-{suffix}"

    return Decision


# -- the virtual exchange ---------------------------------------------------------------------------


def test_orders_go_pending_filled_closed_and_a_trader_cancels_a_limit(bus: Bus, tmp_path: Path, group_name) -> None:
    bus.create_topics(CATALOG.values())
    account = f"flow-{group_name('acct')}"
    db = Database(tmp_path / "x.db")
    stage = _venue_class(group_name("venue"))(bus, db, account=account)
    runner = StageRunner(stage, bus, poll_timeout=0.2)
    runner.start()
    producer = bus.producer()
    reader = Reader(bus, group_name("reader"), needle=account)
    sym = _symbol()
    buy_id, limit_id = f"ORD-{uuid.uuid4().hex[:8]}-B", f"ORD-{uuid.uuid4().hex[:8]}-L"
    try:
        _warm(producer, [runner])
        now = _now()
        buy = _order(buy_id, sym, now, 100.0, 2.0, account, stop=98.0, take=105.0)
        limit = _order(limit_id, sym, now, 50.0, 2.0, account, stop=45.0, take=60.0, order_type="LIMIT")
        _send(producer, buy, limit, _tick(sym, now + 1000, 100.0))
        assert reader.read(lambda r: "FILLED" in r.statuses(buy_id)), reader.statuses(buy_id)
        _send(producer, _tick(sym, now + 2000, 103.0), _tick(sym, now + 3000, 106.0))
        assert reader.read(lambda r: "CLOSED" in r.statuses(buy_id)), reader.statuses(buy_id)
        assert "FILLED" not in reader.statuses(limit_id)  # 50 was never reached
        cancel = limit.model_copy(
            update={
                "status": "CANCELLED",
                "timestamp": now + 3500,
                "metadata": {**limit.metadata, "requested_by": "trader"},
            }
        )
        _send(producer, cancel)
        assert reader.read(
            lambda r: any(
                o.status == "CANCELLED" and o.metadata.get("updated_by") == "virtual_exchange" for o in r.of(limit_id)
            )
        ), reader.statuses(limit_id)
        _wait(
            lambda: (
                {
                    r["order_id"]: r["status"]
                    for r in db.query(
                        "SELECT order_id, status FROM orders WHERE order_id IN (?, ?)", (buy_id, limit_id)
                    )
                }
                == {buy_id: "CLOSED", limit_id: "CANCELLED"}
            ),
            what="the orders table",
        )
        reader.read(timeout=0.5)
    finally:
        runner.stop()
        reader.close()
    assert reader.statuses(buy_id) == ["PENDING", "FILLED", "CLOSED"]
    assert all(r.key == buy_id.encode() for r in reader.records if b'"' + buy_id.encode() + b'"' in (r.value or b""))
    filled, closed = reader.of(buy_id)[1:]
    assert filled.metadata["fill_price"] == pytest.approx(100.0 * 1.0005)
    assert filled.metadata["filled_at"] == now + 1000
    assert closed.metadata["exit_reason"] == "take_profit"
    assert closed.metadata["closed_at"] == now + 3000
    assert closed.metadata["exit_price"] == pytest.approx(106.0 * 0.9995)
    assert reader.statuses(limit_id) == ["PENDING", "CANCELLED", "CANCELLED"]  # the request, then the exchange's word
    said = reader.of(limit_id)[-1]
    assert said.metadata["updated_by"] == "virtual_exchange" and "trader" in said.metadata["reason"]
    assert "requested_by" not in said.metadata
    rows = {r["order_id"]: r for r in db.query("SELECT * FROM orders WHERE order_id IN (?, ?)", (buy_id, limit_id))}
    assert rows[buy_id]["exit_reason"] == "take_profit"
    assert rows[buy_id]["pnl"] == pytest.approx(closed.metadata["pnl"])
    assert json.loads(rows[buy_id]["message"])["status"] == "CLOSED"
    assert "trader" in rows[limit_id]["reason"]
    assert stage.exchange.cash == pytest.approx(10_000.0 + closed.metadata["pnl"])
    assert runner.health.snapshot().dead_lettered == 0
    db.close()


def test_bad_orders_are_dead_lettered_with_the_rule_and_the_exchange_goes_on(
    bus: Bus, tmp_path: Path, group_name
) -> None:
    bus.create_topics(CATALOG.values())
    account = f"bad-{group_name('acct')}"
    stage = _venue_class(group_name("venue"))(bus, Database(tmp_path / "x.db"), account=account)
    runner = StageRunner(stage, bus, poll_timeout=0.2)
    runner.start()
    producer = bus.producer()
    reader = Reader(bus, group_name("reader"), needle=account)
    dlq = Reader(bus, group_name("dlq"), topic=dlq_name(ORDERS), needle=account)
    sym = _symbol()
    zero_id, short_id, good_id = (f"ORD-{uuid.uuid4().hex[:8]}-{k}" for k in ("Z", "S", "G"))
    try:
        _warm(producer, [runner])
        now = _now()
        wire = json.loads(encode(_order(zero_id, sym, now, 100.0, 1.0, account)))
        wire.update(quantity=0.0, total_value=0.0)  # breaks the schema
        producer.produce(ORDERS, json.dumps(wire).encode(), key=zero_id.encode())
        short = _order(short_id, sym, now, 100.0, 1.0, account, action="SELL")  # no metadata.closes
        good = _order(good_id, sym, now + 10, 100.0, 1.0, account, stop=90.0, take=120.0)
        _send(producer, short, good, _tick(sym, now + 1000, 100.0))

        def letters() -> dict[str | None, DeadLetter]:
            out = {}
            for r in dlq.records:
                letter = decode(dlq_name(ORDERS), r.value or b"")
                assert isinstance(letter, DeadLetter)
                out[letter.source_key] = letter
            return out

        assert dlq.read(lambda d: {zero_id, short_id} <= set(letters())), letters()
        assert reader.read(
            lambda r: "FILLED" in r.statuses(good_id) and any(o.metadata.get("updated_by") for o in r.of(short_id))
        ), reader.statuses(short_id)
        reader.read(timeout=1.0)
    finally:
        runner.stop()
        reader.close()
        dlq.close()
    got = letters()
    zero, short_letter = got[zero_id], got[short_id]
    assert isinstance(zero, DeadLetter)
    assert zero.source_topic == ORDERS and zero.stage == stage.name
    assert [(v["field"], v["value"]) for v in zero.violations] == [("quantity", 0.0)]
    assert zero.violations[0]["rule"].startswith("quantity > 0")
    assert "quantity" in zero.reason
    assert short_letter.source_topic == ORDERS and short_letter.stage == stage.name
    assert [v["field"] for v in short_letter.violations] == ["metadata.closes"]
    assert "metadata.closes" in short_letter.reason and "SELL" in short_letter.violations[0]["rule"]
    assert "FILLED" not in reader.statuses(zero_id) and reader.of(zero_id) == []
    assert reader.statuses(short_id) == ["PENDING", "CANCELLED"]
    said = reader.of(short_id)[-1]
    assert said.metadata["updated_by"] == "virtual_exchange"
    assert "metadata.closes" in said.metadata["reason"]
    assert reader.statuses(good_id) == ["PENDING", "FILLED"]
    assert runner.health.snapshot().dead_lettered == 2
    assert stage.rejected == 1
    assert [b.order_id for b in stage.exchange.positions()] == [good_id]


# -- the decision stage -----------------------------------------------------------------------------


def test_the_decision_stage_holds_signals_without_market_data_and_follows_the_confidence_rules(
    bus: Bus, group_name
) -> None:
    bus.create_topics(CATALOG.values())
    account = f"decide-{group_name('acct')}"
    stage = _decision_class(group_name("decision"))(bus, model=MODEL, account=account)
    runner = StageRunner(stage, bus, poll_timeout=0.2)
    runner.start()
    producer = bus.producer()
    reader = Reader(bus, group_name("reader"), needle=account)
    held, low, medium, confirmed = (_symbol() for _ in range(4))
    now = _now()
    ids = {s: decision_order_id(s, now, "BUY") for s in (held, low, medium, confirmed)}
    try:
        _warm(producer, [runner])
        # a high-confidence BUY for a symbol without market data is held, even past an older tick
        _send(producer, _signal(held, now, 100.0, "BUY", 0.9))
        _wait(lambda: stage.skipped.get("held: waiting for market data", 0) >= 1, what="the signal held")
        _send(producer, _tick(held, now - 1000, 99.0))
        _wait(lambda: stage.market_ts.get(held) == now - 1000, what="the older tick")
        assert not reader.read(lambda r: bool(r.of(ids[held])), timeout=1.0)
        assert stage.skipped.get("held: waiting for market data") == 1
        # the tick of its moment releases it
        _send(producer, _tick(held, now, 100.0))
        assert reader.read(lambda r: bool(r.of(ids[held]))), reader.records
        _send(producer, _tick(held, now + 1000, 100.5))  # later ticks do not make it again
        # low confidence: never; medium: only when the indicators confirm
        _send(
            producer,
            _signal(low, now, 10.0, "BUY", 0.5, {"ma_7": 11.0, "ma_25": 10.0, "rsi_14": 50.0}),
            _tick(low, now, 10.0),
        )
        _send(
            producer,
            _signal(medium, now, 20.0, "BUY", 0.7, {"ma_7": 19.0, "ma_25": 20.0, "rsi_14": 50.0}),
            _tick(medium, now, 20.0),
        )
        _send(
            producer,
            _signal(confirmed, now, 30.0, "BUY", 0.7, {"ma_7": 31.0, "ma_25": 30.0, "rsi_14": 55.0}),
            _tick(confirmed, now, 30.0),
        )
        assert reader.read(lambda r: bool(r.of(ids[confirmed]))), stage.skipped
        _wait(
            lambda: stage.skipped["low confidence"] >= 1 and stage.skipped["medium confidence, not confirmed"] >= 1,
            what=f"both skipped: {stage.skipped}",
        )
        reader.read(timeout=1.0)
    finally:
        runner.stop()
        reader.close()
    made = reader.of(ids[held])
    assert [o.status for o in made] == ["PENDING"]
    order = made[0]
    assert (order.symbol, order.action, order.timestamp, order.price) == (held, "BUY", now, 100.0)
    assert order.metadata["created_by"] == "backtrader_engine" and order.metadata["confidence_level"] == "high"
    assert order.quantity * order.price == pytest.approx(1_000.0, rel=1e-6)  # 10 % of 10,000 USDT
    assert order.risk_management.stop_loss == pytest.approx(98.0)
    assert order.risk_management.take_profit == pytest.approx(105.0)
    assert reader.of(ids[low]) == [] and reader.of(ids[medium]) == []
    second = reader.of(ids[confirmed])
    assert [o.status for o in second] == ["PENDING"]
    assert second[0].metadata["confidence_level"] == "medium"
    assert second[0].metadata["confirmed_by"] == "indicator"
    assert {o.symbol for o in reader.orders()} == {held, confirmed}
    assert runner.health.snapshot().dead_lettered == 0


# -- a crash of both stages mid-stream -------------------------------------------------------------

# (price, signal) per step; each step is a tick and a signal of the same moment and price.
STREAM: list[tuple[float, Signal]] = [
    (100.0, "BUY"),
    (100.0, "HOLD"),
    (106.0, "HOLD"),  # take profit
    (106.0, "BUY"),
    (106.0, "HOLD"),
    (103.0, "HOLD"),  # stop loss
    (103.0, "BUY"),
    (103.0, "HOLD"),
    (104.0, "SELL"),
    (104.0, "HOLD"),  # closed by a signal
    (104.0, "BUY"),
    (104.0, "HOLD"),
    (105.0, "HOLD"),
    (110.0, "HOLD"),  # take profit
    (110.0, "BUY"),
    (110.0, "HOLD"),
    (107.0, "HOLD"),  # stop loss
    (107.0, "BUY"),
    (107.0, "HOLD"),
    (108.0, "SELL"),
    (108.0, "HOLD"),  # closed by a signal
    (108.0, "BUY"),
    (108.0, "HOLD"),
    (109.0, "HOLD"),  # left open
]
STEP_MS = 1000


def _expected(symbol: str, base: int) -> dict[str, tuple[str, str | None]]:
    """Each order's final (status, exit_reason) the stream must give."""

    def oid(i: int, action: str) -> str:
        return decision_order_id(symbol, base + i * STEP_MS, action)

    return {
        oid(0, "BUY"): ("CLOSED", "take_profit"),
        oid(3, "BUY"): ("CLOSED", "stop_loss"),
        oid(6, "BUY"): ("CLOSED", "signal"),
        oid(8, "SELL"): ("FILLED", None),
        oid(10, "BUY"): ("CLOSED", "take_profit"),
        oid(14, "BUY"): ("CLOSED", "stop_loss"),
        oid(17, "BUY"): ("CLOSED", "signal"),
        oid(19, "SELL"): ("FILLED", None),
        oid(21, "BUY"): ("FILLED", None),
    }


class CrashingRunner(StageRunner):
    """Once ``crash`` is set, the next batch is processed and its outputs published, then the stage
    dies before committing its input: a crash between the flush and the commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crash = threading.Event()
        self.crashed = threading.Event()

    def handle(self, records: Sequence[Record]) -> None:
        super().handle(records)
        if self.crash.is_set():
            self._producer.flush(30.0)
            self._stop.set()
            self.crashed.set()
            raise RuntimeError("simulated crash: outputs published, input not committed")


def _books(ex: Exchange) -> dict[str, Any]:
    return {
        "cash": round(ex.cash, 6),
        "statuses": {k: b.status for k, b in ex.books.items()},
        "positions": sorted((b.order_id, b.quantity, round(b.fill_price, 9)) for b in ex.positions()),
        "pending": sorted(b.order_id for b in ex.pending_orders()),
    }


def _run_stream(bus: Bus, group_name, tmp_path: Path, *, venue_lags: bool) -> None:
    bus.create_topics(CATALOG.values())
    account = f"crash-{group_name('acct')}"
    suffix = group_name("stages")
    Decision, Venue = _decision_class(suffix), _venue_class(suffix)
    producer = bus.producer()
    sym = _symbol()
    base = _now()
    expected = _expected(sym, base)

    def step(i: int) -> None:
        price, signal = STREAM[i]
        ts = base + i * STEP_MS
        _send(producer, _tick(sym, ts, price), _signal(sym, ts, price, signal, 0.9))
        time.sleep(0.15)

    def start(stage_cls: type, *args: Any, **kwargs: Any) -> tuple[Any, CrashingRunner]:
        stage = stage_cls(bus, *args, account=account, **kwargs)
        runner = CrashingRunner(stage, bus, poll_timeout=0.2)
        runner.start()
        return stage, runner

    def crash(runner: CrashingRunner, i: int) -> None:
        runner.crash.set()
        step(i)
        assert runner.crashed.wait(20), runner.health.snapshot()
        runner.stop()

    decision, d_run = start(Decision, model=MODEL)
    venue, v_run = start(Venue, Database(tmp_path / "venue-1.db"))
    runners = [d_run, v_run]
    reader = Reader(bus, group_name("reader"), needle=account)
    try:
        _warm(producer, runners)
        for i in range(9):
            step(i)
        if venue_lags:
            # the exchange dies first; the decision stage goes on a few steps, then dies too
            crash(v_run, 9)
            for i in range(10, 12):
                step(i)
            crash(d_run, 12)
            down = range(13, 14)
        else:
            d_run.crash.set()
            v_run.crash.set()
            step(9)
            assert d_run.crashed.wait(20) and v_run.crashed.wait(20)
            d_run.stop()
            v_run.stop()
            down = range(10, 12)
        for i in down:  # while both are down
            step(i)
        decision, d_run = start(Decision, model=MODEL)  # the same names: the same consumer groups
        if venue_lags:  # the decision stage is back first
            _wait(lambda: decision.rebuilt, what="the decision stage rebuilt")
        venue, v_run = start(Venue, Database(tmp_path / "venue-2.db"))
        runners = [d_run, v_run]
        for i in range(down.stop, len(STREAM)):
            step(i)

        def final() -> dict[str, tuple[str, str | None]]:
            return {k: (b.status, b.exit_reason) for k, b in venue.exchange.books.items()}

        _wait(lambda: final() == expected, timeout=30, what="the venue's final states")
        # the replica adopts the exchange's messages as they come; the asserts below say what differs
        _wait(lambda: _books(decision.exchange) == _books(venue.exchange), timeout=6, fail=False)
        reader.read(timeout=1.0)
    finally:
        for r in runners:
            r.stop()
        reader.close()
    # stopped: nothing moves any more
    replica, exchange = decision.exchange, venue.exchange
    assert {k: (b.status, b.exit_reason) for k, b in exchange.books.items()} == expected

    def fills_of(ex: Exchange) -> dict[str, tuple[Any, ...]]:
        return {
            oid: (b.status, b.filled_at, round(b.fill_price, 9), b.closed_at, b.exit_reason)
            for oid, b in ex.books.items()
        }

    assert fills_of(replica) == fills_of(exchange)
    assert replica.cash == pytest.approx(exchange.cash, rel=1e-12)
    assert replica.fees_paid == pytest.approx(exchange.fees_paid, rel=1e-12)
    assert replica.realized == pytest.approx(exchange.realized, rel=1e-9)
    assert _books(replica) == _books(exchange)
    # no order was filled twice: every FILLED/CLOSED message of an order names the same fill
    fills: dict[str, set[tuple[float, int]]] = {}
    for o in reader.orders():
        if o.status in ("FILLED", "CLOSED"):
            fills.setdefault(o.order_id, set()).add((o.metadata["fill_price"], o.metadata["filled_at"]))
    assert set(fills) == {oid for oid, (status, _) in expected.items() if status in ("FILLED", "CLOSED")}
    assert {oid: len(f) for oid, f in fills.items() if len(f) != 1} == {}
    # and the exchange's messages say what it holds
    last = {}
    for o in reader.orders():
        last[o.order_id] = o
    assert {oid: o.status for oid, o in last.items()} == {oid: s for oid, (s, _) in expected.items()}


def test_a_crash_of_both_stages_mid_stream_leaves_the_replica_and_the_exchange_agreeing(
    bus: Bus, tmp_path: Path, group_name
) -> None:
    _run_stream(bus, group_name, tmp_path, venue_lags=False)


def test_a_crash_with_the_exchange_behind_the_decision_stage_leaves_them_agreeing(
    bus: Bus, tmp_path: Path, group_name
) -> None:
    _run_stream(bus, group_name, tmp_path, venue_lags=True)


def test_a_restart_after_a_crash_between_the_two_messages_of_a_close_repairs_the_topic(
    bus: Bus, tmp_path: Path, group_name
) -> None:
    """The exchange said the target CLOSED (by the SELL) and died before saying the SELL FILLED: a
    new exchange rebuilds from the topic, publishes the missing FILLED and goes on."""
    bus.create_topics(CATALOG.values())
    account = f"repair-{group_name('acct')}"
    sym = _symbol()
    now = _now()
    buy_id, sell_id, next_id = (f"ORD-{uuid.uuid4().hex[:8]}-{k}" for k in ("B", "S", "N"))
    before = Exchange()
    buy = _order(buy_id, sym, now, 100.0, 2.0, account, stop=90.0, take=120.0, strategy="ml_signal_strategy")
    sell = _order(
        sell_id,
        sym,
        now + 1500,
        100.0,
        2.0,
        account,
        action="SELL",
        strategy="ml_signal_strategy",
        closes=buy_id,
        reason="signal",
    )
    published: list[Order] = [
        buy,
        *before.submit(buy),
        *before.on_tick(sym, now + 1000, 100.0),
        sell,
        *before.submit(sell),
    ]
    closed, sold = before.on_tick(sym, now + 2000, 101.0)
    assert (closed.order_id, closed.status, sold.order_id, sold.status) == (buy_id, "CLOSED", sell_id, "FILLED")
    published.append(closed)  # ... and the SELL's FILLED never made it
    producer = bus.producer()
    _send(producer, *published)

    stage = _venue_class(group_name("venue"))(bus, Database(tmp_path / "x.db"), account=account)
    runner = StageRunner(stage, bus, poll_timeout=0.2)
    runner.start()
    reader = Reader(bus, group_name("reader"), needle=account)
    try:
        _warm(producer, [runner])
        assert reader.read(lambda r: "FILLED" in r.statuses(sell_id), timeout=10), (
            reader.statuses(sell_id),
            runner.health.snapshot(),
        )
        nxt = _order(next_id, sym, now + 3000, 101.0, 1.0, account, stop=90.0, take=120.0)
        _send(producer, nxt, _tick(sym, now + 4000, 101.0))
        assert reader.read(lambda r: "FILLED" in r.statuses(next_id), timeout=10), (
            reader.statuses(next_id),
            runner.health.snapshot(),
        )
    finally:
        runner.stop()
        reader.close()
    repaired = reader.of(sell_id)[-1]
    assert repaired.status == "FILLED"
    assert repaired.metadata["fill_price"] == pytest.approx(sold.metadata["fill_price"])
    assert repaired.metadata["filled_at"] == now + 2000
    assert runner.health.snapshot().dead_lettered == 0
    assert stage.exchange.books[sell_id].status == "FILLED"
    assert stage.exchange.books[buy_id].status == "CLOSED"
    assert [b.order_id for b in stage.exchange.positions()] == [next_id]


def test_a_strategy_that_dies_mid_batch_is_started_again_with_the_portfolio_rebuilt(
    bus: Bus, group_name, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strategy's thread dies on a signal: the batch is not committed, the stage forgets its
    half-done state, and the redelivered batch makes each order once, on a rebuilt portfolio."""
    from pipeline.trading.strategy import MLSignalStrategy

    bus.create_topics(CATALOG.values())
    account = f"revive-{group_name('acct')}"
    stage = _decision_class(group_name("decision"))(bus, model=MODEL, account=account)
    runner = StageRunner(stage, bus, poll_timeout=0.2, backoff_s=0.05)
    producer = bus.producer()
    reader = Reader(bus, group_name("reader"), needle=account)
    first, second = _symbol(), _symbol()
    real = MLSignalStrategy.on_signals
    failures: list[int] = []

    def dies_once_on_the_second(self, group):
        if group.symbol == second and group.primary.signal == "BUY" and not failures:
            failures.append(group.timestamp)
            raise RuntimeError("boom")
        return real(self, group)

    monkeypatch.setattr(MLSignalStrategy, "on_signals", dies_once_on_the_second)
    runner.start()
    try:
        _warm(producer, [runner])
        # a first, quiet signal of each symbol: every partition involved has a committed position
        # (a group that starts at the end has none for a partition it never read from)
        early = _now() - 1000
        _send(
            producer, *(m for s in (first, second) for m in (_tick(s, early, 1.0), _signal(s, early, 1.0, "HOLD", 0.5)))
        )
        _wait(lambda: all(stage.market_ts.get(s) == early for s in (first, second)), what="the quiet signals")
        time.sleep(0.5)
        now = _now()
        _send(producer, _tick(first, now, 100.0), _signal(first, now, 100.0, "BUY", 0.9))
        assert reader.read(lambda r: bool(r.of(decision_order_id(first, now, "BUY"))))
        _send(producer, _tick(second, now + 1, 50.0), _signal(second, now + 1, 50.0, "BUY", 0.9))
        assert reader.read(lambda r: bool(r.of(decision_order_id(second, now + 1, "BUY"))), timeout=30.0), (
            stage.skipped,
            stage.market_ts,
            runner.health.snapshot(),
        )
        assert failures == [now + 1]
        assert "the decision strategy stopped" in (runner.health.snapshot().last_error or "")
        # the rebuilt replica knows the first order (from the topic) and still holds the cash for it
        assert [b.order_id for b in stage.exchange.pending_orders(first)] == [decision_order_id(first, now, "BUY")]
        reader.read(timeout=1.0)
    finally:
        runner.stop()
        reader.close()
    made = [o.order_id for o in reader.orders() if o.status == "PENDING"]
    assert sorted(made) == sorted({decision_order_id(first, now, "BUY"), decision_order_id(second, now + 1, "BUY")})
