"""The paper exchange (``pipeline.trading.exchange.Exchange``): fills, stops and targets, limits,
closes, late orders and races, the trader's requests, and rebuilding the account from each order's
last message on the compacted topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.errors import BadMessageError
from pipeline.messages import Order, OrderType, RiskManagement, TriggerSignal, decode, encode
from pipeline.topics import ORDERS
from pipeline.trading.exchange import Exchange, OrderRejected
from pipeline.trading.risk import RiskSettings, brackets, size_entry

T0 = 1_700_000_000_000
BTC, ETH, SOL = "BTCUSDT", "ETHUSDT", "SOLUSDT"
FEE, SLIP = 10 / 10_000, 5 / 10_000
START = 10_000.0


def buy(
    oid: str,
    ts: int,
    price: float,
    quantity: float,
    *,
    stop: float | None = None,
    take: float | None = None,
    symbol: str = BTC,
    order_type: OrderType = "MARKET",
    strategy: str = "ml_signal_strategy",
    **meta: Any,
) -> Order:
    return Order(
        order_id=oid,
        symbol=symbol,
        timestamp=ts,
        action="BUY",
        order_type=order_type,
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status="PENDING",
        strategy=strategy,
        trigger_signal=TriggerSignal(model="random_forest", confidence=0.9, expected_change_pct=2.0),
        risk_management=RiskManagement(stop_loss=stop, take_profit=take),
        metadata=dict(meta),
    )


def sell(
    oid: str,
    ts: int,
    price: float,
    quantity: float,
    closes: str | None,
    *,
    symbol: str = BTC,
    strategy: str = "ml_signal_strategy",
    **meta: Any,
) -> Order:
    metadata = dict(meta)
    if closes is not None:
        metadata["closes"] = closes
    return Order(
        order_id=oid,
        symbol=symbol,
        timestamp=ts,
        action="SELL",
        order_type="MARKET",
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status="PENDING",
        strategy=strategy,
        trigger_signal=TriggerSignal(model="random_forest", confidence=0.9, expected_change_pct=-2.0),
        risk_management=RiskManagement(),
        metadata=metadata,
    )


def cancel_request(order: Order, ts: int) -> Order:
    return order.model_copy(
        update={"status": "CANCELLED", "timestamp": ts, "metadata": {**order.metadata, "requested_by": "trader"}}
    )


def statuses(messages: list[Order]) -> list[tuple[str, str]]:
    return [(m.order_id, m.status) for m in messages]


def filled_buy(
    ex: Exchange,
    oid: str = "B1",
    *,
    price: float = 100.0,
    quantity: float = 10.0,
    stop: float | None = 98.0,
    take: float | None = 105.0,
    symbol: str = BTC,
    **meta: Any,
) -> Order:
    """Submit a market BUY at T0 and fill it at the tick T0+1000 at ``price``; return its FILLED message."""
    assert ex.submit(buy(oid, T0, price, quantity, stop=stop, take=take, symbol=symbol, **meta)) == []
    out = ex.on_tick(symbol, T0 + 1000, price)
    assert statuses(out) == [(oid, "FILLED")]
    return out[0]


# -- market fills ---------------------------------------------------------------------------------


def test_a_market_buy_fills_at_the_next_tick_after_its_time_with_slippage_and_fee() -> None:
    ex = Exchange()
    ex.on_tick(BTC, T0 - 5, 99.0)
    assert ex.submit(buy("B1", T0, 100.0, 10.0, stop=98.0, take=105.0)) == []
    assert ex.on_tick(BTC, T0, 100.0) == []  # a tick at the order's own time is not after it
    assert ex.on_tick(ETH, T0 + 500, 5.0) == []  # another symbol's tick fills nothing
    assert [b.order_id for b in ex.pending_orders()] == ["B1"]
    out = ex.on_tick(BTC, T0 + 1000, 101.0)
    assert statuses(out) == [("B1", "FILLED")]
    fill = 101.0 * (1 + SLIP)
    cost = 10.0 * fill
    fee = cost * FEE
    meta = out[0].metadata
    assert meta["fill_price"] == pytest.approx(fill, rel=1e-12)
    assert meta["fill_fee"] == pytest.approx(fee, rel=1e-12)
    assert meta["filled_at"] == T0 + 1000
    assert meta["updated_by"] == "virtual_exchange"
    assert ex.cash == pytest.approx(START - cost - fee, rel=1e-12)
    assert ex.fees_paid == pytest.approx(fee, rel=1e-12)
    assert [(b.order_id, b.quantity) for b in ex.positions(BTC)] == [("B1", 10.0)]
    assert ex.pending_orders() == []
    # the next ticks inside the brackets change nothing
    assert ex.on_tick(BTC, T0 + 2000, 102.0) == []


# -- stops and targets ------------------------------------------------------------------------------


def _check_close(ex: Exchange, message: Order, *, exit_price: float, reason: str, at: int) -> None:
    meta = message.metadata
    assert message.status == "CLOSED"
    assert meta["exit_reason"] == reason
    assert meta["exit_price"] == pytest.approx(exit_price, rel=1e-12)
    assert meta["closed_at"] == at
    q, fill = message.quantity, meta["fill_price"]
    entry_fee, exit_fee = meta["fill_fee"], meta["exit_fee"]
    assert exit_fee == pytest.approx(q * exit_price * FEE, rel=1e-12)
    pnl = q * (exit_price - fill) - entry_fee - exit_fee
    assert meta["pnl"] == pytest.approx(pnl, rel=1e-9)
    assert ex.cash == pytest.approx(START + pnl, rel=1e-12)
    assert ex.realized == pytest.approx(pnl, rel=1e-9)
    assert ex.fees_paid == pytest.approx(entry_fee + exit_fee, rel=1e-12)
    assert ex.positions() == []


def test_a_stop_loss_triggers_on_a_tick_after_the_fill_at_that_ticks_price() -> None:
    ex = Exchange()
    ex.submit(buy("B1", T0, 100.0, 10.0, stop=98.0, take=105.0))
    out = ex.on_tick(BTC, T0 + 1000, 97.0)  # fills under the stop: the fill tick itself never stops it
    assert statuses(out) == [("B1", "FILLED")]
    assert ex.on_tick(BTC, T0 + 2000, 98.01) == []
    out = ex.on_tick(BTC, T0 + 3000, 98.0)  # at the stop
    assert statuses(out) == [("B1", "CLOSED")]
    _check_close(ex, out[0], exit_price=98.0 * (1 - SLIP), reason="stop_loss", at=T0 + 3000)
    assert ex.on_tick(BTC, T0 + 4000, 90.0) == []


def test_a_gap_through_the_stop_closes_at_the_gapped_price() -> None:
    ex = Exchange()
    filled_buy(ex, stop=98.0)
    assert ex.on_tick(BTC, T0 + 2000, 99.0) == []
    out = ex.on_tick(BTC, T0 + 3000, 90.0)
    assert statuses(out) == [("B1", "CLOSED")]
    _check_close(ex, out[0], exit_price=90.0 * (1 - SLIP), reason="stop_loss", at=T0 + 3000)
    assert out[0].metadata["exit_price"] < 98.0 * (1 - SLIP)


def test_a_take_profit_triggers_at_the_target_and_a_gap_closes_at_the_gapped_price() -> None:
    ex = Exchange()
    ex.submit(buy("B1", T0, 100.0, 10.0, stop=98.0, take=105.0))
    assert statuses(ex.on_tick(BTC, T0 + 1000, 106.0)) == [("B1", "FILLED")]  # not on the fill tick
    out = ex.on_tick(BTC, T0 + 2000, 105.0)
    assert statuses(out) == [("B1", "CLOSED")]
    _check_close(ex, out[0], exit_price=105.0 * (1 - SLIP), reason="take_profit", at=T0 + 2000)

    gap = Exchange()
    filled_buy(gap, take=105.0)
    assert gap.on_tick(BTC, T0 + 2000, 104.9) == []
    out = gap.on_tick(BTC, T0 + 3000, 112.0)
    _check_close(gap, out[0], exit_price=112.0 * (1 - SLIP), reason="take_profit", at=T0 + 3000)


def test_a_trailing_stop_rises_with_new_highs_and_closes_as_trailing_stop() -> None:
    ex = Exchange()
    filled_buy(ex, stop=98.0, take=None, trailing_stop_pct=2.0)
    assert ex.on_tick(BTC, T0 + 2000, 99.0) == []  # no new high: the stop stays
    out = ex.on_tick(BTC, T0 + 3000, 105.0)
    assert statuses(out) == [("B1", "FILLED")]  # said again so a restart finds the raised stop
    assert out[0].metadata["stop"] == pytest.approx(105.0 * 0.98)
    assert out[0].metadata["high"] == 105.0
    out = ex.on_tick(BTC, T0 + 4000, 110.0)
    assert out[0].metadata["stop"] == pytest.approx(110.0 * 0.98)
    assert ex.positions()[0].stop == pytest.approx(107.8)
    assert ex.on_tick(BTC, T0 + 5000, 108.0) == []  # above the raised stop, under the high
    out = ex.on_tick(BTC, T0 + 6000, 107.5)
    assert statuses(out) == [("B1", "CLOSED")]
    _check_close(ex, out[0], exit_price=107.5 * (1 - SLIP), reason="trailing_stop", at=T0 + 6000)
    assert out[0].metadata["pnl"] > 0


# -- limits -----------------------------------------------------------------------------------------


def test_a_limit_buy_fills_when_the_price_reaches_the_limit_at_the_tick_price_without_slippage() -> None:
    ex = Exchange()
    ex.submit(buy("L1", T0, 95.0, 10.0, stop=90.0, take=100.0, order_type="LIMIT"))
    assert ex.on_tick(BTC, T0 + 1000, 100.0) == []
    assert ex.on_tick(BTC, T0 + 2000, 95.01) == []
    out = ex.on_tick(BTC, T0 + 3000, 94.5)
    assert statuses(out) == [("L1", "FILLED")]
    assert out[0].metadata["fill_price"] == 94.5
    assert out[0].metadata["fill_fee"] == pytest.approx(10 * 94.5 * FEE)
    assert ex.cash == pytest.approx(START - 945.0 * (1 + FEE))


def test_a_limit_buy_expires_after_its_time_to_live() -> None:
    ex = Exchange()
    ex.submit(buy("L1", T0, 95.0, 10.0, order_type="LIMIT", ttl_ms=60_000))
    assert ex.on_tick(BTC, T0 + 30_000, 100.0) == []
    assert ex.on_tick(BTC, T0 + 60_000, 99.0) == []  # the last moment of its life
    out = ex.on_tick(BTC, T0 + 60_001, 94.0)  # reached, but too late
    assert statuses(out) == [("L1", "CANCELLED")]
    assert "expired" in out[0].metadata["reason"]
    assert out[0].metadata["cancelled_at"] == T0 + 60_001
    assert ex.cash == START and ex.pending_orders() == [] and ex.positions() == []


def test_a_buy_without_the_cash_at_its_fill_is_cancelled_naming_the_cash() -> None:
    ex = Exchange()
    ex.submit(buy("B1", T0, 100.0, 100.0))  # 10,000 USDT plus slippage and fee
    out = ex.on_tick(BTC, T0 + 1000, 100.0)
    assert statuses(out) == [("B1", "CANCELLED")]
    assert "cash" in out[0].metadata["reason"]
    assert ex.cash == START and ex.fees_paid == 0.0 and ex.positions() == []


def test_an_entry_sized_to_the_whole_cash_still_fits_the_cash_when_it_fills() -> None:
    # size_entry caps by cash / (1 + cost_rate) "so a sized order still fits the cash when it fills"
    settings = RiskSettings(position_pct=100.0, max_symbol_exposure_pct=100.0)
    for i, price in enumerate((68_000.5, 1.2345, 99.99, 3_333.33)):
        ex = Exchange()
        stop, take = brackets(price, settings)
        size = size_entry(
            price,
            stop,
            equity=ex.equity(),
            cash=ex.available_cash(),
            symbol_exposure=0.0,
            total_exposure=0.0,
            settings=settings,
            cost_rate=ex.cost_rate,
        )
        assert size.capped_by == "cash"
        ex.submit(buy(f"B{i}", T0, price, size.quantity, stop=stop, take=take))
        out = ex.on_tick(BTC, T0 + 1000, price)  # the price has not moved
        assert statuses(out) == [(f"B{i}", "FILLED")], (price, out[0].metadata.get("reason"))


# -- closing sells ----------------------------------------------------------------------------------


def test_a_sell_must_name_the_position_it_closes() -> None:
    ex = Exchange()
    filled_buy(ex)
    with pytest.raises(OrderRejected) as err:
        ex.submit(sell("S1", T0 + 1500, 100.0, 10.0, None))
    assert err.value.violations[0].field == "metadata.closes"
    assert "metadata.closes" in str(err.value)
    with pytest.raises(OrderRejected) as err:
        ex.submit(sell("S2", T0 + 1500, 100.0, 10.0, "NOPE"))
    assert err.value.violations[0].field == "metadata.closes"
    with pytest.raises(OrderRejected) as err:
        ex.submit(sell("S3", T0 + 1500, 100.0, 10.0, "B1", symbol=ETH))  # another symbol's
    assert err.value.violations[0].field == "metadata.closes"
    with pytest.raises(OrderRejected) as err:
        ex.submit(sell("S4", T0 + 1500, 100.0, 4.0, "B1"))
    assert err.value.violations[0].field == "quantity"
    assert "quantity" in str(err.value)
    assert not any(oid in ex.books for oid in ("S1", "S2", "S3", "S4"))
    assert ex.on_tick(BTC, T0 + 2000, 100.0) == []  # the position is untouched


def test_a_second_close_of_the_same_position_is_rejected() -> None:
    ex = Exchange()
    filled_buy(ex)
    assert ex.submit(sell("S1", T0 + 1500, 100.0, 10.0, "B1")) == []
    with pytest.raises(OrderRejected) as err:
        ex.submit(sell("S2", T0 + 1600, 100.0, 10.0, "B1"))
    assert err.value.violations[0].field == "metadata.closes" and "S1" in str(err.value)
    out = ex.on_tick(BTC, T0 + 2000, 100.0)
    assert statuses(out) == [("B1", "CLOSED"), ("S1", "FILLED")]
    cash = ex.cash
    # once closed, yet another close never fills (rejected or cancelled) and moves no cash
    try:
        late = ex.submit(sell("S3", T0 + 2500, 100.0, 10.0, "B1"))
    except OrderRejected:
        late = []
    late += ex.on_tick(BTC, T0 + 3000, 100.0)
    assert ("S3", "FILLED") not in statuses(late)
    assert ex.cash == cash


def test_a_close_fills_at_the_next_tick_and_says_the_target_closed_first() -> None:
    ex = Exchange()
    bought = filled_buy(ex)
    assert ex.submit(sell("S1", T0 + 1500, 101.0, 10.0, "B1")) == []
    assert ex.on_tick(BTC, T0 + 1500, 101.0) == []  # not at its own time
    out = ex.on_tick(BTC, T0 + 2000, 102.0)
    assert statuses(out) == [("B1", "CLOSED"), ("S1", "FILLED")]
    closed, sold = out
    exit_price = 102.0 * (1 - SLIP)
    _check_close(ex, closed, exit_price=exit_price, reason="signal", at=T0 + 2000)
    assert closed.metadata["exit_order_id"] == "S1"
    assert closed.metadata["fill_price"] == bought.metadata["fill_price"]
    assert sold.metadata["fill_price"] == pytest.approx(exit_price)
    assert sold.metadata["fill_fee"] == pytest.approx(closed.metadata["exit_fee"])
    assert sold.metadata["filled_at"] == T0 + 2000


def test_a_manual_close_says_manual() -> None:
    ex = Exchange()
    filled_buy(ex)
    ex.submit(sell("S1", T0 + 1500, 100.0, 10.0, "B1", strategy="manual"))
    out = ex.on_tick(BTC, T0 + 2000, 100.0)
    assert statuses(out) == [("B1", "CLOSED"), ("S1", "FILLED")]
    assert out[0].metadata["exit_reason"] == "manual"


# -- late orders and races --------------------------------------------------------------------------

TICKS = [
    (T0 + 1000, 100.0),
    (T0 + 2000, 101.0),
    (T0 + 3000, 103.0),
    (T0 + 4000, 99.0),
    (T0 + 5000, 97.0),
    (T0 + 6000, 96.0),
]


def _state(ex: Exchange) -> dict[str, Any]:
    return {
        "cash": ex.cash,
        "fees": ex.fees_paid,
        "realized": ex.realized,
        "books": {
            k: (b.status, b.fill_price, b.filled_at, b.exit_price, b.closed_at, b.exit_reason, b.exit_order_id, b.stop)
            for k, b in ex.books.items()
        },
        "open": sorted(b.order_id for b in ex.positions()),
        "pending": sorted(b.order_id for b in ex.pending_orders()),
    }


def _final(messages: list[Order]) -> dict[str, tuple[str, dict]]:
    last: dict[str, tuple[str, dict]] = {}
    for m in messages:
        last[m.order_id] = (m.status, m.metadata)
    return last


@pytest.mark.parametrize("trailing", [0.0, 1.0])
def test_a_late_order_fills_as_if_it_had_come_in_time(trailing: float) -> None:
    order = buy("B1", T0 + 1500, 100.0, 10.0, stop=98.0, take=110.0, trailing_stop_pct=trailing)
    in_time, late = Exchange(), Exchange()
    in_time_out: list[Order] = []
    for ts, price in TICKS:
        if ts == T0 + 2000:
            in_time_out += in_time.submit(order)
        in_time_out += in_time.on_tick(BTC, ts, price)
        late.on_tick(BTC, ts, price)
    late_out = late.submit(order)
    assert late_out, "the late order fills from the kept ticks"
    assert late_out[0].status == "FILLED" and late_out[0].metadata["filled_at"] == T0 + 2000
    assert _final(late_out) == _final(in_time_out)
    assert _state(late) == _state(in_time)


def test_a_late_order_fills_as_if_in_time_when_ticks_share_a_timestamp() -> None:
    # two ticks of the same millisecond: in time, the second is the fill's own moment and cannot
    # stop the new position; the late path must not treat it differently
    ticks = [(T0 + 1000, 100.0), (T0 + 2000, 100.0), (T0 + 2000, 97.0), (T0 + 3000, 99.0)]
    order = buy("B1", T0 + 1500, 100.0, 10.0, stop=98.0, take=110.0)
    in_time, late = Exchange(), Exchange()
    in_time_out: list[Order] = []
    for ts, price in ticks:
        if ts == T0 + 2000 and "B1" not in in_time.books:
            in_time_out += in_time.submit(order)
        in_time_out += in_time.on_tick(BTC, ts, price)
        late.on_tick(BTC, ts, price)
    late_out = late.submit(order)
    assert _final(late_out) == _final(in_time_out)
    assert _state(late) == _state(in_time)


def test_a_late_close_that_would_have_filled_before_the_stop_wins() -> None:
    in_time, late = Exchange(), Exchange()
    for ex in (in_time, late):
        filled_buy(ex, stop=98.0)  # fills at T0+1000 at 100
    close = sell("S1", T0 + 1500, 100.0, 10.0, "B1")
    in_time.submit(close)
    in_time_out = in_time.on_tick(BTC, T0 + 2000, 99.0) + in_time.on_tick(BTC, T0 + 3000, 97.0)
    late_out = late.on_tick(BTC, T0 + 2000, 99.0) + late.on_tick(BTC, T0 + 3000, 97.0)
    assert statuses(late_out) == [("B1", "CLOSED")]
    assert late_out[0].metadata["exit_reason"] == "stop_loss"
    out = late.submit(close)
    assert statuses(out) == [("B1", "CLOSED"), ("S1", "FILLED")]
    assert out[0].metadata["exit_reason"] == "signal"
    assert out[0].metadata["closed_at"] == T0 + 2000
    assert out[0].metadata["exit_price"] == pytest.approx(99.0 * (1 - SLIP))
    assert _final(late_out + out) == _final(in_time_out)
    assert _state(late) == _state(in_time)
    _check_close(late, out[0], exit_price=99.0 * (1 - SLIP), reason="signal", at=T0 + 2000)


def test_a_late_close_after_a_stop_at_an_earlier_tick_is_cancelled_not_rejected() -> None:
    ex = Exchange()
    filled_buy(ex, stop=98.0)
    stopped = ex.on_tick(BTC, T0 + 2000, 97.0)
    assert statuses(stopped) == [("B1", "CLOSED")]
    cash = ex.cash
    out = ex.submit(sell("S1", T0 + 2500, 97.0, 10.0, "B1"))  # decided after the stop
    assert statuses(out) == [("S1", "CANCELLED")]
    assert "already closed" in out[0].metadata["reason"] and "stop_loss" in out[0].metadata["reason"]
    assert ex.cash == cash
    assert ex.books["B1"].exit_reason == "stop_loss"
    assert ex.on_tick(BTC, T0 + 3000, 96.0) == []


# -- receive: redeliveries and the trader's requests -----------------------------------------------


def test_a_pending_redelivered_after_its_fill_changes_nothing() -> None:
    ex = Exchange()
    order = buy("B1", T0, 100.0, 10.0, stop=98.0, take=105.0)
    assert ex.receive(order) == []
    (filled,) = ex.on_tick(BTC, T0 + 1000, 100.0)
    before = _state(ex)
    again = ex.receive(order)  # authoritative: say the current state again
    assert statuses(again) == [("B1", "FILLED")]
    assert again[0].metadata == filled.metadata
    assert ex.receive(order, authoritative=False) == []
    assert ex.receive(filled, authoritative=False) == []  # its own word coming back
    assert _state(ex) == before


def test_a_trader_cancel_request_cancels_a_pending_order_only() -> None:
    ex = Exchange()
    limit = buy("L1", T0, 90.0, 10.0, order_type="LIMIT")
    ex.receive(limit)
    ex.on_tick(BTC, T0 + 1000, 100.0)
    out = ex.receive(cancel_request(limit, T0 + 1500))
    assert statuses(out) == [("L1", "CANCELLED")]
    assert "trader" in out[0].metadata["reason"]
    assert "requested_by" not in out[0].metadata and out[0].metadata["updated_by"] == "virtual_exchange"
    assert ex.pending_orders() == []
    assert ex.on_tick(BTC, T0 + 2000, 80.0) == []  # never fills afterwards

    market = buy("B1", T0 + 2500, 80.0, 10.0, stop=70.0)
    ex.receive(market)
    (filled,) = ex.on_tick(BTC, T0 + 3000, 80.0)
    before = _state(ex)
    out = ex.receive(cancel_request(market, T0 + 3500))
    assert statuses(out) == [("B1", "FILLED")]  # it says the order's state, it does not cancel it
    assert out[0].metadata == filled.metadata
    assert ex.receive(cancel_request(market, T0 + 3500), authoritative=False) == []
    assert _state(ex) == before
    with pytest.raises(OrderRejected):
        ex.receive(cancel_request(buy("NOPE", T0, 1.0, 20.0), T0 + 4000))


# -- rebuilding from the compacted topic -----------------------------------------------------------


class Topic:
    """A stand-in for crypto.orders: every message in order; ``compacted`` keeps each key's last."""

    def __init__(self) -> None:
        self.messages: list[Order] = []

    def publish(self, *messages: Order) -> None:
        self.messages.extend(messages)

    def compacted(self) -> list[Order]:
        last: dict[str, tuple[int, Order]] = {}
        for i, m in enumerate(self.messages):
            last[m.order_id] = (i, m)
        return [m for _, m in sorted(last.values(), key=lambda x: x[0])]


