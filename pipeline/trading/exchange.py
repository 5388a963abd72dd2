"""The virtual exchange: fills orders against market prices, keeps cash and long positions, and
says every status change as an ``Order`` message (PENDING -> FILLED -> CLOSED, or CANCELLED).

Fills are deterministic. An order fills at the first tick of its symbol *after its timestamp*, so
the same orders and ticks give the same fills however the orders arrive among the ticks: an order
that arrives after later ticks were seen is caught up from the last ticks kept per symbol. The
live stage, the decision stage's replica of the portfolio and the backtest all run this class.

* MARKET orders fill at the next tick's price with slippage (buys pay more, sells get less) and
  a fee on the notional; LIMIT orders fill at the tick price once it reaches the limit, without
  slippage, or are cancelled after their time to live.
* A BUY opens a position with the order's stop-loss and take-profit (and, optionally, a stop that
  trails the highest price). A SELL closes the BUY named in ``metadata.closes``: the spot desk is
  long only. Stops and targets trigger on ticks after the fill and close at that tick's price with
  slippage, so a gap through a stop closes at the gapped price, as on a real exchange.
* The portfolio is a fold over the orders' states: every FILLED and CLOSED message carries its
  prices, fees and times, so ``adopt`` rebuilds the same cash and positions from the last state
  of each order on the compacted ``crypto.orders``.

An instance is used from one thread at a time.

Why one module of about 540 lines: ``Exchange`` is one state machine. Its fills, exits and the
reconciliation that rebuilds it from the topic (``restore``, ``adopt``) share the same books and
invariants, and read best side by side; ``Book``, the settings and the account rule stand apart,
in ``pipeline/trading/book.py``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import Violation
from pipeline.messages import Order
from pipeline.trading.book import (
    RANK,
    UPDATED_BY,
    Book,
    ExchangeSettings,
    OrderRejected,
)


@dataclass
class Exchange:
    """Cash, positions and orders of one paper account."""

    settings: ExchangeSettings = field(default_factory=ExchangeSettings)
    cash: float = field(init=False)
    books: dict[str, Book] = field(default_factory=dict, init=False)
    fees_paid: float = field(default=0.0, init=False)
    realized: float = field(default=0.0, init=False)
    pending: dict[str, dict[str, Book]] = field(default_factory=dict, init=False)
    open: dict[str, dict[str, Book]] = field(default_factory=dict, init=False)
    last: dict[str, tuple[int, float]] = field(default_factory=dict, init=False)
    ticks: dict[str, deque[tuple[int, float]]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.cash = self.settings.starting_balance
        self._fee = self.settings.fee_bps / 10_000.0
        self._slip = self.settings.slippage_bps / 10_000.0

    # -- reading --------------------------------------------------------------------------------

    @property
    def cost_rate(self) -> float:
        """What a market buy costs over its notional: slippage, then the fee on the slipped price."""
        return (1.0 + self._slip) * (1.0 + self._fee) - 1.0

    def price(self, symbol: str) -> float | None:
        last = self.last.get(symbol)
        return None if last is None else last[1]

    def positions(self, symbol: str | None = None) -> list[Book]:
        """Open BUYs, of ``symbol`` or of all symbols, oldest first."""
        if symbol is not None:
            return list(self.open.get(symbol, {}).values())
        return [b for books in self.open.values() for b in books.values()]

    def pending_orders(self, symbol: str | None = None) -> list[Book]:
        if symbol is not None:
            return list(self.pending.get(symbol, {}).values())
        return [b for books in self.pending.values() for b in books.values()]

    def has_pending(self, symbol: str) -> bool:
        return bool(self.pending.get(symbol))

    def _mark(self, book: Book) -> float:
        price = self.price(book.symbol)
        return book.fill_price if price is None else price

    def exposure(self, symbol: str | None = None) -> float:
        """Market value of open positions plus the notional of pending BUYs, in USDT."""
        total = 0.0
        for book in self.positions(symbol):
            total += book.quantity * self._mark(book)
        for book in self.pending_orders(symbol):
            if book.order.action == "BUY":
                total += book.order.total_value
        return total

    def available_cash(self) -> float:
        """Cash not promised to pending BUYs (their notional plus fee and slippage)."""
        reserved = sum(b.order.total_value for b in self.pending_orders() if b.order.action == "BUY")
        return self.cash - reserved * (1.0 + self.cost_rate)

    def equity(self) -> float:
        return self.cash + sum(b.quantity * self._mark(b) for b in self.positions())

    def unrealized(self) -> float:
        return sum(b.unrealized(self._mark(b)) for b in self.positions())

    # -- orders ---------------------------------------------------------------------------------

    def receive(self, order: Order, *, authoritative: bool = True) -> list[Order]:
        """Take any message of ``crypto.orders`` and return the status messages it causes.

        A new PENDING order is checked and queued (``OrderRejected`` if it breaks a rule). A
        trader's cancel request (CANCELLED with ``metadata.requested_by``) cancels a pending order.
        FILLED/CLOSED/CANCELLED messages of the exchange move an order forward (``adopt``). A
        message that would move an order back (a PENDING redelivered after its fill, a cancel
        request for a filled order) changes nothing; the authoritative exchange says the order's
        current state again, so the compacted topic's last word stays the exchange's.
        """
        book = self.books.get(order.order_id)
        if order.status == "PENDING":
            if book is None:
                return self.submit(order)
            return [self._message(book)] if authoritative and book.status != "PENDING" else []
        if order.status == "CANCELLED" and order.metadata.get("requested_by"):
            if book is None:
                raise OrderRejected([Violation("order_id", order.order_id, "names no order of this exchange")])
            if book.status == "PENDING":
                out: list[Order] = []
                self._cancel(book, order.timestamp, f"cancelled by the {order.metadata['requested_by']}", out)
                return out
            return [self._message(book)] if authoritative else []
        return self.adopt(order)

    def submit(self, order: Order) -> list[Order]:
        """Queue a new PENDING order; fill it at once from the kept ticks if it arrived late."""
        if order.order_id in self.books:
            return []
        self._check(order)
        book = Book(order, closes=order.metadata.get("closes"))
        self.books[order.order_id] = book
        self.pending.setdefault(order.symbol, {})[order.order_id] = book
        out: list[Order] = []
        if book.closes is not None and not self._settle_race(book, out):
            return out
        last = self.last.get(order.symbol)
        if last is not None and last[0] > order.timestamp:
            for ts, price in list(self.ticks[order.symbol]):
                if ts <= order.timestamp:
                    continue
                if book.status == "PENDING":
                    self._work_pending(book, ts, price, out)
                elif book.status == "FILLED" and book.order.action == "BUY":
                    if ts > book.filled_at:  # as on_tick: never on the fill's own millisecond
                        self._check_exits(book, ts, price, out)
                else:
                    break
        return out

    def _check(self, order: Order) -> None:
        if order.status != "PENDING":
            raise OrderRejected([Violation("status", order.status, "a new order is PENDING")])
        if order.action == "BUY":
            return
        closes = order.metadata.get("closes")
        if not closes:
            raise OrderRejected(
                [
                    Violation(
                        "metadata.closes",
                        closes,
                        "a SELL names the open BUY order it closes; short selling is not supported",
                    )
                ]
            )
        target = self.books.get(str(closes))
        if target is None or target.order.action != "BUY" or target.symbol != order.symbol:
            raise OrderRejected(
                [Violation("metadata.closes", closes, f"names no BUY order of {order.symbol} on this exchange")]
            )
        if target.status == "CANCELLED":
            raise OrderRejected([Violation("metadata.closes", closes, "that order was cancelled, nothing to close")])
        if not math.isclose(order.quantity, target.quantity, rel_tol=1e-9):
            raise OrderRejected(
                [Violation("quantity", order.quantity, f"a close sells the whole position ({target.quantity})")]
            )
        for other in self.pending_orders(order.symbol):
            if other.closes == closes:
                raise OrderRejected([Violation("metadata.closes", closes, f"order {other.order_id} already closes it")])

    def _settle_race(self, book: Book, out: list[Order]) -> bool:
        """A close that arrives after its position was closed by a stop or target: if it would have
        filled first (at a tick no later than that close), it wins, as it would have had it come in
        time; otherwise it is cancelled. Returns whether the close goes on."""
        target = self.books[book.closes or ""]
        if target.status != "CLOSED":
            return True
        fill_at = next((ts for ts, _ in self.ticks.get(book.symbol, ()) if ts > book.order.timestamp), None)
        if fill_at is not None and fill_at <= target.closed_at and target.exit_order_id is None:
            self._reopen(target)
            return True
        self._cancel(
            book,
            book.order.timestamp,
            f"the position {target.order_id} was already closed by {target.exit_reason}",
            out,
        )
        return False

    def _reopen(self, book: Book) -> None:
        self.cash -= book.quantity * book.exit_price - book.exit_fee
        self.fees_paid -= book.exit_fee
        self.realized -= book.pnl
        book.status, book.exit_price, book.exit_fee, book.closed_at = "FILLED", 0.0, 0.0, 0
        book.exit_reason, book.exit_order_id = None, None
        self.open.setdefault(book.symbol, {})[book.order_id] = book

    # -- ticks ----------------------------------------------------------------------------------

    def remember(self, symbol: str, ticks: Iterable[tuple[int, float]]) -> None:
        """Take ``ticks`` (time, price; oldest first) as ticks already seen: the last price and the
        ticks kept to catch up late orders, as a rebuild finds them. Works no order: call it before
        ``restore``, whose pending orders then catch up from these ticks as a late order does."""
        if self.books:
            raise ValueError(f"{symbol}: ticks are remembered before any order is restored, not after")
        for ts, price in ticks:
            self.on_tick(symbol, ts, price)

    def on_tick(self, symbol: str, ts: int, price: float) -> list[Order]:
        """Fill what the tick fills and trigger what it triggers; return the status messages."""
        last = self.last.get(symbol)
        if last is not None and ts < last[0]:
            return []  # an out-of-order tick would fill at a price from the past
        self.last[symbol] = (ts, price)
        kept = self.ticks.get(symbol)
        if kept is None:
            kept = self.ticks[symbol] = deque(maxlen=self.settings.tick_memory)
        kept.append((ts, price))
        pending, positions = self.pending.get(symbol), self.open.get(symbol)
        if not pending and not positions:
            return []
        out: list[Order] = []
        if pending:
            for book in list(pending.values()):
                if ts > book.order.timestamp:
                    self._work_pending(book, ts, price, out)
        if positions:
            for book in list(positions.values()):
                if ts > book.filled_at:
                    self._check_exits(book, ts, price, out)
        return out

    def _work_pending(self, book: Book, ts: int, price: float, out: list[Order]) -> None:
        order = book.order
        if order.order_type == "LIMIT":
            ttl = int(order.metadata.get("ttl_ms") or self.settings.limit_ttl_ms)
            if ts > order.timestamp + ttl:
                self._cancel(
                    book, ts, f"expired: the limit {order.price:g} was not reached in {ttl / 60_000:g} min", out
                )
                return
            if (price > order.price) if order.action == "BUY" else (price < order.price):
                return
            fill = price
        else:
            fill = price * (1.0 + self._slip) if order.action == "BUY" else price * (1.0 - self._slip)
        if order.action == "BUY":
            self._open(book, ts, price, fill, out)
        else:
            self._fill_close(book, ts, fill, out)

    def _open(self, book: Book, ts: int, price: float, fill: float, out: list[Order]) -> None:
        cost = book.quantity * fill
        fee = cost * self._fee
        if cost + fee > self.cash + 1e-9:
            self._cancel(
                book,
                ts,
                f"insufficient cash: the fill costs {cost + fee:,.2f} USDT, cash is {self.cash:,.2f} USDT",
                out,
            )
            return
        self.cash -= cost + fee
        self.fees_paid += fee
        rm = book.order.risk_management
        book.status, book.fill_price, book.fill_fee, book.filled_at = "FILLED", fill, fee, ts
        book.stop, book.take_profit = rm.stop_loss, rm.take_profit
        book.trailing_pct = float(book.order.metadata.get("trailing_stop_pct") or 0.0)
        book.high = price
        del self.pending[book.symbol][book.order_id]
        self.open.setdefault(book.symbol, {})[book.order_id] = book
        out.append(self._message(book))

    def _fill_close(self, book: Book, ts: int, fill: float, out: list[Order]) -> None:
        target = self.books.get(book.closes or "")
        if target is not None and target.status == "PENDING":
            return  # the entry may still fill; the close waits for it
        if target is None or target.status != "FILLED":
            self._cancel(book, ts, f"the position {book.closes} is already closed", out)
            return
        reason = str(book.order.metadata.get("reason") or ("manual" if book.order.strategy == "manual" else "signal"))
        self._close(target, ts, fill, reason, book.order_id, out)
        book.status, book.fill_price, book.fill_fee, book.filled_at = "FILLED", fill, target.exit_fee, ts
        del self.pending[book.symbol][book.order_id]
        out.append(self._message(book))

    def _check_exits(self, book: Book, ts: int, price: float, out: list[Order]) -> None:
        moved = False
        if book.trailing_pct and price > book.high:
            book.high = price
            stop = price * (1.0 - book.trailing_pct / 100.0)
            if book.stop is None or stop > book.stop:
                book.stop, moved = stop, True
        if book.stop is not None and price <= book.stop:
            initial = book.order.risk_management.stop_loss
            reason = "trailing_stop" if initial is None or book.stop > initial else "stop_loss"
            self._close(book, ts, price * (1.0 - self._slip), reason, None, out)
        elif book.take_profit is not None and price >= book.take_profit:
            self._close(book, ts, price * (1.0 - self._slip), "take_profit", None, out)
        elif moved:
            out.append(self._message(book))  # a restart must find the raised stop

    def _close(self, book: Book, ts: int, fill: float, reason: str, by: str | None, out: list[Order]) -> None:
        proceeds = book.quantity * fill
        fee = proceeds * self._fee
        self.cash += proceeds - fee
        self.fees_paid += fee
        book.status, book.exit_price, book.exit_fee, book.closed_at = "CLOSED", fill, fee, ts
        book.exit_reason, book.exit_order_id = reason, by
        self.realized += book.pnl
        del self.open[book.symbol][book.order_id]
        out.append(self._message(book))

    def _cancel(self, book: Book, ts: int, reason: str, out: list[Order]) -> None:
        book.status, book.reason, book.closed_at = "CANCELLED", reason, ts
        del self.pending[book.symbol][book.order_id]
        out.append(self._message(book))

    # -- messages -------------------------------------------------------------------------------

    def _message(self, book: Book) -> Order:
        """The order's current state as a ``crypto.orders`` message."""
        meta: dict[str, Any] = dict(book.order.metadata)
        meta.pop("requested_by", None)
        meta["updated_by"] = UPDATED_BY
        if book.status in ("FILLED", "CLOSED"):
            meta.update(fill_price=book.fill_price, fill_fee=book.fill_fee, filled_at=book.filled_at)
            if book.order.action == "BUY":
                meta["stop"] = book.stop
                meta["high"] = book.high
        if book.status == "CLOSED":
            meta.update(
                exit_price=book.exit_price,
                exit_fee=book.exit_fee,
                closed_at=book.closed_at,
                exit_reason=book.exit_reason,
                exit_order_id=book.exit_order_id,
                pnl=book.pnl,
                pnl_pct=book.pnl / (book.quantity * book.fill_price + book.fill_fee) * 100.0,
            )
        if book.status == "CANCELLED":
            meta.update(reason=book.reason, cancelled_at=book.closed_at)
        return book.order.model_copy(update={"status": book.status, "metadata": meta})

    # -- rebuilding -----------------------------------------------------------------------------

    def restore(self, orders: list[Order]) -> list[Order]:
        """Rebuild from each order's last message (topic order); return the repairs to publish.

        The exchange's states go first, so a pending close finds the position it closes whatever
        the order of the two on the topic. A close whose position says it was closed by it (a crash
        between the two messages) is repaired, not submitted again; a pending order that breaks a
        rule now is cancelled with the rule.
        """
        out: list[Order] = []
        pending = [o for o in orders if o.status == "PENDING"]
        for order in orders:
            if order.status != "PENDING":
                self.adopt(order)
        for order in pending:
            target = self.books.get(str(order.metadata.get("closes") or ""))
            if order.order_id in self.books:
                continue
            if target is not None and target.status == "CLOSED" and target.exit_order_id == order.order_id:
                book = Book(order, closes=target.order_id)
                self.books[order.order_id] = book
                self.pending.setdefault(order.symbol, {})[order.order_id] = book
                continue  # repaired below
            try:
                out.extend(self.submit(order))
            except OrderRejected as exc:
                book = Book(order, closes=order.metadata.get("closes"))
                self.books[order.order_id] = book
                self.pending.setdefault(order.symbol, {})[order.order_id] = book
                self._cancel(book, order.timestamp, f"rejected: {exc}", out)
        return self.repairs() + out

    def adopt(self, order: Order) -> list[Order]:
        """Move an order forward to the state an exchange message says it reached.

        Rebuilding from the topic adopts each order's last state; a replica adopts the live
        exchange's messages to correct itself. Older or equal states change nothing, except that a
        FILLED message may raise a trailing stop. A closing SELL's FILLED also closes its target,
        so a crash between the two messages leaves the same cash. Returns repairs to publish.
        """
        book = self.books.get(order.order_id)
        meta = order.metadata
        if book is None:
            book = Book(order.model_copy(update={"status": "PENDING"}), closes=meta.get("closes"))
            self.books[order.order_id] = book
            self.pending.setdefault(order.symbol, {})[order.order_id] = book
        if RANK[order.status] < RANK[book.status] or order.status == book.status:
            if book.order.action == "BUY" and order.status in ("FILLED", "CLOSED") and book.status != "CANCELLED":
                self._correct(book, order)
            if order.status == book.status == "FILLED" and book.order.action == "BUY":
                stop = meta.get("stop")
                if stop is not None and (book.stop is None or stop > book.stop):
                    book.stop, book.high = float(stop), max(book.high, float(meta.get("high") or 0.0))
            return []
        if order.status == "CANCELLED":
            if book.status == "PENDING":
                book.status, book.reason = "CANCELLED", meta.get("reason")
                book.closed_at = int(meta.get("cancelled_at") or order.timestamp)
                del self.pending[book.symbol][book.order_id]
            return []
        fill, fee, at = float(meta["fill_price"]), float(meta["fill_fee"]), int(meta["filled_at"])
        if book.order.action == "SELL":
            del self.pending[book.symbol][book.order_id]
            book.status, book.fill_price, book.fill_fee, book.filled_at = "FILLED", fill, fee, at
            target = self.books.get(book.closes or "")
            if target is not None and target.status == "FILLED":
                self._adopt_close(target, fill, fee, at, str(meta.get("reason") or "signal"), book.order_id)
            return []
        if book.status == "PENDING":
            self.cash -= book.quantity * fill + fee
            self.fees_paid += fee
            book.status, book.fill_price, book.fill_fee, book.filled_at = "FILLED", fill, fee, at
            rm = book.order.risk_management
            book.take_profit = rm.take_profit
            book.stop = float(meta["stop"]) if meta.get("stop") is not None else rm.stop_loss
            book.trailing_pct = float(meta.get("trailing_stop_pct") or 0.0)
            book.high = float(meta.get("high") or fill)
            del self.pending[book.symbol][book.order_id]
            self.open.setdefault(book.symbol, {})[book.order_id] = book
        if order.status == "CLOSED":
            self._adopt_close(
                book,
                float(meta["exit_price"]),
                float(meta["exit_fee"]),
                int(meta["closed_at"]),
                str(meta.get("exit_reason")),
                meta.get("exit_order_id"),
            )
        return []

    def _correct(self, book: Book, order: Order) -> None:
        """Take the live exchange's fill (and close) of an order this replica already filled (and
        closed) differently: after a restart a replica may fill at a later tick than the exchange
        did. Cash, fees and realized P&L move by the difference."""
        meta = order.metadata
        fill, fee, at = float(meta["fill_price"]), float(meta["fill_fee"]), int(meta["filled_at"])
        if (fill, fee, at) != (book.fill_price, book.fill_fee, book.filled_at):
            before = book.pnl if book.status == "CLOSED" else 0.0
            self.cash += book.quantity * book.fill_price + book.fill_fee - (book.quantity * fill + fee)
            self.fees_paid += fee - book.fill_fee
            book.fill_price, book.fill_fee, book.filled_at = fill, fee, at
            if book.status == "CLOSED":
                self.realized += book.pnl - before
        if book.exit_order_id and not meta.get("exit_order_id"):
            # Our close by an order beat a stop the exchange saw first: it will undo that stop when
            # the order reaches it (``_settle_race``), so its stop close is not the last word.
            return
        if order.status == "CLOSED" and book.status == "CLOSED":
            exit_price, exit_fee = float(meta["exit_price"]), float(meta["exit_fee"])
            if (exit_price, exit_fee) != (book.exit_price, book.exit_fee):
                before = book.pnl
                self.cash += book.quantity * exit_price - exit_fee - (book.quantity * book.exit_price - book.exit_fee)
                self.fees_paid += exit_fee - book.exit_fee
                book.exit_price, book.exit_fee = exit_price, exit_fee
                self.realized += book.pnl - before
            book.closed_at = int(meta["closed_at"])
            book.exit_reason, book.exit_order_id = str(meta.get("exit_reason")), meta.get("exit_order_id")

    def _adopt_close(self, book: Book, price: float, fee: float, at: int, reason: str, by: str | None) -> None:
        self.cash += book.quantity * price - fee
        self.fees_paid += fee
        book.status, book.exit_price, book.exit_fee, book.closed_at = "CLOSED", price, fee, at
        book.exit_reason, book.exit_order_id = reason, by
        self.realized += book.pnl
        del self.open[book.symbol][book.order_id]

    def repairs(self) -> list[Order]:
        """After a rebuild: say FILLED for closing SELLs whose target says it was closed by them
        (a crash between the two messages), so the topic agrees with the cash."""
        out: list[Order] = []
        for book in self.pending_orders():
            target = self.books.get(book.closes or "")
            if target is not None and target.status == "CLOSED" and target.exit_order_id == book.order_id:
                book.status, book.fill_price, book.fill_fee = "FILLED", target.exit_price, target.exit_fee
                book.filled_at = target.closed_at
                del self.pending[book.symbol][book.order_id]
                out.append(self._message(book))
        return out

    # -- summary --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Balances and positions for display (plain values, JSON-ready)."""
        positions = []
        for b in self.positions():
            mark = self._mark(b)
            positions.append(
                {
                    "order_id": b.order_id,
                    "symbol": b.symbol,
                    "quantity": b.quantity,
                    "entry_price": b.fill_price,
                    "price": mark,
                    "value": b.quantity * mark,
                    "unrealized": b.unrealized(mark),
                    "unrealized_pct": (mark / b.fill_price - 1.0) * 100.0,
                    "stop": b.stop,
                    "take_profit": b.take_profit,
                    "filled_at": b.filled_at,
                }
            )
        equity = self.equity()
        return {
            "cash": self.cash,
            "equity": equity,
            "starting_balance": self.settings.starting_balance,
            "exposure": self.exposure(),
            "exposure_pct": self.exposure() / equity * 100.0 if equity else 0.0,
            "fees_paid": self.fees_paid,
            "realized": self.realized,
            "unrealized": self.unrealized(),
            "positions": positions,
            "pending": [self._message(b).model_dump(mode="json") for b in self.pending_orders()],
            "market_time": {symbol: int(t) for symbol, (t, _) in self.last.items()},
        }
