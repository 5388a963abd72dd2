"""Bitfinex trades (``#,PAIR,AMOUNT,PRICE,FEE,[FEE PERC,]FEE CURRENCY,DATE,ORDER ID``): the sign of
``AMOUNT`` is the side, fees are negative, dates are ``DD-MM-YY HH:MM:SS`` (day first, as Bitfinex
writes them), in the zone the trader chose on export: they take the import's time zone."""

from __future__ import annotations

from pipeline.journal.formats.layout import Layout, Spec

SPEC = Spec(
    pair="pair",
    sign="amount",
    price="price",
    qty="amount",
    fee="fee",
    fee_asset="fee_currency",
    time="date",
    time_formats=("%d-%m-%y %H:%M:%S", "%d-%m-%Y %H:%M:%S"),
    utc=False,
)

LAYOUTS = (
    Layout(
        "bitfinex-trades",
        "Bitfinex trades",
        ("#", "pair", "amount", "price", "fee", "fee_currency", "date"),
        SPEC,
    ),
)
