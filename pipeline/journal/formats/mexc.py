"""MEXC spot trade history (``Pairs,Time,Side,Filled Price,Executed Amount,Total,Fee,Role``, with or
without a leading ``UID``); pairs like ``BTC_USDT``; the fee carries its asset as a suffix. MEXC
writes the account zone's times: they take the import's time zone unless the header names one."""

from __future__ import annotations

from pipeline.journal.formats.layout import Layout, Spec

SPEC = Spec(
    pair="pairs",
    side="side",
    price="filled_price",
    qty="executed_amount",
    fee="fee",
    fee_default="quote",
    time="time",
    utc=False,
)

LAYOUTS = (
    Layout(
        "mexc-trades",
        "MEXC spot trade history",
        ("pairs", "time", "side", "filled_price", "executed_amount", "total", "fee"),
        SPEC,
    ),
)
