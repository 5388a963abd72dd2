"""The decision stage on the "low" latency profile, restarted mid-stream: a signal that came before
its market data (held, its offset committed) and a strategy that dies when the tick releases it.
The restarted stage must make the same order as a run that never failed: the held signal survives
the reset, and the replica's last prices and kept ticks are those it had, so its rebuilt portfolio
fills the earlier order and marks it as the uninterrupted one does. On both buses."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pipeline.bus.base import Bus
from pipeline.messages import Order
from pipeline.runner import StageRunner
from pipeline.stages.decision import DecisionStage
from pipeline.topics import CATALOG
from pipeline.trading.strategy import MLSignalStrategy
from pipeline.trading.strategy import order_id as decision_order_id
from tests.integration.test_trading_stages import (
    MODEL,
    Reader,
    _decision_class,
    _now,
    _send,
    _signal,
    _symbol,
    _tick,
    _wait,
    _warm,
)


def _run(bus: Bus, group_name: Any, monkeypatch: pytest.MonkeyPatch, *, fail: bool) -> tuple[Order, Order, list[int]]:
    """Run the scenario on fresh symbols and account; return the two BUY orders made and the
    timestamps the strategy died on."""
    account = f"restart-{group_name('acct')}"
    stage: DecisionStage = _decision_class(group_name("decision"))(bus, model=MODEL, account=account)
    runner = StageRunner(stage, bus, poll_timeout=0.2, backoff_s=0.05)
    producer = bus.producer()
    reader = Reader(bus, group_name("reader"), needle=account)
    first, second = _symbol(), _symbol()
    real = MLSignalStrategy.on_signals
    failures: list[int] = []

    def dies_once_on_the_second(self: MLSignalStrategy, group: Any) -> Any:
        if fail and group.symbol == second and group.primary.signal == "BUY" and not failures:
            failures.append(group.timestamp)
            raise RuntimeError("boom")
        return real(self, group)

    monkeypatch.setattr(MLSignalStrategy, "on_signals", dies_once_on_the_second)
    runner.start()
    try:
        _warm(producer, [runner])
        early = _now() - 1000
        _send(
            producer, *(m for s in (first, second) for m in (_tick(s, early, 1.0), _signal(s, early, 1.0, "HOLD", 0.5)))
        )
        _wait(lambda: all(stage.market_ts.get(s) == early for s in (first, second)), what="the quiet signals")
        now = _now()
        # a BUY of the first symbol, then a later tick of it that fills the BUY in the replica (no
        # live exchange runs here: on the topic the order stays PENDING)
        _send(producer, _tick(first, now, 100.0), _signal(first, now, 100.0, "BUY", 0.9))
        assert reader.read(lambda r: bool(r.of(decision_order_id(first, now, "BUY"))))
        _send(producer, _tick(first, now + 2, 110.0), _signal(first, now + 2, 110.0, "HOLD", 0.5))
        _wait(lambda: stage.market_ts.get(first) == now + 2, what="the first symbol's second tick")
        # the second symbol's signal comes before its tick: held, and its poll committed
        _send(producer, _signal(second, now + 3, 50.0, "BUY", 0.9))
        _wait(lambda: stage.skipped["held: waiting for market data"] == 1, what="the held signal")
        time.sleep(0.5)  # the poll that held it is committed
        _send(producer, _tick(second, now + 3, 50.0))
        assert reader.read(lambda r: bool(r.of(decision_order_id(second, now + 3, "BUY"))), timeout=30.0), (
            stage.skipped,
            runner.health.snapshot(),
        )
        reader.read(timeout=1.0)
    finally:
        runner.stop()
        reader.close()
    made = [o for o in reader.orders() if o.status == "PENDING"]
    assert sorted(o.order_id for o in made) == sorted(
        {decision_order_id(first, now, "BUY"), decision_order_id(second, now + 3, "BUY")}
    )
    by_symbol = {o.symbol: o for o in made}
    if fail:
        # the replica was rebuilt: the first BUY is filled in it at the tick it had kept
        book = stage.exchange.books[decision_order_id(first, now, "BUY")]
        assert (book.status, book.filled_at) == ("FILLED", now + 2)
        assert stage.exchange.price(first) == 110.0
    return by_symbol[first], by_symbol[second], [f - now for f in failures]


def test_a_restart_between_a_held_signal_and_its_tick_makes_the_order_an_uninterrupted_run_makes(
    bus: Bus, group_name: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus.create_topics(CATALOG.values())
    assert DecisionStage.latency == "low"
    kept_first, kept_second, none = _run(bus, group_name, monkeypatch, fail=False)
    first, second, died = _run(bus, group_name, monkeypatch, fail=True)
    assert none == [] and died == [3]
    assert first.quantity == kept_first.quantity
    # sized on the same portfolio: the first BUY filled at 110 and marked there, cash the same
    assert second.quantity == pytest.approx(kept_second.quantity, rel=1e-12)
    balance = "portfolio_balance_usdt"
    assert second.metadata[balance] == pytest.approx(kept_second.metadata[balance], rel=1e-12)
    assert second.metadata[balance] < 10_000.0  # the first BUY paid its fee and slippage
    assert second.metadata.get("capped_by") == kept_second.metadata.get("capped_by")
