"""OKX trade history (``id,Order id,Time,Trade Type,Symbol,Action,Amount,Trading Unit,...``, the
``id`` cell may carry a BOM) and the OKEx 2020 export (``Order ID,Trade ID,Trade Time,Pairs,...``:
the sign of ``Amount`` is the side, totals and fees carry their asset after a space). OKX writes
the times of the account's zone: they take the import's time zone."""

from __future__ import annotations

from pipeline.journal.formats.layout import Layout, Spec

OKX = Spec(
    pair="symbol",
    side="action",
    price="filled_price",
    qty="amount",
    fee="fee",
    fee_asset="fee_unit",
    time="time",
    utc=False,
    exchange_id="id",
)
OKEX_2020 = Spec(
    pair="pairs",
    sign="amount",
    price="price",
    qty="amount",
    fee="fee",
    time="trade_time",
    utc=False,
    exchange_id="trade_id",
)

LAYOUTS = (
    Layout(
        "okx-trades",
        "OKX trade history",
        ("id", "order_id", "time", "symbol", "action", "amount", "filled_price", "fee", "fee_unit"),
        OKX,
    ),
    Layout(
        "okex-trades",
        "OKEx trade history (2020)",
        ("order_id", "trade_id", "trade_time", "pairs", "amount", "price", "fee"),
        OKEX_2020,
    ),
)
