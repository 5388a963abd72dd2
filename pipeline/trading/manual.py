"""The trader's own orders on the paper account: open a position (after the pre-trade check), close a
position, cancel a pending order.

Both are messages on ``crypto.orders`` like the decision stage's, so the virtual exchange is the
only one that changes the account: it fills a close at the next tick of its symbol (the position
is then CLOSED with exit reason ``manual``) and cancels an order that is still PENDING when the
request arrives (a request for an order that filled meanwhile changes nothing).
"""

from __future__ import annotations

from pipeline.bus.base import Producer
from pipeline.errors import TransientError
from pipeline.messages import Order, RiskManagement, TriggerSignal, encode
from pipeline.topics import ORDERS
from pipeline.trading.book import DEFAULT_ACCOUNT, UPDATED_BY

MANUAL_STRATEGY = "manual"
TRADER = "trader"


def entry_request(
    symbol: str, quantity: float, price: float, stop: float, *, now_ms: int, account: str = DEFAULT_ACCOUNT
) -> Order:
    """Return a BUY MARKET order of ``quantity`` with its stop, filled at the next tick after ``now_ms``;
    ``price`` is the last price, for the order's value."""
    return Order(
        order_id=f"MAN-{now_ms}-{symbol}-B",
        symbol=symbol,
        timestamp=now_ms,
        action="BUY",
        order_type="MARKET",
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status="PENDING",
        strategy=MANUAL_STRATEGY,
        trigger_signal=TriggerSignal(model="manual", confidence=1.0, expected_change_pct=0.0),
        risk_management=RiskManagement(stop_loss=stop),
        metadata={"created_by": TRADER, "account": account},
    )


def close_request(
    order_id: str, symbol: str, quantity: float, price: float, *, now_ms: int, account: str = DEFAULT_ACCOUNT
) -> Order:
    """Return a SELL MARKET order that closes the open BUY ``order_id`` (its whole ``quantity``)
    at the next tick after ``now_ms``; ``price`` is the last price, for the order's value."""
    return Order(
        order_id=f"MAN-{now_ms}-{symbol}-X",
        symbol=symbol,
        timestamp=now_ms,
        action="SELL",
        order_type="MARKET",
        quantity=quantity,
        price=price,
        total_value=quantity * price,
        status="PENDING",
        strategy=MANUAL_STRATEGY,
        trigger_signal=TriggerSignal(model="manual", confidence=1.0, expected_change_pct=0.0),
        risk_management=RiskManagement(),
        metadata={"closes": order_id, "reason": "manual", "created_by": TRADER, "account": account},
    )


def cancel_request(order: Order, *, now_ms: int) -> Order:
    """Return the request to cancel the pending ``order``: the order, CANCELLED, asked by the trader.

    ``order`` may be the exchange's own word about it (the account snapshot's pending orders); its
    ``updated_by`` is dropped, or the exchange would take the request for its own echo."""
    metadata = {k: v for k, v in order.metadata.items() if k != "updated_by" or v != UPDATED_BY}
    metadata.update(requested_by=TRADER, requested_at=now_ms)
    return order.model_copy(update={"status": "CANCELLED", "metadata": metadata})


def publish(producer: Producer, order: Order, timeout: float = 10.0) -> None:
    """Publish ``order`` on ``crypto.orders`` keyed by its id; raise ``TransientError`` when the
    bus did not take it."""
    producer.produce(ORDERS, encode(order), key=order.key())
    if producer.flush(timeout):
        raise TransientError(f"order {order.order_id} was not delivered to {ORDERS}; try again")
