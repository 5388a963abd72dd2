"""The paper exchange's positions as journal trades: each BUY the virtual exchange closed becomes one
whole trade of the account ``paper:<model>`` on ``raw-trades``, the same path the trader's own trades
take (normalizer, enricher, behaviour, journal store).

The trade carries both fills as the exchange booked them (prices, times, fees, the P&L net of both
fees), the order's initial stop, the model as its setup and tags ``model:<name>`` and
``confidence:<level>`` (seed 001's levels of the opening signal's confidence), and its order id as
the trade's own id, so the raw trade's id is stable and a redelivered close is stored once.
Orders the trader placed by hand on the paper account go to ``paper:manual``.
"""

from __future__ import annotations

from typing import Any

from pipeline.journal.fills import TradeEntry, entry_fingerprint
from pipeline.journal.payloads import PAPER_EXCHANGE, parse_paper_trade
from pipeline.messages import Order, RawTrade
from pipeline.trading.exchange import UPDATED_BY
from pipeline.trading.risk import confidence_level

PAPER_PREFIX = "paper:"


def paper_user(model: str) -> str:
    """The journal account of a model's paper trades."""
    return PAPER_PREFIX + model


def is_paper(user_id: str) -> bool:
    return user_id.startswith(PAPER_PREFIX)


def closed_position(order: Order) -> dict[str, Any] | None:
    """The ``paper-exchange`` payload of a position the virtual exchange closed, else None (any other
    status, a closing SELL, a message that is not the exchange's own)."""
    meta = order.metadata
    if order.status != "CLOSED" or order.action != "BUY" or meta.get("updated_by") != UPDATED_BY:
        return None
    fees = [meta.get(k) for k in ("fill_fee", "exit_fee")]
    known = [float(f) for f in fees if isinstance(f, (int, float))]
    signal = order.trigger_signal
    return {
        "order_id": order.order_id,
        "symbol": order.symbol,
        "side": order.action,
        "quantity": order.quantity,
        "entry_price": meta.get("fill_price"),
        "entry_time": meta.get("filled_at"),
        "exit_price": meta.get("exit_price"),
        "exit_time": meta.get("closed_at"),
        "fees": sum(known) if len(known) == 2 else None,
        "pnl": meta.get("pnl"),
        "stop_loss": order.risk_management.stop_loss,
        "take_profit": order.risk_management.take_profit,
        "exit_reason": meta.get("exit_reason"),
        "model": signal.model,
        "confidence": signal.confidence,
        "confidence_level": meta.get("confidence_level") or confidence_level(signal.confidence),
        "strategy": order.strategy,
    }


def raw_trade_of(order: Order, now_ms: int) -> RawTrade | None:
    """The raw trade of a closed paper position, or None (see ``closed_position``); raises
    ``BadMessageError`` when the exchange's message lacks a fill's price or time."""
    payload = closed_position(order)
    if payload is None:
        return None
    user = paper_user(str(payload["model"]))
    entry: TradeEntry = parse_paper_trade(payload)
    return RawTrade(
        raw_id=entry_fingerprint(user, entry, 0),
        user_id=user,
        source="paper",
        format=PAPER_EXCHANGE,
        received_at=now_ms,
        payload=payload,
    )