def _history() -> tuple[Exchange, Topic]:
    ex, topic = Exchange(), Topic()

    def submit(order: Order) -> None:
        topic.publish(order)
        topic.publish(*ex.receive(order))

    def tick(symbol: str, ts: int, price: float) -> None:
        topic.publish(*ex.on_tick(symbol, ts, price))

    submit(buy("B-stop", T0, 100.0, 10.0, stop=98.0, take=105.0, symbol=BTC))
    submit(buy("B-take", T0, 50.0, 20.0, stop=49.0, take=52.0, symbol=ETH))
    submit(buy("B-sig", T0, 20.0, 30.0, stop=19.0, take=25.0, symbol=SOL))
    submit(buy("B-cash", T0, 10.0, 5_000.0, symbol="XRPUSDT"))  # more than the cash: cancelled at its fill
    tick(BTC, T0 + 1000, 100.0)
    tick(ETH, T0 + 1000, 50.0)
    tick(SOL, T0 + 1000, 20.0)
    tick("XRPUSDT", T0 + 1000, 10.0)
    submit(buy("L-cancel", T0 + 1100, 90.0, 5.0, symbol=BTC, order_type="LIMIT"))
    submit(sell("S-sig", T0 + 1500, 21.0, 30.0, "B-sig", symbol=SOL))
    tick(SOL, T0 + 2000, 21.0)
    tick(BTC, T0 + 2000, 99.0)
    topic.publish(cancel_request(ex.books["L-cancel"].order, T0 + 2100))
    topic.publish(*ex.receive(topic.messages[-1]))
    tick(ETH, T0 + 2000, 52.5)  # take profit
    tick(BTC, T0 + 3000, 97.5)  # stop
    submit(buy("B-open", T0 + 3100, 51.0, 5.0, stop=49.0, symbol=ETH, trailing_stop_pct=2.0))
    submit(buy("L-pending", T0 + 3200, 15.0, 10.0, symbol=SOL, order_type="LIMIT"))
    tick(ETH, T0 + 4000, 51.0)  # B-open fills
    tick(SOL, T0 + 4000, 21.0)
    tick(ETH, T0 + 5000, 54.0)  # its trailing stop rises: FILLED said again
    tick(BTC, T0 + 5000, 101.0)
    return ex, topic


