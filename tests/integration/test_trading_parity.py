"""Live and backtest parity, on both buses: a stretch of candles replayed live through the bus
(replay -> crypto.market_data -> ml -> crypto.ml_signals -> decision -> crypto.orders -> virtual
exchange -> crypto.orders) makes the same orders, fills and closes as a backtest of the same
candles with the same model; then a restarted virtual exchange rebuilds the same portfolio."""

from __future__ import annotations

import random
import string
import time
from pathlib import Path
from typing import ClassVar

import pytest

from pipeline.bus.base import Bus
from pipeline.messages import MarketData, Order, decode, encode
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.registry import Registry
from pipeline.ml.train import train_symbol
from pipeline.runner import StageRunner
from pipeline.sources.replay import ReplaySource
from pipeline.stages.decision import DecisionStage
from pipeline.stages.ml import MLStage
from pipeline.stages.virtual_exchange import VirtualExchangeStage
from pipeline.topics import CATALOG, MARKET_DATA, ORDERS
from pipeline.trading.backtest import run_backtest
from storage.db import Database

# Small thresholds so a random walk's model trades at all within a short stretch.
BUY, SELL = 0.05, -0.05
MODEL = "random_forest"


def _symbol() -> str:
    return "Q" + "".join(random.choices(string.ascii_uppercase, k=4)) + "USDT"


def _write_candles(path: Path, bars) -> None:  # noqa: ANN001
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{int(b.start)},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume!r}" for b in bars.itertuples()]
    path.write_text("\n".join(lines) + "\n")


def _orders(bus: Bus, group: str, account: str, until, timeout: float = 120.0) -> list[Order]:  # noqa: ANN001
    consumer = bus.consumer(group, [ORDERS], auto_offset_reset="earliest")
    got: list[Order] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(got):
            for r in consumer.poll(1000, 0.3):
                if account.encode() not in (r.value or b""):
                    continue  # other runs' orders, some deliberately malformed, share the topic on Kafka
                order = decode(ORDERS, r.value)
                if order.metadata.get("account") == account:
                    got.append(order)
    finally:
        consumer.close()
    return got


def _final(messages: list[Order]) -> dict[str, Order]:
    last: dict[str, Order] = {}
    for m in messages:
        last[m.order_id] = m
    return last


def test_a_replay_through_the_bus_makes_the_backtests_orders_and_a_restart_rebuilds_the_portfolio(
        bus: Bus, tmp_path: Path, group_name) -> None:  # noqa: ANN001
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    registry = Registry(db, tmp_path / "models")
    symbol = _symbol()
    account = f"parity-{group_name('acct')}"
    train = bars_from_simulator(symbol, 3000, seed=11)
    (record,) = train_symbol(registry, train, symbol, (MODEL,), horizon=15, n_splits=2)
    stretch = bars_from_simulator(symbol, 1200, seed=12)
    candles = tmp_path / f"{symbol}.csv"
    _write_candles(candles, stretch)

    backtest = run_backtest({symbol: stretch}, {(symbol, MODEL): registry.load(record)}, model=MODEL,
                            buy_pct=BUY, sell_pct=SELL)
    expected_orders = backtest.orders
    expected_final = _final(backtest.statuses)
    assert len(expected_orders) >= 4, "the stretch must trade for the comparison to mean anything"
    assert any(o.status == "CLOSED" for o in expected_final.values())

    suffix = group_name("live")

    class Ml(MLStage):
        name: ClassVar[str] = f"ml-{suffix}"

    class Decision(DecisionStage):
        name: ClassVar[str] = f"decision-{suffix}"

    class Venue(VirtualExchangeStage):
        name: ClassVar[str] = f"virtual-exchange-{suffix}"

    venue_db = Database(tmp_path / "venue.db")
    ml = StageRunner(Ml(db, registry, models=(MODEL,), buy_pct=BUY, sell_pct=SELL), bus, poll_timeout=0.2)
    decision_stage = Decision(bus, model=MODEL, account=account)
    decision = StageRunner(decision_stage, bus, poll_timeout=0.2)
    venue_stage = Venue(bus, venue_db, account=account)
    venue = StageRunner(venue_stage, bus, poll_timeout=0.2)
    runners = [ml, decision, venue]
    for r in runners:
        r.start()
    producer = bus.producer()
    replay = None
    try:
        # every stage starts at its topics' end: tick another symbol until all have joined
        other = _symbol()
        deadline = time.monotonic() + 60
        while not all(r.health.snapshot().processed for r in runners) and time.monotonic() < deadline:
            tick = MarketData(symbol=other, timestamp=int(time.time() * 1000), price=1.0, open=1.0, high=1.0,
                              low=1.0, volume=1.0, price_change_pct=0.0)
            producer.produce(MARKET_DATA, encode(tick), key=other.encode())
            producer.flush(10)
            time.sleep(0.3)
        assert all(r.health.snapshot().processed for r in runners), [r.health.snapshot() for r in runners]

        replay = ReplaySource(bus.producer(), {symbol: candles}, speed=0)
        replay.start()
        want = {oid: o.status for oid, o in expected_final.items()}

        def done(got: list[Order]) -> bool:
            final = _final(got)
            return all(oid in final and final[oid].status == status for oid, status in want.items())

        live = _orders(bus, group_name("reader"), account, done)
    finally:
        if replay is not None:
            replay.stop()
        for r in runners:
            r.stop()
    for r in runners:
        assert not r.health.snapshot().dead_lettered, r.health.snapshot()

    # the decision stage made the backtest's orders, in the same order, with the same sizes
    made = [o for o in live if o.status == "PENDING"]
    assert [o.order_id for o in made] == [o.order_id for o in expected_orders], (
        decision_stage.skipped, [r.health.snapshot() for r in runners])
    for got, want_order in zip(made, expected_orders):
        assert (got.action, got.timestamp) == (want_order.action, want_order.timestamp)
        assert got.quantity == pytest.approx(want_order.quantity, rel=1e-12)
        assert got.price == pytest.approx(want_order.price, rel=1e-12)
    # and the virtual exchange filled and closed them as the backtest's exchange did
    final = _final(live)
    assert set(final) == set(expected_final)
    for oid, want_order in expected_final.items():
        got = final[oid]
        assert got.status == want_order.status, oid
        assert got.metadata.get("exit_reason") == want_order.metadata.get("exit_reason"), oid
        for key in ("fill_price", "filled_at", "exit_price", "closed_at", "pnl"):
            want_value = want_order.metadata.get(key)
            expected = want_value if want_value is None else pytest.approx(want_value, rel=1e-9)
            assert got.metadata.get(key) == expected, (oid, key)

    # a restarted exchange rebuilds the same portfolio from the topic alone
    before = venue_stage.exchange
    rebuilt = Venue(bus, None, account=account)
    assert rebuilt.rebuild() == []
    after = rebuilt.exchange
    assert after.cash == pytest.approx(before.cash, rel=1e-12)
    assert after.fees_paid == pytest.approx(before.fees_paid, rel=1e-12)
    assert sorted((b.order_id, b.quantity, b.fill_price) for b in after.positions()) == \
        sorted((b.order_id, b.quantity, b.fill_price) for b in before.positions())
    assert {k: b.status for k, b in after.books.items()} == {k: b.status for k, b in before.books.items()}
    # the page's table holds each order's last state
    rows = {r["order_id"]: r["status"] for r in venue_db.query("SELECT order_id, status FROM orders")}
    assert rows == {oid: o.status for oid, o in final.items()}
