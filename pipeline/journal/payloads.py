"""Trades as exchange APIs return them (Binance ``myTrades``, Bybit v5 executions, ccxt's unified
trades for every other exchange), parsed into fills, and the paper exchange's closed positions
(``paper-exchange``), parsed into whole trades.

The trade-history sources publish each payload exactly as received, with its ``format``; the
normalizer parses it here with the same parser the source checked it with. A payload that breaks
a rule raises ``BadMessageError`` naming every bad field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill, TradeEntry, normalize_symbol


class _Fields:
    """Reads typed fields from one raw object, collecting every violation before raising."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self.raw = raw
        self.violations: list[Violation] = []

    def bad(self, field: str, rule: str) -> None:
        self.violations.append(Violation(field, self.raw.get(field), rule))

    def text(self, field: str, *, required: bool = True) -> str | None:
        value = self.raw.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if value is None or value == "":
            if required:
                self.bad(field, "is required")
            return None
        self.bad(field, "is a non-empty string")
        return None

    def number(self, field: str, *, positive: bool = True, required: bool = True) -> float | None:
        value = self.raw.get(field)
        if value is None or value == "":
            if required:
                self.bad(field, "is required")
            return None
        try:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.bad(field, "is a decimal number")
            return None
        if not math.isfinite(number) or (positive and number <= 0):
            self.bad(field, "is a finite number > 0" if positive else "is a finite number")
            return None
        return number

    def millis(self, field: str) -> int | None:
        value = self.raw.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.isdigit() and int(value) > 0:
            return int(value)
        self.bad(field, "is Unix milliseconds > 0")
        return None

    def done(self) -> None:
        if self.violations:
            raise BadMessageError(self.violations)


def parse_binance_trade(raw: Mapping[str, object]) -> Fill:
    """Return the ``Fill`` of one Binance ``myTrades`` object; raise ``BadMessageError`` if bad."""
    f = _Fields(raw)
    symbol = f.text("symbol")
    price, qty = f.number("price"), f.number("qty")
    fee = f.number("commission", positive=False, required=False)
    when = f.millis("time")
    is_buyer = raw.get("isBuyer")
    if not isinstance(is_buyer, bool):
        f.bad("isBuyer", "is true or false")
    trade_id = raw.get("id")
    if isinstance(trade_id, bool) or not (
        isinstance(trade_id, int) or (isinstance(trade_id, str) and trade_id.isdigit())
    ):
        f.bad("id", "is an integer trade id")
    f.done()
    assert symbol is not None and price is not None and qty is not None and when is not None
    return Fill(
        symbol=normalize_symbol(symbol),
        side="BUY" if is_buyer else "SELL",
        price=price,
        quantity=qty,
        time=when,
        fee=fee,
        fee_asset=f.text("commissionAsset", required=False),
        exchange_id=str(trade_id),
    )


def parse_bybit_execution(raw: Mapping[str, object]) -> Fill:
    """Return the ``Fill`` of one Bybit v5 execution; only ``execType`` "Trade" is a fill."""
    f = _Fields(raw)
    exec_type = raw.get("execType", "Trade")
    if exec_type != "Trade":
        f.bad("execType", 'is "Trade" (funding, settlement and ADL rows are not fills)')
    symbol = f.text("symbol")
    side = raw.get("side")
    if side not in ("Buy", "Sell"):
        f.bad("side", 'is "Buy" or "Sell"')
    price, qty = f.number("execPrice"), f.number("execQty")
    fee = f.number("execFee", positive=False, required=False)
    when = f.millis("execTime")
    exec_id = f.text("execId")
    f.done()
    assert symbol is not None and price is not None and qty is not None and when is not None
    fee_asset = f.text("feeCurrency", required=False) or f.text("execFeeCurrency", required=False)
    return Fill(
        symbol=normalize_symbol(symbol),
        side="BUY" if side == "Buy" else "SELL",
        price=price,
        quantity=qty,
        time=when,
        fee=fee,
        fee_asset=fee_asset,
        exchange_id=exec_id,
    )


def parse_ccxt_trade(raw: Mapping[str, object]) -> Fill:
    """Return the ``Fill`` of one ccxt unified trade (``id, timestamp, symbol, side, price, amount,
    fee: {cost, currency}``)."""
    f = _Fields(raw)
    symbol = f.text("symbol")
    side = raw.get("side")
    if side not in ("buy", "sell"):
        f.bad("side", 'is "buy" or "sell"')
    price, qty = f.number("price"), f.number("amount")
    when = f.millis("timestamp")
    fee_cell = raw.get("fee")
    fee: float | None = None
    fee_asset: str | None = None
    if isinstance(fee_cell, dict) and fee_cell.get("cost") is not None:
        fees = _Fields(fee_cell)
        fee = fees.number("cost", positive=False, required=False)
        fee_asset = fees.text("currency", required=False)
        f.violations += [Violation(f"fee.{v.field}", v.value, v.rule) for v in fees.violations]
    trade_id = raw.get("id")
    f.done()
    assert symbol is not None and price is not None and qty is not None and when is not None
    return Fill(
        symbol=normalize_symbol(symbol.split(":")[0]),
        side="BUY" if side == "buy" else "SELL",
        price=price,
        quantity=qty,
        time=when,
        fee=abs(fee) if fee is not None else None,
        fee_asset=fee_asset.upper() if fee_asset else None,
        exchange_id=str(trade_id) if trade_id not in (None, "") else None,
    )


