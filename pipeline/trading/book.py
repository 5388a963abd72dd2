"""What the virtual exchange (``pipeline/trading/exchange.py``) works with: its settings, the
``Book`` it keeps per order (the order as submitted plus what happened to it), the rejection it
raises, and the account an order belongs to. Plain data and pure functions; no state of its own."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import BadMessageError
from pipeline.messages import Order

RANK = {"PENDING": 0, "FILLED": 1, "CLOSED": 2, "CANCELLED": 2}
UPDATED_BY = "virtual_exchange"
DEFAULT_ACCOUNT = "paper"


def account_of(order: Order) -> str:
    """The paper account an order belongs to (orders without one belong to the default)."""
    return str(order.metadata.get("account") or DEFAULT_ACCOUNT)


@dataclass(frozen=True)
class ExchangeSettings:
    """Seed 001's starting balance of 10,000 USDT; Binance's spot taker fee of 0.1 %."""

    starting_balance: float = 10_000.0
    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    limit_ttl_ms: int = 3_600_000
    # Ticks kept per symbol to fill an order that arrives after later ticks (about 8 min at 10/s).
    tick_memory: int = 5_000


class OrderRejected(BadMessageError):
    """An order that breaks one of the exchange's rules; it is never filled."""


@dataclass(slots=True)
class Book:
    """An order as the exchange tracks it: the order as submitted plus what happened to it."""

    order: Order
    status: str = "PENDING"
    fill_price: float = 0.0
    fill_fee: float = 0.0
    filled_at: int = 0
    exit_price: float = 0.0
    exit_fee: float = 0.0
    closed_at: int = 0
    exit_reason: str | None = None
    exit_order_id: str | None = None
    reason: str | None = None
    stop: float | None = None
    take_profit: float | None = None
    trailing_pct: float = 0.0
    high: float = 0.0
    closes: str | None = None

    @property
    def order_id(self) -> str:
        return self.order.order_id

    @property
    def symbol(self) -> str:
        return self.order.symbol

    @property
    def quantity(self) -> float:
        return self.order.quantity

    @property
    def pnl(self) -> float:
        """Realized P&L of a closed BUY, net of both fees."""
        q = self.order.quantity
        return q * (self.exit_price - self.fill_price) - self.fill_fee - self.exit_fee

    def unrealized(self, price: float) -> float:
        """P&L of an open BUY at ``price``, net of the entry fee."""
        return self.order.quantity * (price - self.fill_price) - self.fill_fee