def _compare(rebuilt: Exchange, original: Exchange) -> None:
    assert rebuilt.cash == pytest.approx(original.cash, rel=1e-12)
    assert rebuilt.fees_paid == pytest.approx(original.fees_paid, rel=1e-12)
    assert rebuilt.realized == pytest.approx(original.realized, rel=1e-9)
    assert sorted((b.order_id, b.quantity, b.stop, b.take_profit) for b in rebuilt.positions()) == sorted(
        (b.order_id, b.quantity, b.stop, b.take_profit) for b in original.positions()
    )
    assert sorted(b.order_id for b in rebuilt.pending_orders()) == sorted(b.order_id for b in original.pending_orders())
    assert {k: b.status for k, b in rebuilt.books.items()} == {k: b.status for k, b in original.books.items()}


def test_the_last_message_of_each_order_rebuilds_the_account() -> None:
    original, topic = _history()
    assert {k: b.status for k, b in original.books.items()} == {
        "B-stop": "CLOSED",
        "B-take": "CLOSED",
        "B-sig": "CLOSED",
        "B-cash": "CANCELLED",
        "L-cancel": "CANCELLED",
        "S-sig": "FILLED",
        "B-open": "FILLED",
        "L-pending": "PENDING",
    }
    assert original.books["B-stop"].exit_reason == "stop_loss"
    assert original.books["B-take"].exit_reason == "take_profit"
    assert original.books["B-sig"].exit_reason == "signal"
    assert original.books["B-open"].stop == pytest.approx(54.0 * 0.98)
    rebuilt = Exchange()
    assert rebuilt.restore(topic.compacted()) == []
    _compare(rebuilt, original)
    # and the rebuilt account goes on like the original: the raised stop closes the open position
    assert (
        statuses(rebuilt.on_tick(ETH, T0 + 6000, 52.0))
        == statuses(original.on_tick(ETH, T0 + 6000, 52.0))
        == [("B-open", "CLOSED")]
    )
    assert rebuilt.cash == pytest.approx(original.cash, rel=1e-12)


