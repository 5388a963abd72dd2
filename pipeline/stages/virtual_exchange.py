"""virtual-exchange: ``crypto.orders`` + ``crypto.market_data`` -> status changes on ``crypto.orders``.

The paper exchange (``pipeline.trading.exchange.Exchange``) runs here, the only place whose status
messages count. It fills orders at the next tick, triggers stops and targets, and says every
change on ``crypto.orders`` keyed by order id, so the compacted topic keeps each order's last
state. On its first batch it rebuilds the account from that topic (each order's last state), so
a restart finds the exact same cash, positions and pending orders. An order that breaks a rule is
dead-lettered with the rule and said CANCELLED with it, never filled.

The account is also written to SQLite for the Portfolio page: each order's last state, a snapshot
of the account, and an equity point per minute of market time and at every fill.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, ClassVar

import orjson

from pipeline.bus.base import Bus, Latency, OffsetReset, Record, read_to_end
from pipeline.errors import BadMessageError
from pipeline.messages import MarketData, Message, Order, decode
from pipeline.runner import Stage
from pipeline.topics import MARKET_DATA, ORDERS
from pipeline.trading.book import DEFAULT_ACCOUNT, UPDATED_BY, ExchangeSettings, OrderRejected, account_of
from pipeline.trading.exchange import Exchange
from storage import orders as orders_door
from storage.db import Database

log = logging.getLogger(__name__)

EQUITY_EVERY_MS = 60_000


class VirtualExchangeStage(Stage):
    """Runs on its runner's thread; pages read the account from SQLite."""

    name: ClassVar[str] = "virtual-exchange"
    # A fill is on the path from a signal to its order's status. A failure of this stage restarts
    # it from the last commit with its exchange (prices and kept ticks) as the failure left it
    # (docs/delivery.md).
    latency: ClassVar[Latency] = "low"
    inputs: ClassVar[tuple[str, ...]] = (ORDERS, MARKET_DATA)
    # Fills are about now; orders from before a start come from the rebuild.
    offset_reset: ClassVar[OffsetReset] = "latest"
    isolates_failures: ClassVar[bool] = False  # its portfolio cannot take a batch twice

    def __init__(
        self, bus: Bus, db: Database | None, settings: ExchangeSettings | None = None, *, account: str = DEFAULT_ACCOUNT
    ) -> None:
        self.bus = bus
        self.account = account
        self.db = db
        self.exchange = Exchange(settings or ExchangeSettings())
        self.rebuilt = False
        self.rejected = 0
        self._equity_at = 0
        self._stored_at = -math.inf

    def status(self) -> dict[str, Any]:
        """How many orders the exchange rejected (the account itself is in ``portfolio_state``)."""
        return {"rejected": self.rejected}

    def prepare_record(self, message: Message, record: Record) -> Any:
        return message, record

    def rebuild(self) -> list[Order]:
        """Restore the account from each order's last state on the topic; return the repairs."""
        started = time.monotonic()
        orders = account_orders(self.bus, f"{self.name}-rebuild", self.account)
        repairs = self.exchange.restore(orders)
        self.rebuilt = True
        log.info(
            "virtual-exchange: rebuilt %d orders from %s in %.2f s: cash %.2f, %d open, %d pending, %d repaired",
            len(orders),
            ORDERS,
            time.monotonic() - started,
            self.exchange.cash,
            len(self.exchange.positions()),
            len(self.exchange.pending_orders()),
            len(repairs),
        )
        return repairs

    def process_batch(self, messages: list[Any]) -> list[Message]:
        out: list[Order] = [] if self.rebuilt else self.rebuild()
        ex = self.exchange
        received: list[Order] = []
        for message, record in messages:
            if isinstance(message, MarketData):
                out.extend(ex.on_tick(message.symbol, message.timestamp, message.price))
                continue
            order: Order = message
            if account_of(order) != self.account:
                continue  # another paper account's
            if order.metadata.get("updated_by") == UPDATED_BY:
                ex.receive(order)  # our own word coming back: nothing to do, unless we restarted
                continue
            try:
                out.extend(ex.receive(order))
                received.append(order)
            except OrderRejected as exc:
                self.rejected += 1
                self.reject(record, exc)
                if order.order_id not in ex.books and order.status == "PENDING":
                    meta = {
                        **order.metadata,
                        "updated_by": UPDATED_BY,
                        "reason": f"rejected: {exc}",
                        "cancelled_at": order.timestamp,
                    }
                    out.append(order.model_copy(update={"status": "CANCELLED", "metadata": meta}))
        # Ticks alone move only the marks: the page's snapshot is rewritten at most once a second then.
        if self.db is not None and (out or received or time.monotonic() - self._stored_at >= 1.0):
            self._store(received + out)
        return list(out)

    # -- SQLite ---------------------------------------------------------------------------------

    def _store(self, orders: list[Order]) -> None:
        self._stored_at = time.monotonic()
        snapshot = self.exchange.snapshot()
        now = max((t for t, _ in self.exchange.last.values()), default=0)
        point = None
        fills = any(o.status in ("FILLED", "CLOSED") for o in orders)
        if now and (fills or now - self._equity_at >= EQUITY_EVERY_MS):
            self._equity_at = now
            point = (
                now,
                snapshot["cash"],
                snapshot["equity"],
                snapshot["exposure"],
                snapshot["fees_paid"],
                snapshot["realized"],
            )
        rows = [_row(o) for o in orders]
        state = orjson.dumps(snapshot).decode()

        now_ms = int(time.time() * 1000)
        assert self.db is not None  # _store is called only with a store
        self.db.write(lambda db: orders_door.store(db.conn, rows, equity=point, snapshot_json=state, now_ms=now_ms))


def account_orders(bus: Bus, group_id: str, account: str) -> list[Order]:
    """The last message of each of ``account``'s orders on ``crypto.orders`` (what compaction keeps),
    in topic order. Messages that do not decode were dead-lettered when first read."""
    latest: dict[bytes | None, Record] = {}
    for r in read_to_end(bus, ORDERS, group_id):
        latest[r.key] = r
    orders = []
    for r in sorted(latest.values(), key=lambda r: r.offset):
        try:
            order = decode(ORDERS, r.value or b"", Order)
        except BadMessageError:
            continue
        if isinstance(order, Order) and account_of(order) == account:
            orders.append(order)
    return orders


def _row(o: Order) -> tuple[Any, ...]:
    m = o.metadata
    updated = max(int(m.get(k) or 0) for k in ("filled_at", "closed_at", "cancelled_at")) or o.timestamp
    return (
        o.order_id,
        o.symbol,
        o.action,
        o.order_type,
        o.status,
        o.quantity,
        o.price,
        o.timestamp,
        updated,
        o.strategy,
        o.trigger_signal.model,
        m.get("fill_price"),
        m.get("fill_fee"),
        m.get("filled_at"),
        m.get("exit_price"),
        m.get("exit_fee"),
        m.get("closed_at"),
        m.get("exit_reason"),
        m.get("pnl"),
        m.get("reason"),
        m.get("closes"),
        orjson.dumps(o.model_dump(mode="json")).decode(),
    )
