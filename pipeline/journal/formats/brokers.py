"""Stock brokers: IBKR Flex queries, Schwab, Fidelity, thinkorswim and Webull.

A stock's symbol names no quote asset (``AAPL``): the fill takes the row's currency column when
the export has one, else the account currency (``options["currency"]``, USD when unset); its fee
stays in that currency. Brokers write local times (often a date alone): they take the import's
time zone. Rows that are not executions (dividends, transfers, cancelled orders) are refused by
name, one row at a time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.journal.fills import Fill
from pipeline.journal.formats.layout import STOCK_SIDES, Layout, Spec, SpecFill, canon

_MONEY = re.compile(r"^\s*\(?\s*-?\$")
_SIDES = STOCK_SIDES


def _money(row: Mapping[str, object]) -> dict[str, object]:
    """Cells as numbers: ``$1,234.50`` -> ``1,234.50``, ``($5.00)`` -> ``-5.00``."""
    out: dict[str, object] = {}
    for k, v in row.items():
        if isinstance(v, str) and _MONEY.match(v):
            s = v.strip()
            negative = s.startswith(("(", "-"))
            s = s.strip("()").replace("$", "").lstrip("-").strip()
            v = "-" + s if negative else s
        out[k] = v
    return out


class _Money(SpecFill):
    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        return super().__call__(_money(row), now_ms)


# -- IBKR Flex: the columns a Flex query includes vary; pick what is there -----------------------


class _IbkrFlex(SpecFill):
    def __init__(self, header: tuple[str, ...], options: Mapping[str, str]) -> None:
        keys = {canon(h)[0] for h in header}

        def first(*names: str) -> str | None:
            return next((n for n in names if n in keys), None)

        clock = first("datetime", "date/time")
        spec = Spec(
            pair="symbol",
            stock=True,
            quote=first("currencyprimary", "currency"),
            side="buy/sell",
            sides=_SIDES,
            price=first("tradeprice", "price", "t._price") or "tradeprice",
            qty="quantity",
            signed_qty=True,
            fee=first("ibcommission", "commission", "comm/fee"),
            fee_asset=first("ibcommissioncurrency"),
            fee_default="currency",
            time=clock or first("tradedate") or "tradedate",
            time_formats=(
                "%Y%m%d;%H%M%S",
                "%Y-%m-%d;%H:%M:%S",
                "%Y-%m-%d, %H:%M:%S",
                "%Y-%m-%d %H:%M:%S",
                "%Y%m%d",
                "%Y-%m-%d",
                "%m/%d/%Y",
            ),
            utc=False,
            exchange_id=first("tradeid", "transactionid"),
        )
        super().__init__(header, spec, options)


# -- thinkorswim: the trade is written in words, "BOT +10 AAPL @189.50" -------------------------

_TOS = re.compile(r"\s*(BOT|SOLD)\s+([+-]?[\d,.]+)\s+([A-Z0-9./]+)(?:\s+\S+)*?\s+@\s*([\d,.]+)")
_TOS_SYMBOL, _TOS_SIDE, _TOS_QTY, _TOS_PRICE = "\x00symbol", "\x00side", "\x00qty", "\x00price"


class _Thinkorswim(SpecFill):
    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        text = row.get(self.col("description"))
        m = _TOS.match(text) if isinstance(text, str) else None
        parts = {_TOS_SIDE: m[1], _TOS_QTY: m[2], _TOS_SYMBOL: m[3], _TOS_PRICE: m[4]} if m else {}
        if not m:
            parts = {_TOS_SIDE: text, _TOS_QTY: "", _TOS_SYMBOL: "", _TOS_PRICE: ""}
        return super().__call__(_money({**row, **parts}), now_ms)


THINKORSWIM = Spec(
    pair=_TOS_SYMBOL,
    stock=True,
    side=_TOS_SIDE,
    sides=_SIDES,
    price=_TOS_PRICE,
    qty=_TOS_QTY,
    signed_qty=True,
    fee_parts=("misc_fees", "commissions_&_fees"),
    fee_default="currency",
    time=("date", "time"),
    time_formats=("%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M:%S"),
    utc=False,
    exchange_id="ref_#",
    only=("type", frozenset({"trd"})),
)

# -- Webull: times end in a US zone abbreviation ------------------------------------------------

_US_ZONES = {"EST": "-05:00", "EDT": "-04:00", "CST": "-06:00", "CDT": "-05:00", "PST": "-08:00", "PDT": "-07:00"}
_WEBULL_TIME = re.compile(r"\s*(\d{2})/(\d{2})/(\d{4}) (\d{2}:\d{2}:\d{2})\s+([A-Z]{3})\s*")


class _Webull(SpecFill):
    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        column = self.col("filled_time")
        v = row.get(column)
        m = _WEBULL_TIME.fullmatch(v) if isinstance(v, str) else None
        if m and m[5] in _US_ZONES:
            row = {**row, column: f"{m[3]}-{m[1]}-{m[2]}T{m[4]}{_US_ZONES[m[5]]}"}
        return super().__call__(_money(row), now_ms)


WEBULL = Spec(
    pair="symbol",
    stock=True,
    side="side",
    sides=_SIDES,
    price="avg_price",
    qty="filled",
    time="filled_time",
    utc=False,
    only=("status", frozenset({"filled", "partially filled"})),
)

SCHWAB = Spec(
    pair="symbol",
    stock=True,
    side="action",
    sides=_SIDES,
    only=("action", frozenset(k for k in _SIDES if " " in k or k in ("buy", "sell"))),
    price="price",
    qty="quantity",
    signed_qty=True,
    fee="fees_&_comm",
    fee_default="currency",
    time="date",
    time_formats=("%m/%d/%Y",),
    utc=False,
)


class _Schwab(_Money):
    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        column = self.col("date")
        v = row.get(column)
        if isinstance(v, str) and " as of " in v:  # "01/05/2026 as of 01/04/2026": the trade date is first
            row = {**row, column: v.split(" as of ")[0]}
        return super().__call__(row, now_ms)


FIDELITY = Spec(
    pair="symbol",
    stock=True,
    side="action",
    sides={"you bought": "BUY", "you sold": "SELL"},
    side_pattern=re.compile(r"^\s*(YOU BOUGHT|YOU SOLD)", re.IGNORECASE),
    price="price_($)",
    qty="quantity",
    signed_qty=True,
    fee_parts=("commission_($)", "fees_($)"),
    fee_default="currency",
    time="run_date",
    time_formats=("%m/%d/%Y",),
    utc=False,
)

LAYOUTS = (
    Layout(
        "ibkr-flex",
        "Interactive Brokers Flex query (trades)",
        ("clientaccountid", "symbol", "buy/sell", "quantity"),
        build=lambda header, options: _IbkrFlex(header, options),
    ),
    Layout(
        "thinkorswim",
        "thinkorswim account statement (cash balance)",
        ("date", "time", "type", "ref_#", "description", "commissions_&_fees", "amount"),
        build=lambda header, options: _Thinkorswim(header, THINKORSWIM, options),
    ),
    Layout(
        "webull-orders",
        "Webull order history",
        ("symbol", "side", "status", "filled", "avg_price", "filled_time"),
        build=lambda header, options: _Webull(header, WEBULL, options),
    ),
    Layout(
        "schwab",
        "Charles Schwab transactions",
        ("date", "action", "symbol", "description", "quantity", "price", "fees_&_comm", "amount"),
        build=lambda header, options: _Schwab(header, SCHWAB, options),
    ),
    Layout(
        "fidelity",
        "Fidelity account history",
        ("run_date", "action", "symbol", "price_($)", "quantity", "amount_($)"),
        build=lambda header, options: _Money(header, FIDELITY, options),
    ),
)