def test_a_crash_between_the_two_messages_of_a_close_is_repaired() -> None:
    original, topic = _history()
    # the target's CLOSED was published, the SELL's FILLED (the message after it) never was
    i = next(i for i, m in enumerate(topic.messages) if m.order_id == "S-sig" and m.status == "FILLED")
    assert topic.messages[i - 1].order_id == "B-sig" and topic.messages[i - 1].status == "CLOSED"
    del topic.messages[i]
    compacted = topic.compacted()
    assert next(m for m in compacted if m.order_id == "S-sig").status == "PENDING"
    rebuilt = Exchange()
    repairs = rebuilt.restore(compacted)  # what both stages do on their first batch
    assert statuses(repairs) == [("S-sig", "FILLED")]
    assert repairs[0].metadata["fill_price"] == pytest.approx(original.books["S-sig"].fill_price)
    assert repairs[0].metadata["filled_at"] == original.books["S-sig"].filled_at
    _compare(rebuilt, original)


# -- the order message's own rules -------------------------------------------------------------------


def _wire(**over: Any) -> bytes:
    base = json.loads(encode(buy("B1", T0, 100.0, 10.0, stop=98.0, take=105.0)))
    for key, value in over.items():
        if key in ("stop_loss", "take_profit"):
            base["risk_management"][key] = value
        else:
            base[key] = value
    return json.dumps(base).encode()