def parse_binance_execution(raw: Mapping[str, object]) -> Fill:
    """Return the ``Fill`` of one Binance user-data-stream ``executionReport`` whose execution type
    ``x`` is ``TRADE`` (``l``/``L`` the last fill's quantity and price, ``n``/``N`` its commission,
    ``T`` its time, ``t`` its trade id: the same id ``myTrades`` gives, so both make one fill)."""
    f = _Fields(raw)
    if raw.get("e") != "executionReport":
        f.bad("e", 'is "executionReport"')
    if raw.get("x") != "TRADE":
        f.bad("x", 'is "TRADE" (new, cancelled and expired orders are not fills)')
    symbol = f.text("s")
    side = raw.get("S")
    if side not in ("BUY", "SELL"):
        f.bad("S", 'is "BUY" or "SELL"')
    price, qty = f.number("L"), f.number("l")
    fee = f.number("n", positive=False, required=False)
    when = f.millis("T")
    trade_id = raw.get("t")
    if isinstance(trade_id, bool) or not isinstance(trade_id, int) or trade_id < 0:
        f.bad("t", "is an integer trade id")
    f.done()
    assert symbol is not None and price is not None and qty is not None and when is not None
    return Fill(
        symbol=normalize_symbol(symbol),
        side="BUY" if side == "BUY" else "SELL",
        price=price,
        quantity=qty,
        time=when,
        fee=fee,
        fee_asset=f.text("N", required=False),
        exchange_id=str(trade_id),
    )


def parse_paper_trade(raw: Mapping[str, object]) -> TradeEntry:
    """Return the whole trade of one closed paper position (``pipeline.journal.paper``): both its
    fills, its fees and P&L as the virtual exchange booked them, its initial stop, and tags naming
    the model and the confidence level of the signal that opened it."""
    f = _Fields(raw)
    order_id, symbol, model = f.text("order_id"), f.text("symbol"), f.text("model")
    side = raw.get("side")
    if side not in ("BUY", "SELL"):
        f.bad("side", "is BUY or SELL")
    entry, exit_, quantity = f.number("entry_price"), f.number("exit_price"), f.number("quantity")
    entry_time, exit_time = f.millis("entry_time"), f.millis("exit_time")
    fees = f.number("fees", positive=False, required=False)
    pnl = f.number("pnl", positive=False, required=False)
    stop = f.number("stop_loss", required=False)
    confidence = f.number("confidence", positive=False, required=False)
    if confidence is not None and not 0 <= confidence <= 1:
        f.bad("confidence", "is between 0 and 1")
    if entry_time is not None and exit_time is not None and exit_time < entry_time:
        f.bad("exit_time", "is at or after entry_time")
    f.done()
    assert order_id and symbol and model and entry and exit_ and quantity and entry_time and exit_time
    level = raw.get("confidence_level")
    tags = [f"model:{model}"] + ([f"confidence:{level}"] if isinstance(level, str) and level else [])
    reason = f.text("exit_reason", required=False)
    notes = f"paper order {order_id}" + (f"; {model} at {confidence:.2f} confidence" if confidence is not None else "")
    return TradeEntry(
        symbol=normalize_symbol(symbol),
        side="BUY" if side == "BUY" else "SELL",
        entry_price=entry,
        quantity=quantity,
        entry_time=entry_time,
        exit_price=exit_,
        exit_time=exit_time,
        pnl=pnl,
        fees=fees,
        stop_loss=stop,
        notes=notes + (f"; closed by {reason}" if reason else ""),
        tags=tuple(tags),
        setup=model,
        external_id=order_id,
    )


# The ``RawTrade.format`` of each exchange API's payload, and its parser.
BINANCE_API = "binance-api"
BINANCE_STREAM = "binance-stream"
BYBIT_API = "bybit-api"
CCXT = "ccxt"
PAPER_EXCHANGE = "paper-exchange"
PARSERS: dict[str, Callable[[Mapping[str, object]], Fill]] = {
    BINANCE_API: parse_binance_trade,
    BYBIT_API: parse_bybit_execution,
    CCXT: parse_ccxt_trade,
    BINANCE_STREAM: parse_binance_execution,
}
# Formats whose payload is a whole trade, and their parsers.
TRADE_PARSERS: dict[str, Callable[[Mapping[str, object]], TradeEntry]] = {PAPER_EXCHANGE: parse_paper_trade}
