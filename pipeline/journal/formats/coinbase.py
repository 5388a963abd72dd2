"""Coinbase exports: Coinbase Pro / Advanced fills, and the retail transaction report in two
generations (the currency in the column names, ``EUR Spot Price at Transaction``, or in a
``Price Currency`` column with ``$``-prefixed amounts). Only Buy and Sell rows of the report are
fills; Send, Receive, Convert and rewards rows are refused by name. Times are UTC (``Z``)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.journal.fills import Fill
from pipeline.journal.formats.layout import Layout, Spec, SpecFill, canon

_TRADES = frozenset({"buy", "sell", "advanced trade buy", "advanced trade sell"})
_SIDES = {"buy": "BUY", "sell": "SELL", "advanced trade buy": "BUY", "advanced trade sell": "SELL"}
_QUOTE = "\x00quote"  # the currency a column name states, added to each row under this key
_CCY = re.compile(r"([a-z]{3})_spot_price_at_transaction")

PRO = Spec(
    pair="product",
    side="side",
    price="price",
    qty="size",
    fee="fee",
    fee_asset="price/fee/total_unit",
    time="created_at",
    exchange_id="trade_id",
)


class _Report(SpecFill):
    """The retail report: the quote currency is in a column name or a column of its own."""

    def __init__(self, header: tuple[str, ...], options: Mapping[str, str]) -> None:
        keys = [canon(h)[0] for h in header]
        currency = next((m[1].upper() for k in keys if (m := _CCY.fullmatch(k))), None)
        price = next((k for k in keys if _CCY.fullmatch(k)), "price_at_transaction")
        fee = next((k for k in keys if k.endswith("_fees") or k.startswith("fees")), "fees")
        spec = Spec(
            base="asset",
            quote=_QUOTE if currency else "price_currency",
            side="transaction_type",
            sides=_SIDES,  # type: ignore[arg-type]
            only=("transaction_type", _TRADES),
            price=price,
            qty="quantity_transacted",
            fee=fee,
            fee_default="quote",
            time="timestamp",
        )
        super().__init__(header, spec, options)
        self.currency = currency

    def __call__(self, row: Mapping[str, object], now_ms: int) -> Fill:
        if self.currency:
            row = {**row, _QUOTE: self.currency}
        cleaned = {k: (v.replace("$", "").replace("€", "") if isinstance(v, str) else v) for k, v in row.items()}
        return super().__call__(cleaned, now_ms)


LAYOUTS = (
    Layout(
        "coinbase-pro-fills",
        "Coinbase Pro fills",
        ("portfolio", "trade_id", "product", "side", "created_at", "size", "price", "fee"),
        PRO,
    ),
    Layout(
        "coinbase-report",
        "Coinbase transaction report",
        ("timestamp", "transaction_type", "asset", "quantity_transacted"),
        build=lambda header, options: _Report(header, options),
    ),
)
