"""What each message tells the trader: a ``Notification``, and the payloads Discord and a generic webhook take.

Orders say their status change with prices, fees, P&L and the signal behind them; behavioural and
seed-003 alerts say their message. Texts are cut to Discord's limits, and a Discord payload never
mentions anyone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.messages import Alert, BehavioralAlert, Order

DISCORD_CONTENT_MAX = 2000
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096

GREEN = 0x2ECC71
RED = 0xE74C3C
AMBER = 0xF5A623
GREY = 0x95A5A6

KIND_OF_STATUS = {"PENDING": "order", "FILLED": "fill", "CLOSED": "close", "CANCELLED": "cancel"}


@dataclass(frozen=True)
class Notification:
    """One thing to tell the trader, in a form each webhook's payload is built from."""

    kind: str
    title: str
    text: str
    color: int
    timestamp: str | None  # ISO-8601 UTC
    data: dict[str, Any]

    def generic(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "text": self.text, "data": self.data}

    def discord(self) -> dict[str, Any]:
        embed: dict[str, Any] = {
            "title": _cut(self.title, DISCORD_TITLE_MAX),
            "description": _cut(self.text, DISCORD_DESCRIPTION_MAX),
            "color": self.color,
        }
        if self.timestamp is not None:
            embed["timestamp"] = self.timestamp
        # allowed_mentions: an alert's text must not be able to ping @everyone.
        return {"content": _cut(self.title, DISCORD_CONTENT_MAX), "embeds": [embed], "allowed_mentions": {"parse": []}}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_price(value: float) -> str:
    """68,000.50; 2.3456; 0.00001234: four significant digits at least, thousands separated."""
    if abs(value) >= 100 or value == 0:
        return f"{value:,.2f}"
    if abs(value) >= 1:
        return f"{value:,.4f}"
    decimals = 3 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


def fmt_qty(value: float) -> str:
    text = f"{value:,.8f}".rstrip("0").rstrip(".")
    return text or "0"


def fmt_usdt(value: float, *, sign: bool = False) -> str:
    return f"{value:{'+' if sign else ''},.2f} USDT"


def _num(metadata: dict[str, Any], key: str) -> float | None:
    """A number from order metadata, which the exchange fills loosely: None if absent or not a number."""
    value = metadata.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    return str(value) if value not in (None, "") else None


def iso_of_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def iso_of_text(text: str) -> str | None:
    """Normalise a seed-003 ISO time to UTC; None if it cannot be read (Discord rejects a bad one)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def _duration(ms: float) -> str:
    minutes = int(ms // 60_000)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m"]
    return " ".join(p for p in parts if p)


def _risk_line(order: Order, price: float) -> str | None:
    rm = order.risk_management
    parts = [
        f"{label} {fmt_price(level)} ({(level / price - 1) * 100:+.1f}%)"
        for label, level in (("stop loss", rm.stop_loss), ("take profit", rm.take_profit))
        if level is not None
    ]
    return "Risk: " + ", ".join(parts) if parts else None


def _signal_line(order: Order) -> str:
    s = order.trigger_signal
    return (
        f"Strategy {order.strategy}: {s.model} at {s.confidence:.0%} confidence, expected {s.expected_change_pct:+.2f}%"
    )


def order_notification(order: Order) -> Notification:
    meta = order.metadata
    side_color = GREEN if order.action == "BUY" else RED
    closes = _text(meta, "closes")
    if order.status == "PENDING":
        title = (
            f"{order.action} {fmt_qty(order.quantity)} {order.symbol} @ {fmt_price(order.price)} placed "
            f"({order.order_type}{f', closes {closes}' if closes else ''})"
        )
        lines = [f"Value: {fmt_usdt(order.total_value)}", _risk_line(order, order.price), _signal_line(order)]
        color = side_color
    elif order.status == "FILLED":
        price = _num(meta, "fill_price") or order.price
        fee = _num(meta, "fill_fee")
        title = f"{order.action} {fmt_qty(order.quantity)} {order.symbol} @ {fmt_price(price)} filled"
        lines = [
            f"Value: {fmt_usdt(order.quantity * price)}" + (f", fee {fmt_usdt(fee)}" if fee is not None else ""),
            _risk_line(order, price),
            f"Closes {closes}" if closes else None,
            _signal_line(order),
        ]
        color = side_color
    elif order.status == "CLOSED":
        title, lines, color = _close_parts(order)
    else:
        reason = _text(meta, "reason")
        title = f"{order.symbol} order cancelled" + (f": {reason}" if reason else "")
        lines = [
            f"{order.action} {fmt_qty(order.quantity)} {order.symbol} @ {fmt_price(order.price)} ({order.order_type})",
            _signal_line(order),
        ]
        color = GREY
    lines.append(f"Order {order.order_id}")
    return Notification(
        kind=KIND_OF_STATUS[order.status],
        title=title,
        text="\n".join(x for x in lines if x),
        color=color,
        timestamp=iso_of_ms(order.timestamp),
        data=order.model_dump(mode="json"),
    )


def _close_parts(order: Order) -> tuple[str, list[str | None], int]:
    meta = order.metadata
    reason, pnl, pnl_pct = _text(meta, "exit_reason"), _num(meta, "pnl"), _num(meta, "pnl_pct")
    entry, exit_ = _num(meta, "fill_price") or order.price, _num(meta, "exit_price")
    title = f"{order.symbol} closed" + (f" by {reason}" if reason else "")
    if pnl is not None:
        title += f": {fmt_usdt(pnl, sign=True)}" + (f" ({pnl_pct:+.1f}%)" if pnl_pct is not None else "")
    elif exit_ is not None:
        title += f" @ {fmt_price(exit_)}"
    fees = [f for f in (_num(meta, "fill_fee"), _num(meta, "exit_fee")) if f is not None]
    filled_at, closed_at = _num(meta, "filled_at"), _num(meta, "closed_at")
    lines: list[str | None] = [
        f"{order.action} {fmt_qty(order.quantity)} {order.symbol}: entry {fmt_price(entry)}"
        + (f", exit {fmt_price(exit_)}" if exit_ is not None else ""),
        f"Fees: {fmt_usdt(sum(fees))}" if fees else None,
        f"Held {_duration(closed_at - filled_at)}" if filled_at and closed_at and closed_at >= filled_at else None,
        f"Strategy {order.strategy}",
    ]
    color = GREEN if pnl is not None and pnl > 0 else RED if pnl is not None and pnl < 0 else GREY
    return title, lines, color


def behavioral_notification(alert: BehavioralAlert) -> Notification:
    trades = ", ".join(alert.trade_ids[:10]) + (
        f" and {len(alert.trade_ids) - 10} more" if len(alert.trade_ids) > 10 else ""
    )
    return Notification(
        kind="alert",
        title=f"{alert.severity.title()} alert: {alert.alert_type} ({alert.user_id})",
        text=f"{alert.message}\nTrades: {trades}",
        color=AMBER,
        timestamp=iso_of_ms(alert.timestamp),
        data=alert.model_dump(mode="json"),
    )


def alert_notification(alert: Alert) -> Notification:
    return Notification(
        kind="alert",
        title=f"{alert.priority.title()} alert: {alert.alert_type} ({alert.symbol})",
        text=alert.message,
        color=AMBER,
        timestamp=iso_of_text(alert.timestamp),
        data=alert.model_dump(mode="json"),
    )