@pytest.mark.parametrize(
    ("over", "field", "rule"),
    [
        ({"quantity": 0.0, "total_value": 0.0}, "quantity", "quantity > 0"),
        ({"price": 0.0, "total_value": 0.0}, "price", "price > 0"),
        ({"stop_loss": 100.0}, "risk_management.stop_loss", "stop_loss < price"),
        ({"stop_loss": 101.0}, "risk_management.stop_loss", "stop_loss < price"),
        ({"take_profit": 100.0}, "risk_management.take_profit", "< take_profit"),
        ({"take_profit": 99.0}, "risk_management.take_profit", "< take_profit"),
        ({"total_value": 1_001.0}, "total_value", "total_value = quantity * price"),
    ],
)
def test_an_order_that_breaks_a_rule_does_not_decode(over: dict, field: str, rule: str) -> None:
    good = decode(ORDERS, _wire())
    assert isinstance(good, Order) and good.order_id == "B1"
    with pytest.raises(BadMessageError) as err:
        decode(ORDERS, _wire(**over))
    fields = [v.field for v in err.value.violations]
    assert field in fields, err.value.violations
    violation = err.value.violations[fields.index(field)]
    assert rule in violation.rule
    assert field in str(err.value)


def test_remembered_ticks_give_a_rebuilt_exchange_the_prices_and_fills_of_one_that_never_stopped() -> None:
    """A rebuild that remembers the ticks already seen, then restores the orders, holds the same
    fill, cash and marks as the exchange that saw them live; without the ticks the order stays
    pending and the price unknown. Remembering after a restore is refused: it would work no book."""
    order = buy("B1", 1_000, 100.0, 1.0)
    ticks = [(900, 99.0), (1_500, 101.0), (2_000, 103.0)]
    live = Exchange()
    live.on_tick(BTC, *ticks[0])
    live.submit(order)
    for t in ticks[1:]:
        live.on_tick(BTC, *t)

    rebuilt = Exchange()
    rebuilt.remember(BTC, ticks)
    (filled,) = rebuilt.restore([order])  # the catch-up, published as a repair
    assert (filled.status, filled.metadata["filled_at"]) == ("FILLED", 1_500)
    assert filled.metadata["fill_price"] == pytest.approx(live.books["B1"].fill_price)
    assert rebuilt.cash == pytest.approx(live.cash)
    assert rebuilt.equity() == pytest.approx(live.equity())
    assert rebuilt.price(BTC) == 103.0

    bare = Exchange()
    assert bare.restore([order]) == []
    assert bare.books["B1"].status == "PENDING" and bare.price(BTC) is None
    with pytest.raises(ValueError, match="before any order is restored"):
        bare.remember(BTC, ticks)
