"""Bybit derivatives trade history (``Time,Currency,Contract,Type,Direction,Quantity,Position,
Filled Price,Funding,Fee Paid,...,Trade ID,Order ID``): ``TRADE`` rows are fills, the fee is in
``Currency``; funding settlements are not fills and are refused by name, row by row."""

from __future__ import annotations

from pipeline.journal.formats.layout import Layout, Spec

DERIVATIVES = Spec(
    pair="contract",
    side="direction",
    price="filled_price",
    qty="quantity",
    signed_qty=True,
    fee="fee_paid",
    fee_asset="currency",
    time="time",
    exchange_id="trade_id",
    only=("type", frozenset({"trade"})),
)

LAYOUTS = (
    Layout(
        "bybit-derivatives",
        "Bybit derivatives trade history",
        ("time", "currency", "contract", "type", "direction", "quantity", "filled_price", "fee_paid", "trade_id"),
        DERIVATIVES,
    ),
)
