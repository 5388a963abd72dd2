"""Trades as exchange APIs return them (Binance ``myTrades``, Bybit v5 executions), parsed into fills.

The trade-history sources publish each payload exactly as received, with its ``format``; the
normalizer parses it here with the same parser the source checked it with. A payload that breaks
a rule raises ``BadMessageError`` naming every bad field.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import Fill, normalize_symbol
from pipeline.journal.plausible import check_fill


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


# The ``RawTrade.format`` of each exchange API's payload, and its parser.
BINANCE_API = "binance-api"
BYBIT_API = "bybit-api"


def _checked(parse: Callable[[Mapping[str, object]], Fill], cols: dict[str, str]) -> Callable[..., Fill]:
    """``parse``, then the plausibility rules every source keeps (``pipeline.journal.plausible``)."""

    def parse_checked(raw: Mapping[str, object]) -> Fill:
        fill = parse(raw)
        bad = check_fill(fill, int(time.time() * 1000), cols)
        if bad:
            raise BadMessageError(bad)
        return fill

    return parse_checked


PARSERS: dict[str, Callable[[Mapping[str, object]], Fill]] = {
    BINANCE_API: _checked(
        parse_binance_trade, {"symbol": "symbol", "price": "price", "quantity": "qty", "fee": "commission"}
    ),
    BYBIT_API: _checked(
        parse_bybit_execution,
        {"symbol": "symbol", "price": "execPrice", "quantity": "execQty", "fee": "execFee", "time": "execTime"},
    ),
}
