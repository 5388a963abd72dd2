"""Live and backtest parity, on both buses: candles replayed live through the bus (replay ->
crypto.market_data -> ml -> crypto.ml_signals -> decision -> crypto.orders -> virtual exchange ->
crypto.orders) give, tick by tick, the signals a backtest of the same candles computes, the same
reasons for every signal that made no order, and the same orders, fills and closes, nothing more;
then a restarted virtual exchange rebuilds the same portfolio. A second run trades two symbols with
a confirming model.

The live side is read only once it is finished: the replay has ended and every stage's group has
committed the end of each of its inputs, twice in a row with no topic growing in between. Then the
whole of crypto.ml_signals and crypto.orders is read, so an order the live pipeline made after the
backtest's last one would show."""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from pipeline.bus.base import Bus, partition_for, read_to_end
from pipeline.messages import MarketData, MLSignal, Order, decode, encode
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.registry import Registry
from pipeline.ml.train import train_symbol
from pipeline.runner import StageRunner
from pipeline.sources.replay import ReplaySource
from pipeline.stages.decision import DecisionStage
from pipeline.stages.ml import MLStage
from pipeline.stages.virtual_exchange import VirtualExchangeStage
from pipeline.topics import CATALOG, MARKET_DATA, ML_SIGNALS, ORDERS
from pipeline.trading.backtest import SIGNAL_CODES, BacktestResult, prepare, run_backtest
from storage.db import Database

# Small thresholds so a random walk's model trades at all within a short stretch.
BUY, SELL = 0.05, -0.05
MODEL = "random_forest"
CONFIRM = "logistic_regression"

Signals = dict[tuple[str, int, str], tuple[str, float, float]]  # (symbol, tick, model) -> (signal, conf, change %)


def _symbol() -> str:
    return "Q" + "".join(random.choices(string.ascii_uppercase, k=4)) + "USDT"


def _write_candles(path: Path, bars: pd.DataFrame) -> None:
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{int(b.start)},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume!r}" for b in bars.itertuples()]
    path.write_text("\n".join(lines) + "\n")


def _final(messages: Sequence[Order]) -> dict[str, Order]:
    last: dict[str, Order] = {}
    for m in messages:
        last[m.order_id] = m
    return last


