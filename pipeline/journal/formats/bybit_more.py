"""Bybit derivatives trade history (``Time,Currency,Contract,Type,Direction,Quantity,Position,
Filled Price,Funding,Fee Paid,...,Trade ID,Order ID``): ``TRADE`` rows are fills, the fee is in
``Currency`` (``DERIVATIVES``); the layout itself, which also reads funding settlements as
payments, is in ``payments``."""

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

LAYOUTS: tuple[Layout, ...] = ()