def _ends(bus: Bus, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    return {(t.name, p.partition): p.end_offset for t in bus.describe_topics(topics) for p in t.partitions}


def wait_until_caught_up(
    bus: Bus, groups: Mapping[str, Sequence[str]], since: Mapping[tuple[str, int], int], timeout: float = 180.0
) -> None:
    """Wait until each group (id -> input topics) has committed the end offset of every partition of
    its inputs that grew after ``since`` (the ends when the groups had joined: a group that starts at
    the end has nothing to commit on a partition that never grew), with no topic growing during the
    check."""
    topics = sorted({t for inputs in groups.values() for t in inputs})
    deadline = time.monotonic() + timeout
    behind: dict[str, Any] = {}
    while time.monotonic() < deadline:
        before = _ends(bus, topics)
        states = {g.group_id: g for g in bus.describe_groups() if g.group_id in groups}
        behind = {}
        for group, inputs in groups.items():
            committed = (
                {(p.topic, p.partition): p.committed for p in states[group].partitions} if group in states else {}
            )
            late = {
                tp: (committed.get(tp), end)
                for tp, end in before.items()
                if tp[0] in inputs and end > since.get(tp, 0) and committed.get(tp) != end
            }
            if late:
                behind[group] = late
        if not behind and _ends(bus, topics) == before:
            return
        time.sleep(0.3)
    raise AssertionError(f"the stages did not catch up in {timeout:g} s: {behind}")


def backtest_signals(
    bars: Mapping[str, pd.DataFrame], predictors: Mapping[tuple[str, str], Any], models: Sequence[str]
) -> Signals:
    """Every tick's signal of every model, as the backtest computes them (ticks past warm-up only)."""
    plan, _ = prepare(bars, predictors, model=models[0], confirm_models=tuple(models[1:]), buy_pct=BUY, sell_pct=SELL)
    out: Signals = {}
    for s in plan.symbols:
        ready = ~pd.isna(s.levels[..., 0])
        for model in models:
            code, conf, change = s.signals[model]
            for ts, c, p, ch in zip(
                s.times[ready].tolist(), code[ready].tolist(), conf[ready].tolist(), change[ready].tolist()
            ):
                out[(s.symbol, ts, model)] = (SIGNAL_CODES[c], p, ch)
    return out


@dataclass
class Live:
    signals: Signals
    orders: list[Order]
    venue: VirtualExchangeStage
    venue_db: Database
    runners: list[StageRunner]
    skipped: dict[str, int]


def run_live(
    bus: Bus,
    tmp_path: Path,
    group_name: Callable[[str], str],
    registry: Registry,
    db: Database,
    files: Mapping[str, Path],
    models: Sequence[str],
    account: str,
) -> Live:
    """Replay ``files`` through ml, decision and the virtual exchange; return what they published."""

    class Ml(MLStage):  # group ids of their own, deleted from a shared broker after the test
        name: ClassVar[str] = group_name("ml")

    class Decision(DecisionStage):
        name: ClassVar[str] = group_name("decision")

    class Venue(VirtualExchangeStage):
        name: ClassVar[str] = group_name("virtual-exchange")

    venue_db = Database(tmp_path / "venue.db")
    ml = StageRunner(Ml(db, registry, models=tuple(models), buy_pct=BUY, sell_pct=SELL), bus, poll_timeout=0.2)
    decision_stage = Decision(bus, model=models[0], confirm_models=tuple(models[1:]), account=account)
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
            tick = MarketData(
                symbol=other,
                timestamp=int(time.time() * 1000),
                price=1.0,
                open=1.0,
                high=1.0,
                low=1.0,
                volume=1.0,
                price_change_pct=0.0,
            )
            producer.produce(MARKET_DATA, encode(tick), key=other.encode())
            producer.flush(10)
            time.sleep(0.3)
        assert all(r.health.snapshot().processed for r in runners), [r.health.snapshot() for r in runners]
        inputs = {Ml.name: Ml.inputs, Decision.name: Decision.inputs, Venue.name: Venue.inputs}
        joined = _ends(bus, sorted({t for topics in inputs.values() for t in topics}))

        replay = ReplaySource(bus.producer(), dict(files), speed=0)
        replay.start()
        deadline = time.monotonic() + 120
        while not replay.done and time.monotonic() < deadline:
            time.sleep(0.1)
        assert replay.done, replay.health.snapshot()
        wait_until_caught_up(bus, inputs, since=joined)
    finally:
        if replay is not None:
            replay.stop()
        for r in runners:
            r.stop()
    for r in runners:
        assert not r.health.snapshot().dead_lettered, r.health.snapshot()

    keys = {s.encode() for s in files}
    signals: Signals = {}
    for record in read_to_end(bus, ML_SIGNALS, group_name("signals-reader")):
        if record.key in keys and record.value is not None:
            s = decode(ML_SIGNALS, record.value)
            assert isinstance(s, MLSignal)
            key = (s.symbol, s.timestamp, s.model)
            assert key not in signals, f"two signals of {key}"
            signals[key] = (s.signal, s.confidence, s.expected_change_pct)
    orders: list[Order] = []
    for record in read_to_end(bus, ORDERS, group_name("orders-reader")):
        if record.value is None or account.encode() not in record.value:
            continue  # other runs' orders, some deliberately malformed, share the topic on Kafka
        order = decode(ORDERS, record.value)
        assert isinstance(order, Order)
        if order.metadata.get("account") == account:
            orders.append(order)
    return Live(signals, orders, venue_stage, venue_db, runners, dict(decision_stage.skipped))


def assert_same_signals(live: Signals, expected: Signals) -> None:
    assert len(live) == len(expected) and set(live) == set(expected), (
        sorted(set(expected) - set(live))[:5],
        sorted(set(live) - set(expected))[:5],
    )
    for key, (signal, confidence, change) in expected.items():
        got = live[key]
        assert got[0] == signal, (key, got, (signal, confidence, change))
        assert got[1] == pytest.approx(confidence, rel=1e-9, abs=1e-12), key
        assert got[2] == pytest.approx(change, rel=1e-9, abs=1e-12), key


def assert_same_orders(live: list[Order], backtest: BacktestResult, skipped: dict[str, int]) -> dict[str, Order]:
    """The live orders are the backtest's (same ids, times, sides, sizes, confirmations), nothing more,
    and their last states (fills, closes, P&L) are the backtest exchange's. ``live`` is the whole
    compacted topic: every order's last state is there, earlier ones may be gone, and a status
    message carries its order's fields. Returns the live last states."""
    final = _final(live)

    def when(o: Order) -> tuple[int, str]:
        return o.timestamp, o.order_id

    made = sorted(final.values(), key=when)
    assert [o.order_id for o in made] == [o.order_id for o in sorted(backtest.orders, key=when)], skipped
    wanted = {o.order_id: o for o in backtest.orders}
    for got in made:
        want = wanted[got.order_id]
        assert (got.action, got.timestamp, got.symbol) == (want.action, want.timestamp, want.symbol)
        assert got.quantity == pytest.approx(want.quantity, rel=1e-12)
        assert got.price == pytest.approx(want.price, rel=1e-12)
        assert got.metadata.get("confirmed_by") == want.metadata.get("confirmed_by"), got.order_id
    expected_final = _final(backtest.statuses)
    assert set(final) == set(expected_final)
    for oid, want in expected_final.items():
        got = final[oid]
        assert got.status == want.status, oid
        assert got.metadata.get("exit_reason") == want.metadata.get("exit_reason"), oid
        for key in ("fill_price", "filled_at", "exit_price", "closed_at", "pnl"):
            want_value = want.metadata.get(key)
            expected = want_value if want_value is None else pytest.approx(want_value, rel=1e-9)
            assert got.metadata.get(key) == expected, (oid, key)
    # every signal that made no order, counted by reason, is the backtest's too
    assert {k: n for k, n in skipped.items() if n} == {k: n for k, n in backtest.skipped.items() if n}
    return final


def test_a_replay_through_the_bus_makes_the_backtests_signals_and_orders_and_a_restart_rebuilds_the_portfolio(
    bus: Bus, tmp_path: Path, group_name
) -> None:
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

    predictors = {(symbol, MODEL): registry.load(record)}
    backtest = run_backtest({symbol: stretch}, predictors, model=MODEL, buy_pct=BUY, sell_pct=SELL)
    expected_signals = backtest_signals({symbol: stretch}, predictors, (MODEL,))
    assert len(backtest.orders) >= 4, "the stretch must trade for the comparison to mean anything"
    assert any(o.status == "CLOSED" for o in _final(backtest.statuses).values())
    assert {s for s, _, _ in expected_signals.values()} == {"BUY", "SELL", "HOLD"}

    live = run_live(bus, tmp_path, group_name, registry, db, {symbol: candles}, (MODEL,), account)
    assert_same_signals(live.signals, expected_signals)
    final = assert_same_orders(live.orders, backtest, live.skipped)

    # a restarted exchange rebuilds the same portfolio from the topic alone
    before = live.venue.exchange
    rebuilt = type(live.venue)(bus, None, account=account)
    assert rebuilt.rebuild() == []
    after = rebuilt.exchange
    assert after.cash == pytest.approx(before.cash, rel=1e-12)
    assert after.fees_paid == pytest.approx(before.fees_paid, rel=1e-12)
    assert sorted((b.order_id, b.quantity, b.fill_price) for b in after.positions()) == sorted(
        (b.order_id, b.quantity, b.fill_price) for b in before.positions()
    )
    assert {k: b.status for k, b in after.books.items()} == {k: b.status for k, b in before.books.items()}
    # the page's table holds each order's last state
    rows = {r["order_id"]: r["status"] for r in live.venue_db.query("SELECT order_id, status FROM orders")}
    assert rows == {oid: o.status for oid, o in final.items()}


def _two_symbols_on_one_partition() -> list[str]:
    """Two symbols whose ticks and signals share a partition, so the bus keeps them in time order.

    On two partitions the stages read the symbols in an interleaving of the bus's choosing; the
    decision stage's replica then marks the other symbol's position at another tick than the
    backtest does, and sizes differently (a replay at full speed moved most quantities by up to
    0.05 %): same orders, signals and reasons, different sizes. That is a limit of the live decision
    stage across partitions, which this test leaves out."""
    parts = CATALOG[MARKET_DATA].partitions
    assert CATALOG[ML_SIGNALS].partitions == parts
    first = _symbol()
    while True:
        second = _symbol()
        if second != first and partition_for(second.encode(), parts) == partition_for(first.encode(), parts):
            return sorted([first, second])


def test_two_symbols_with_a_confirming_model_make_the_backtests_signals_and_orders(
    bus: Bus, tmp_path: Path, group_name
) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    registry = Registry(db, tmp_path / "models")
    account = f"parity-{group_name('acct')}"
    models = (MODEL, CONFIRM)
    stretches: dict[str, pd.DataFrame] = {}
    files: dict[str, Path] = {}
    predictors = {}
    for i, symbol in enumerate(_two_symbols_on_one_partition()):
        train = bars_from_simulator(symbol, 3000, seed=21 + i)
        for record in train_symbol(registry, train, symbol, models, horizon=15, n_splits=2):
            predictors[(symbol, record.model)] = registry.load(record)
        # the same minutes for both, so their ticks interleave
        stretches[symbol] = bars_from_simulator(symbol, 600, seed=31 + i, end_ms=1_731_715_200_000)
        files[symbol] = tmp_path / f"{symbol}.csv"
        _write_candles(files[symbol], stretches[symbol])

    backtest = run_backtest(stretches, predictors, model=MODEL, confirm_models=(CONFIRM,), buy_pct=BUY, sell_pct=SELL)
    expected_signals = backtest_signals(stretches, predictors, models)
    assert {o.symbol for o in backtest.orders} == set(files), "both symbols must trade"
    assert any(o.metadata.get("confirmed_by") == CONFIRM for o in backtest.orders), (
        "a medium-confidence signal confirmed by the other model must make an order"
    )

    live = run_live(bus, tmp_path, group_name, registry, db, files, models, account)
    assert_same_signals(live.signals, expected_signals)
    assert_same_orders(live.orders, backtest, live.skipped)
